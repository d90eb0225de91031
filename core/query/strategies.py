"""The query strategies. Each class scores the unlabelled pool and explains every pick.

See ``docs/strategies.md`` for what each strategy does and when to use it.
"""

from __future__ import annotations

import heapq
import warnings

import numpy as np

from core.errors import ConfigError
from core.query import _geometry as geo
from core.query.base import Picks, QueryContext, QueryStrategy, pct, top_k
from core.query.measures import entropy, least_confidence, margin, top_two, vote_entropy
from core.query.pool_clusters import POOL_CLUSTERS, bucket_k

__all__ = [
    "ClassBalancedMargin",
    "Committee",
    "Discovery",
    "EntropySampling",
    "Galaxy",
    "LeastConfidence",
    "MarginSampling",
    "MinorityPositives",
    "RandomSampling",
    "TargetClass",
    "TypiClust",
]


def _labels_of(ctx: QueryContext, positions: np.ndarray) -> np.ndarray:
    return np.asarray(ctx.labels, dtype=object)[positions].astype(str)


def _rare_word(ctx: QueryContext, cls: str) -> str:
    return "rare class" if cls in ctx.rare_classes else "class"


# ---------------------------------------------------------------------------- baselines
class RandomSampling(QueryStrategy):
    """Uniformly random unlabelled items: the unbiased baseline every strategy must beat."""

    name = "random"
    needs_model = False

    def _select(self, ctx: QueryContext, candidates: np.ndarray, n: int) -> Picks:
        pos = ctx.rng.choice(candidates, size=n, replace=False)
        return Picks(pos, np.zeros(n), ["random pick (an unbiased sample of the pool)"] * n)


class _Uncertainty(QueryStrategy):
    """Top-``n`` by an uncertainty measure of the model's probabilities."""

    def _score(self, proba: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _reason(self, ctx: QueryContext, row: np.ndarray) -> str:
        raise NotImplementedError

    def _select(self, ctx: QueryContext, candidates: np.ndarray, n: int) -> Picks:
        proba = ctx.proba[candidates]
        scores = self._score(proba)
        best = top_k(scores, n, ctx.rng)
        reasons = [self._reason(ctx, proba[i]) for i in best]
        return Picks(candidates[best], scores[best], reasons)


class LeastConfidence(_Uncertainty):
    """Items whose most likely class has the lowest probability."""

    name = "least_confidence"

    def _score(self, proba: np.ndarray) -> np.ndarray:
        return least_confidence(proba)

    def _reason(self, ctx: QueryContext, row: np.ndarray) -> str:
        j = int(np.argmax(row))
        return f"predicted '{ctx.classes[j]}' with {pct(row[j])} confidence"


class MarginSampling(_Uncertainty):
    """Items with the smallest gap between the two most likely classes."""

    name = "margin"

    def _score(self, proba: np.ndarray) -> np.ndarray:
        return -margin(proba)

    def _reason(self, ctx: QueryContext, row: np.ndarray) -> str:
        i1, p1, i2, p2 = (a[0] for a in top_two(row[None, :]))
        return f"torn between '{ctx.classes[i1]}' ({pct(p1)}) and '{ctx.classes[i2]}' ({pct(p2)})"


class EntropySampling(_Uncertainty):
    """Items whose predicted class distribution has the highest entropy."""

    name = "entropy"

    def _score(self, proba: np.ndarray) -> np.ndarray:
        return entropy(proba)

    def _reason(self, ctx: QueryContext, row: np.ndarray) -> str:
        order = np.argsort(-row)[:3]
        top = ", ".join(f"'{ctx.classes[j]}' {pct(row[j])}" for j in order if row[j] >= 0.05)
        return f"spread over several classes: {top} (entropy {entropy(row[None])[0]:.2f} nats)"


# ---------------------------------------------------------------------------- committee
class Committee(QueryStrategy):
    """Query by committee: vote entropy of the candidate learners of ``model: auto``.

    The members (class-balanced logistic regression, random forest, gradient-boosted trees and the
    imbalance-aware MLP, with the project's settings when the session passes ``learner_configs``)
    are fitted on the labelled items' embedding at every query, the AstronomicAL-style loop with
    Tailwise's learners; ties in vote entropy are broken by the members' mean entropy.
    """

    name = "committee"

    def __init__(
        self,
        members: tuple[str, ...] = ("logistic", "random_forest", "gradient_boosting", "mlp"),
        learner_configs: dict | None = None,
    ) -> None:
        self.members = tuple(members)
        self.learner_configs = learner_configs
        if len(self.members) < 2:
            raise ConfigError(f"committee: needs at least two members, got {list(self.members)}")

    def can_run(self, ctx: QueryContext) -> bool:
        return len(ctx.class_counts()) >= 2

    def _member(self, name: str, seed: int):
        from core.models.learners import LEARNERS
        from core.project import default_model_config

        if name not in LEARNERS:
            raise ConfigError(f"committee: unknown member {name!r}; choose from {sorted(LEARNERS)}")
        config = (self.learner_configs or {}).get(name) or default_model_config(name)
        return LEARNERS[name](config=config, seed=seed)

    def _select(self, ctx: QueryContext, candidates: np.ndarray, n: int) -> Picks:
        lab = ctx.labelled_positions
        x_lab = ctx.embedding[lab]
        y_lab = _labels_of(ctx, lab)
        classes = np.unique(y_lab)
        code = {c: i for i, c in enumerate(classes)}
        seed = geo.seed_of(ctx.rng)
        x_pool = ctx.embedding[candidates]
        votes, mean_entropy = [], np.zeros(len(candidates))
        for name in self.members:
            with warnings.catch_warnings():  # one-label classes are expected early on
                warnings.simplefilter("ignore", UserWarning)
                model = self._member(name, seed).fit(x_lab, y_lab)
            proba = model.predict_proba(x_pool)
            votes.append([code[str(c)] for c in np.asarray(model.classes_)[proba.argmax(axis=1)]])
            mean_entropy += entropy(proba) / len(self.members)
        votes = np.asarray(votes)
        scores = vote_entropy(votes, len(classes)) + 1e-3 * mean_entropy
        best = top_k(scores, n, ctx.rng)
        reasons = []
        for i in best:
            said = ", ".join(f"{m} '{classes[votes[k, i]]}'" for k, m in enumerate(self.members))
            agree = len(set(votes[:, i].tolist())) == 1
            reasons.append(
                ("committee agrees but is unsure: " if agree else "committee split: ") + said
            )
        return Picks(candidates[best], scores[best], reasons)


# ---------------------------------------------------------------------------- class-balanced
def _fewest_labels_first(ctx: QueryContext, ranked: list[np.ndarray], n: int) -> list[tuple[int, int]]:
    """Fill a batch one item at a time for the class with the fewest labels so far.

    ``ranked[j]`` lists candidate rows for class ``j``, best first. Each pick goes to the class
    with the fewest labels (counting picks already made for it; ties broken at random), which
    takes its best row not yet chosen. Returns ``(row, class index)`` pairs in pick order.
    """
    counts = ctx.class_counts()
    virtual = np.array([counts.get(c, 0) for c in ctx.classes], dtype=float)
    cursor = np.zeros(len(ranked), dtype=int)
    tie = ctx.rng.random(len(ranked))
    chosen: set[int] = set()
    picks: list[tuple[int, int]] = []
    while len(picks) < n:
        j = min((c for c in range(len(ranked)) if cursor[c] < len(ranked[c])),
                key=lambda c: (virtual[c], tie[c]))
        i = int(ranked[j][cursor[j]])
        cursor[j] += 1
        if i in chosen:
            continue
        chosen.add(i)
        virtual[j] += 1
        picks.append((i, j))
    return picks


class ClassBalancedMargin(QueryStrategy):
    """BASE-like balanced selection: for each class, the items nearest its decision boundary.

    The batch is filled one item at a time for the class with the fewest labels (counting the
    items already chosen for it), taking the unchosen item closest to that class's one-vs-rest
    boundary ``|p(c) - max_{c' != c} p(c')|``. Classes with fewer labels thus get more queries.
    """

    name = "class_balanced_margin"

    def _select(self, ctx: QueryContext, candidates: np.ndarray, n: int) -> Picks:
        proba = ctx.proba[candidates]
        k = proba.shape[1]
        counts = ctx.class_counts()
        # Per class: the n candidates nearest its boundary, nearest first.
        ranked, dists = [], []
        for j in range(k):
            others = np.delete(proba, j, axis=1).max(axis=1) if k > 1 else np.zeros(len(proba))
            dist = np.abs(proba[:, j] - others)
            order = top_k(-dist, n, ctx.rng)
            ranked.append(order)
            dists.append(dist)
        rows, scores, reasons = [], [], []
        for i, j in _fewest_labels_first(ctx, ranked, n):
            cls = ctx.classes[j]
            rows.append(i)
            scores.append(-float(dists[j][i]))
            reasons.append(
                f"near the boundary of {_rare_word(ctx, cls)} '{cls}' "
                f"(p={pct(proba[i, j])}; {counts.get(cls, 0)} labels so far)"
            )
        return Picks(candidates[np.asarray(rows)], np.asarray(scores), reasons)


def _label_changes(y_sorted: np.ndarray, is_lab: np.ndarray, cls: str) -> list[tuple]:
    """GALAXY's cuts on one class's linear graph, as a heap: ``(unlabelled items between, rank
    a, rank b, the other label)`` for every pair of adjacent labelled ranks ``a < b`` with
    unlabelled items between them, one labelled ``cls`` and the other not."""
    lab_rank = np.flatnonzero(is_lab)
    positive = y_sorted[lab_rank] == cls
    a, b = lab_rank[:-1], lab_rank[1:]
    cut = (positive[:-1] != positive[1:]) & (b - a > 1)
    a, b, a_positive = a[cut], b[cut], positive[:-1][cut]
    other = np.where(a_positive, y_sorted[b], y_sorted[a])
    heap = list(zip((b - a - 1).tolist(), a.tolist(), b.tolist(), [str(o) for o in other]))
    heapq.heapify(heap)  # the tuples are distinct (one per rank a): the same pops as pushes
    return heap


class Galaxy(QueryStrategy):
    """GALAXY (Zhang et al., ICML 2022), simplified: graph bisection on per-class margin orderings.

    For every class ``c`` all items (labelled and not) are sorted by the one-vs-rest margin
    ``p(c) - max_{c' != c} p(c')``, giving a linear graph. Adjacent labelled items on it with
    different ``c``-vs-rest labels bound a path of unlabelled items that must hold a label change;
    the shortest such path is bisected (its midpoint is queried), as in S2. Classes are visited
    round-robin, fewest labels first; within a batch each bisected path is split into its two halves
    for later picks. A class without any cut ("connect" step) gets its highest-scoring item.
    """

    name = "galaxy"

    def _select(self, ctx: QueryContext, candidates: np.ndarray, n: int) -> Picks:
        lab = ctx.labelled_positions
        nodes = np.concatenate([lab, candidates])
        is_lab = np.zeros(len(nodes), bool)
        is_lab[: len(lab)] = True
        y = np.empty(len(nodes), dtype=object)
        y[: len(lab)] = _labels_of(ctx, lab)
        proba = ctx.proba[nodes]
        k = proba.shape[1]
        counts = ctx.class_counts()
        order_classes = sorted(
            range(k), key=lambda j: (counts.get(ctx.classes[j], 0), ctx.rng.random())
        )
        heaps, sorted_nodes, open_last, scores_by_class = {}, {}, {}, {}
        for j in order_classes:
            others = np.delete(proba, j, axis=1).max(axis=1)
            score = proba[:, j] - others
            order = np.lexsort((ctx.rng.random(len(nodes)), score))
            sorted_nodes[j], scores_by_class[j] = order, score
            open_last[j] = order[~is_lab[order]][::-1]  # unlabelled, most '{cls}'-like first
            heaps[j] = _label_changes(y[order], is_lab[order], ctx.classes[j])
        picked: set[int] = set()
        rows, scores, reasons = [], [], []
        idle = 0
        while len(rows) < n and idle < k:
            progressed = False
            for j in order_classes:
                if len(rows) >= n:
                    break
                cls = ctx.classes[j]
                order = sorted_nodes[j]
                heap = heaps[j]
                pick = None
                while heap and pick is None:
                    length, a, b, other = heapq.heappop(heap)
                    mid = (a + b) // 2
                    node = int(order[mid])
                    if mid - a > 1:
                        heapq.heappush(heap, (mid - a - 1, a, mid, other))
                    if b - mid > 1:
                        heapq.heappush(heap, (b - mid - 1, mid, b, other))
                    if node not in picked and not is_lab[node]:
                        pick = node
                        reason = (
                            f"bisects the '{cls}'-vs-rest boundary: middle of {length} unlabelled "
                            f"items between a '{cls}' and a '{other}'"
                        )
                if pick is None:  # connect step: most '{cls}'-like unlabelled item not yet taken
                    for node in open_last[j]:
                        if int(node) not in picked:
                            pick = int(node)
                            reason = (
                                f"most '{cls}'-like unlabelled item (p={pct(proba[pick, j])}); "
                                f"no open '{cls}' boundary left"
                            )
                            break
                if pick is None:
                    continue
                picked.add(pick)
                progressed = True
                rows.append(pick)
                scores.append(float(n - len(rows)))
                reasons.append(reason)
            idle = 0 if progressed else idle + 1
        node_pos = nodes[np.asarray(rows, dtype=int)]
        return Picks(node_pos, np.asarray(scores), reasons)


class MinorityPositives(QueryStrategy):
    """Hunt for more members of the least-labelled classes (an arm of ``auto``).

    Like :class:`ClassBalancedMargin` the batch goes one item at a time to the class with the
    fewest labels, but it takes that class's *most probable* unchosen item, the item most likely
    to be a new positive of the minority class.
    """

    name = "minority_positives"

    def _select(self, ctx: QueryContext, candidates: np.ndarray, n: int) -> Picks:
        proba = ctx.proba[candidates]
        k = proba.shape[1]
        counts = ctx.class_counts()
        ranked = [top_k(proba[:, j], n, ctx.rng) for j in range(k)]
        rows, scores, reasons = [], [], []
        for i, j in _fewest_labels_first(ctx, ranked, n):
            cls = ctx.classes[j]
            rows.append(i)
            scores.append(float(proba[i, j]))
            reasons.append(
                f"likely a new '{cls}' (p={pct(proba[i, j])}); "
                f"{_rare_word(ctx, cls)} '{cls}' has only {counts.get(cls, 0)} labels"
            )
        return Picks(candidates[np.asarray(rows)], np.asarray(scores), reasons)


# ---------------------------------------------------------------------------- exploration
POOL_MIN_ASK = 10  # discovery's pool clustering has k for at least this many picks


def _node_labels(ctx: QueryContext, n_lab: int, n_nodes: int) -> np.ndarray:
    """Labels of the clustered nodes (the labelled items first, then candidates: None)."""
    out = np.full(n_nodes, None, dtype=object)
    out[:n_lab] = np.asarray(ctx.labels, dtype=object)[ctx.labelled_positions]
    return out


class Discovery(QueryStrategy):
    """Find classes nobody has labelled yet.

    Clusters the embedding into ``cluster_factor * (n_labelled + n)`` groups (8 to
    ``max_clusters``) and first takes the most typical item of each cluster that has no labelled
    member, farthest-first (a pick covers its neighbourhood for the next). Remaining picks go to
    sparse, novel regions: farthest-first traversal from the labelled items over items typical of
    their cluster, so single outliers are not preferred. With a model, distances are weighted by
    its doubt (``1 - max p``, to the power ``doubt_power``): an unseen class is spread over the
    known ones, while unlabelled chunks of known classes look confident. Works without a model.

    With ``ctx.cluster_seed`` set (the session and ``simulate`` set it) and k-means clusters, the
    clustering is the whole pool's (:mod:`core.query.pool_clusters`), ``k`` from
    :meth:`pool_k`, seeded by ``cluster_seed`` and the number of
    labels: computed once per embedding and label count and shared by every request of that
    round (each dashboard tab, on its own sub-pool) instead of a k-means per query.

    ``cluster_method`` overrides the project's ``clusters.method`` (``ctx.cluster_method``) for
    this strategy alone; ``None`` follows the project (``auto`` sets it for its discovery arm:
    ``discovery_clusters`` in :func:`core.query.get_strategy`). ``compactness`` also prefers compact
    clusters (a statistic pooled over each cluster's members); off by default: it found slightly
    more classes on the benchmark pools (``benchmarks/discovery_pooling.py``) but can spend two
    picks on one group split into two compact clusters instead of reaching the next group.
    """

    name = "discovery"
    needs_model = False

    def __init__(
        self,
        max_clusters: int = 300,
        cluster_factor: float = 1.0,
        doubt_power: float = 1.0,
        size_weight: bool = True,
        cluster_method: str | None = None,
        compactness: bool = False,
    ) -> None:
        self.max_clusters = max_clusters
        self.cluster_factor = cluster_factor
        self.doubt_power = doubt_power
        self.size_weight = size_weight
        self.compactness = compactness
        self.cluster_method = cluster_method
        if cluster_method is not None:
            from core.clusters.registry import CLUSTER_METHOD_NAMES

            if cluster_method not in CLUSTER_METHOD_NAMES:
                raise ConfigError(f"discovery: unknown cluster_method {cluster_method!r}; use one "
                                  f"of {', '.join(CLUSTER_METHOD_NAMES)} (or None: the project's)")

    def pool_k(self, n_labelled: int, n: int, n_candidates: int, n_nodes: int) -> int:
        """The number of clusters of the pool clustering for ``n`` picks at ``n_labelled``
        labels: ``cluster_factor * (n_labelled + max(n, POOL_MIN_ASK))`` rounded up by
        :func:`bucket_k`, within 8 to ``max_clusters`` and at most a third of the candidates.
        ``auto`` asks its arm for 1 to ``batch`` items: up to a batch of ``POOL_MIN_ASK`` every
        ask of a label state gets the same ``k``, so the tabs share one clustering."""
        k = int(np.clip(self.cluster_factor * (n_labelled + max(n, POOL_MIN_ASK)), 8,
                        self.max_clusters))
        return min(bucket_k(k), self.max_clusters, max(1, n_candidates // 3), n_nodes)

    def _cluster_weight(self, doubt: np.ndarray, sizes: np.ndarray, d_centre: np.ndarray,
                        cand_assign: np.ndarray) -> np.ndarray:
        """How much each cluster's distance from the labelled items counts: the model's doubt
        about its members, its size and (``compactness``) its pooled spread, the mean distance of
        its members to its centre (``d_centre``): a compact cluster is more likely one class,
        ``clip(median spread / spread, 1/4, 4)``."""
        weight = doubt**self.doubt_power * (np.log1p(sizes) if self.size_weight else 1.0)
        if self.compactness:
            counts = np.bincount(cand_assign, minlength=len(sizes))
            spread = np.bincount(cand_assign, weights=d_centre, minlength=len(sizes)) / np.maximum(counts, 1)
            typical = float(np.median(spread[counts > 0])) if (counts > 0).any() else 1.0
            weight = weight * np.clip(typical / np.maximum(spread, 1e-12), 0.25, 4.0)
        return weight

    def _select(self, ctx: QueryContext, candidates: np.ndarray, n: int) -> Picks:
        lab = ctx.labelled_positions
        nodes = np.concatenate([lab, candidates])
        x = np.asarray(ctx.embedding[nodes], dtype=np.float32)
        n_lab = len(lab)
        method = self.cluster_method or ctx.cluster_method
        if method == "kmeans" and ctx.cluster_seed is not None:  # the pool's shared clustering
            k = self.pool_k(n_lab, n, len(candidates), len(nodes))
            source, rows = ctx.source_rows(nodes)
            # Seeded by the label state, as the per-request k-means was (a new clustering each
            # round): the tabs of one round share it.
            n_labels = sum(ctx.class_counts().values())
            clustering = POOL_CLUSTERS.get(source, k, (ctx.cluster_seed, n_labels))
            assign, centres = clustering.assignment(source, rows), clustering.centres
        else:
            k = int(np.clip(self.cluster_factor * (n_lab + n), 8, self.max_clusters))
            k = min(k, max(1, len(candidates) // 3), len(nodes))
            assign, centres = geo.cluster_nodes(x, k, ctx.rng, method,
                                                _node_labels(ctx, n_lab, len(nodes)))
        k = len(centres)
        sizes = np.bincount(assign, minlength=k)
        covered = np.zeros(k, bool)
        covered[assign[:n_lab]] = True
        _, centre_gap = geo.nearest(centres, x[:n_lab]) if n_lab else (None, np.ones(k))
        cand_assign = assign[n_lab:]
        x_c = x[n_lab:]
        d_centre = np.sqrt(((x_c - centres[cand_assign]) ** 2).sum(axis=1))
        scale = float(np.median(d_centre)) + 1e-12

        # With a model, prefer clusters it is unsure about: a class nobody has labelled yet gets
        # spread over the known classes, while unlabelled chunks of known classes look confident.
        doubt = np.ones(k)
        if ctx.proba.shape[1] >= 2:
            lc = least_confidence(ctx.proba[candidates])
            doubt = (
                np.bincount(cand_assign, weights=lc, minlength=k)
                / np.maximum(np.bincount(cand_assign, minlength=k), 1)
                + 0.05
            )
        rows, scores, reasons = [], [], []
        uncovered = [c for c in range(k) if not covered[c] and sizes[c] >= 2]
        # Farthest-first over uncovered clusters: a pick covers its neighbourhood for the next one.
        gap = centre_gap.astype(np.float64).copy()
        weight = self._cluster_weight(doubt, sizes, d_centre, cand_assign)
        while uncovered and len(rows) < n:
            c = max(uncovered, key=lambda c: gap[c] * weight[c])
            uncovered.remove(c)
            members = np.flatnonzero(cand_assign == c)
            best = members[np.argmin(d_centre[members])]
            rows.append(int(best))
            scores.append(2.0 + float(gap[c]) / scale)
            reasons.append(f"no labelled item in this cluster ({sizes[c]} items)")
            gap = np.minimum(gap, np.sqrt(((centres - x_c[best]) ** 2).sum(axis=1)))
        if len(rows) < n:
            typical = np.zeros(len(candidates), bool)
            for c in range(k):
                members = np.flatnonzero(cand_assign == c)
                if len(members):
                    typical[members] = d_centre[members] <= np.median(d_centre[members])
            typical[rows] = False
            refs = (
                np.concatenate([x[:n_lab], x_c[rows]])
                if (n_lab or rows)
                else np.zeros((0, x.shape[1]))
            )
            perm = ctx.rng.permutation(len(candidates))
            point_doubt = None
            if ctx.proba.shape[1] >= 2:
                point_doubt = (least_confidence(ctx.proba[candidates]) + 0.05)[
                    perm
                ] ** self.doubt_power
            extra, gaps = geo.greedy_k_center(
                x_c[perm], refs, n - len(rows), allowed=typical[perm], weights=point_doubt
            )
            extra = perm[extra]
            if len(rows) + len(extra) < n:  # tiny pools: fill with anything not taken yet
                rest = np.setdiff1d(
                    np.arange(len(candidates)), np.concatenate([rows, extra]).astype(int)
                )
                fill = ctx.rng.permutation(rest)[: n - len(rows) - len(extra)]
                extra = np.concatenate([extra, fill])
                gaps = np.concatenate([gaps, np.zeros(len(fill))])
            for i, g in zip(extra, gaps):
                rows.append(int(i))
                rel = g / scale if np.isfinite(g) else float("inf")
                scores.append(min(float(rel), 1.99))
                reasons.append(
                    "far from every labelled item (a sparse, unexplored region)"
                    if np.isfinite(rel)
                    else "spread-out pick over the unexplored pool"
                )
        rows = np.asarray(rows, dtype=int)
        return Picks(candidates[rows], np.asarray(scores), reasons)


def warm_pool_clusters(embedding: np.ndarray, n_labels: int, n: int, seed: int) -> None:
    """Fit the pool clustering ``discovery`` (default settings, k-means) will ask for at
    ``n_labels`` labels and a batch of ``n``, so that the first query of that label state finds
    it ready: it needs the embedding and the label count, not the model, so a session fits it
    while the model trains."""
    n_pool = len(embedding)
    k = Discovery().pool_k(n_labels, n, n_pool - n_labels, n_pool)
    if n_pool - n_labels >= 3 and k >= 1:
        POOL_CLUSTERS.get(embedding, k, (int(seed), int(n_labels)))


class TargetClass(QueryStrategy):
    """Maximise new positives of one class: highest ``p(target)``, spread over the embedding.

    Takes the ``5n`` items most likely to be the target and picks greedily by ``p(target)``
    discounted for closeness to items already picked in this batch. Until the model knows the
    target class it explores with ``discovery``.
    """

    name = "target_class"

    def __init__(self, target_class: str | None = None, pool_factor: int = 5) -> None:
        self.target_class = target_class
        self.pool_factor = pool_factor

    def _target(self, ctx: QueryContext) -> str:
        target = self.target_class or ctx.target_class
        if target is None:
            raise ConfigError(
                "target_class: no target class chosen; set query.target_class in the project "
                "file or pick a class in the dashboard"
            )
        return str(target)

    def query(self, ctx: QueryContext, n: int):
        self._target(ctx)
        return super().query(ctx, n)

    def _select(self, ctx: QueryContext, candidates: np.ndarray, n: int) -> Picks:
        target = self._target(ctx)
        if target not in ctx.classes:
            picks = Discovery()._select(ctx, candidates, n)
            picks.reasons = [
                f"{r} (the model does not know '{target}' yet: exploring)" for r in picks.reasons
            ]
            return picks
        p = ctx.proba[candidates, ctx.classes.index(target)]
        top = top_k(p, max(self.pool_factor * n, 50), ctx.rng)
        x = np.asarray(ctx.embedding[candidates[top]], dtype=np.float32)
        if len(top) > 1:
            _, d = geo.k_smallest_distances(x, x, 2)
            scale = float(np.median(np.sqrt(np.maximum(d.max(axis=1), 0)))) + 1e-12
        else:
            scale = 1.0
        closeness = np.full(len(top), np.inf)
        value = p[top].astype(float)
        taken = np.zeros(len(top), bool)
        rows, scores = [], []
        for _ in range(n):
            gain = np.where(taken, -np.inf, value * np.minimum(1.0, closeness / scale))
            i = int(np.argmax(gain))
            taken[i] = True
            rows.append(i)
            scores.append(float(value[i]))
            closeness = np.minimum(closeness, np.sqrt(((x - x[i]) ** 2).sum(axis=1)))
        rows = top[np.asarray(rows)]
        reasons = [f"predicted '{target}' with {pct(p[i])} (target class)" for i in rows]
        return Picks(candidates[rows], np.asarray(scores), reasons)


class TypiClust(QueryStrategy):
    """TypiClust (Hacohen et al., ICML 2022) for the cold start.

    Clusters labelled + unlabelled items into ``n_labelled + n`` clusters (at most
    ``max_clusters``) and takes the most typical item (inverse mean distance to its 20 nearest
    neighbours) of the largest clusters without a labelled member.
    """

    name = "typiclust"
    needs_model = False

    def __init__(self, max_clusters: int = 200, n_neighbors: int = 20) -> None:
        self.max_clusters = max_clusters
        self.n_neighbors = n_neighbors

    def _select(self, ctx: QueryContext, candidates: np.ndarray, n: int) -> Picks:
        lab = ctx.labelled_positions
        nodes = np.concatenate([lab, candidates])
        x = np.asarray(ctx.embedding[nodes], dtype=np.float32)
        k = min(len(lab) + n, self.max_clusters, len(nodes))
        assign, _ = geo.cluster_nodes(x, k, ctx.rng, ctx.cluster_method,
                                      _node_labels(ctx, len(lab), len(nodes)))
        k = int(assign.max()) + 1
        sizes = np.bincount(assign, minlength=k)
        n_lab_in = np.bincount(assign[: len(lab)], minlength=k)
        cand_assign = assign[len(lab) :]
        tie = ctx.rng.random(k)
        order = sorted(range(k), key=lambda c: (n_lab_in[c], -sizes[c], tie[c]))
        queues: dict[int, list[int]] = {}
        rows, scores, reasons = [], [], []
        while len(rows) < n:
            progressed = False
            for c in order:
                if len(rows) >= n:
                    break
                if c not in queues:
                    members = np.flatnonzero(cand_assign == c)
                    if len(members) == 0:
                        queues[c] = []
                        continue
                    sub, typ = geo.typicality(x[len(lab) :][members], self.n_neighbors, ctx.rng)
                    queues[c] = [int(members[s]) for s in sub[np.argsort(-typ, kind="stable")]]
                while queues[c] and queues[c][0] in rows:
                    queues[c].pop(0)
                if not queues[c]:
                    continue
                rows.append(queues[c].pop(0))
                progressed = True
                scores.append(float(sizes[c]))
                reasons.append(
                    f"most typical item of an unlabelled cluster of {sizes[c]} items"
                    if n_lab_in[c] == 0
                    else f"typical item of a cluster of {sizes[c]} items with {n_lab_in[c]} labels"
                )
            if not progressed:  # typicality subsampling left too few rows: fill at random
                rest = np.setdiff1d(np.arange(len(candidates)), rows)
                for i in ctx.rng.permutation(rest)[: n - len(rows)]:
                    rows.append(int(i))
                    scores.append(0.0)
                    reasons.append("random fill (clusters exhausted)")
        rows = np.asarray(rows, dtype=int)
        return Picks(candidates[rows], np.asarray(scores), reasons)
