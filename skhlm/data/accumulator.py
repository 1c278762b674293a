"""Building the sufficient statistics: add chunks of rows, merge, finalize.

:class:`StatsAccumulator` sums a chunk's rows in one pass (:meth:`~StatsAccumulator.
add`), combines with another accumulator (:meth:`~StatsAccumulator.merge`), and turns
its sums into the fit's :class:`~skhlm.data.stats.SufficientStats` and
:class:`~skhlm.data.units.Standardization` (:meth:`~StatsAccumulator.finalize`).  A
fit in memory is one ``add`` and one ``finalize``; out-of-core and distributed fits
are more ``add`` and ``merge`` calls on the same sums.

Each chunk is centered before its cross-products are formed, at a reference point
near its mean (the mean of a sample of its rows), so large offsets in the data cost
no digits.  Two accumulators are merged by moving both to their combined mean, as in
Chan, Golub & LeVeque's pairwise update of the moments: the merged sums are those of
the data centered at a point near their mean, in whatever order the chunks came.
Group sums are keyed by label, so a group may span chunks; the groups are ordered by
size, which the fit's size classes need, only in ``finalize``.
"""

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from .._blas import blas_threads
from .row_pass import (
    _CENTER_SAMPLE_ROWS,
    NonFiniteStatistics,
    TinyValues,
    _centered_cross_products,
    _refuse_tiny_values,
)
from .finalize import _finalize

# The pass's exceptions are raised through add(), and imported from here.
__all__ = ["NonFiniteStatistics", "StatsAccumulator", "TinyValues", "compute_statistics"]

@dataclass(frozen=True)
class _Sums:
    """A chunk's sums, about its reference point (x_ref, y_ref).

    Rows of the group arrays are groups: row j has ``sizes[j]`` rows of label
    ``levels[level[j]]`` and their centered sums ``gx[j]``, ``gy[j]``.  The rows are in
    the order of a GroupCoding (ascending size) when ``by_size``.

    With precision weights every sum is weighted: ``sizes`` holds each group's sum of
    weights (float), ``weight`` the total, and ``n`` counts the rows of positive
    weight.  Without weights ``weight`` is ``n``: a row's weight is 1.
    """

    n: int
    weight: float
    weighted: bool
    log_weights: float  # sum of log w over the rows of positive weight
    x_ref: np.ndarray  # (k,)
    y_ref: float
    xtx: np.ndarray  # (k, k) sum of (x - x_ref)(x - x_ref)'
    xty: np.ndarray  # (k,)
    yty: float
    sizes: np.ndarray  # (G,) int64
    gx: np.ndarray  # (G, k)
    gy: np.ndarray  # (G,)
    level: np.ndarray  # (G,) intp
    levels: np.ndarray  # (G,) the labels
    by_size: bool
    slopes: tuple = ()  # positions in X of the random slopes' columns
    gz: np.ndarray = None  # (G, len(slopes), k + 1): see row_pass._centered_cross_products

    def moved_to(self, x_ref, y_ref):
        """The same sums about another reference point: with d = old - new,
        sum (x - new)(x - new)' = sum (x - old)(x - old)' + d s' + s d' + n d d',
        s = sum (x - old), and each group's sums gain n_j d (weighted: n and n_j the
        sums of the weights)."""
        dx, dy = self.x_ref - x_ref, self.y_ref - y_ref
        sx, sy = self.gx.sum(axis=0), float(self.gy.sum())
        n = self.weight
        return replace(
            self,
            x_ref=x_ref,
            y_ref=y_ref,
            xtx=self.xtx + np.outer(dx, sx) + np.outer(sx, dx) + n * np.outer(dx, dx),
            xty=self.xty + dx * sy + sx * dy + n * dx * dy,
            yty=self.yty + 2.0 * dy * sy + n * dy * dy,
            gx=self.gx + np.multiply.outer(self.sizes, dx),
            gy=self.gy + self.sizes * dy,
            gz=None if self.gz is None else self._moved_slope_sums(dx, dy),
        )

    def _moved_slope_sums(self, dx, dy):
        """gz about the new point: with z' = z + a (a = dx at the slopes) and
        d' = d + e (e = (dx, dy)), sum w z'd'' = sum w z d' + a s_d' + s_z e' + n a e',
        s_d = the group's sums of d and s_z of z, about the old point."""
        a, e = dx[list(self.slopes)], np.append(dx, dy)
        s_d = np.column_stack([self.gx, self.gy])
        s_z = self.gx[:, list(self.slopes)]
        moved = self.gz + a[None, :, None] * s_d[:, None, :]
        moved += s_z[:, :, None] * e[None, None, :]
        moved += self.sizes.astype(np.float64)[:, None, None] * np.outer(a, e)[None]
        return moved

    def by_label(self):
        """(sizes, gx, gy, gz) with row i the group of label levels[i]."""
        order = np.empty_like(self.level)
        order[self.level] = np.arange(self.level.shape[0])
        gz = None if self.gz is None else self.gz[order]
        return self.sizes[order], self.gx[order], self.gy[order], gz


def _reference_point(X, y, weights, fit_intercept):
    """The point a chunk is centered at: near its mean with an intercept, else 0."""
    n, k = X.shape
    if fit_intercept:
        # Centering needs a point near the mean, not the mean itself (the intercept
        # column takes up the rest, see finalize): the mean of an evenly spaced sample
        # of rows spares a pass over X.
        step = max(1, n // _CENTER_SAMPLE_ROWS)
        sample_w = None if weights is None else weights[::step]
        if sample_w is not None and not sample_w.sum() > 0:
            sample_w = None  # the sample's rows all weigh 0: their plain mean
        with np.errstate(invalid="ignore"):  # +inf and -inf in a column: caught below
            if sample_w is None:
                x_offset = X[::step].mean(axis=0, dtype=np.float64)
                y_offset = float(y[::step].mean(dtype=np.float64))
            else:
                x_offset = (sample_w @ X[::step]) / sample_w.sum()
                y_offset = float(sample_w @ y[::step] / sample_w.sum())
    else:
        x_offset = np.zeros(k)
        y_offset = 0.0
    return x_offset, y_offset


def _chunk_sums(X, y, coding, fit_intercept, weights=None, slopes=(), offset=None):
    """One pass over a chunk's rows: its cross-products and group sums, centered at
    ``offset`` or a point near its mean (with an intercept) or at 0; weighted by the
    precision ``weights`` (finite, >= 0: the caller checks) when given."""
    n, k = X.shape
    x_offset, y_offset = _reference_point(X, y, weights, fit_intercept) if offset is None else offset
    codes, n_groups = coding.codes, coding.n_groups
    # The sparse loop of the pass writes wherever a code points: check them once.
    if n and (codes.min() < 0 or codes.max() >= n_groups):
        raise ValueError(f"codes must lie in range(n_groups={n_groups}).")
    with blas_threads(k), np.errstate(over="ignore", invalid="ignore"):
        xtx, xty, yty, gx, gy, gz = _centered_cross_products(
            X, y, codes, n_groups, x_offset, y_offset, weights, slopes
        )
    # A NaN or inf in the data, or values whose squares overflow, make these
    # non-finite: the data need no separate pass to be checked.
    if not (np.isfinite(xtx).all() and np.isfinite(xty).all() and np.isfinite(yty)):
        raise NonFiniteStatistics(
            "The squares of X or y overflow float64 (values beyond about 1e150 in "
            "magnitude). Rescale them before fitting, e.g. divide by a power of 10."
        )
    if weights is None:
        total, sizes, n_rows, log_weights = float(n), coding.sizes, n, 0.0
    else:
        total = float(weights.sum())
        sizes = np.bincount(codes, weights=weights, minlength=n_groups)
        positive = weights if weights.all() else weights[weights > 0]
        n_rows, log_weights = positive.shape[0], float(np.log(positive).sum())
    if total > 0:
        _refuse_tiny_values(
            X, y, np.sqrt(np.diag(xtx) / total), float(np.sqrt(yty / total)), x_offset, y_offset
        )
    return _Sums(
        n=n_rows,
        weight=total,
        weighted=weights is not None,
        log_weights=log_weights,
        x_ref=x_offset,
        y_ref=y_offset,
        xtx=xtx,
        xty=xty,
        yty=yty,
        sizes=sizes,
        gx=gx,
        gy=gy,
        level=coding.level,
        levels=coding.levels,
        by_size=True,
        slopes=tuple(slopes),
        gz=gz,
    )


def _sorted_levels(levels):
    """Whether the labels are in ascending order (False for labels that do not
    compare, e.g. of mixed types, or for a Categorical's own order)."""
    try:
        return bool(np.all(levels[:-1] < levels[1:]))
    except TypeError:
        return False


def _union(levels, index, other):
    """The labels ``levels`` (whose pd.Index is ``index``) then those of ``other`` not
    among them, where each of ``other`` is in that union, and how many are new.
    Labels of different dtypes are kept apart, as pd.Index keeps 1 and "1" apart."""
    where = index.get_indexer(other)
    new = where < 0
    n_new = int(new.sum())
    where[new] = levels.shape[0] + np.arange(n_new)
    if levels.dtype == other.dtype:
        return np.concatenate([levels, other[new]]), where, n_new
    return np.concatenate([levels.astype(object), other[new].astype(object)]), where, n_new


def _grown(values, n_new):
    """``values`` with ``n_new`` rows of zeros after its own (a new array)."""
    return np.concatenate([values, np.zeros((n_new,) + values.shape[1:], dtype=values.dtype)])


def _add_by_label(targets, where, sources):
    """Add each of the (sizes, gx, gy, gz) ``sources`` into its target's rows ``where``,
    in place (gz may be None on both sides)."""
    for target, source in zip(targets, sources):
        if source is not None:
            target[where] += source


def _merged(a, b, fit_intercept):
    """The sums of two chunks together, by label: about their combined mean with an
    intercept (both move to it), about 0 without one."""
    if fit_intercept:
        n = a.weight + b.weight
        x_ref = (a.weight * a.x_ref + a.gx.sum(axis=0) + b.weight * b.x_ref + b.gx.sum(axis=0)) / n
        y_ref = float((a.weight * a.y_ref + a.gy.sum() + b.weight * b.y_ref + b.gy.sum()) / n)
        a, b = a.moved_to(x_ref, y_ref), b.moved_to(x_ref, y_ref)
    # The union of the labels: a's, then b's new ones; sorted when both were.
    levels, where, n_new = _union(a.levels, pd.Index(a.levels), b.levels)
    weighted = a.weighted or b.weighted
    size_a, gx, gy, gz = (None if v is None else _grown(v, n_new) for v in a.by_label())
    sizes = size_a.astype(np.float64) if weighted else size_a
    _add_by_label((sizes, gx, gy, gz), where, b.by_label())
    if _sorted_levels(a.levels) and _sorted_levels(b.levels):
        try:
            order = np.argsort(levels)  # unique labels: any sort will do
        except TypeError:  # each side sorts, together they do not (1 and "1"): as given
            order = slice(None)
        levels, sizes, gx, gy = levels[order], sizes[order], gx[order], gy[order]
        gz = None if gz is None else gz[order]
    return _Sums(
        n=a.n + b.n,
        weight=a.weight + b.weight,
        weighted=weighted,
        log_weights=a.log_weights + b.log_weights,
        x_ref=a.x_ref,  # both are there now
        y_ref=a.y_ref,
        xtx=a.xtx + b.xtx,
        xty=a.xty + b.xty,
        yty=a.yty + b.yty,
        sizes=sizes,
        gx=gx,
        gy=gy,
        level=np.arange(levels.shape[0]),
        levels=levels,
        by_size=False,
        slopes=a.slopes,
        gz=gz,
    )


class StatsAccumulator:
    """The sufficient statistics of a random intercept model, chunk by chunk.

    Parameters
    ----------
    fit_intercept : bool, default=True
        Whether the model has an intercept: the data are centered only then.

    Examples
    --------
    >>> import numpy as np
    >>> from skhlm.data.accumulator import StatsAccumulator
    >>> from skhlm.data.groups import encode_groups
    >>> rng = np.random.default_rng(0)
    >>> X, y, g = rng.normal(size=(100, 2)), rng.normal(size=100), np.arange(100) % 7
    >>> whole = StatsAccumulator()
    >>> whole.add(X, y, encode_groups(g, 100))
    >>> parts = StatsAccumulator()
    >>> parts.add(X[:30], y[:30], encode_groups(g[:30], 30))
    >>> parts.add(X[30:], y[30:], encode_groups(g[30:], 70))
    >>> a, b = whole.finalize()[0], parts.finalize()[0]
    >>> bool(np.allclose(a.xtx, b.xtx) and np.allclose(a.group_ysum, b.group_ysum))
    True
    """

    def __init__(self, *, fit_intercept=True, slopes=()):
        self.fit_intercept = fit_intercept
        self.slopes = tuple(int(s) for s in slopes)
        self._sums = None
        self._index = None  # with in-place adds: the labels of the arrays by label

    @property
    def n_obs(self):
        return 0 if self._sums is None else self._sums.n

    def add(self, X, y, coding, weights=None, *, in_place=False):
        """Add a chunk of rows: X (n, k) float, y (n,), their :class:`GroupCoding`
        and, optionally, their precision weights (n,), finite and >= 0.

        Raises NonFiniteStatistics for NaN, inf or overflow, TinyValues for columns
        that vary by too little for float64, and leaves the sums as they were.

        ``in_place``: add into the sums' own arrays, when the chunk's point is within
        a standard deviation of theirs (it is then centered at theirs: the digits lost
        are at most a factor 2 of rounding), instead of merging into new ones.  For a
        stream of many chunks: the sums before the call are then not kept.
        """
        sums, own = self._sums, None
        if in_place and sums is not None and sums.xtx.shape[0] == X.shape[1]:
            own = _reference_point(X, y, weights, self.fit_intercept)
            spread = np.sqrt(np.diag(sums.xtx) / sums.weight)
            near = np.all(np.abs(own[0] - sums.x_ref) <= spread)
            near = near and abs(own[1] - sums.y_ref) <= np.sqrt(sums.yty / sums.weight)
            if near:
                offset = (sums.x_ref, sums.y_ref)
                chunk = _chunk_sums(X, y, coding, self.fit_intercept, weights, self.slopes, offset)
                self._add_in_place(chunk)
                return
        # Centered at its own point (``own``, when computed above: not twice).
        self._combine(_chunk_sums(X, y, coding, self.fit_intercept, weights, self.slopes, own))

    def _add_in_place(self, chunk):
        """Add a chunk's sums, about the same point, into arrays by label that this
        accumulator owns (made on the first call), growing them for new labels."""
        sums = self._sums
        if self._index is None:
            sizes, gx, gy, gz = sums.by_label()  # copies: ours to write
            sums = replace(sums, sizes=sizes, gx=gx, gy=gy, gz=gz, level=np.arange(sizes.shape[0]), by_size=False)
            self._index = pd.Index(sums.levels)
            self._sortable = _sorted_levels(sums.levels)
        levels, where, n_new = _union(sums.levels, self._index, chunk.levels)
        if n_new:
            sums = replace(
                sums, sizes=_grown(sums.sizes, n_new), gx=_grown(sums.gx, n_new), gy=_grown(sums.gy, n_new),
                gz=None if sums.gz is None else _grown(sums.gz, n_new), levels=levels, level=np.arange(levels.shape[0]),
            )
            self._index = pd.Index(levels)
        self._sortable = self._sortable and _sorted_levels(chunk.levels)
        sizes = sums.sizes.astype(np.float64) if chunk.weighted and sums.sizes.dtype.kind == "i" else sums.sizes
        _add_by_label((sizes, sums.gx, sums.gy, sums.gz), where, chunk.by_label())
        self._sums = replace(
            sums, n=sums.n + chunk.n, weight=sums.weight + chunk.weight, weighted=sums.weighted or chunk.weighted,
            log_weights=sums.log_weights + chunk.log_weights, xtx=sums.xtx + chunk.xtx, xty=sums.xty + chunk.xty,
            yty=sums.yty + chunk.yty, sizes=sizes,
        )

    def merge(self, other):
        """Add the sums of another accumulator (of the same columns and intercept)."""
        if other.fit_intercept != self.fit_intercept:
            raise ValueError("Cannot merge statistics with and without an intercept.")
        if other.slopes != self.slopes:
            raise ValueError(f"Cannot merge statistics of random slopes {other.slopes} into {self.slopes}.")
        if other._sums is not None:
            self._combine(other._canonical())

    def _canonical(self):
        """The sums, with labels added in place put back in order (sorted where each
        chunk's were, as merging sorts them)."""
        sums = self._sums
        if self._index is None or not self._sortable:
            return sums
        try:
            order = np.argsort(sums.levels)
        except TypeError:
            return sums
        return replace(sums, sizes=sums.sizes[order], gx=sums.gx[order], gy=sums.gy[order],
                       gz=None if sums.gz is None else sums.gz[order], levels=sums.levels[order])

    def _combine(self, sums):
        if self._sums is not None:
            self._sums, self._index = self._canonical(), None
        if self._sums is not None and self._sums.xtx.shape != sums.xtx.shape:
            raise ValueError(
                f"The chunk has {sums.xtx.shape[0]} columns; earlier chunks had "
                f"{self._sums.xtx.shape[0]}."
            )
        self._sums = sums if self._sums is None else _merged(self._sums, sums, self.fit_intercept)

    def finalize(self):
        """Standardize the sums: the fit's statistics and the map back to user units.

        Returns
        -------
        stats : SufficientStats
        standardization : Standardization
        levels : ndarray of shape (n_groups,)
            The group labels, in the order of ``stats``' per-group results.
        """
        if self._sums is None:
            raise ValueError("No rows were added.")
        return _finalize(self._canonical(), self.fit_intercept)


def compute_statistics(X, y, coding, *, fit_intercept=True, weights=None):
    """The statistics of one chunk of rows: one ``add`` and ``finalize``.

    Parameters
    ----------
    X : ndarray of shape (n, k), float32 or float64
    y : ndarray of shape (n,)
    coding : skhlm.data.groups.GroupCoding
        The rows' groups, numbered in order of size.
    fit_intercept : bool
    weights : ndarray of shape (n,), optional
        Precision weights, finite and >= 0.

    Returns
    -------
    stats : SufficientStats
    standardization : Standardization
    """
    accumulator = StatsAccumulator(fit_intercept=fit_intercept)
    accumulator.add(X, y, coding, weights)
    return accumulator.finalize()[:2]
