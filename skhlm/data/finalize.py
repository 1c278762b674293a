"""From the accumulator's sums to the fit's statistics: standardize, drop redundant
columns and weightless groups, order the groups by size (skhlm.data.accumulator)."""

from dataclasses import replace

import numpy as np

from .._blas import blas_threads
from .stats import GroupSums, SufficientStats, _mapped_classes, _raw_class_sums, kept_columns
from .units import Standardization


def _without_weightless_groups(sums):
    """The sums without the groups whose rows all weigh 0 (a zero weight drops its
    row, so such a group has no data); the labels left keep their order."""
    keep = sums.sizes > 0
    if keep.all():
        return sums
    labels = np.sort(sums.level[keep])
    level = np.empty(sums.level.shape[0], dtype=np.intp)
    level[labels] = np.arange(labels.shape[0])
    return replace(
        sums,
        sizes=sums.sizes[keep],
        gx=sums.gx[keep],
        gy=sums.gy[keep],
        gz=None if sums.gz is None else sums.gz[keep],
        level=level[sums.level[keep]],
        levels=sums.levels[labels],
    )


def _finalize(sums, fit_intercept):
    if sums.weighted:
        sums = _without_weightless_groups(sums)
    n, total, k = sums.n, sums.weight, sums.xtx.shape[0]
    sizes, gx, gy, gz, level = sums.sizes, sums.gx, sums.gy, sums.gz, sums.level
    if not sums.by_size and not sums.weighted:
        # Groups in order of size (ties in label order), so that each size class is
        # a contiguous slice (skhlm.data.stats.SizeClasses).  Weighted fits take the
        # groups one by one (PerGroup), in any order.
        level = np.argsort(sizes, kind="stable")
        sizes, gx, gy = sizes[level], gx[level], gy[level]
        gz = None if gz is None else gz[level]
    sizes = sizes.astype(np.float64)
    raw_classes = None
    if not sums.weighted:
        with blas_threads(k):
            raw_classes = _raw_class_sums(sizes, gx, gy)

    # Scale after the pass: the arrays are small and the division is exact enough.
    # The (G, k) group sums are scaled through the maps below, never in place.
    x_scale = np.sqrt(np.diag(sums.xtx) / total)
    y_scale = float(np.sqrt(sums.yty / total))
    x_scale[x_scale == 0] = 1.0
    y_scale = y_scale or 1.0
    xtx = sums.xtx / np.outer(x_scale, x_scale)
    xty = sums.xty / (x_scale * y_scale)
    yty = sums.yty / y_scale**2
    if fit_intercept:
        # The intercept column's sums are computed, not assumed 0: the columns are
        # centered at a point near their mean, and the statistics are exactly those
        # of the design [1, Xc] with that centering.
        if raw_classes is None:
            x_sum, y_sum = gx.sum(axis=0), gy.sum()
        else:
            class_sums = raw_classes.sums.sum(axis=0)
            x_sum, y_sum = class_sums[1:-1], class_sums[-1]
        bordered = np.empty((k + 1, k + 1))
        bordered[0, 0] = total
        bordered[0, 1:] = bordered[1:, 0] = x_sum / x_scale
        bordered[1:, 1:] = xtx
        xtx = bordered
        xty = np.concatenate([[y_sum / y_scale], xty])

    kept_all = kept_columns(xtx)
    xtx = np.ascontiguousarray(xtx[kept_all][:, kept_all])
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
    groups = GroupSums(sizes, gx, gy, level, x_map, y_map, z=gz)
    stats = SufficientStats(
        xtx=xtx,
        xty=xty,
        yty=float(yty),
        n_obs=n,
        groups=groups,
        classes=groups.per_group() if raw_classes is None else _mapped_classes(raw_classes, x_map, y_map),
        weight=total,
    )
    standardization = Standardization(
        x_offset=sums.x_ref,
        x_scale=x_scale,
        y_offset=sums.y_ref,
        y_scale=y_scale,
        fit_intercept=fit_intercept,
        kept=kept,
        log_weights=sums.log_weights,
    )
    return stats, standardization, sums.levels
