"""Map selection geometry to item rows: a uniform grid index over the 2-D map.

Rasterised maps (datashader) give the server only the geometry of a box, a lasso or a tap, not
the indices of the points under it. :class:`PointIndex` answers those questions for 10^6 points in
a few tens of milliseconds: the grid cells are classified against the polygon once (inside,
outside or on its boundary) and only the points in boundary cells are tested exactly.
"""

from __future__ import annotations

import numpy as np

from core.errors import DataError

__all__ = ["PointIndex", "points_in_polygon"]


def points_in_polygon(px: np.ndarray, py: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Even-odd rule: which points ``(px, py)`` lie inside the polygon with vertices ``(xs, ys)``.

    The polygon is closed implicitly (last vertex joins the first). Vectorised over the points,
    looping over the polygon's edges.
    """
    px = np.asarray(px, dtype=np.float64)
    py = np.asarray(py, dtype=np.float64)
    xs = np.asarray(xs, dtype=np.float64)
    ys = np.asarray(ys, dtype=np.float64)
    inside = np.zeros(px.shape, dtype=bool)
    if len(xs) < 3 or px.size == 0:
        return inside
    x_prev, y_prev = xs[-1], ys[-1]
    for x_cur, y_cur in zip(xs, ys):
        if y_cur != y_prev:
            straddles = (y_cur > py) != (y_prev > py)
            if straddles.any():
                idx = np.flatnonzero(straddles)
                x_cross = x_cur + (py[idx] - y_cur) * (x_prev - x_cur) / (y_prev - y_cur)
                inside[idx[px[idx] < x_cross]] ^= True
        x_prev, y_prev = x_cur, y_cur
    return inside


class PointIndex:
    """A uniform grid over ``xy`` answering box, lasso and tap queries with row numbers.

    Parameters
    ----------
    xy:
        ``(n, 2)`` finite coordinates (the map positions).
    points_per_cell:
        Target mean occupancy of a grid cell; sets the grid resolution.
    """

    def __init__(self, xy: np.ndarray, points_per_cell: float = 16.0) -> None:
        xy = np.asarray(xy, dtype=np.float64)
        if xy.ndim != 2 or xy.shape[1] != 2:
            raise DataError(f"map coordinates must have shape (n, 2), got {xy.shape}")
        if not np.isfinite(xy).all():
            raise DataError("map coordinates contain NaN or infinite values; recompute the map")
        self.x = np.ascontiguousarray(xy[:, 0])
        self.y = np.ascontiguousarray(xy[:, 1])
        n = len(xy)
        side = int(np.clip(np.sqrt(max(n, 1) / points_per_cell), 1, 2048))
        if n:
            self.x0, self.x1 = float(self.x.min()), float(self.x.max())
            self.y0, self.y1 = float(self.y.min()), float(self.y.max())
        else:
            self.x0 = self.x1 = self.y0 = self.y1 = 0.0
        # Square cells sized by the longer extent; a tiny pad keeps the maxima inside the grid.
        extent = max(self.x1 - self.x0, self.y1 - self.y0) or 1.0
        self.cw = self.ch = extent * (1 + 1e-9) / side
        self.shape = (max(1, int((self.y1 - self.y0) / self.ch) + 1),
                      max(1, int((self.x1 - self.x0) / self.cw) + 1))
        rows, cols = self.shape
        col = np.minimum(((self.x - self.x0) / self.cw).astype(np.int64), cols - 1)
        row = np.minimum(((self.y - self.y0) / self.ch).astype(np.int64), rows - 1)
        self.cell = (row * cols + col).astype(np.int32)

    def __len__(self) -> int:
        return len(self.x)

    # ------------------------------------------------------------------ queries
    def box(self, x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
        """Rows of the points inside the closed box (corners in any order), ascending."""
        xa, xb = sorted((float(x0), float(x1)))
        ya, yb = sorted((float(y0), float(y1)))
        mask = (self.x >= xa) & (self.x <= xb) & (self.y >= ya) & (self.y <= yb)
        return np.flatnonzero(mask)

    def lasso(self, xs, ys) -> np.ndarray:
        """Rows of the points inside the polygon ``(xs, ys)`` (even-odd rule), ascending."""
        xs = np.asarray(xs, dtype=np.float64).ravel()
        ys = np.asarray(ys, dtype=np.float64).ravel()
        if xs.shape != ys.shape:
            raise DataError(f"lasso: {xs.size} x values but {ys.size} y values")
        keep = np.isfinite(xs) & np.isfinite(ys)
        xs, ys = xs[keep], ys[keep]
        if len(xs) < 3 or len(self) == 0:
            return np.empty(0, dtype=np.int64)
        state = self._classify_cells(xs, ys)  # 0 outside, 1 inside, 2 boundary
        point_state = state[self.cell]
        inside = np.flatnonzero(point_state == 1)
        edge = np.flatnonzero(point_state == 2)
        hit = edge[points_in_polygon(self.x[edge], self.y[edge], xs, ys)]
        return np.sort(np.concatenate([inside, hit]))

    def nearest(self, x: float, y: float, radius: float | None = None) -> int | None:
        """Row of the point nearest ``(x, y)``, or ``None`` when none lies within ``radius``."""
        if len(self) == 0:
            return None
        if radius is None:
            d2 = (self.x - x) ** 2 + (self.y - y) ** 2
            return int(np.argmin(d2))
        rows = self.box(x - radius, y - radius, x + radius, y + radius)
        if rows.size == 0:
            return None
        d2 = (self.x[rows] - x) ** 2 + (self.y[rows] - y) ** 2
        best = int(np.argmin(d2))
        return int(rows[best]) if d2[best] <= radius * radius else None

    # ------------------------------------------------------------------ internals
    def _classify_cells(self, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
        rows, cols = self.shape
        state = np.zeros(rows * cols, dtype=np.int8)
        # Interior: a scanline through each row of cell centres; a centre is inside when an odd
        # number of polygon edges cross the line to its left.
        centres_x = self.x0 + (np.arange(cols) + 0.5) * self.cw
        centres_y = self.y0 + (np.arange(rows) + 0.5) * self.ch
        xa, ya = xs, ys
        xb, yb = np.roll(xs, -1), np.roll(ys, -1)
        grid = state.reshape(rows, cols)
        r_lo = max(int((ys.min() - self.y0) / self.ch) - 1, 0)
        r_hi = min(int((ys.max() - self.y0) / self.ch) + 1, rows - 1)
        for r in range(r_lo, r_hi + 1):
            cy = centres_y[r]
            straddles = (ya > cy) != (yb > cy)
            if not straddles.any():
                continue
            t = (cy - ya[straddles]) / (yb[straddles] - ya[straddles])
            crossings = np.sort(xa[straddles] + t * (xb[straddles] - xa[straddles]))
            grid[r] = (np.searchsorted(crossings, centres_x) % 2).astype(np.int8)
        # Boundary: every cell an edge passes through. Sample edges at a quarter cell and mark the
        # 3x3 neighbourhood of each sample, which covers every cell the edge touches.
        xa, ya, xb, yb = self._clip_edges(xa, ya, xb, yb)
        step = 0.25 * min(self.cw, self.ch)
        lengths = np.hypot(xb - xa, yb - ya)
        counts = np.maximum(np.ceil(lengths / step).astype(np.int64), 1)
        seg = np.repeat(np.arange(len(xa)), counts)
        starts = np.repeat(np.cumsum(counts) - counts, counts)
        frac = (np.arange(counts.sum()) - starts) / counts[seg]
        sx = np.concatenate([xa[seg] + frac * (xb[seg] - xa[seg]), xb])
        sy = np.concatenate([ya[seg] + frac * (yb[seg] - ya[seg]), yb])
        sc = np.floor((sx - self.x0) / self.cw).astype(np.int64)
        sr = np.floor((sy - self.y0) / self.ch).astype(np.int64)
        for dr in (-1, 0, 1):
            for dc in (-1, 0, 1):
                rr, cc = sr + dr, sc + dc
                ok = (rr >= 0) & (rr < rows) & (cc >= 0) & (cc < cols)
                grid[rr[ok], cc[ok]] = 2
        return state

    def _clip_edges(self, xa, ya, xb, yb):
        """Clip polygon edges to the grid (plus one cell) so sampling cost follows the grid."""
        lo_x, hi_x = self.x0 - self.cw, self.x0 + (self.shape[1] + 1) * self.cw
        lo_y, hi_y = self.y0 - self.ch, self.y0 + (self.shape[0] + 1) * self.ch
        t_lo, t_hi = np.zeros(len(xa)), np.ones(len(xa))
        keep = np.ones(len(xa), dtype=bool)
        for p0, d, lo, hi in ((xa, xb - xa, lo_x, hi_x), (ya, yb - ya, lo_y, hi_y)):
            flat = d == 0
            keep &= ~flat | ((p0 >= lo) & (p0 <= hi))
            with np.errstate(divide="ignore", invalid="ignore"):
                t1, t2 = (lo - p0) / d, (hi - p0) / d
            t_lo = np.where(flat, t_lo, np.maximum(t_lo, np.minimum(t1, t2)))
            t_hi = np.where(flat, t_hi, np.minimum(t_hi, np.maximum(t1, t2)))
        keep &= t_lo <= t_hi
        dx, dy = xb - xa, yb - ya
        return (xa + t_lo * dx)[keep], (ya + t_lo * dy)[keep], (xa + t_hi * dx)[keep], (ya + t_hi * dy)[keep]
