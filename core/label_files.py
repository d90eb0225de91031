"""Labels from a CSV file (``tailwise label PROJECT --from FILE.csv``).

Columns: ``id`` and ``label`` (required), ``annotator`` and ``split`` (``train`` or ``test``)
optional; other columns are ignored and listed. Rows with an empty label are skipped and counted.
The whole file is checked before anything is written: unknown ids, unknown classes (unless they
may be created), a bad split or one id given two different labels stop it with the line numbers.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from core.errors import DataError

ID_COLUMNS = ("id", "item_id")
KNOWN_COLUMNS = ("id", "item_id", "label", "annotator", "split")
MAX_FILE_BYTES = 512 * 1024 * 1024


@dataclass(frozen=True)
class LabelRow:
    line: int
    item_id: str
    label: str
    annotator: str | None
    split: str | None  # None: keep the item's split (new items: train)


@dataclass(frozen=True)
class LabelFile:
    path: Path
    rows: list[LabelRow]
    skipped_blank: int = 0
    ignored_columns: list[str] = field(default_factory=list)


def read_label_file(path: str | Path) -> LabelFile:
    """Read and check the file's own content (ids and classes are checked by ``apply``)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: label file not found")
    if path.stat().st_size > MAX_FILE_BYTES:
        raise DataError(f"{path}: over {MAX_FILE_BYTES // 2**20} MiB; split it into several files")
    if path.suffix.lower() != ".csv":
        raise DataError(f"{path}: label files are CSV (.csv) with the columns id,label"
                        "[,annotator][,split]")
    try:
        with open(path, encoding="utf-8-sig", newline="") as handle:
            reader = csv.DictReader(handle)
            header = [h.strip() for h in (reader.fieldnames or [])]
            reader.fieldnames = header
            id_column = next((c for c in ID_COLUMNS if c in header), None)
            if id_column is None or "label" not in header:
                missing = [c for c, ok in (("id", id_column), ("label", "label" in header)) if not ok]
                raise DataError(f"{path}: line 1: missing column(s) {', '.join(missing)}; the columns "
                                "are id, label and optionally annotator and split (train or test)")
            rows, blank = [], 0
            for row in reader:
                line = reader.line_num
                if None in row:
                    raise DataError(f"{path}: line {line}: more values than header columns")
                item = (row.get(id_column) or "").strip()
                label = (row.get("label") or "").strip()
                if not item:
                    raise DataError(f"{path}: line {line}: the id is empty")
                if not label:
                    blank += 1
                    continue
                split = (row.get("split") or "").strip().lower() or None
                if split not in (None, "train", "test"):
                    raise DataError(f"{path}: line {line}: split {row.get('split')!r} is neither "
                                    "'train' nor 'test'")
                annotator = (row.get("annotator") or "").strip() or None
                rows.append(LabelRow(line, item, label, annotator, split))
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: not UTF-8 text (byte {err.start}); save it as UTF-8") from None
    except csv.Error as err:
        raise DataError(f"{path}: not valid CSV ({err})") from None
    _refuse_contradictions(path, rows)
    ignored = [c for c in header if c not in KNOWN_COLUMNS]
    return LabelFile(path=path, rows=rows, skipped_blank=blank, ignored_columns=ignored)


def _refuse_contradictions(path: Path, rows: list[LabelRow]) -> None:
    seen: dict[str, LabelRow] = {}
    for row in rows:
        first = seen.setdefault(row.item_id, row)
        if first is not row and (first.label, first.split) != (row.label, row.split):
            raise DataError(f"{path}: id {row.item_id!r} is labelled {first.label!r} at line "
                            f"{first.line} and {row.label!r} at line {row.line}; keep one")


@dataclass(frozen=True)
class LabelFileResult:
    labelled: int
    by_split: dict[str, int]
    created_classes: list[str]


def apply_label_file(session, labels: LabelFile, *, annotator: str, origin: str = "file",
                     add_classes: bool = False) -> LabelFileResult:
    """Record every row of ``labels`` in the session's label store (checked first, then written
    grouped by label, annotator and split)."""
    unknown = [r for r in labels.rows if not session.dataset.has(r.item_id)]
    if unknown:
        shown = ", ".join(f"{r.item_id!r} (line {r.line})" for r in unknown[:5])
        more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
        raise DataError(f"{labels.path}: {len(unknown)} id(s) are not in the data: {shown}{more}; "
                        f"nothing was written")
    known = set(session.class_names)
    new_classes = sorted({r.label for r in labels.rows} - known)
    if new_classes and not add_classes:
        first = {r.label: r.line for r in reversed(labels.rows)}
        shown = ", ".join(f"{c!r} (line {first[c]})" for c in new_classes[:10])
        raise DataError(f"{labels.path}: unknown class(es) {shown}; the classes are "
                        f"{', '.join(sorted(known)) or 'none yet'}. Add them to the project file, or "
                        "pass --add-classes to create them; nothing was written")
    for name in new_classes:
        session.add_class(name)
    groups: dict[tuple[str, str, str | None], list[str]] = defaultdict(list)
    for row in {r.item_id: r for r in labels.rows}.values():
        groups[(row.label, row.annotator or annotator, row.split)].append(row.item_id)
    for (label, who, split), ids in groups.items():
        session.label(ids, label, who, origin=origin, split=split)
    splits = session.store.splits()
    counts: dict[str, int] = defaultdict(int)
    for row in {r.item_id: r for r in labels.rows}.values():
        counts[splits.get(row.item_id, "train")] += 1
    return LabelFileResult(labelled=sum(counts.values()), by_split=dict(counts),
                           created_classes=new_classes)
