"""Shareable project files: export a project with its labels, import one into a local label store.

An exported project is one YAML or JSON file (``schema_version``) that holds the data reference
(a path relative to the file plus the data's SHA-256), the classes, the encoder, model, query and
map settings, the seed, the layout and the full label event log (annotator and time per event),
either inline or in a sibling ``labels-<sha256>.jsonl`` file pinned by its digest.

Export never writes outside the chosen folder: every path it writes is resolved and checked.
Import validates everything before it touches the label store, never overwrites a local label
silently (conflicts are listed in :class:`ImportResult`) and leaves retraining to the caller.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from core.data.loading import data_sha256
from core.data.parquet_parts import is_glob
from core.errors import ConfigError, DataError
from core.project import (
    MAX_PROJECT_FILE_BYTES,
    ClassConfig,
    LabelEventRecord,
    LabelsRef,
    ProjectConfig,
    dump_project,
    load_project,
    resolve_inside,
)

if TYPE_CHECKING:  # pragma: no cover - typing only
    from core.labels import LabelEvent, LabelStore

ExportFormat = Literal["yaml", "json"]
LabelsMode = Literal["inline", "file"]
HashPolicy = Literal["error", "matched_only"]

#: Largest sibling label file import reads (JSON Lines, about 150 bytes per event).
MAX_LABEL_FILE_BYTES = 512 * 1024 * 1024
_SLUG = re.compile(r"[^A-Za-z0-9_.-]+")


# --------------------------------------------------------------------------- what gets exported
@dataclass
class ProjectParts:
    """Everything an export needs, without a live :class:`core.session.Session`.

    ``events`` is the full label event log (oldest first) so the history travels with the file;
    ``classes`` overrides the project's classes (the label store's classes are the live ones).
    """

    project: ProjectConfig
    events: Sequence[LabelEvent] = ()
    classes: list[ClassConfig] | None = None


def parts_of(source: Any) -> ProjectParts:
    """Collect :class:`ProjectParts` from a Session, a ``(project, store)`` pair or a ProjectConfig."""
    if isinstance(source, ProjectParts):
        return source
    if isinstance(source, ProjectConfig):  # labels it carries itself, if any
        return ProjectParts(project=source, events=read_project_labels(source))
    if isinstance(source, tuple) and len(source) == 2 and isinstance(source[0], ProjectConfig):
        project, store = source
        if store is None:
            return ProjectParts(project=project)
        return ProjectParts(project=project, events=store.events(), classes=store.classes() or None)
    project = getattr(source, "project", None)
    store = getattr(source, "store", None)
    if isinstance(project, ProjectConfig) and store is not None:  # a Session
        classes = getattr(source, "classes", None) or store.classes() or None
        return ProjectParts(
            project=project, events=store.events(), classes=list(classes) if classes else None
        )
    raise TypeError(
        "export_project needs a Session, a (ProjectConfig, LabelStore) pair, ProjectParts or a "
        f"ProjectConfig; got {type(source).__name__}"
    )


def open_project_parts(path: str | Path, *, allow_outside: bool = False) -> ProjectParts:
    """Load a local project file and its label store (if one exists) without loading the data."""
    from core.labels import LabelStore

    project = load_project(path, allow_outside=allow_outside)
    store_path = project.resolve(
        project.label_store, allow_outside=allow_outside, field="label_store"
    )
    if not store_path.exists():
        return ProjectParts(
            project=project, events=read_project_labels(project, allow_outside=allow_outside)
        )
    store = LabelStore(store_path)
    try:
        return ProjectParts(project=project, events=store.events(), classes=store.classes() or None)
    finally:
        _close(store)


# --------------------------------------------------------------------------------------- export
def export_project(
    session_or_parts: Any,
    folder: str | Path,
    *,
    fmt: ExportFormat = "yaml",
    labels: LabelsMode = "inline",
    layout: str | None = None,
    name: str | None = None,
    copy_data: bool = True,
) -> Path:
    """Write a shareable project file (plus labels and, if needed, the data) into ``folder``.

    The data file is referenced relative to the exported file when it already lies inside
    ``folder``; otherwise it is hard-linked (or copied) to ``folder/data/`` (``copy_data=False``
    refuses instead).
    ``labels="file"`` writes the event log to ``labels-<sha256>.jsonl`` beside the project file.
    Returns the path of the project file. Nothing is written outside ``folder``.
    """
    if fmt not in ("yaml", "json"):
        raise ConfigError(f"export format must be 'yaml' or 'json', got {fmt!r}")
    if labels not in ("inline", "file"):
        raise ConfigError(f"labels must be 'inline' or 'file', got {labels!r}")
    parts = parts_of(session_or_parts)
    source = parts.project
    folder = Path(folder).expanduser()
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"{folder}: export folder is a file; choose a folder")
    folder.mkdir(parents=True, exist_ok=True)
    folder = folder.resolve()

    data = _export_data(source, folder, copy_data=copy_data)
    exported = source.model_copy(deep=True)
    exported.data = data
    if parts.classes:
        exported.classes = [ClassConfig.model_validate(c.model_dump()) for c in parts.classes]
    _add_label_classes(exported, parts.events)
    if layout is not None:
        try:
            exported.layout = layout
        except ValueError:
            raise ConfigError(
                f"layout: {layout!r} is not a layout name (1-64 letters, digits, '_', '.', '-')"
            ) from None
    # Local working files of the receiver live beside the shared file, whatever the sender used.
    default = ProjectConfig.model_fields
    exported.label_store = default["label_store"].default
    exported.cache_dir = default["cache_dir"].default

    records = [event_record(e) for e in parts.events]
    stem = _slug(name or source.name)
    target = _inside(folder, f"{stem}.{fmt}", "project file")
    if labels == "inline":
        exported.labels = records
    else:
        exported.labels = _write_label_file(records, folder)
    exported._base_dir = folder
    dump_project(exported, target)
    size = target.stat().st_size
    if size > MAX_PROJECT_FILE_BYTES:  # import would refuse it: never hand out such a file
        target.unlink()
        raise ConfigError(
            f"{len(records):,} label events make the project file {size / 1e6:.1f} MB, over the "
            f"{MAX_PROJECT_FILE_BYTES // 2**20} MiB limit; export with the labels in a file "
            "(labels='file', CLI: --labels file)"
        )
    return target


def event_record(event: Any) -> LabelEventRecord:
    """A label event (LabelEvent or mapping) as the record an exported file stores (the time as
    ISO 8601 UTC, the split kept)."""
    from core.labels import iso_time

    get = event.get if isinstance(event, dict) else lambda k, d=None: getattr(event, k, d)
    when = get("time")
    if isinstance(when, (int, float)) and not isinstance(when, bool):
        when = iso_time(when)
    return LabelEventRecord(
        item_id=str(get("item_id")),
        label=get("label"),
        annotator=str(get("annotator", "unknown") or "unknown"),
        time=when,
        origin=str(get("origin", "import") or "import"),
        model_version=get("model_version"),
        note=get("note"),
        split=get("split", "train") or "train",
    )


def _export_data(project: ProjectConfig, folder: Path, *, copy_data: bool):
    data = project.data.model_copy(deep=True)
    if not data.path:  # built-in demo: nothing to reference or copy
        return data
    src = project.resolve(data.path, allow_outside=True, field="data.path")
    if not src.exists():
        raise DataError(
            f"data.path: {str(src)!r} does not exist; cannot export a project without its data"
        )
    if src.is_relative_to(folder):
        dest = src
    elif not copy_data:
        raise ConfigError(
            f"data.path: {str(src)!r} lies outside the export folder {str(folder)!r}; "
            "export with copy_data=True or choose a folder that contains the data"
        )
    else:
        dest = _inside(folder, Path("data") / src.name, "data copy")
        dest.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            if dest.exists():
                shutil.rmtree(dest)
            shutil.copytree(src, dest, symlinks=True, copy_function=_link_or_copy)
            _refuse_escaping_links(dest, folder)
        else:
            dest.unlink(missing_ok=True)
            _link_or_copy(src, dest)
    data.path = dest.relative_to(folder).as_posix()
    data.sha256 = data_sha256(dest, data.kind)
    return data


def _link_or_copy(src: str | Path, dest: str | Path) -> None:
    """A hard link where the file system allows it (no second copy of big data), else a copy."""
    try:
        os.link(src, dest)
    except OSError:
        shutil.copyfile(src, dest)


def _refuse_escaping_links(tree: Path, folder: Path) -> None:
    for p in tree.rglob("*"):
        if p.is_symlink() and not p.resolve().is_relative_to(folder):
            p.unlink()


def _add_label_classes(project: ProjectConfig, events: Iterable[Any]) -> None:
    """Make sure every class a label event names is declared (the store may hold extra ones)."""
    from core.project import default_classes

    known = set(project.class_names)
    extra = []
    for e in events:
        label = e.get("label") if isinstance(e, dict) else getattr(e, "label", None)
        if label is not None and label not in known:
            known.add(label)
            extra.append(label)
    if extra:
        palette = default_classes(project.class_names + extra)
        project.classes = project.classes + palette[len(project.classes) :]


def _write_label_file(records: list[LabelEventRecord], folder: Path) -> LabelsRef:
    from core.labels import events_sha256, write_events_jsonl

    digest = events_sha256(records)
    target = _inside(folder, f"labels-{digest}.jsonl", "label file")
    write_events_jsonl(records, target)
    return LabelsRef(path=target.name, sha256=digest)


def _inside(folder: Path, relative: str | Path, what: str) -> Path:
    """Resolve a path we are about to write and refuse anything outside ``folder``."""
    try:
        return resolve_inside(folder, relative, field=what)
    except ConfigError:
        raise ConfigError(
            f"{what}: refusing to write {str(relative)!r} outside {str(folder)!r}"
        ) from None


def _slug(name: str) -> str:
    slug = _SLUG.sub("-", name.strip()).strip("-.")[:64]
    return slug or "project"


# --------------------------------------------------------------------------------------- import
@dataclass
class ImportResult:
    """What :func:`import_project` restored, and what it did not.

    ``conflicts`` lists ``{"item_id", "local", "incoming"}`` for items whose imported label
    differs from the local store's current label; the local label was kept. ``skipped_ids``
    lists items the data does not contain (only with ``on_hash_mismatch="matched_only"``).
    """

    project: ProjectConfig
    layout: str
    classes: list[ClassConfig]
    n_events: int
    n_imported: int
    conflicts: list[dict[str, str | None]] = field(default_factory=list)
    class_conflicts: list[str] = field(default_factory=list)
    skipped_ids: list[str] = field(default_factory=list)
    data_hash_matched: bool = True
    warnings: list[str] = field(default_factory=list)
    store_path: Path | None = None

    def summary(self) -> str:
        """One paragraph for people: counts, conflicts and warnings."""
        parts = [
            f"imported {self.n_imported} of {self.n_events} label events",
            f"{len(self.classes)} classes",
            f"layout {self.layout!r}",
        ]
        if self.conflicts:
            parts.append(f"{len(self.conflicts)} conflicting labels kept as they were locally")
        if self.skipped_ids:
            parts.append(f"{len(self.skipped_ids)} items not in the data skipped")
        text = "; ".join(parts) + "."
        if self.warnings:
            text += " " + " ".join(self.warnings)
        return text


class DataHashMismatch(DataError):
    """The data's SHA-256 differs from the one the project file pins (labels may not match)."""


def import_project(
    path: str | Path,
    *,
    store: LabelStore | None = None,
    on_hash_mismatch: HashPolicy = "error",
    allow_outside: bool = False,
    into: ProjectConfig | None = None,
    dataset: Any = None,
) -> ImportResult:
    """Validate a shared project file and restore its classes and labels into a label store.

    Without ``into``, the labels go to the file's own ``label_store`` (or ``store``) and the data
    the file names must be present beside it. With ``into`` (a local project, e.g. a running
    Session's), the labels go to that project's store (or ``store``) and the file's pinned SHA-256
    is checked against the local project's data. On a mismatch ``on_hash_mismatch="error"``
    raises :class:`DataHashMismatch`, ``"matched_only"`` keeps the labels whose ids exist in the
    data (``dataset``, when given, saves loading it again). Labels the store already holds are
    never overwritten: differing ones are listed as conflicts. Nothing is retrained here.
    """
    if on_hash_mismatch not in ("error", "matched_only"):
        raise ConfigError(
            f"on_hash_mismatch must be 'error' or 'matched_only', got {on_hash_mismatch!r}"
        )
    path = Path(path)
    project = load_project(path, allow_outside=allow_outside)
    records = read_project_labels(project, allow_outside=allow_outside)
    _check_label_classes(project, records, path)

    target = into if into is not None else project
    warnings: list[str] = []
    matched, mismatch_note = check_data(
        target, pin=project.data.sha256, allow_outside=allow_outside
    )
    skipped: list[str] = []
    if not matched:
        if on_hash_mismatch == "error":
            raise DataHashMismatch(
                mismatch_note + " Choose 'continue with matched ids only' "
                "(CLI: --matched-only) to keep the labels whose items exist in this data."
            )
        warnings.append(mismatch_note)
        records, skipped = _keep_known_ids(
            target, records, dataset=dataset, allow_outside=allow_outside
        )

    owned = store is None
    if owned:
        from core.labels import LabelStore

        store_path = target.resolve(
            target.label_store, allow_outside=allow_outside, field="label_store"
        )
        store_path.parent.mkdir(parents=True, exist_ok=True)
        store = LabelStore(store_path)
    try:
        class_conflicts = _merge_classes(store, project.classes)
        report = store.import_events([r.model_dump() for r in records])
        classes = list(store.classes())
        store_path = Path(store.path).resolve()
    finally:
        if owned:
            _close(store)
    conflicts = [
        {"item_id": item, "local": local, "incoming": incoming}
        for item, local, incoming in report.conflicts
    ]
    return ImportResult(
        project=project,
        layout=project.layout,
        classes=classes,
        n_events=len(records) + len(skipped),
        n_imported=report.imported,
        conflicts=conflicts,
        class_conflicts=class_conflicts,
        skipped_ids=skipped,
        data_hash_matched=matched,
        warnings=warnings,
        store_path=store_path,
    )


def import_into_session(
    path: str | Path,
    session: Any,
    *,
    on_hash_mismatch: HashPolicy = "error",
    allow_outside: bool = False,
    by: str | None = None,
) -> ImportResult:
    """Import a shared file into a running Session's project and label store (caller retrains).

    ``by`` is the user asking (the dashboard's browser user): the project's ``access`` section
    must let them import; ``None`` is the local operator (CLI)."""
    if by is not None:
        session.access.require(by, "import")
    return import_project(
        path,
        store=session.store,
        on_hash_mismatch=on_hash_mismatch,
        allow_outside=allow_outside,
        into=session.project,
        dataset=session.dataset,
    )


def read_project_labels(
    project: ProjectConfig, *, allow_outside: bool = False
) -> list[LabelEventRecord]:
    """The label events of a loaded project file: inline, or read from the pinned sibling file."""
    if project.labels is None:
        return []
    if isinstance(project.labels, list):
        return list(project.labels)
    ref = project.labels
    label_path = project.resolve(ref.path, allow_outside=allow_outside, field="labels.path")
    if not label_path.is_file():
        raise ConfigError(
            f"labels.path: label file {str(label_path)!r} not found; "
            "copy it next to the project file"
        )
    size = label_path.stat().st_size
    if size > MAX_LABEL_FILE_BYTES:
        raise ConfigError(
            f"labels.path: {label_path.name} is {size / 1e6:.0f} MB, over the "
            f"{MAX_LABEL_FILE_BYTES // 2**20} MiB limit"
        )
    from core.labels import events_sha256, read_events_jsonl

    digest = events_sha256(label_path)
    if digest != ref.sha256:
        raise ConfigError(
            f"labels.path: {label_path.name} has SHA-256 {digest[:12]}…, but the project file pins "
            f"{ref.sha256[:12]}…; the label file was changed or belongs to another export"
        )
    return read_events_jsonl(label_path)


def _check_label_classes(
    project: ProjectConfig, records: list[LabelEventRecord], path: Path
) -> None:
    known = set(project.class_names)
    unknown = sorted({r.label for r in records if r.label is not None and r.label not in known})
    if unknown:
        raise ConfigError(
            f"{path}: labels name classes not declared under 'classes': {unknown[:10]}; "
            "add them to the classes list"
        )


def check_data(
    project: ProjectConfig, *, pin: str | None = None, allow_outside: bool = False
) -> tuple[bool, str]:
    """Is the project's data present, and does its SHA-256 match ``pin`` (default: its own)?

    Returns ``(matched, note)``; a missing data file raises :class:`DataError`.
    """
    if not project.data.path:
        return True, ""
    data_path = project.resolve(project.data.path, allow_outside=allow_outside, field="data.path")
    if not data_path.exists() and not (project.data.kind == "parquet" and is_glob(data_path)):
        raise DataError(
            f"data.path: data file {str(data_path)!r} not found; put the data next to the "
            "project file at the path it names, or edit data.path"
        )
    pin = pin or project.data.sha256
    if pin is None:
        return True, ""
    actual = data_sha256(data_path, project.data.kind)
    if actual == pin:
        return True, ""
    return False, (
        f"data.path: {data_path.name} has SHA-256 {actual[:12]}…, but the project file "
        f"pins {pin[:12]}…; this is not the data the labels were made on."
    )


def _keep_known_ids(
    project: ProjectConfig,
    records: list[LabelEventRecord],
    *,
    dataset: Any = None,
    allow_outside: bool,
) -> tuple[list[LabelEventRecord], list[str]]:
    if dataset is None:
        from core.data import load_dataset

        unpinned = project.model_copy(deep=True)
        unpinned.data.sha256 = None  # the caller chose to go on with data that differs
        unpinned._base_dir = project.base_dir
        dataset = load_dataset(unpinned, allow_outside=allow_outside)
    kept = [r for r in records if dataset.has(r.item_id)]
    skipped = sorted({r.item_id for r in records if not dataset.has(r.item_id)})
    return kept, skipped


def _merge_classes(store: LabelStore, classes: list[ClassConfig]) -> list[str]:
    """Add the file's classes the store lacks; report (never overwrite) ones that differ."""
    local = {c.name: c for c in store.classes()}
    conflicts = []
    for c in classes:
        mine = local.get(c.name)
        if mine is None:
            store.add_class(c)
        elif (mine.colour, mine.rare) != (c.colour, c.rare):
            conflicts.append(
                f"class {c.name!r}: kept local colour {mine.colour} / rare={mine.rare}, "
                f"file has {c.colour} / rare={c.rare}"
            )
    return conflicts


def _close(store: Any) -> None:
    close = getattr(store, "close", None)
    if callable(close):
        close()


__all__ = [
    "DataHashMismatch",
    "ImportResult",
    "ProjectParts",
    "check_data",
    "data_sha256",
    "event_record",
    "export_project",
    "import_into_session",
    "import_project",
    "open_project_parts",
    "parts_of",
    "read_project_labels",
]
