"""Extra images of an item (``data.image_columns``): where each may come from, and its bytes.

A cell is a local path relative to the project file (it may not leave the project folder unless
the project was opened with ``allow_outside``) or an ``http(s)`` URL. The server never fetches a
URL: one whose host is listed in ``data.image_hosts`` is handed to the browser as is; any other
URL, scheme (``file:``, ``data:``, ``javascript:`` ...) or path is refused with the reason.
Local files are checked to be images (by their bytes, with Pillow) and at most
``MAX_IMAGE_BYTES`` before they are sent.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from core.errors import ConfigError

MAX_IMAGE_BYTES = 8 * 1024 * 1024
IMAGE_TYPES = {"PNG": "image/png", "JPEG": "image/jpeg", "GIF": "image/gif", "WEBP": "image/webp"}


@dataclass(frozen=True)
class ImageRef:
    """Where one image cell points: ``kind`` is 'local' (``path``), 'remote' (``url``, for the
    browser) or 'refused' (``reason``)."""

    column: str
    kind: str
    path: Path | None = None
    url: str | None = None
    reason: str = ""


def image_ref(project, column: str, value: object) -> ImageRef:
    """Classify one cell of an image column (never touches the network)."""
    text = "" if value is None else str(value).strip()
    if not text or text.lower() == "nan":
        return ImageRef(column, "refused", reason="no image for this item")
    parts = urlsplit(text)
    if parts.scheme and len(parts.scheme) > 1:  # one letter: a Windows drive, i.e. a path
        if parts.scheme.lower() not in ("http", "https"):
            return ImageRef(column, "refused", reason=f"{parts.scheme}: addresses are not shown")
        host = (parts.hostname or "").lower()
        allowed = {h.split(":")[0] for h in project.data.image_hosts}
        if host not in allowed:
            return ImageRef(column, "refused",
                            reason=f"remote images from {host or 'this address'} are not shown: "
                                   "list the host in data.image_hosts to allow them")
        return ImageRef(column, "remote", url=text)
    try:
        path = project.resolve(text, allow_outside=bool(getattr(project, "_allow_outside", False)),
                               field=f"data.image_columns {column!r}")
    except ConfigError as err:
        return ImageRef(column, "refused", reason=str(err))
    return ImageRef(column, "local", path=path)


def read_image(path: Path) -> tuple[str, bytes]:
    """``(mime type, bytes)`` of a local image; ``ConfigError`` says why it cannot be shown."""
    from PIL import Image, UnidentifiedImageError

    if not path.is_file():
        raise ConfigError(f"{path.name}: file not found")
    size = path.stat().st_size
    if size > MAX_IMAGE_BYTES:
        raise ConfigError(f"{path.name}: {size / 2**20:.1f} MiB, over the "
                          f"{MAX_IMAGE_BYTES // 2**20} MiB limit for inspector images")
    data = path.read_bytes()
    try:
        import io

        with Image.open(io.BytesIO(data)) as image:
            kind = image.format
    except (UnidentifiedImageError, OSError):
        raise ConfigError(f"{path.name}: not an image Tailwise can show (PNG, JPEG, GIF, WebP)") from None
    if kind not in IMAGE_TYPES:
        raise ConfigError(f"{path.name}: {kind} images are not shown; use PNG, JPEG, GIF or WebP")
    return IMAGE_TYPES[kind], data
