"""The scaled residuals of lme4's summary: the one statistic that needs the rows again.

An optional step after the fit, not part of its pass: a fit that keeps only the
sufficient statistics (chunks, partitions) has none, and its summary says so.
"""

import numpy as np


def scaled_residual_quantiles(X, y, coding, result, weights=None):
    """Min, quartiles and max of (y - x'beta - u_j) / sqrt(s2e) (lme4's scaled
    residuals), in the user's units, from the rows and their
    :class:`~skhlm.data.groups.GroupCoding`; times sqrt(w) with precision weights
    (lme4's Pearson residuals)."""
    s2e = result.variance_components[1]
    if s2e == 0:  # an exact least-squares fit: nothing to scale
        return np.zeros(5)
    coef, intercept = result.coef_and_intercept()
    resid = np.asarray(X @ coef, dtype=np.float64)
    resid += intercept
    if result.grouped:
        resid += _by_coding_label(result.random_effects[0], coding, weights)[coding.level][coding.codes]
    np.subtract(y, resid, out=resid)
    return quartiles(_pearson(resid, weights)) / np.sqrt(s2e)


# Rows per block of the random slopes' residuals.
_SLOPE_BLOCK = 1 << 16


def slope_residual_quantiles(X, y, coding, coef, intercept, effects, slope_columns, s2e, weights=None):
    """The same for random slopes, (y - x'beta - z'b_j) / sqrt(s2e), with ``effects``
    the (G, q) BLUPs in label order and ``slope_columns`` Z's columns of X after the
    ones: formed in blocks of rows, so one (n,) array is all of size n."""
    if s2e == 0:
        return np.zeros(5)
    resid = np.empty(X.shape[0])
    effects = _by_coding_label(effects, coding, weights)
    for start in range(0, X.shape[0], _SLOPE_BLOCK):
        rows = slice(start, start + _SLOPE_BLOCK)
        x, b = X[rows], effects.take(coding.level.take(coding.codes[rows]), axis=0)
        mean = x @ coef
        mean += b[:, 0]
        for k, column in enumerate(slope_columns, start=1):
            mean += x[:, column] * b[:, k]
        np.subtract(y[rows], mean, out=resid[rows])
        resid[rows] -= intercept
    return quartiles(_pearson(resid, weights)) / np.sqrt(s2e)


def _pearson(resid, weights):
    """lme4's Pearson residuals sqrt(w) r, of the rows of positive weight: a row of
    weight 0 is dropped from the fit, so from its residuals too."""
    if weights is None:
        return resid
    if not weights.all():
        resid, weights = resid[weights > 0], weights[weights > 0]
    resid *= np.sqrt(weights)
    return resid


def _by_coding_label(effects, coding, weights):
    """The fit's per-group rows (in the order of its labels) aligned with the labels of
    the rows' ``coding``.  They differ when a group's rows all weigh 0: the fit has no
    such group; its rows get zeros here, and _pearson drops them."""
    if effects.shape[0] == coding.levels.shape[0]:
        return effects
    weighed = np.bincount(coding.codes, weights=weights, minlength=coding.n_groups) > 0
    kept = np.zeros(coding.levels.shape[0], dtype=bool)
    kept[coding.level[weighed]] = True
    aligned = np.zeros((kept.shape[0],) + effects.shape[1:])
    aligned[kept] = effects
    return aligned


def quartiles(values):
    """Min, quartiles and max, as np.quantile's default (linear) method, by partial
    sorts in place (5x faster than np.quantile at n = 1e6)."""
    n = values.shape[0]
    position = np.array([0.0, 0.25, 0.5, 0.75, 1.0]) * (n - 1)
    lower = np.floor(position).astype(np.intp)
    upper = np.minimum(lower + 1, n - 1)
    _select(values, np.unique(np.concatenate([lower, upper])).tolist(), 0, n)
    return values[lower] + (position - lower) * (values[upper] - values[lower])


def _select(values, ks, start, stop):
    """Put values[k] in its sorted place for each k of the sorted list ``ks``, all in
    [start, stop): the middle k by one partition of the stretch, then each side
    within its own part.  numpy's partition with many kth at once is 10x slower."""
    if not ks:
        return
    middle = len(ks) // 2
    k = ks[middle]
    values[start:stop].partition(k - start)
    _select(values, ks[:middle], start, k)
    _select(values, ks[middle + 1 :], k + 1, stop)
