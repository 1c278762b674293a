"""Sufficient statistics of the random intercept model.

One pass over the data builds everything the fit needs (notation:
skhlm._objective): the cross-products X'X, X'y, y'y and, per group, the count, the column
sums and the response sum.  After that nothing in the fit touches the n rows again.

The statistics are of a standardized problem: columns centered (when there is an
intercept) and scaled to unit root-mean-square, and y likewise.  Centering happens
before the cross-products are formed, so large offsets in the data cost no digits;
scaling happens after, on the p x p and G x p arrays, so it is exact up to rounding.
:class:`Standardization` records the affine map back to the user's units.
"""

from dataclasses import dataclass

import numpy as np

# Rows per block of the single pass: the centered block (n_block x p float64) stays
# small enough for the cache and bounds the extra memory at ~n_block * p * 8 bytes.
_BLOCK_ROWS = 1 << 15


@dataclass(frozen=True)
class SufficientStats:
    """Cross-products of the standardized design, in the model's parametrization.

    Column 0 of the design is the intercept when the model has one.  ``group_xsum``
    and ``group_ysum`` are the sums s_j = X_j'1 and t_j = 1'y_j.
    """

    xtx: np.ndarray  # (p, p)
    xty: np.ndarray  # (p,)
    yty: float
    n_obs: int
    group_sizes: np.ndarray  # (G,) float64
    group_xsum: np.ndarray  # (G, p)
    group_ysum: np.ndarray  # (G,)

    @property
    def n_groups(self):
        return self.group_sizes.shape[0]

    @property
    def n_params(self):
        return self.xtx.shape[0]


@dataclass(frozen=True)
class Standardization:
    """The affine map between the user's units and the standardized problem.

    Internal column k (after the intercept) is ``(X[:, kept[k]] - x_offset) / x_scale``
    and the internal response is ``(y - y_offset) / y_scale``.
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


def group_sums(codes, n_groups, values):
    """Per-group column sums of ``values`` (n,) or (n, k), by integer ``codes``."""
    if values.ndim == 1:
        return np.bincount(codes, weights=values, minlength=n_groups)
    out = np.empty((n_groups, values.shape[1]))
    for k in range(values.shape[1]):
        out[:, k] = np.bincount(codes, weights=values[:, k], minlength=n_groups)
    return out


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


def compute_statistics(X, y, codes, n_groups, *, fit_intercept=True):
    """Standardize the problem and build its sufficient statistics in one pass.

    Parameters
    ----------
    X : ndarray of shape (n, k), float32 or float64
    y : ndarray of shape (n,)
    codes : ndarray of shape (n,), int
        Group index of each row, in ``range(n_groups)``.
    n_groups : int
    fit_intercept : bool

    Returns
    -------
    stats : SufficientStats
    standardization : Standardization
    """
    n, k = X.shape
    if fit_intercept:
        x_offset = X.mean(axis=0, dtype=np.float64)
        y_offset = float(y.mean(dtype=np.float64))
    else:
        x_offset = np.zeros(k)
        y_offset = 0.0

    xtx = np.zeros((k, k))
    xty = np.zeros(k)
    yty = 0.0
    gx = np.zeros((n_groups, k))
    gy = np.zeros(n_groups)
    for start in range(0, n, _BLOCK_ROWS):
        rows = slice(start, start + _BLOCK_ROWS)
        xc = np.subtract(X[rows], x_offset, dtype=np.float64)
        yc = np.subtract(y[rows], y_offset, dtype=np.float64)
        c = codes[rows]
        xtx += xc.T @ xc
        xty += xc.T @ yc
        yty += yc @ yc
        gx += group_sums(c, n_groups, xc)
        gy += group_sums(c, n_groups, yc)
    sizes = np.bincount(codes, minlength=n_groups).astype(np.float64)

    # Scale after the pass: the arrays are small and the division is exact enough.
    x_scale = np.sqrt(np.diag(xtx) / n)
    x_scale[x_scale == 0] = 1.0
    y_scale = float(np.sqrt(yty / n)) or 1.0
    xtx = xtx / np.outer(x_scale, x_scale)
    xty = xty / (x_scale * y_scale)
    yty = yty / y_scale**2
    gx = gx / x_scale
    gy = gy / y_scale

    if fit_intercept:
        # The intercept column's sums are computed, not assumed 0, so that the
        # statistics stay exactly those of the design [1, Xc].
        col_sums = gx.sum(axis=0)
        xtx = np.block([[np.array([[n]]), col_sums[None, :]], [col_sums[:, None], xtx]])
        xty = np.concatenate([[gy.sum()], xty])
        gx = np.column_stack([sizes, gx])

    kept_all = kept_columns(xtx)
    if not kept_all.all():
        xtx = xtx[np.ix_(kept_all, kept_all)]
        xty = xty[kept_all]
        gx = gx[:, kept_all]
    kept = kept_all[1:] if fit_intercept else kept_all

    stats = SufficientStats(
        xtx=xtx,
        xty=xty,
        yty=float(yty),
        n_obs=n,
        group_sizes=sizes,
        group_xsum=gx,
        group_ysum=gy,
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
