"""Typed errors. Each message says what is wrong and, where it can, what to do next."""

from __future__ import annotations


class TailwiseError(Exception):
    """Base class of every error Tailwise raises on purpose."""


class ConfigError(TailwiseError, ValueError):
    """A project file or setting is malformed; the message names the field."""


class DataError(TailwiseError, ValueError):
    """A data source is unreadable or invalid; the message names the column, row or file."""


class LabelStoreError(TailwiseError):
    """The label store refused an operation (unknown class, bad import file, ...)."""


class AccessError(TailwiseError, PermissionError):
    """A user tried something their role does not allow; the message names user, role and action."""


class EmptyPoolError(TailwiseError, ValueError):
    """A query strategy was asked for items but no unlabelled item is left."""


class ModelError(TailwiseError, ValueError):
    """A model was given unusable input (NaN features, unknown classes, too few labels)."""


class ExpressionError(ConfigError):
    """A criterion or derived-feature expression was refused (syntax, unknown name, limits).

    Nothing is ever evaluated by Python: expressions are parsed by ``core.expr`` into a small tree
    that only knows numbers, column names, + - * / **, log10/abs/sqrt, comparisons and and/or/not.
    """


class WorkerError(TailwiseError, RuntimeError):
    """Work run in a process of its own (a training round) failed or the process died."""
