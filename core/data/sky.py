"""``sky-lt``: a synthetic, astronomy-like photometric catalogue, long-tailed, written as a project.

Five classes with SDSS-like colours (u, g, r, i, z magnitudes): many stars along the stellar
locus, galaxies, fewer quasars and two rare classes — white dwarfs (blue in g−r) and brown dwarfs
(very red in r−i). Each item has a position (ra, dec), a name, a redshift, an ``extended`` flag
and two small PNG cutouts (a gri colour image and an r-band image) drawn from its magnitudes and
shape. The project derives every colour with ``features.combinations``, shows the info and images
in the inspector and opens a layout with a colour–colour plot. Everything is made offline from the
seed; the tutorial (docs/tutorial-catalogue.md) walks through it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

SKY_CLASSES = ("star", "galaxy", "quasar", "white dwarf", "brown dwarf")
SKY_RARE = ("white dwarf", "brown dwarf")
SKY_SHARES = (0.52, 0.34, 0.10, 0.025, 0.015)
BANDS = ("u", "g", "r", "i", "z")
CUTOUT_PX = 24
PROJECT_FILE = "project.yaml"


def _colours(kind: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """(n, 4) colours u−g, g−r, r−i, i−z of one class."""
    if kind == "star":  # the stellar locus, from blue F stars to red M stars
        t = rng.uniform(0, 1, n)
        locus = np.column_stack([0.8 + 1.6 * t, 0.2 + 1.2 * t, 0.05 + 0.7 * t ** 1.6, 0.02 + 0.4 * t])
        return locus + rng.normal(0, 0.06, (n, 4))
    centres = {
        "galaxy": ((1.6, 0.8, 0.4, 0.3), (0.3, 0.18, 0.1, 0.1)),
        "quasar": ((0.2, 0.15, 0.15, 0.1), (0.15, 0.12, 0.1, 0.1)),
        "white dwarf": ((0.3, -0.3, -0.25, -0.2), (0.12, 0.08, 0.07, 0.07)),
        "brown dwarf": ((2.8, 1.8, 2.6, 1.5), (0.3, 0.2, 0.25, 0.2)),
    }
    mean, scale = centres[kind]
    return rng.normal(mean, scale, (n, 4))


def build_sky(n_items: int = 2000, seed: int = 0):
    """The catalogue as a pandas DataFrame (ids ``sky-00001``...; ``class`` is the ground truth)."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    counts = np.maximum(np.round(np.asarray(SKY_SHARES) * n_items).astype(int), 3)
    kinds = np.repeat(np.asarray(SKY_CLASSES, dtype=object), counts)
    rng.shuffle(kinds)
    n = len(kinds)
    colours = np.zeros((n, 4))
    for kind in SKY_CLASSES:
        rows = np.flatnonzero(kinds == kind)
        colours[rows] = _colours(kind, len(rows), rng)
    r = rng.uniform(15.0, 21.0, n)
    r[kinds == "brown dwarf"] = rng.uniform(18.5, 21.0, int((kinds == "brown dwarf").sum()))
    noise = lambda: rng.normal(0, 0.01 + 0.02 * np.exp(r - 20.0))  # noisier when faint
    g = r + colours[:, 1] + noise()
    u = g + colours[:, 0] + noise()
    i = r - colours[:, 2] + noise()
    z = i - colours[:, 3] + noise()
    extended = ((kinds == "galaxy") & (rng.uniform(0, 1, n) < 0.9)) | (rng.uniform(0, 1, n) < 0.03)
    redshift = np.where(kinds == "quasar", rng.uniform(0.3, 2.5, n),
                        np.where(kinds == "galaxy", rng.gamma(2.0, 0.06, n), np.abs(rng.normal(0, 1e-4, n))))
    ra = rng.uniform(150.0, 152.0, n)
    dec = rng.uniform(1.0, 3.0, n)
    ids = [f"sky-{k:05d}" for k in range(1, n + 1)]
    names = [_iau_name(a, d) for a, d in zip(ra, dec)]
    return pd.DataFrame({
        "id": ids, "name": names, "ra": ra.round(6), "dec": dec.round(6),
        "u": u.round(3), "g": g.round(3), "r": r.round(3), "i": i.round(3), "z": z.round(3),
        "extended": extended.astype(int), "redshift": redshift.round(4),
        "cutout_gri": [f"cutouts/{k}-gri.png" for k in ids],
        "cutout_r": [f"cutouts/{k}-r.png" for k in ids],
        "class": kinds.astype(str),
    })


def _iau_name(ra: float, dec: float) -> str:
    hours = ra / 15.0
    h, m = int(hours), int((hours % 1) * 60)
    s = ((hours * 60) % 1) * 60
    sign = "+" if dec >= 0 else "-"
    d, dm = int(abs(dec)), int((abs(dec) % 1) * 60)
    ds = ((abs(dec) * 60) % 1) * 60
    return f"J{h:02d}{m:02d}{s:05.2f}{sign}{d:02d}{dm:02d}{ds:04.1f}"


def _cutouts(row, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A gri colour cutout and an r-band cutout (uint8) of one item."""
    yy, xx = np.mgrid[:CUTOUT_PX, :CUTOUT_PX] - (CUTOUT_PX - 1) / 2
    if row.extended:
        angle = rng.uniform(0, np.pi)
        a, b = rng.uniform(2.5, 5.0), rng.uniform(1.2, 2.5)
        xr = xx * np.cos(angle) + yy * np.sin(angle)
        yr = -xx * np.sin(angle) + yy * np.cos(angle)
        shape = np.exp(-np.sqrt((xr / a) ** 2 + (yr / b) ** 2) * 1.7)
    else:
        shape = np.exp(-(xx ** 2 + yy ** 2) / (2 * 1.4 ** 2))
    flux = {band: 10 ** (-0.4 * (getattr(row, band) - 15.0)) for band in ("g", "r", "i")}
    top = max(flux.values())
    planes = []
    for band in ("i", "r", "g"):  # red, green, blue
        plane = shape * flux[band] / top + rng.normal(0, 0.03, shape.shape)
        planes.append(np.clip(plane, 0, 1))
    rgb = (np.stack(planes, axis=-1) * 255).astype(np.uint8)
    mono = (np.clip(shape * (0.35 + 0.65 * flux["r"] / top) + rng.normal(0, 0.04, shape.shape), 0, 1)
            * 255).astype(np.uint8)
    return rgb, mono


def write_cutouts(frame, folder: Path, seed: int = 0) -> None:
    """PNG cutouts for every row, at the relative paths the frame names."""
    from PIL import Image

    rng = np.random.default_rng([seed, 1])
    (folder / "cutouts").mkdir(parents=True, exist_ok=True)
    for row in frame.itertuples(index=False):
        rgb, mono = _cutouts(row, rng)
        Image.fromarray(rgb).save(folder / row.cutout_gri, optimize=False)
        Image.fromarray(mono).save(folder / row.cutout_r, optimize=False)


SKY_LAYOUT = {
    "schema_version": 1,
    "name": "sky",
    "title": "Tailwise · sky survey",
    "description": "The map beside a colour-colour diagram; selections are linked both ways.",
    "sidebar": ["annotator", "retrain", "labelling"],
    "main": [
        ["map", "colour-colour"],
        ["inspector", {"tabs": ["queue", "metrics", "testset", "r-band", "confusion", "history",
                                "project"]}],
    ],
    "plots": {
        "colour-colour": {"kind": "scatter", "x": "g_r", "y": "u_g", "colour_by": "label",
                          "title": "colour–colour: u−g against g−r"},
        "r-band": {"kind": "histogram", "x": "r", "bins": 30, "title": "r magnitudes"},
    },
    "options": {"map": {"height": 420}},
}


def make_sky_demo(folder: str | Path, *, seed: int = 0, n_items: int = 2000) -> Path:
    """Write ``sky.csv``, its cutouts, ``layouts/sky.yaml`` and a ready ``project.yaml``."""
    from core.project import load_project, write_settings_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    frame = build_sky(n_items, seed)
    frame.to_csv(folder / "sky.csv", index=False)
    write_cutouts(frame, folder, seed)
    (folder / "layouts").mkdir(exist_ok=True)
    write_settings_file(SKY_LAYOUT, folder / "layouts" / "sky.yaml", what="layout files")
    project = {
        "schema_version": 1,
        "name": "Sky survey catalogue, long-tailed (demo)",
        "data": {
            "kind": "csv", "path": "sky.csv", "id_column": "id", "label_column": "class",
            "info_columns": ["name", "ra", "dec", "redshift"],
            "image_columns": ["cutout_gri", "cutout_r"],
        },
        "features": {
            "combinations": {"columns": list(BANDS), "ops": ["subtract"], "n": 2},
            "derived": [{"name": "u_g_over_g_r", "expr": "u_g / g_r", "fill": 0.0}],
        },
        # Listed without colours: each gets its own colour-blind-safe palette colour.
        "classes": [{"name": c, "rare": c in SKY_RARE} for c in SKY_CLASSES],
        "encoder": {"kind": "tabular"},
        "map": {"method": "umap"},
        "seed": seed,
        "layout": "sky",
    }
    path = write_settings_file(project, folder / PROJECT_FILE, what="project files")
    load_project(path)  # the file we wrote must be valid
    return path
