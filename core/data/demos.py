"""Built-in demo data sets: balanced image sets made long-tailed, written as ready projects.

* ``digits-lt`` (default): scikit-learn's bundled 8x8 digits, imbalance ratio 50 (150 ... 3 items).
* ``fashion-mnist-lt``: Fashion-MNIST 28x28 training images from the Debian package
  ``dataset-fashion-mnist``, imbalance ratio 100 (6000 ... 60 items).

The head-to-tail order of the classes is drawn from the seed; the smallest classes are flagged rare.
Item ids name the row of the original set (``digits-0042``), so they do not depend on the seed.
"""

from __future__ import annotations

import gzip
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.data.arrays import save_npz
from core.data.hashing import file_sha256
from core.data.longtail import long_tail_indices
from core.errors import ConfigError, DataError

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
DEFAULT_DEMO = "digits-lt"
PROJECT_FILE = "project.yaml"


@dataclass(frozen=True)
class DemoData:
    """A long-tailed demo set in memory: uint8 images, string ids and labels, rare class names."""

    ids: np.ndarray
    images: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...]
    rare: tuple[str, ...]


@dataclass(frozen=True)
class DemoSpec:
    """How to build one demo: its source, long-tail profile and project settings."""

    title: str
    load: Callable[[], tuple[np.ndarray, np.ndarray, np.ndarray, tuple[str, ...]]]
    imbalance_ratio: float
    n_max: int
    n_rare: int = 3
    encoder: dict | None = None

    def build(self, seed: int = 0) -> DemoData:
        """Long-tail the source with ``seed``; the ``n_rare`` smallest classes are rare."""
        ids, images, labels, names = self.load()
        rng = np.random.default_rng(seed)
        order = np.asarray(names, dtype=object)[rng.permutation(len(names))]
        keep = long_tail_indices(
            labels, self.imbalance_ratio, rng, n_max=self.n_max, class_order=order
        )
        rare = tuple(order[len(order) - self.n_rare :].tolist())
        return DemoData(
            ids=ids[keep],
            images=images[keep],
            labels=labels[keep],
            class_names=tuple(names),
            rare=rare,
        )


def load_digits_images() -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[str, ...]]:
    """scikit-learn's bundled digits as ``(ids, uint8 images 8x8, labels "0".."9", names)``."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)
    labels = np.array([str(int(t)) for t in bunch.target], dtype=object)
    ids = np.array([f"digits-{i:04d}" for i in range(len(labels))], dtype=object)
    return ids, images, labels, tuple(str(d) for d in range(10))


def _read_idx(path: Path) -> np.ndarray:
    """An IDX file (the MNIST format, gzip-compressed) as a uint8 array."""
    try:
        with gzip.open(path, "rb") as handle:
            raw = handle.read()
    except (OSError, EOFError) as err:
        raise DataError(
            f"{path}: unreadable IDX file ({err}); reinstall dataset-fashion-mnist"
        ) from None
    if len(raw) < 4 or raw[0:2] != b"\x00\x00" or raw[2] != 0x08:
        raise DataError(f"{path}: not an unsigned-byte IDX file; reinstall dataset-fashion-mnist")
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * k : 8 + 4 * k], "big") for k in range(ndim)]
    offset = 4 + 4 * ndim
    if len(raw) - offset != int(np.prod(dims)):
        raise DataError(f"{path}: truncated IDX file; reinstall dataset-fashion-mnist")
    return np.frombuffer(raw, dtype=np.uint8, offset=offset).reshape(dims)


def load_fashion_mnist(
    root: Path | None = None, split: str = "train"
) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[str, ...]]:
    """Fashion-MNIST from the Debian package as ``(ids, uint8 images 28x28, labels, names)``."""
    root = FASHION_MNIST_DIR if root is None else Path(root)
    prefix = {"train": "train", "test": "t10k"}[split]
    image_file = root / f"{prefix}-images-idx3-ubyte.gz"
    label_file = root / f"{prefix}-labels-idx1-ubyte.gz"
    missing = [p for p in (image_file, label_file) if not p.is_file()]
    if missing:
        raise DataError(
            f"Fashion-MNIST not found ({', '.join(map(str, missing))} missing); install it with "
            "`sudo apt-get install dataset-fashion-mnist`, or use the digits-lt demo"
        )
    images, codes = _read_idx(image_file), _read_idx(label_file)
    if len(images) != len(codes) or codes.max(initial=0) >= len(FASHION_MNIST_CLASSES):
        raise DataError(
            f"{root}: image and label files do not match; reinstall dataset-fashion-mnist"
        )
    labels = np.array(FASHION_MNIST_CLASSES, dtype=object)[codes]
    ids = np.array([f"fashion-{split}-{i:05d}" for i in range(len(codes))], dtype=object)
    return ids, images, labels, FASHION_MNIST_CLASSES


DEMOS: dict[str, DemoSpec] = {
    "digits-lt": DemoSpec(
        title="Handwritten digits, long-tailed (demo)",
        load=load_digits_images,
        imbalance_ratio=50,
        n_max=150,
        # The map starts from the pixels; after each retrain the model's penultimate layer (the
        # learned embedding) feeds the strategies, and "Recompute map" shows it.
        encoder={"kind": "model", "base": "tabular"},
    ),
    "fashion-mnist-lt": DemoSpec(
        title="Fashion-MNIST, long-tailed (demo)",
        load=lambda: load_fashion_mnist(),
        imbalance_ratio=100,
        n_max=6000,
        encoder={"kind": "model", "base": "pretrained-image", "image_size": 64},
    ),
}


def get_demo(name: str) -> DemoSpec:
    """The demo called ``name``; ``ConfigError`` lists the choices."""
    try:
        return DEMOS[name]
    except KeyError:
        raise ConfigError(f"unknown demo {name!r}; choose one of: {', '.join(DEMO_NAMES)}") from None


def build_demo(name: str, seed: int = 0) -> DemoData:
    """The demo set ``name`` long-tailed with ``seed``, in memory (``kind: demo`` projects)."""
    return get_demo(name).build(seed)


def demo_sha256(data: DemoData) -> str:
    """A digest of a demo's arrays (its 'source bytes' for the fingerprint)."""
    digest = hashlib.sha256()
    for arr in (data.ids.astype(str), data.images, data.labels.astype(str)):
        digest.update(np.ascontiguousarray(arr).tobytes())
    return digest.hexdigest()


CATALOGUE_DEMOS = ("sky-lt",)
"""Demos written as a table project (``core.data.sky``) rather than an image array."""
DEMO_NAMES = (*DEMOS, *CATALOGUE_DEMOS)
"""Every name ``tailwise demo --dataset`` accepts."""


def make_demo(name: str, folder: str | Path, *, seed: int = 0) -> Path:
    """Write demo ``name`` into ``folder`` as ``<name>.npz`` plus a ready ``project.yaml``.

    The project pins the data file by SHA-256, keeps the ground truth as ``label_column`` (for
    simulation and evaluation) and flags the smallest classes rare. Returns the project file path;
    existing demo files in ``folder`` are overwritten. ``sky-lt`` writes a catalogue project
    instead (see ``core.data.sky``).
    """
    from core.project import DataConfig, ProjectConfig, default_classes, dump_project, parse_project

    if name in CATALOGUE_DEMOS:
        from core.data.sky import make_sky_demo

        return make_sky_demo(folder, seed=seed)
    spec = get_demo(name)
    data = spec.build(seed)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    data_file = folder / f"{name}.npz"
    save_npz(
        data_file,
        {"id": data.ids.astype(str), "images": data.images, "label": data.labels.astype(str)},
    )
    project = ProjectConfig(
        name=spec.title,
        data=DataConfig(
            kind="npz",
            path=data_file.name,
            id_column="id",
            image_field="images",
            label_column="label",
            sha256=file_sha256(data_file),
        ),
        classes=default_classes(list(data.class_names), set(data.rare)),
        encoder=spec.encoder or {},
        seed=seed,
    )
    project = parse_project(project.to_dict(), source=f"demo {name}", base_dir=folder)
    return dump_project(project, folder / PROJECT_FILE)
