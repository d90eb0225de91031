"""The learners a project can name (``model.kind``) and that ``auto`` chooses among."""

from __future__ import annotations

from core.models.base import TailwiseModel
from core.models.cluster_knn import ClusterKNNModel
from core.models.linear import LogisticModel
from core.models.mlp import MLPClassifier
from core.models.trees import GradientBoostingModel, RandomForestModel
from core.project import LEARNERS as LEARNER_NAMES

LEARNERS: dict[str, type[TailwiseModel]] = {
    cls.kind: cls
    for cls in (MLPClassifier, LogisticModel, RandomForestModel, GradientBoostingModel,
                ClusterKNNModel)
}
assert tuple(LEARNERS) == LEARNER_NAMES, "core.project.LEARNERS and the learner classes disagree"

__all__ = ["LEARNERS"]
