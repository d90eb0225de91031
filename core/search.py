"""Find items by criteria over their columns (the curated test set starts here).

The searchable columns are the data's own (numeric, derived, info columns) plus what the session
knows about each item: ``label``, ``split``, ``predicted``, ``uncertainty`` and ``p_<class>``.
Criteria use the grammar of ``core.expr`` (``g_r > 0.4 and r < 19``); nothing is ``eval``-ed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.expr import Expression, evaluate_criteria, parse_criteria

SESSION_COLUMNS = ("label", "split", "predicted", "uncertainty")


def item_columns(session) -> dict[str, np.ndarray]:
    """Column name -> (n,) array for every item of the session's data set."""
    dataset = session.dataset
    n = len(dataset)
    columns: dict[str, np.ndarray] = dict(dataset.columns)
    labels = session.labels_by_row()
    columns["label"] = np.where(labels == None, "", labels).astype(object)  # noqa: E711
    split = np.full(n, "", dtype=object)
    for item, name in session.store.splits().items():
        if dataset.has(item):
            split[dataset._index[item]] = name
    columns["split"] = split
    state = session.state
    if state is not None:
        columns["predicted"] = state.predicted.astype(object)
        columns["uncertainty"] = np.asarray(state.uncertainty, dtype=np.float64)
        for j, name in enumerate(state.classes):
            columns[f"p_{name}"] = state.proba[:, j]
    return columns


def item_column_names(session) -> list[str]:
    """The names :func:`item_columns` returns, in its order, without building any column (a
    page lists them after every model; at 10^6 items the columns themselves take seconds)."""
    names = [*session.dataset.columns, "label", "split"]
    state = session.state
    if state is not None:
        names += ["predicted", "uncertainty", *(f"p_{name}" for name in state.classes)]
    return list(dict.fromkeys(names))


@dataclass(frozen=True)
class SearchResult:
    expression: Expression
    rows: np.ndarray  # matching rows, in data order
    ids: list[str]

    def __len__(self) -> int:
        return len(self.rows)


def find_items(session, criteria: str, *, unlabelled_only: bool = False) -> SearchResult:
    """Rows meeting ``criteria`` (raises ``ExpressionError`` saying what is refused)."""
    expression = parse_criteria(criteria)
    columns = item_columns(session)
    mask = evaluate_criteria(expression, columns)
    if unlabelled_only:
        mask &= columns["label"] == ""
    rows = np.flatnonzero(mask)
    return SearchResult(expression, rows, session.dataset.ids[rows].astype(str).tolist())
