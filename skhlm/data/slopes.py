"""The per-group statistics of random slopes: Z_j'Z_j, Z_j'X_j and Z_j'y_j.

The fixed-effect statistics and the standardization come from the accumulator's pass
(skhlm.data.accumulator); a second pass, in blocks of rows, adds each row's products
z x' and z y to its group.  Internally Z holds the intercept and the slope columns as
the design holds them (centered and scaled); for lme4's diagonal covariance
``(1 + x || g)``, whose model changes when a slope column is shifted, the slope
columns are only scaled.  :func:`slope_statistics` returns the statistics and the
(q, q) map ``T`` with user Z = internal Z T^-1: a random effect b (internal) is
``y_scale * T b`` in the user's units.
"""

import numpy as np

from ..engine.vector import SlopeStats
from .row_pass import _BLOCK_BYTES, _BLOCK_ROWS, _GroupAdder


def slope_statistics(X, y, coding, units, slopes, *, diagonal, stats=None, weights=None):
    """The random-slope statistics of the rows, in the standardized units of ``units``.

    Parameters
    ----------
    X : ndarray of shape (n, k), float
    y : ndarray of shape (n,)
    coding : GroupCoding
    units : Standardization
        From the accumulator's pass over the same rows (an intercept is required).
    slopes : sequence of int
        Positions in X of the columns with random slopes (kept columns).
    diagonal : bool
    stats : SufficientStats, default=None
        The accumulator's statistics of the same rows: their per-group sums are the
        intercept's row of Z'X and Z'y, which the pass then does not recompute.
    weights : ndarray of shape (n,), default=None
        Precision weights > 0: the statistics are then Z'WZ and Z'W[X, y].

    Returns
    -------
    ztz, ztd : per-group Z'Z (G, q, q) and Z'[X, y] (G, q, p + 1), groups in the
        coding's order
    T : ndarray of shape (q, q)
    """
    slopes = np.asarray(slopes, dtype=np.intp)
    # A slope's column in the design: the kept columns, after the intercept's column
    # when the fixed part has one.  Z's first column is always the ones.
    fi = int(units.fit_intercept)
    spos = (np.cumsum(units.kept) - 1 + fi)[slopes].astype(np.intp)
    n = X.shape[0]
    p = units.n_params
    q = spos.shape[0] + 1
    G = coding.n_groups
    # The pass adds the slope rows only, when the intercept's row is known.
    first = 1 if stats is not None else 0
    width = (q - first) * (p + 1)
    out = np.zeros((G, width))
    if width:
        n_block = min(max(n, 1), _BLOCK_ROWS, max(256, _BLOCK_BYTES // (8 * max(width, p))))
        add = _GroupAdder(n_block, coding.codes.dtype)
        y_offset, y_scale = units.y_offset, units.y_scale
        for start in range(0, n, n_block):
            stop = min(start + n_block, n)
            d = units.design_rows(X[start:stop])
            dy = np.column_stack([d, (y[start:stop] - y_offset) / y_scale])
            z = d[:, spos] if first else np.column_stack([np.ones(stop - start), d[:, spos]])
            products = z[:, :, None] * dy[:, None, :]
            scale = None if weights is None else weights[start:stop]
            add(out, coding.codes[start:stop], np.ascontiguousarray(products.reshape(stop - start, width)), scale)
    # Z'[X, y] in one (G, q, p + 1) array (its slope rows from the pass).
    ztd = out.reshape(G, q, p + 1) if not first else np.empty((G, q, p + 1))
    if first:
        ztd[:, 1:] = out.reshape(G, q - 1, p + 1)
        del out
        # Row 0, the intercept's: each group's sums of the design and y (the groups
        # are in the coding's order, by size, as the accumulator's).
        groups = stats.groups
        ztd[:, 0, :p] = groups._design_times(groups.x_map)
        ztd[:, 0, p] = groups._design_times(groups.y_map)
    # Z'Z: its slope columns are columns of Z'X; the ones' column is the groups'
    # sizes and the slopes' sums (row 0 of Z'X).
    ztz = np.empty((G, q, q))
    ztz[:, :, 1:] = ztd[:, :, spos]
    ztz[:, 0, 0] = coding.sizes if weights is None else np.bincount(coding.codes, weights, G)
    ztz[:, 1:, 0] = ztz[:, 0, 1:]
    # Internal slope a is (x - offset) / scale: T maps internal effects to the user's.
    offset = units.x_offset[slopes] / units.x_scale[slopes]
    T = np.eye(q)
    T[0, 1:] = -offset
    T[np.arange(1, q), np.arange(1, q)] = 1.0 / units.x_scale[slopes]
    if diagonal and offset.any():
        # Uncentered slopes x / scale = internal + offset: Z_d = Z U, U = I + e_0 offset'.
        U = np.eye(q)
        U[0, 1:] = offset
        ztd = U.T @ ztd
        ztz = U.T @ ztz @ U
        T = T @ U
    ztz = 0.5 * (ztz + np.swapaxes(ztz, 1, 2))
    return ztz, ztd, T


def build(stats, ztz, ztd):
    """The :class:`~skhlm.engine.vector.SlopeStats` of the fixed-effect statistics and
    the per-group ones."""
    return SlopeStats(xtx=stats.xtx, xty=stats.xty, yty=stats.yty, n_obs=stats.n_obs, ztz=ztz, ztd=ztd)
