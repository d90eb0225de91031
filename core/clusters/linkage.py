"""``linkage``: clusters as connected components of the kNN-graph links a small model trusts.

The model (torch) maps every item through a small MLP and scores a pair from the two codes
(``|g_i - g_j|``, ``g_i * g_j``) and their distance. It is trained on pairs of expert-labelled
items that are near each other among the labelled ones (same class = link, different = no link);
anchors are weighted by reverse-imbalance weighted sampling (RIWS, ``n_c ** -1`` per class) so the
few links around a rare class count as much as the head's many, then links are balanced
positive/negative. Applied to every edge of the embedding's approximate kNN graph, the edges it
scores at least ``threshold`` are kept and the clusters are their connected components; a
component of fewer than ``min_size`` items (outliers) joins its nearest neighbour's cluster. Without labels of two classes there is nothing to
learn: it falls back to ``kmeans`` and says so in the result's ``note``.

``head="gcn"`` replaces the per-item MLP by a small graph network over each item's kNN
neighbourhood (two rounds of mean aggregation: the neighbours' mean embedding is part of the
input, then the mean of the neighbours' codes is mixed into each code); training pairs, RIWS and
the pair scorer are the same.
"""

from __future__ import annotations

import numpy as np

from core.clusters.base import ClusterMethod, ClusterResult, relabel
from core.clusters.graph import components, knn_graph, reduced
from core.errors import ConfigError

EDGE_CHUNK = 1 << 18
LINKAGE_HEADS = ("mlp", "gcn")


class LinkageClusters(ClusterMethod):
    """Learned links on the kNN graph (``n_neighbors`` per item), components of confident ones."""

    name = "linkage"
    needs_labels = True

    def __init__(self, n_neighbors: int = 10, threshold: float = 0.5, pair_neighbors: int = 10,
                 hidden: int = 32, epochs: int = 150, min_size: int = 3, max_share: float = 0.5,
                 linkage_head: str = "mlp", seed: int = 0) -> None:
        self.n_neighbors = n_neighbors
        self.min_size = min_size
        self.max_share = max_share
        self.threshold = threshold
        self.pair_neighbors = pair_neighbors
        self.hidden = hidden
        self.epochs = epochs
        self.linkage_head = linkage_head
        self.seed = seed

    def _fit_predict(self, x: np.ndarray, labels: np.ndarray) -> ClusterResult:
        if self.linkage_head not in LINKAGE_HEADS:
            raise ConfigError(f"clusters.linkage_head: {self.linkage_head!r} is not a linkage head; "
                              f"choose one of: {', '.join(LINKAGE_HEADS)}")
        known = np.flatnonzero(labels != None)  # noqa: E711  (object array)
        classes = sorted({str(v) for v in labels[known]})
        if len(classes) < 2:
            from core.clusters.kmeans import KMeansClusters

            why = ("no item is labelled" if not len(known) else
                   f"only class {classes[0]!r} is labelled")
            fallback = KMeansClusters(seed=self.seed).fit_predict(x)
            return ClusterResult(fallback.assignment, self.name, fallback.used,
                                 f"linkage learns which neighbours belong together from expert labels "
                                 f"of at least two classes, but {why}: fell back to kmeans")
        z = reduced(x, self.seed)
        nbr, dist = knn_graph(z, self.n_neighbors, self.seed)
        scale = local_scale(dist)
        codes = np.searchsorted(classes, labels[known].astype(str))
        graph = nbr if self.linkage_head == "gcn" else None
        model = train_link_model(z, scale, known, codes, seed=self.seed,
                                 pair_neighbors=self.pair_neighbors, hidden=self.hidden,
                                 epochs=self.epochs, graph=graph)
        src, dst, d = mutual_edges(nbr, dist)
        logit = edge_logits(model, z, scale, src, dst, d, graph=graph)
        keep = logit >= np.log(self.threshold / (1 - self.threshold))
        code = np.full(len(x), -1, np.int64)
        code[known] = codes
        joined = split_oversized(len(x), src[keep], dst[keep], logit[keep], code,
                                 max(self.min_size, int(self.max_share * len(x))))
        assignment = absorb_small(joined, nbr, self.min_size, keep=code >= 0)
        return ClusterResult(relabel(assignment), self.name, self.name)


def split_oversized(n: int, src: np.ndarray, dst: np.ndarray, logit: np.ndarray, code: np.ndarray,
                    max_size: int, step: float = 0.1, rounds: int = 30) -> np.ndarray:
    """:func:`constrained_components`, then, while a cluster is larger than ``max_size`` (one
    chain of confident links through several classes), drop the least trusted ``step`` of its
    links and join again."""
    assignment = constrained_components(n, src, dst, logit, code)
    for _ in range(rounds):
        big = np.bincount(assignment) > max_size
        inside = big[assignment[src]] & (assignment[src] == assignment[dst])
        if not inside.any():
            break
        drop = inside & (logit <= np.quantile(logit[inside], step))
        src, dst, logit = src[~drop], dst[~drop], logit[~drop]
        assignment = constrained_components(n, src, dst, logit, code)
    return assignment


def constrained_components(n: int, src: np.ndarray, dst: np.ndarray, p: np.ndarray,
                           code: np.ndarray) -> np.ndarray:
    """Components of the links, joined most trusted first, never joining two groups that hold
    expert labels of different classes (the labels' cannot-links): one wrong link can no longer
    chain a labelled rare class into its labelled neighbour. ``code``: class code or -1 per item."""
    order = np.argsort(-p, kind="stable")
    root = _union_in_order(n, np.ascontiguousarray(src[order]), np.ascontiguousarray(dst[order]),
                           code.astype(np.int64))
    return relabel(root)


def _union_in_order(n, src, dst, code):
    try:
        from numba import njit
    except ImportError:  # pragma: no cover - numba comes with umap-learn
        return _union_python(n, src, dst, code)
    global _UNION_JIT
    if _UNION_JIT is None:
        _UNION_JIT = njit(cache=True, nogil=True)(_union_python)
    return _UNION_JIT(n, src, dst, code)


_UNION_JIT = None


def _union_python(n, src, dst, code):
    """Union-find over the edges in order, skipping joins of two differently labelled groups;
    returns each item's root."""
    parent = np.arange(n)
    label = code.copy()
    for e in range(len(src)):
        a = src[e]
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        b = dst[e]
        while parent[b] != b:
            parent[b] = parent[parent[b]]
            b = parent[b]
        if a == b or (label[a] >= 0 and label[b] >= 0 and label[a] != label[b]):
            continue
        if a < b:
            a, b = b, a
        parent[a] = b
        if label[b] < 0:
            label[b] = label[a]
    root = np.empty(n, np.int64)
    for i in range(n):
        r = i
        while parent[r] != r:
            r = parent[r]
        root[i] = r
    return root


def absorb_small(assignment: np.ndarray, nbr: np.ndarray, min_size: int,
                 keep: np.ndarray | None = None) -> np.ndarray:
    """Clusters of fewer than ``min_size`` items (outliers no trusted link holds: their neighbours
    have closer ones) join the cluster of their nearest neighbour outside them, unless they hold
    an item of ``keep`` (an expert-labelled item: a rare class may be that small)."""
    if nbr.shape[1] == 0 or min_size <= 1:
        return assignment
    small = np.bincount(assignment)[assignment] < min_size
    if keep is not None and keep.any():
        held = np.zeros(assignment.max() + 1, bool)
        held[assignment[keep]] = True
        small &= ~held[assignment]
    rows = np.flatnonzero(small)
    if not len(rows):
        return assignment
    other = (nbr[rows] >= 0) & (assignment[np.maximum(nbr[rows], 0)] != assignment[rows][:, None])
    has = other.any(axis=1)
    rows, first = rows[has], other[has].argmax(axis=1)
    src = np.concatenate([np.arange(len(assignment)), rows])
    dst = np.concatenate([_representative(assignment), nbr[rows, first]])
    return components(len(assignment), src, dst)


def _representative(assignment: np.ndarray) -> np.ndarray:
    """For every item, the first item of its cluster (edges that keep each cluster together)."""
    _, first = np.unique(assignment, return_index=True)
    return first[assignment]


def local_scale(dist: np.ndarray) -> np.ndarray:
    """Each item's mean distance to its kNN (its local scale; a tiny floor keeps duplicates apart
    from division by zero)."""
    d = np.where(np.isfinite(dist), dist, np.nan)
    scale = np.nanmean(d, axis=1) if d.shape[1] else np.ones(len(d))
    floor = max(float(np.nanmedian(scale)) * 1e-3, 1e-6) if np.isfinite(scale).any() else 1.0
    return np.where(np.isfinite(scale), np.maximum(scale, floor), floor).astype(np.float32)


def mutual_edges(nbr: np.ndarray, dist: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The kNN graph's mutual edges (each neighbour of the other), once each: ``(src, dst, d)``.
    A one-sided edge is how a small group's items reach into a big neighbour; mutual ones are not."""
    n, k = nbr.shape
    src = np.repeat(np.arange(n, dtype=np.int64), k)
    dst = nbr.ravel()
    d = dist.ravel()
    ok = dst >= 0
    src, dst, d = src[ok], dst[ok], d[ok]
    lo, hi = np.minimum(src, dst), np.maximum(src, dst)
    key = lo * n + hi
    order = np.argsort(key, kind="stable")
    key = key[order]
    twice = np.flatnonzero(key[1:] == key[:-1])  # the pair appeared from both ends
    take = order[twice]
    return lo[take], hi[take], d[take]


def _link_net(dim: int, hidden: int, graph: bool = False):
    import torch

    class LinkNet(torch.nn.Module):
        """Node codes g(x); a link logit from |g_i - g_j|, g_i * g_j and the distance in units
        of the two items' local scales (smaller and larger). With ``graph`` (the ``gcn`` head)
        the input is ``[x, mean x of its kNN]`` and each code also takes in the mean code of the
        item's kNN (``mix``, residual)."""

        def __init__(self) -> None:
            super().__init__()
            self.encode = torch.nn.Sequential(torch.nn.Linear(dim * (2 if graph else 1), hidden),
                                              torch.nn.ReLU(), torch.nn.Linear(hidden, hidden))
            self.mix = (torch.nn.Sequential(torch.nn.ReLU(), torch.nn.Linear(2 * hidden, hidden))
                        if graph else None)
            self.head = torch.nn.Linear(2 * hidden + 2, 1)

        def codes(self, h, around=None):
            """Codes from the items' own ``h`` and (gcn) their neighbours' mean ``h``."""
            return h if self.mix is None else h + self.mix(torch.cat([h, around], dim=1))

        def link(self, gi, gj, r):
            return self.head(torch.cat([(gi - gj).abs(), gi * gj, r], dim=1))[:, 0]

    return LinkNet()


def neighbour_mean(v: np.ndarray, nbr: np.ndarray, chunk: int = 1 << 15) -> np.ndarray:
    """Each row's mean of ``v`` over its kNN (``nbr``, -1 = none; zeros where it has none)."""
    out = np.zeros_like(v)
    for i in range(0, len(v), chunk):
        idx = nbr[i:i + chunk]
        ok = idx >= 0
        total = (v[np.maximum(idx, 0)] * ok[..., None]).sum(axis=1)
        out[i:i + chunk] = total / np.maximum(ok.sum(axis=1), 1)[:, None]
    return out


def _around(h, pos, ok):
    """Torch twin of :func:`neighbour_mean` over a table ``h`` (``pos``: rows of it, ``ok``: valid)."""
    w = ok.to(h.dtype)
    return (h[pos] * w[..., None]).sum(dim=1) / w.sum(dim=1).clamp(min=1)[:, None]


def label_pairs(z: np.ndarray, rows: np.ndarray, codes: np.ndarray, pair_neighbors: int
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Training pairs ``(a, b, same)`` (positions in ``rows``): each labelled item with its
    ``pair_neighbors`` nearest labelled items, the nearest pairs the labels can judge."""
    from core.query.neighbours import exact_nearest

    m = len(rows)
    kk = min(pair_neighbors + 1, m)
    idx, _ = exact_nearest(z[rows], z[rows], kk)
    a = np.repeat(np.arange(m), kk)
    b = idx.ravel()
    ok = a != b
    a, b = a[ok], b[ok]
    return a, b, (codes[a] == codes[b])


def _ratios(d, si, sj):
    """The distance in units of the smaller and the larger local scale of the two items."""
    import torch

    lo, hi = torch.minimum(si, sj), torch.maximum(si, sj)
    return torch.stack([torch.log1p(d / lo), torch.log1p(d / hi)], dim=1)


def train_link_model(z: np.ndarray, scale: np.ndarray, rows: np.ndarray, codes: np.ndarray, *,
                     seed: int, pair_neighbors: int = 10, hidden: int = 32, epochs: int = 150,
                     graph: np.ndarray | None = None):
    """The link model fitted on labelled pairs with RIWS anchor weights (rare classes count more).

    Besides the pairs of labelled items (far apart when labels are few), every labelled item is
    paired with a copy of itself moved by its local scale, a link: the near, same-class pairs the
    model then judges on the kNN graph. Positives and negatives each carry half the weight.
    ``graph``: the kNN lists (``gcn`` head; the copy keeps its original's neighbourhood)."""
    import torch

    from core.models.samplers import item_weights

    a, b, same = label_pairs(z, rows, codes, pair_neighbors)
    m, dim = len(rows), z.shape[1]
    rng = np.random.default_rng(seed)
    step = rng.normal(size=(m, dim)).astype(np.float32)
    step *= (scale[rows] / np.linalg.norm(step, axis=1).clip(1e-12))[:, None]
    nodes = np.concatenate([z[rows], z[rows] + step])
    nearby = None
    if graph is not None:
        inputs = node_inputs(z, graph)
        own = inputs[rows, dim:]
        nodes = np.concatenate([nodes, np.concatenate([own, own])], axis=1)
        idx = graph[rows]
        table = np.unique(idx[idx >= 0])
        pos = np.searchsorted(table, np.maximum(idx, 0)).clip(0, max(len(table) - 1, 0))
        nearby = (inputs[table], np.concatenate([pos, pos]), np.concatenate([idx >= 0, idx >= 0]))
    node_scale = np.concatenate([scale[rows], scale[rows]])
    a = np.concatenate([a, np.arange(m)])
    b = np.concatenate([b, np.arange(m) + m])
    same = np.concatenate([same, np.ones(m, bool)])
    riws = item_weights(codes, int(codes.max()) + 1, "riws")
    w = riws[a % m]
    for side in (same, ~same):
        if side.any():
            w[side] = 0.5 * w[side] / w[side].sum()
    with torch.random.fork_rng(devices=[]):  # seeded weights without touching the global stream
        torch.manual_seed(seed)
        net = _link_net(dim, hidden, graph=graph is not None)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny model: more threads only spin (70x the CPU time at 2)
    try:
        _fit(net, nodes, node_scale, a, b, same, w, epochs, nearby)
    finally:
        torch.set_num_threads(threads)
    net.eval()
    return net


def node_inputs(z: np.ndarray, graph: np.ndarray | None) -> np.ndarray:
    """What the link model reads per item: ``z`` (``mlp``), or ``[z, mean z of its kNN]`` (``gcn``)."""
    return z if graph is None else np.concatenate([z, neighbour_mean(z, graph)], axis=1)


def _fit(net, nodes, node_scale, a, b, same, w, epochs, nearby=None) -> None:
    """Full-batch Adam on the weighted pair loss (``nearby``: the gcn head's neighbour table)."""
    import torch

    dim = nodes.shape[1] if nearby is None else nodes.shape[1] // 2  # distances: z part only
    x = torch.as_tensor(nodes)
    ta, tb = torch.as_tensor(a), torch.as_tensor(b)
    s = torch.as_tensor(node_scale)
    gap = np.linalg.norm(nodes[a, :dim] - nodes[b, :dim], axis=1).astype(np.float32)
    r = _ratios(torch.as_tensor(gap), s[ta], s[tb])
    y = torch.as_tensor(same.astype(np.float32))
    weight = torch.as_tensor((w / w.sum()).astype(np.float32))
    if nearby is not None:
        table, pos, ok = (torch.as_tensor(v) for v in nearby)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2, weight_decay=1e-4)
    for _ in range(epochs):
        opt.zero_grad()
        around = None if nearby is None else _around(net.encode(table), pos, ok)
        g = net.codes(net.encode(x), around)
        logit = net.link(g[ta], g[tb], r)
        loss = (torch.nn.functional.binary_cross_entropy_with_logits(logit, y, reduction="none")
                * weight).sum()
        loss.backward()
        opt.step()


def edge_logits(net, z: np.ndarray, scale: np.ndarray, src: np.ndarray, dst: np.ndarray,
                d: np.ndarray, graph: np.ndarray | None = None) -> np.ndarray:
    """The model's link logit of every edge ``src -- dst`` (in chunks: bounded memory)."""
    import torch

    out = np.empty(len(src), np.float32)
    s = torch.as_tensor(scale)
    inputs = node_inputs(z, graph)
    with torch.no_grad():
        h = torch.cat([net.encode(torch.as_tensor(inputs[i:i + EDGE_CHUNK]))
                       for i in range(0, len(z), EDGE_CHUNK)])
        if graph is None:
            g = net.codes(h)
        else:
            nb = torch.as_tensor(graph)
            step = 1 << 15  # rows x k x hidden gathered at a time
            g = torch.cat([net.codes(h[i:i + step], _around(h, nb[i:i + step].clamp(min=0),
                                                            nb[i:i + step] >= 0))
                           for i in range(0, len(z), step)])
        for i in range(0, len(src), EDGE_CHUNK):
            a = torch.as_tensor(src[i:i + EDGE_CHUNK])
            b = torch.as_tensor(dst[i:i + EDGE_CHUNK])
            r = _ratios(torch.as_tensor(d[i:i + EDGE_CHUNK]), s[a], s[b])
            out[i:i + EDGE_CHUNK] = net.link(g[a], g[b], r).numpy()
    return out
