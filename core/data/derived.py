"""Derived columns (``features.derived`` and ``features.combinations``), computed when data loads.

Combinations come first (``u_g = u - g`` for every pair of bands), then the derived columns in
file order, so a derived formula may use a combination (``g_r - r_i``). Formulas are parsed by
``core.expr`` (never ``eval``); the ground-truth column is never available to them.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence

import numpy as np

from core.errors import ConfigError, ExpressionError
from core.expr import Expression, check_columns, evaluate_number, parse_arithmetic
from core.project import COMBINATION_OPS, FeaturesConfig

_OP_WORDS = {"subtract": "_", "add": "_plus_", "multiply": "_times_", "divide": "_over_"}


def derived_specs(features: FeaturesConfig | None) -> list[tuple[str, Expression, float | None]]:
    """``(name, parsed formula, fill)`` for every column the features section adds, in order."""
    if features is None or features.empty:
        return []
    specs: list[tuple[str, Expression, float | None]] = []
    combos = features.combinations
    if combos is not None:
        for group in itertools.combinations(combos.columns, combos.n):
            for op in dict.fromkeys(combos.ops):
                name = _OP_WORDS[op].join(group)
                formula = f" {COMBINATION_OPS[op]} ".join(f"`{column}`" for column in group)
                specs.append((name, parse_arithmetic(formula), combos.fill))
    for column in features.derived:
        specs.append((column.name, parse_arithmetic(column.expr), column.fill))
    names = [name for name, _, _ in specs]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(f"features: the names {dupes} are produced twice (by combinations and "
                          "derived); rename the derived column")
    return specs


def derive_columns(columns: Mapping[str, np.ndarray], features: FeaturesConfig | None, *,
                   ids: Sequence[str], source: str, hidden: Sequence[str] = ()) -> dict[str, np.ndarray]:
    """The new columns (float64), computed over ``columns`` and the ones derived before them.

    ``hidden`` names columns formulas may not read (the ground truth), with a clear refusal.
    """
    available = {k: v for k, v in columns.items() if k not in set(hidden)}
    new: dict[str, np.ndarray] = {}
    for name, expression, fill in derived_specs(features):
        if name in columns:
            raise ConfigError(f"features: {name!r} already names a column of {source}; "
                              "choose another name for the derived column")
        used_hidden = [c for c in expression.columns if c in set(hidden)]
        if used_hidden:
            raise ConfigError(f"features: {name!r} = {expression.text!r} reads the ground-truth "
                              f"column {used_hidden[0]!r}; features may never use the answer")
        try:
            check_columns(expression, list(available))
            values = evaluate_number(expression, available, fill=fill, ids=ids, name=name)
        except ExpressionError as err:
            raise ExpressionError(f"features: {name!r} over {source}: {err}") from None
        available[name] = values
        new[name] = values
    return new
