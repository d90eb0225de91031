"""Label items from the data's ground-truth column, as the project's query strategy asks for them.

``tailwise demo DIR --labels N`` uses it so that the headless path (``tailwise retrain``) has labels
to train on: the strategy picks batch after batch (retraining between batches once two classes are
labelled, as in the dashboard), and each pick gets its true class with origin ``demo``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable

import numpy as np

from core.errors import ConfigError

Progress = Callable[[int, int, str], None]


def label_from_ground_truth(session, n: int, *, annotator: str = "demo", origin: str = "demo",
                            progress: Progress | None = None) -> int:
    """Record ``n`` labels chosen by the project's strategy; returns how many were recorded."""
    truth = session.dataset.ground_truth
    if truth is None:
        raise ConfigError("--labels needs the data's ground-truth column (data.label_column)")
    if n < 0:
        raise ConfigError(f"--labels must be 0 or more, got {n}")
    unknown = sorted(set(np.asarray(truth, dtype=object).astype(str).tolist()) - set(session.class_names))
    for name in unknown:
        session.add_class(name)
    report = progress or (lambda done, total, message: None)
    session.base_embedding_(progress)
    done = 0
    while done < n:
        wanted = min(session.project.query.batch_size, n - done)
        batch = session.next_batch(wanted)
        by_label: dict[str, list[str]] = defaultdict(list)
        for item, row in zip(batch.ids, session.positions(batch.ids)):
            by_label[str(truth[row])].append(str(item))
        for label, ids in by_label.items():
            session.label(ids, label, annotator, origin=origin)
        done += len(batch.ids)
        report(done, n, f"{done} of {n} labels from the ground truth ({session.project.query.strategy})")
        if not len(batch.ids):
            break
        if done < n and len(set(session.store.current(split="train").values())) >= 2:
            session.retrain(progress)  # the next batch is chosen with a model, as in the dashboard
    return done
