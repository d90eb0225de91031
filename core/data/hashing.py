"""SHA-256 digests of data files and folders, and the fingerprint of a loaded data set."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

_CHUNK = 1 << 20


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def manifest_sha256(entries: Iterable[tuple[str, str]]) -> str:
    """Hex SHA-256 of ``(relative path, file sha256)`` pairs, in the order given."""
    digest = hashlib.sha256()
    for rel, sha in entries:
        digest.update(f"{rel}\t{sha}\n".encode())
    return digest.hexdigest()


def fingerprint(source_sha256: str, options: dict[str, Any]) -> str:
    """SHA-256 of a source digest and the options it was loaded with (canonical JSON)."""
    payload = json.dumps({"source": source_sha256, "options": options}, sort_keys=True)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()
