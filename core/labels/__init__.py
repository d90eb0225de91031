"""The label store: every expert decision, durably, as an append-only log of events in SQLite.

One module per job:

- ``database``: SQLite plumbing (WAL, ``synchronous=FULL``, per-thread connections, retrying
  transactions, the schema and its version);
- ``store``: the event store ``LabelStore`` (record, retract, undo, current view, history, import);
- ``classes``: the class schema kept beside the events;
- ``exchange``: the JSON Lines / CSV exchange formats, shared with project export;
- ``records``: the record types (``LabelEvent``, ``ImportReport``) and field checks.
"""

from core.labels.database import LABEL_SCHEMA_VERSION
from core.labels.exchange import events_sha256, read_events_csv, read_events_jsonl, write_events_jsonl
from core.labels.records import EXCHANGE_FIELDS, ORIGINS, SPLITS, ImportReport, LabelEvent, iso_time
from core.labels.store import LabelStore

__all__ = [
    "EXCHANGE_FIELDS",
    "LABEL_SCHEMA_VERSION",
    "ORIGINS",
    "SPLITS",
    "ImportReport",
    "LabelEvent",
    "LabelStore",
    "events_sha256",
    "iso_time",
    "read_events_csv",
    "read_events_jsonl",
    "write_events_jsonl",
]
