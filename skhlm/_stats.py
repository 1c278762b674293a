"""Sufficient statistics of the random intercept model.

One pass over the data builds everything the fit needs (notation:
skhlm._objective): the cross-products X'X, X'y, y'y and, per group, the count, the column
sums and the response sum.  After that nothing in the fit touches the n rows again.

The statistics are of a standardized problem: columns centered (when there is an
intercept, at the mean of a sample of rows: near their mean) and scaled to unit
root-mean-square, and y likewise.  Centering happens
before the cross-products are formed, so large offsets in the data cost no digits;
scaling happens after, on the p x p arrays and on the sums by group size, so it is
exact up to rounding.  The (G, k) group sums are never rescaled or copied: they are
read through a linear map (:class:`GroupSums`).  :class:`Standardization` records the
affine map back to the user's units.
"""

from contextlib import nullcontext
from dataclasses import dataclass, replace
from functools import cache

import numpy as np

# Rows per block of the single pass: at most 2**15 rows and 4 MiB of float64, so that
# the centered block stays in the cache and bounds the extra memory.  At n = 1e6, 2**15
# rows (2.5 MiB) were fastest for p = 10 (2**16: +15%), and 4096 rows for p = 100, 25%
# faster than 2**15 rows (26 MiB).
_BLOCK_ROWS = 1 << 15
_BLOCK_BYTES = 1 << 22

# Rows in the sample whose mean centers the columns (all rows below this many).
_CENTER_SAMPLE_ROWS = 4096

# Up to this many columns the pass runs BLAS on one thread: the products of a block are
# too small to gain from a second one, and when the other core is busy, OpenBLAS's
# threads wait on each other (at n = 1e6, p = 10, with a second process busy: 420 ms
# with 2 threads, 32 ms with 1).  Wider designs keep BLAS's own setting.
_SERIAL_BLAS_MAX_COLUMNS = 64

# Up to this many parameters the algebra on p x p matrices after the pass (EM,
# inference) runs BLAS on one thread too: each product is small, and OpenBLAS's
# threads cost more than they save (REML EM at p = 100: 120 ms with 2 threads, 15 ms
# with 1; at p = 600: 1.3 s and 0.6 s).
_SERIAL_BLAS_MAX_PARAMS = 1000

try:
    # The loop of scipy.sparse's CSC-matrix-times-dense-matrix product, which adds into
    # its output.  Applied to the indicator of a block's groups, it adds each row to its
    # group's sums in place: 5-10 ms per 1e6 x 10 rows for 100 to 1e5 groups, where
    # np.bincount column by column takes 20-45 ms and the public sparse product,
    # which allocates a fresh (G, p) result per block, up to 190 ms at G = 5e5.
    from scipy.sparse._sparsetools import csc_matvec as _csc_matvec
    from scipy.sparse._sparsetools import csc_matvecs as _csc_matvecs
except ImportError:  # pragma: no cover - a private module of scipy; the fallback is tested
    _csc_matvec = _csc_matvecs = None


class NonFiniteStatistics(ValueError):
    """The cross-products are not finite: NaN or inf in the data, or overflow."""


# A column (or y) whose centered values have a root mean square below this is too
# small for float64: its squares, ~1e-300, are close to the subnormal range (below
# 2.2e-308), where products lose digits and then vanish.
_TINY_RMS = 1e-150


class TinyValues(ValueError):
    """Columns of X or y that vary by amounts too small to square in float64."""

    def __init__(self, spreads, response_spread):
        # spreads: {column index: largest |value - mean|}; response_spread: y's or None.
        self.spreads, self.response_spread = spreads, response_spread
        super().__init__(f"variation too small for float64: X columns {spreads}, y {response_spread}")


@dataclass(frozen=True)
class SizeClasses:
    """Sums over the groups of each distinct size.

    Every quantity of the likelihood and of an EM update is a sum over groups of a
    function of n_j times s_j s_j', s_j t_j, t_j^2, s_j or t_j (for instance
    A = X'X - sum_j c(n_j) s_j s_j').  Summed once per size class, they make each
    update cost O(K p^2) for K distinct sizes, whatever the number of groups
    (K <= sqrt(2 n)).
    """

    size: np.ndarray  # (K,) the distinct n_j
    count: np.ndarray  # (K,) groups of that size
    ss: np.ndarray  # (K, p, p) sum of s_j s_j'
    st: np.ndarray  # (K, p) sum of s_j t_j
    tt: np.ndarray  # (K,) sum of t_j^2
    s: np.ndarray  # (K, p) sum of s_j
    t: np.ndarray  # (K,) sum of t_j

    def residual_squares(self, beta):
        """sum over the groups of each class of r_j^2, r_j = t_j - s_j' beta."""
        ss_beta = self.ss @ beta
        return self.tt - 2.0 * self.st @ beta + ss_beta @ beta


@dataclass(frozen=True)
class _RawClassSums:
    size: np.ndarray  # (K,)
    count: np.ndarray  # (K,)
    products: np.ndarray  # (K, q, q)
    sums: np.ndarray  # (K, q)


def _raw_class_sums(sizes, x, y):
    """Per size class, the cross-products and sums of the rows D_j = [n_j, x_j', t_j].

    ``sizes`` is ascending, so each class is a contiguous slice of the groups: one
    product per class, no gather.  Returns the distinct sizes, the classes' counts,
    P (K, q, q) = sum_j D_j D_j' and S (K, q) = sum_j D_j over each class (q = k + 2).
    The n_j column is constant within a class, so its products come from the sums.
    """
    n_groups, k = x.shape
    starts = np.flatnonzero(np.diff(sizes, prepend=-1.0))
    stops = np.append(starts[1:], n_groups)
    products = np.empty((starts.shape[0], k + 2, k + 2))
    sums = np.empty((starts.shape[0], k + 2))
    # Column sums as products with ones (BLAS): 4x faster than x.sum(axis=0).
    ones = np.ones(int((stops - starts).max(initial=0)))
    for c, (start, stop) in enumerate(zip(starts, stops)):
        xc, yc = x[start:stop], y[start:stop]
        products[c, 1:-1, 1:-1] = xc.T @ xc
        products[c, 1:-1, -1] = products[c, -1, 1:-1] = yc @ xc
        products[c, -1, -1] = yc @ yc
        sums[c, 1:-1] = ones[: stop - start] @ xc
        sums[c, -1] = yc.sum()
    size = sizes[starts]
    count = (stops - starts).astype(np.float64)
    sums[:, 0] = count * size
    products[:, 0, :] = size[:, None] * sums
    products[:, :, 0] = products[:, 0, :]
    return _RawClassSums(size, count, products, sums)


def _mapped_classes(raw, x_map, y_map):
    """:class:`SizeClasses` of s_j = x_map' D_j and t_j = y_map' D_j, from the raw
    class sums (O(K k^2 p))."""
    p_x = raw.products @ x_map
    return SizeClasses(
        size=raw.size,
        count=raw.count,
        ss=np.ascontiguousarray(x_map.T @ p_x),
        st=np.ascontiguousarray(np.einsum("kqp,q->kp", p_x, y_map)),
        tt=np.einsum("q,kqr,r->k", y_map, raw.products, y_map),
        s=raw.sums @ x_map,
        t=raw.sums @ y_map,
    )


@dataclass(frozen=True)
class GroupSums:
    """Per-group sums, as the pass built them, and the linear map to the model's.

    Row j holds D_j = [n_j, x_j', t_j]: the group's size and its sums of the centered
    columns and response.  The model's sums are s_j = x_map' D_j and t_j = y_map' D_j:
    standardizing, dropping redundant columns and reparametrizing (the profile's
    constraints) change the small maps, never the (G, k) array.

    Rows are the groups in order of size (:class:`skhlm._groups.GroupCoding`); the
    per-group results are returned in the order of the labels (``level``).
    """

    sizes: np.ndarray  # (G,) float64, ascending
    x: np.ndarray  # (G, k)
    y: np.ndarray  # (G,)
    level: np.ndarray  # (G,) row j holds the sums of label number level[j]
    x_map: np.ndarray  # (k + 2, p)
    y_map: np.ndarray  # (k + 2,)

    @classmethod
    def of(cls, sizes, xsum, ysum):
        """From the model's s_j and t_j, given in any order of the groups."""
        sizes = np.asarray(sizes, dtype=np.float64)
        level = np.argsort(sizes, kind="stable")
        p = xsum.shape[1]
        x_map = np.vstack([np.zeros((1, p)), np.eye(p), np.zeros((1, p))])
        y_map = np.zeros(p + 2)
        y_map[-1] = 1.0
        return cls(sizes[level], xsum[level], ysum[level], level, x_map, y_map)

    @property
    def n_groups(self):
        return self.sizes.shape[0]

    def mapped(self, x_map, y_map):
        return replace(self, x_map=x_map, y_map=y_map)

    def size_classes(self):
        """:class:`SizeClasses` of s_j = x_map' D_j and t_j = y_map' D_j: O(G k^2)."""
        return _mapped_classes(_raw_class_sums(self.sizes, self.x, self.y), self.x_map, self.y_map)

    def residual_sums(self, beta, by_level=True):
        """r_j(beta) = t_j - s_j' beta, by label (or in size order): one product
        with the (G, k) sums."""
        r = self._design_times(self.y_map - self.x_map @ beta)
        return self.by_level(r) if by_level else r

    def group_sizes(self):
        return self.by_level(self.sizes)

    def xsum(self):
        return self.by_level(self._design_times(self.x_map))

    def ysum(self):
        return self.by_level(self._design_times(self.y_map))

    def _design_times(self, coef):
        """D @ coef for a (k + 2,) or (k + 2, m) coef, without forming D."""
        out = self.x @ coef[1:-1]
        out += np.multiply.outer(self.sizes, coef[0])
        out += np.multiply.outer(self.y, coef[-1])
        return out

    def by_level(self, values):
        """Per-group values in size order, rearranged by label."""
        out = np.empty_like(values)
        out[self.level] = values
        return out


@dataclass(frozen=True)
class SufficientStats:
    """Cross-products of the standardized design, in the model's parametrization.

    Column 0 of the design is the intercept when the model has one.  ``groups`` holds
    the per-group sums s_j = X_j'1 and t_j = 1'y_j; ``classes`` their sums by group
    size, computed from them (O(G k^2)) unless given.
    """

    xtx: np.ndarray  # (p, p)
    xty: np.ndarray  # (p,)
    yty: float
    n_obs: int
    groups: GroupSums
    classes: SizeClasses = None

    def __post_init__(self):
        if self.classes is None:
            object.__setattr__(self, "classes", self.groups.size_classes())

    @property
    def n_groups(self):
        return self.groups.n_groups

    @property
    def n_params(self):
        return self.xtx.shape[0]

    # Per group, by label (materialized on each call: for tests and reports).
    @property
    def group_sizes(self):
        return self.groups.group_sizes()

    @property
    def group_xsum(self):
        return self.groups.xsum()

    @property
    def group_ysum(self):
        return self.groups.ysum()


@dataclass(frozen=True)
class Standardization:
    """The affine map between the user's units and the standardized problem.

    Internal column k (after the intercept) is ``(X[:, kept[k]] - x_offset) / x_scale``
    and the internal response is ``(y - y_offset) / y_scale``.  With an intercept the
    offsets are a sample's means (near the means, not equal to them); without one, 0.
    """

    x_offset: np.ndarray  # (n_features,)
    x_scale: np.ndarray  # (n_features,)
    y_offset: float
    y_scale: float
    fit_intercept: bool
    kept: np.ndarray  # (n_features,) bool: columns that are not linearly redundant

    def coef_to_user(self, beta):
        """Map internal fixed effects to ``(coef, intercept)`` in the user's units."""
        coef = np.zeros(self.x_scale.shape[0])
        slopes = beta[1:] if self.fit_intercept else beta
        coef[self.kept] = slopes * self.y_scale / self.x_scale[self.kept]
        if not self.fit_intercept:
            return coef, 0.0
        intercept = self.y_offset + self.y_scale * beta[0] - coef @ self.x_offset
        return coef, float(intercept)

    def log_jacobian(self, n_obs, method):
        """What standardizing added to the log-likelihood, to be subtracted.

        The ML density of y loses ``n log y_scale``; the REML density, a density of
        n - p error contrasts, loses ``(n - p) log y_scale`` plus ``sum log x_scale``
        through its log det(X'V^-1 X) term (centering has unit Jacobian).
        """
        log_sy = np.log(self.y_scale)
        if method == "ml":
            return n_obs * log_sy
        n_params = int(self.kept.sum()) + self.fit_intercept
        return (n_obs - n_params) * log_sy + np.log(self.x_scale[self.kept]).sum()


class _GroupAdder:
    """Adds rows of a block to their groups' sums in place: ``out[codes[i]] += values[i]``.

    Holds the index and data arrays of the block's (G x m) indicator matrix, the same
    for every block, so each call allocates nothing of size G.  ``out`` and ``values``
    are C-contiguous float64; the codes must lie in range(G), which the caller
    checks once (the sparse loop does not).
    """

    def __init__(self, max_rows, codes_dtype):
        index_dtype = codes_dtype if codes_dtype in (np.int32, np.int64) else np.intp
        self.indptr = np.arange(max_rows + 1, dtype=index_dtype)
        self.ones = np.ones(max_rows)

    def __call__(self, out, codes, values):
        n_rows = codes.shape[0]
        codes = np.ascontiguousarray(codes, dtype=self.indptr.dtype)
        indptr, ones = self.indptr[: n_rows + 1], self.ones[:n_rows]
        n_groups = out.shape[0]
        if _csc_matvecs is None:  # scipy without its private loop: tested
            from scipy import sparse

            indicator = sparse.csc_array((ones, codes, indptr), shape=(n_groups, n_rows))
            out += indicator @ values
        elif values.ndim == 1:
            _csc_matvec(n_groups, n_rows, indptr, codes, ones, values, out)
        else:
            n_cols = values.shape[1]
            _csc_matvecs(n_groups, n_rows, n_cols, indptr, codes, ones, values.reshape(-1), out.reshape(-1))


def kept_columns(xtx, tol=1e-7):
    """Columns of a Gram matrix that are not linear combinations of earlier ones.

    A sequential (unpivoted) Cholesky: column k is dropped when the part of it not
    explained by the kept earlier columns has squared norm below ``tol`` times its
    own.  Earlier columns win, as in R's lm() and lme4.  O(p^3) on the p x p matrix.
    """
    p = xtx.shape[0]
    kept = np.zeros(p, dtype=bool)
    chol = np.zeros((p, p))
    for k in range(p):
        idx = np.flatnonzero(kept)
        # Solve L_kk' z = xtx[kept, k]; the residual norm is xtx[k, k] - z'z.
        z = _forward(chol[np.ix_(idx, idx)], xtx[idx, k]) if idx.size else np.zeros(0)
        resid = xtx[k, k] - z @ z
        if xtx[k, k] > 0 and resid > tol * xtx[k, k]:
            kept[k] = True
            chol[idx, k] = z
            chol[k, k] = np.sqrt(resid)
    return kept


def _forward(upper, rhs):
    from scipy.linalg import solve_triangular

    return solve_triangular(upper, rhs, trans="T", lower=False)


def _blas_threads(n_columns, serial_up_to=_SERIAL_BLAS_MAX_COLUMNS):
    if n_columns > serial_up_to:
        return nullcontext()
    return _blas_controller().limit(limits=1, user_api="blas")


def small_matrix_blas(n_params):
    """Context for the algebra on p x p matrices: serial BLAS unless p is large."""
    return _blas_threads(n_params, _SERIAL_BLAS_MAX_PARAMS)


@cache
def _blas_controller():
    # Created once: finding the loaded BLAS libraries takes a few ms, a limit ~0.05 ms.
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def _centered_cross_products(X, y, codes, n_groups, x_offset, y_offset):
    """X'X, X'y, y'y and the group sums of the centered data, in one pass over the rows.

    Each block of rows is centered into a reused float64 buffer (the input is never
    copied whole) and enters X'X by one matrix product.
    """
    n, k = X.shape
    n_block = min(n, _BLOCK_ROWS, max(256, _BLOCK_BYTES // (8 * max(k, 1))))
    xtx, xty, yty = np.zeros((k, k)), np.zeros(k), 0.0
    gx, gy = np.zeros((n_groups, k)), np.zeros(n_groups)
    xc_buffer, yc_buffer = np.empty((n_block, k)), np.empty(n_block)
    add_to_groups = _GroupAdder(n_block, codes.dtype)
    # A C-ordered block is centered as one flat vector against the tiled offset: a
    # contiguous subtraction, 2x faster than broadcasting over rows of k elements.
    flat = X.flags.c_contiguous
    tiled_offset = np.tile(x_offset, n_block) if flat else None
    for start in range(0, n, n_block):
        stop = min(start + n_block, n)
        m = stop - start
        xc, yc = xc_buffer[:m], yc_buffer[:m]
        if flat:
            np.subtract(X[start:stop].reshape(-1), tiled_offset[: m * k], out=xc.reshape(-1))
        else:
            np.subtract(X[start:stop], x_offset, out=xc)
        np.subtract(y[start:stop], y_offset, out=yc)
        block_codes = codes[start:stop]
        xtx += xc.T @ xc
        xty += yc @ xc
        yty += yc @ yc
        add_to_groups(gx, block_codes, xc)
        add_to_groups(gy, block_codes, yc)
    return xtx, xty, float(yty), gx, gy


def _refuse_tiny_values(X, y, x_scale, y_scale, x_offset, y_offset):
    """Raise :class:`TinyValues` for a column or y that varies, but by amounts too
    small for float64.  One that is constant up to rounding is left to the rank check
    (columns) or to the identifiability check (y)."""

    def spread(values, offset):
        # Only on this rare path: a read of the suspect column.
        deviation = float(np.max(np.abs(values - offset)))
        return deviation if deviation > 1e-12 * float(np.max(np.abs(values))) else None

    spreads = {int(j): spread(X[:, j], x_offset[j]) for j in np.flatnonzero(x_scale < _TINY_RMS)}
    spreads = {j: s for j, s in spreads.items() if s is not None}
    response = spread(y, y_offset) if y.shape[0] and y_scale < _TINY_RMS else None
    if spreads or response is not None:
        raise TinyValues(spreads, response)


def compute_statistics(X, y, coding, *, fit_intercept=True):
    """Standardize the problem and build its sufficient statistics in one pass.

    Parameters
    ----------
    X : ndarray of shape (n, k), float32 or float64
    y : ndarray of shape (n,)
    coding : skhlm._groups.GroupCoding
        The rows' groups, numbered in order of size.
    fit_intercept : bool

    Returns
    -------
    stats : SufficientStats
    standardization : Standardization
    """
    n, k = X.shape
    if fit_intercept:
        # Centering needs a point near the mean, not the mean itself (the intercept
        # column takes up the rest, see below): the mean of an evenly spaced sample
        # of rows spares a pass over X.
        step = max(1, n // _CENTER_SAMPLE_ROWS)
        with np.errstate(invalid="ignore"):  # +inf and -inf in a column: caught below
            x_offset = X[::step].mean(axis=0, dtype=np.float64)
            y_offset = float(y[::step].mean(dtype=np.float64))
    else:
        x_offset = np.zeros(k)
        y_offset = 0.0
    codes, n_groups = coding.codes, coding.n_groups
    # The sparse loop of the pass writes wherever a code points: check them once.
    if n and (codes.min() < 0 or codes.max() >= n_groups):
        raise ValueError(f"codes must lie in range(n_groups={n_groups}).")
    sizes = coding.sizes.astype(np.float64)
    with _blas_threads(k), np.errstate(over="ignore", invalid="ignore"):
        xtx, xty, yty, gx, gy = _centered_cross_products(X, y, codes, n_groups, x_offset, y_offset)
        raw_classes = _raw_class_sums(sizes, gx, gy)
    # A NaN or inf in the data, or values whose squares overflow, make these
    # non-finite: the data need no separate pass to be checked.
    if not (np.isfinite(xtx).all() and np.isfinite(xty).all() and np.isfinite(yty)):
        raise NonFiniteStatistics(
            "The squares of X or y overflow float64 (values beyond about 1e150 in "
            "magnitude). Rescale them before fitting, e.g. divide by a power of 10."
        )

    # Scale after the pass: the arrays are small and the division is exact enough.
    # The (G, k) group sums are scaled through the maps below, never in place.
    x_scale = np.sqrt(np.diag(xtx) / n)
    y_scale = float(np.sqrt(yty / n))
    _refuse_tiny_values(X, y, x_scale, y_scale, x_offset, y_offset)
    x_scale[x_scale == 0] = 1.0
    y_scale = y_scale or 1.0
    xtx = xtx / np.outer(x_scale, x_scale)
    xty = xty / (x_scale * y_scale)
    yty = yty / y_scale**2
    if fit_intercept:
        # The intercept column's sums are computed, not assumed 0: the columns are
        # centered at a sample's mean, and the statistics are exactly those of the
        # design [1, Xc] with that centering.
        class_sums = raw_classes.sums.sum(axis=0)
        col_sums = class_sums[1:-1] / x_scale
        xtx = np.block([[np.array([[n]]), col_sums[None, :]], [col_sums[:, None], xtx]])
        xty = np.concatenate([[class_sums[-1] / y_scale], xty])

    kept_all = kept_columns(xtx)
    xtx = xtx[np.ix_(kept_all, kept_all)]
    xty = xty[kept_all]
    kept = kept_all[1:] if fit_intercept else kept_all

    # D_j = [n_j, x_j', t_j] -> s_j = [n_j (intercept), x_j[kept] / x_scale[kept]].
    rows = np.flatnonzero(kept) + 1
    x_map = np.zeros((k + 2, kept_all.sum()))
    x_map[rows, np.arange(int(fit_intercept), x_map.shape[1])] = 1.0 / x_scale[kept]
    if fit_intercept:
        x_map[0, 0] = 1.0
    y_map = np.zeros(k + 2)
    y_map[-1] = 1.0 / y_scale
    stats = SufficientStats(
        xtx=xtx,
        xty=xty,
        yty=float(yty),
        n_obs=n,
        groups=GroupSums(sizes, gx, gy, coding.level, x_map, y_map),
        classes=_mapped_classes(raw_classes, x_map, y_map),
    )
    standardization = Standardization(
        x_offset=x_offset,
        x_scale=x_scale,
        y_offset=y_offset,
        y_scale=y_scale,
        fit_intercept=fit_intercept,
        kept=kept,
    )
    return stats, standardization
