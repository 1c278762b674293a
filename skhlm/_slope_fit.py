"""The fitted result of a model with random slopes: what LinearMixedRegressor's
summary, compare() and the profile intervals read."""

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from .data.units import Standardization
from .engine import vector


@dataclass(frozen=True, eq=False)
class SlopeFit:
    """A fitted model with random slopes: the engine's result in standardized units,
    the maps back to the user's, and the labels."""

    result: vector.VectorResult
    slope_stats: vector.SlopeStats
    stats: object  # the fixed-effect SufficientStats (n, sums, moments: for compare)
    units: Standardization
    T: np.ndarray  # internal random effect b -> user's: y_scale * T b
    levels: np.ndarray  # labels, in the engine's group order
    level: np.ndarray  # (G,) label number of each engine group
    slopes: np.ndarray  # positions in X of the slope columns
    method: str
    diagonal: bool
    n_obs: int
    names: object  # ModelNames
    residual_quantiles: np.ndarray | None = None

    def coef_df(self):
        """lmerTest's Satterthwaite df of each user coefficient (intercept first); NaN
        for a dropped column."""
        from .inference.slopes import satterthwaite_df

        t, _, estimated = self.units.coef_map()
        df = np.full(t.shape[0], np.nan)
        df[estimated] = satterthwaite_df(self.slope_stats, self.result, self.method, self.diagonal, t[estimated])
        return df

    # -- the fitted-result contract that compare() reads (as FitResult's) --
    grouped = True

    @property
    def user_log_likelihood(self):
        return float(self.user_log_likelihood_of(self.result.deviance))

    @property
    def aic(self):
        return -2.0 * self.user_log_likelihood + 2.0 * self.n_parameters

    @property
    def bic(self):
        return -2.0 * self.user_log_likelihood + self.n_parameters * math.log(self.n_obs)

    @property
    def random_terms(self):
        """The random effects' names: the intercept, then the slopes' features."""
        return ("(Intercept)", *(self.names.features[s] for s in self.slopes))

    @property
    def ml(self):
        """This model fitted by ML (lme4's anova refits REML models so)."""
        if self.method == "ml":
            return self
        result = vector.fit(self.slope_stats, "ml", diagonal=self.diagonal)
        return dataclasses.replace(self, result=result, method="ml")

    def sigma_to_user(self, sigma):
        return self.units.y_scale**2 * (self.T @ sigma @ self.T.T)

    @property
    def n_parameters(self):
        q = self.T.shape[0]
        return self.units.n_params + vector.n_theta(q, self.diagonal) + 1

    def user_log_likelihood_of(self, deviance):
        return -0.5 * deviance - self.units.log_jacobian(self.n_obs, self.method)

    def user_lambda(self):
        """lme4's Lambda: the relative covariance factor in the user's units, lower
        triangular with a diagonal >= 0 (Lambda Lambda' = T Lambda_int Lambda_int' T')."""
        rel = self.T @ self.result.lam
        lam = np.linalg.qr(rel.T, mode="r").T  # rel rel' = R'R
        return lam * np.where(np.diag(lam) < 0, -1.0, 1.0)[None, :]

    @property
    def user_theta(self):
        """lme4's theta (``getME(m, "theta")``)."""
        return vector.theta_of(self.user_lambda(), self.diagonal)

    @property
    def singular(self):
        """lme4's isSingular: a diagonal entry of its Lambda below 1e-4."""
        return bool(np.diag(self.user_lambda()).min() < vector.SINGULAR_TOL)
