"""The map's point table: one row per item, flags for rare and queued items."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from core.pointtable import latest_annotators, point_table, queue_scores


def test_point_table_columns_and_flags():
    ids = np.array(["a", "b", "c", "d"], dtype=object)
    xy = np.arange(8, dtype=float).reshape(4, 2)
    labels = np.array(["cat", None, "rat", None], dtype=object)
    predicted = np.array(["cat", "rat", "rat", "cat"], dtype=object)
    table = point_table(ids, xy, labels, predicted=predicted, rare_classes=["rat"],
                        queued_rows=np.array([1]), score=queue_scores(4, np.array([1]), np.array([0.7])))
    assert table["label"].tolist() == ["cat", "", "rat", ""]
    assert table["rare"].tolist() == [False, True, True, False]  # label first, prediction if unlabelled
    assert table["queued"].tolist() == [False, True, False, False]
    assert np.isnan(table["score"][0]) and table["score"][1] == 0.7
    assert table["x"].tolist() == [0, 2, 4, 6]


def test_latest_annotators_follow_the_last_event():
    ev = lambda item, label, who: SimpleNamespace(item_id=item, label=label, annotator=who)
    events = [ev("a", "x", "ann"), ev("a", "y", "bob"), ev("b", "x", "ann"), ev("b", None, "ann"),
              ev("zz", "x", "ann")]
    got = latest_annotators(events, np.array(["a", "b", "c"], dtype=object), {"a": 0, "b": 1, "c": 2})
    assert got.tolist() == ["bob", "", ""]
