"""The one map between the user's units and the standardized problem.

The fit works on a standardized problem: each kept column of X centered at a
reference point and scaled to unit root-mean-square, and y likewise (skhlm.data.
accumulator).  :class:`Standardization` records that affine map and is the only
place that applies it, in either direction, to everything a fitted model reports:
the fixed effects and their covariance, the variance components, the random
effects, a row's design and the log-likelihood.
"""

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Standardization:
    """The affine map between the user's units and the standardized problem.

    Internal column k (after the intercept) is ``(X[:, kept[k]] - x_offset) / x_scale``
    and the internal response is ``(y - y_offset) / y_scale``.  With an intercept the
    offsets are the reference point the data were centered at (near the means, not
    equal to them); without one, 0.
    """

    x_offset: np.ndarray  # (n_features,)
    x_scale: np.ndarray  # (n_features,)
    y_offset: float
    y_scale: float
    fit_intercept: bool
    kept: np.ndarray  # (n_features,) bool: columns that are not linearly redundant
    # sum log w_i over the rows with precision weights w_i (0 without weights): the
    # weighted fit works on sqrt(w) times the rows, whose density lacks this / 2.
    log_weights: float = 0.0

    @property
    def n_params(self):
        """Internal fixed effects: the kept columns, and the intercept."""
        return int(self.kept.sum()) + self.fit_intercept

    def coef_map(self):
        """The linear part T and the constant c of the map from internal beta to the
        user's (intercept, coef...): ``T beta + c``; and which of those rows are
        estimated (a dropped, linearly redundant feature has a zero row)."""
        kept, fi = self.kept, int(self.fit_intercept)
        scale = self.y_scale / self.x_scale[kept]
        t = np.zeros((kept.size + fi, self.n_params))
        t[np.flatnonzero(kept) + fi, np.arange(kept.sum()) + fi] = scale
        shift = np.zeros(kept.size + fi)
        if fi:
            t[0, 0] = self.y_scale
            t[0, 1:] = -scale * self.x_offset[kept]
            shift[0] = self.y_offset
        estimated = np.concatenate([np.ones(fi, dtype=bool), kept])
        return t, shift, estimated

    def coef_to_user(self, beta):
        """Map internal fixed effects to ``(coef, intercept)`` in the user's units."""
        coef = np.zeros(self.x_scale.shape[0])
        slopes = beta[1:] if self.fit_intercept else beta
        coef[self.kept] = slopes * self.y_scale / self.x_scale[self.kept]
        if not self.fit_intercept:
            return coef, 0.0
        intercept = self.y_offset + self.y_scale * beta[0] - coef @ self.x_offset
        return coef, float(intercept)

    def coef_covariance_to_user(self, cov):
        """An internal Cov(beta) in the user's units, intercept first: T cov T', with
        NaN rows and columns for the dropped features (lme4 drops the column)."""
        t, _, estimated = self.coef_map()
        out = t @ cov @ t.T
        out[~estimated, :] = np.nan
        out[:, ~estimated] = np.nan
        return out

    def variance_to_user(self, value):
        """A variance (s2u, s2e, a conditional variance): times y_scale^2."""
        return value * self.y_scale**2

    def response_to_user(self, value):
        """A deviation of y (a random effect, a standard deviation): times y_scale."""
        return value * self.y_scale

    def design_rows(self, X):
        """The internal design rows of the user's X: its kept columns centered and
        scaled, after a column of ones when the model has an intercept.  Centered
        rows keep the intercept's variance exact at large offsets."""
        kept = self.kept
        z = (np.asarray(X, dtype=np.float64)[:, kept] - self.x_offset[kept]) / self.x_scale[kept]
        if self.fit_intercept:
            z = np.column_stack([np.ones(z.shape[0]), z])
        return z

    def log_jacobian(self, n_obs, method):
        """What standardizing added to the log-likelihood, to be subtracted.

        The ML density of y loses ``n log y_scale``; the REML density, a density of
        n - p error contrasts, loses ``(n - p) log y_scale`` plus ``sum log x_scale``
        through its log det(X'V^-1 X) term (centering has unit Jacobian).  With
        precision weights, both gain ``sum log w / 2`` (lme4's constant): the rows
        were multiplied by sqrt(w).
        """
        log_sy = np.log(self.y_scale)
        weights = 0.5 * self.log_weights
        if method == "ml":
            return n_obs * log_sy - weights
        return (n_obs - self.n_params) * log_sy + np.log(self.x_scale[self.kept]).sum() - weights

    # -- The statistics in the user's units (to tell whether two fits saw the same data) --

    def response_sums(self, stats):
        """n, sum y and sum y^2 in the user's units (weighted sums with weights: n is
        then the sum of the weights)."""
        n = stats.weight
        total = self.y_scale * stats.classes.t.sum() + n * self.y_offset
        squares = self.y_scale**2 * stats.yty + 2.0 * self.y_offset * (total - n * self.y_offset)
        squares += n * self.y_offset**2
        return n, total, squares

    def group_response_sums(self, stats):
        """Each group's sum of y in the user's units, by label."""
        return self.y_scale * stats.group_ysum + stats.group_sizes * self.y_offset

    def column_moments(self, stats):
        """The kept columns' means, variances and covariances with y, in the user's
        units: free of the point the columns were centered at."""
        n, scale = stats.weight, self.x_scale[self.kept]
        if self.fit_intercept:
            m, b = stats.xtx[0, 1:] / n, stats.xty[0] / n  # means of the internal columns, y
            second = stats.xtx[1:, 1:] / n - np.outer(m, m)
            cross = stats.xty[1:] / n - m * b
            mean = self.x_offset[self.kept] + scale * m
        else:
            second, cross, mean = stats.xtx / n, stats.xty / n, np.zeros(scale.shape)
        return mean, np.diag(second) * scale**2, cross * scale * self.y_scale
