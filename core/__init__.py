"""Tailwise engine: data, embeddings, imbalance-aware models, query strategies, label store.

This package never imports panel, bokeh or holoviews; heavy libraries (torch, umap) are imported
where they are used so that ``import core`` and the CLI start fast.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("tailwise")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+local"

__all__ = ["__version__"]
