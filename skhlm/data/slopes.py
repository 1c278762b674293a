"""The per-group statistics of random slopes: Z_j'Z_j, Z_j'X_j and Z_j'y_j.

The fixed-effect statistics, the standardization and each group's raw products of
the slope columns with every column and y all come from the accumulator's one pass
(skhlm.data.accumulator, with ``slopes``); this maps them to the standardized units.
Internally Z holds the intercept and the slope columns as the design holds them
(centered and scaled); for lme4's diagonal covariance
``(1 + x || g)``, whose model changes when a slope column is shifted, the slope
columns are only scaled.  :func:`slope_statistics` returns the statistics and the
(q, q) map ``T`` with user Z = internal Z T^-1: a random effect b (internal) is
``y_scale * T b`` in the user's units.
"""

import numpy as np

from ..engine.vector import SlopeStats


def slope_statistics(stats, units, slopes, *, diagonal):
    """The random-slope statistics, in the standardized units of ``units``, from the
    accumulator's per-group sums (its pass sums each slope's products with every
    column and y: ``stats.groups.z``, :class:`~skhlm.data.accumulator.StatsAccumulator`
    with ``slopes``).

    Parameters
    ----------
    stats : SufficientStats
        Finalized by an accumulator with these ``slopes``.
    units : Standardization
        The same accumulator's (an intercept is required).
    slopes : sequence of int
        Positions in X of the columns with random slopes (kept columns).
    diagonal : bool

    Returns
    -------
    ztz, ztd : per-group Z'Z (G, q, q) and Z'[X, y] (G, q, p + 1), groups in the
        statistics' order
    T : ndarray of shape (q, q)
    """
    slopes = np.asarray(slopes, dtype=np.intp)
    groups = stats.groups
    # A slope's column in the design: the kept columns, after the intercept's column
    # when the fixed part has one.  Z's first column is always the ones.
    fi = int(units.fit_intercept)
    spos = (np.cumsum(units.kept) - 1 + fi)[slopes].astype(np.intp)
    p, q, G, k = units.n_params, slopes.size + 1, groups.n_groups, units.kept.size
    ztd = np.empty((G, q, p + 1))
    # Row 0, the intercept's: each group's sums of the design and y.
    ztd[:, 0, :p] = groups._design_times(groups.x_map)
    ztd[:, 0, p] = groups._design_times(groups.y_map)
    # The slopes' rows: the raw products about the accumulator's point, which is the
    # units' offset, scaled as the design's columns are.
    slope_scale = units.x_scale[slopes]
    if slopes.size:
        if fi:
            ztd[:, 1:, 0] = groups.x[:, slopes] / slope_scale
        kept_scale = units.x_scale[units.kept]
        ztd[:, 1:, fi:p] = groups.z[:, :, :k][:, :, units.kept] / np.multiply.outer(slope_scale, kept_scale)
        ztd[:, 1:, p] = groups.z[:, :, k] / (slope_scale * units.y_scale)
    # Z'Z: its slope columns are columns of Z'X; the ones' column is the groups'
    # sizes and the slopes' sums (row 0 of Z'X).
    ztz = np.empty((G, q, q))
    ztz[:, :, 1:] = ztd[:, :, spos]
    ztz[:, 0, 0] = groups.sizes
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
