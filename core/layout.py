"""Dashboard layout files: which views, where, with which options. Data only, never code.

A layout names views from :data:`VIEW_NAMES` and places them in a sidebar and in rows of the main
area; a cell of a row is a view name or a group of tabs. Options per view (colour-by default,
strategy, emphasis of rare classes, ...) are validated here so a bad file fails with a message
naming the field. Built-in layouts live in the repository's top-level ``layouts/``
and ship inside the package as ``core/layouts/`` (a link to it, read through
``importlib.resources`` so a plain ``pip install`` has them); a project names one by its stem
(``layout: rare-hunt``) or a path to a YAML/JSON file, and the project folder's own
``layouts/`` come first.

A layout may also define **domain plots** in ``plots`` (name -> scatter / histogram / line of any
columns, or a view from a ``tailwise.views`` plugin) and place them by name like views::

    plots:
      colour-colour: {kind: scatter, x: g_r, y: u_g, colour_by: label}
    main:
      - [map, colour-colour]
"""

from __future__ import annotations

import json
import re
from importlib.resources import files
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from core.errors import ConfigError
from core.project import STRATEGIES, format_validation_error, write_settings_file

__all__ = [
    "COLOUR_BY",
    "LAYOUTS_DIR",
    "VIEW_NAMES",
    "Layout",
    "Tabs",
    "available_layouts",
    "load_layout",
    "parse_layout",
    "save_layout",
]

LAYOUT_SCHEMA_VERSION = 1
LAYOUTS_DIR = Path(str(files("core") / "layouts"))
"""The built-in layouts (package data)."""
MAX_LAYOUT_FILE_BYTES = 256 * 1024

VIEW_NAMES = (
    "annotator",   # annotator name, status line
    "map",         # the 2-D map of the embedding
    "inspector",   # thumbnail / features, probabilities, history of the selection
    "labelling",   # one button per class, skip, undo, create class
    "queue",       # next batch from the query strategy, with reasons
    "retrain",     # retrain button, progress, model version
    "metrics",     # class counts, per-class recall/precision, learning curve
    "confusion",   # confusion matrix
    "history",     # recent label events of every annotator
    "clusters",    # predicted clusters: size, purity, dominant class
    "project",     # export / import / layouts (issue 6)
    "testset",     # search items by criteria, label them into the test split
    "review",      # suspect labels after each retrain: relabel, confirm, retract
    "agreement",   # agreement between annotators (kappa, alpha), conflicts an admin resolves
    "calibration", # reliability diagrams and ECE per class, prevalence in the pool, stopping
)
COLOUR_BY = ("label", "predicted", "uncertainty", "score", "cluster", "annotator")
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")

ViewName = Literal[VIEW_NAMES]  # type: ignore[valid-type]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class Tabs(_Strict):
    """A group of views (or plots) shown as tabs in one cell of a row."""

    tabs: list[str] = Field(min_length=1)


Cell = str | Tabs
PLOT_COLOUR_BY = ("label", "predicted", "none")


class _Plot(_Strict):
    title: str = Field("", description="Shown above the plot; default: the plot's name.")
    colour_by: Literal[PLOT_COLOUR_BY] = "label"  # type: ignore[valid-type]
    height: int = Field(360, ge=150, le=2000)


class ScatterPlot(_Plot):
    """Points at two columns (a colour-colour diagram); selection is linked with the map."""

    kind: Literal["scatter"]
    x: str
    y: str
    point_size: int = Field(5, ge=1, le=40)


class LinePlot(_Plot):
    """Lines through the points of two columns, ordered by x, one line per class."""

    kind: Literal["line"]
    x: str
    y: str


class HistogramPlot(_Plot):
    """Counts of one column, stacked by class; selecting a range selects those items."""

    kind: Literal["histogram"]
    x: str
    bins: int = Field(40, ge=2, le=500)


class PluginPlot(_Plot):
    """A view from an installed ``tailwise.views`` plugin; ``columns`` maps the plugin's column
    roles to this data set's column names (a form asks for the missing ones)."""

    kind: Literal["plugin"]
    plugin: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    columns: dict[str, str] = Field(default_factory=dict)


PlotSpec = Annotated[ScatterPlot | LinePlot | HistogramPlot | PluginPlot, Field(discriminator="kind")]


class MapOptions(_Strict):
    colour_by: Literal[COLOUR_BY] = "label"  # type: ignore[valid-type]
    emphasise_rare: bool = Field(True, description="Draw rare classes larger, with an outline.")
    highlight_queue: bool = True
    outline_clusters: bool = Field(False, description="Outline the predicted clusters (the "
                                   "project's cluster method) on the map.")
    point_size: int = Field(6, ge=1, le=40)
    height: int = Field(560, ge=200, le=4000)


class QueueOptions(_Strict):
    strategy: Literal[STRATEGIES] | None = Field(  # type: ignore[valid-type]
        None, description="Strategy shown first; default: the project's query.strategy."
    )
    batch_size: int | None = Field(None, ge=1, le=10_000)
    target_class: str | None = None
    show_reasons: bool = True


class InspectorOptions(_Strict):
    thumbnail_px: int = Field(160, ge=32, le=1024)
    max_thumbnails: int = Field(12, ge=1, le=200)


class MetricsOptions(_Strict):
    show_learning_curve: bool = True
    show_counts: bool = True


class ViewOptions(_Strict):
    """Options per view; views not named keep their defaults."""

    map: MapOptions = Field(default_factory=MapOptions)
    queue: QueueOptions = Field(default_factory=QueueOptions)
    inspector: InspectorOptions = Field(default_factory=InspectorOptions)
    metrics: MetricsOptions = Field(default_factory=MetricsOptions)


class Layout(_Strict):
    """A dashboard arrangement (schema version 1)."""

    schema_version: int = LAYOUT_SCHEMA_VERSION
    name: str = "default"
    title: str = "Tailwise"
    description: str = ""
    sidebar: list[str] = Field(default_factory=list)
    main: list[list[Cell]] = Field(default_factory=list)
    options: ViewOptions = Field(default_factory=ViewOptions)
    plots: dict[str, PlotSpec] = Field(default_factory=dict)
    emphasise_rare: bool = Field(True, description="Rare classes first and highlighted everywhere.")

    @field_validator("schema_version")
    @classmethod
    def _version_ok(cls, v: int) -> int:
        if v != LAYOUT_SCHEMA_VERSION:
            raise ValueError(f"unsupported layout schema_version {v}; this Tailwise reads 1")
        return v

    @field_validator("name")
    @classmethod
    def _name_ok(cls, v: str) -> str:
        if not _NAME.match(v):
            raise ValueError("layout name must be 1-64 letters, digits, '_', '.' or '-'")
        return v

    @model_validator(mode="after")
    def _names_known(self) -> Layout:
        for name in self.plots:
            if not _NAME.match(name):
                raise ValueError(f"plots: {name!r} is not a plot name (letters, digits, '_', '.', '-')")
            if name in VIEW_NAMES:
                raise ValueError(f"plots: {name!r} is the name of a built-in view; rename the plot")
        known = set(VIEW_NAMES) | set(self.plots)
        places = [(f"sidebar.{i}", n) for i, n in enumerate(self.sidebar)]
        for r, row in enumerate(self.main):
            for c, cell in enumerate(row):
                if isinstance(cell, Tabs):
                    places += [(f"main.{r}.{c}.tabs.{t}", n) for t, n in enumerate(cell.tabs)]
                else:
                    places.append((f"main.{r}.{c}", cell))
        for where, name in places:
            if name not in known:
                plots = f"; plots of this layout: {', '.join(self.plots)}" if self.plots else ""
                raise ValueError(f"{where}: unknown view {name!r}; the views are "
                                 f"{', '.join(VIEW_NAMES)}{plots}")
        return self

    @model_validator(mode="after")
    def _views_once(self) -> Layout:
        seen = self.views()
        dupes = sorted({v for v in seen if seen.count(v) > 1})
        if dupes:
            raise ValueError(f"views placed more than once: {dupes}")
        if not seen:
            raise ValueError("a layout must place at least one view")
        return self

    def views(self) -> list[str]:
        """Every view the layout places, in reading order (sidebar first)."""
        out = list(self.sidebar)
        for row in self.main:
            for cell in row:
                out.extend(cell.tabs if isinstance(cell, Tabs) else [cell])
        return out

    def to_dict(self) -> dict:
        return self.model_dump(mode="json")


def parse_layout(data: object, *, source: str = "<layout>") -> Layout:
    """Validate a mapping as a layout."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: a layout must be a mapping at the top level, got {type(data).__name__}")
    try:
        return Layout.model_validate(data)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, source, "layout file")) from None


def available_layouts(folder: str | Path | None = None) -> list[str]:
    """Names of the layouts in ``folder`` (default: the built-in ``layouts/``)."""
    folder = Path(folder) if folder is not None else LAYOUTS_DIR
    if not folder.is_dir():
        return []
    return sorted(p.stem for p in folder.iterdir() if p.suffix.lower() in (".yaml", ".yml", ".json"))


def _find(name_or_path: str | Path, folders: list[Path]) -> Path:
    candidate = Path(name_or_path)
    if candidate.suffix.lower() in (".yaml", ".yml", ".json"):
        if candidate.is_file():
            return candidate
        raise ConfigError(f"layout: file {str(candidate)!r} not found")
    name = str(name_or_path)
    if not _NAME.match(name):
        raise ConfigError(f"layout: {name!r} is not a layout name (letters, digits, '_', '.', '-')")
    for folder in folders:
        for suffix in (".yaml", ".yml", ".json"):
            path = folder / f"{name}{suffix}"
            if path.is_file():
                return path
    known = sorted({n for f in folders for n in available_layouts(f)})
    raise ConfigError(f"layout: no layout named {name!r}; available: {', '.join(known) or 'none'}")


def load_layout(name_or_path: str | Path, *, search: list[str | Path] | None = None) -> Layout:
    """Load a layout by name (looked up in ``search`` folders, then ``layouts/``) or by path."""
    folders = [Path(p) for p in (search or [])] + [LAYOUTS_DIR]
    path = _find(name_or_path, folders)
    size = path.stat().st_size
    if size > MAX_LAYOUT_FILE_BYTES:
        raise ConfigError(f"{path}: layout file is {size} bytes, over the {MAX_LAYOUT_FILE_BYTES} limit")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text; save the layout as UTF-8") from None
    try:
        data = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as err:
        raise ConfigError(f"{path}: not valid {path.suffix.lstrip('.').upper()}: {err}") from None
    return parse_layout(data, source=str(path))


def save_layout(layout: Layout, path: str | Path) -> Path:
    """Write ``layout`` as YAML or JSON (by suffix), atomically. Returns the path written."""
    return write_settings_file(layout.to_dict(), path, what="layout files")
