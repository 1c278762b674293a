"""LinearMixedRegressor: random intercepts and slopes, lme4's ``(1 + x | g)``."""

import dataclasses
from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin, _fit_context
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from . import _checks
from ._base import GroupedRegressorMixin
from ._blas import blas_threads, small_matrix_blas
from ._incremental import IncrementalFitMixin
from ._slope_fit import SlopeFit
from ._intercept import RandomInterceptRegressor, accumulate, prepare
from .data.accumulator import StatsAccumulator
from .data import slopes as slope_data
from .engine import slope_pass, vector
from .engine.em import Limits
from .inference.residuals import slope_residual_quantiles


class LinearMixedRegressor(IncrementalFitMixin, GroupedRegressorMixin, RegressorMixin, BaseEstimator):
    """Linear mixed model with random intercepts and slopes, fitted as lme4 does.

    The model is ``y_ij = x_ij' beta + z_ij' b_j + e_ij`` with ``z_ij`` the intercept
    and the ``random_slopes`` columns of row i, ``b_j ~ N(0, Sigma)`` (q x q) and
    ``e_ij ~ N(0, s2e)``: lme4's ``lmer(y ~ x + (1 + x | g))``.  The fit makes one
    pass over the rows for the sufficient statistics (per group Z'Z, Z'X and Z'y),
    then takes one SQUAREM-accelerated EM cycle on them from lme4's start and
    polishes lme4's profiled criterion by quasi-Newton steps with its analytic
    gradient; nothing after the pass is O(n), nothing loops over groups in Python.
    With no random slopes the model is RandomInterceptRegressor's, by its engine.

    Parameters
    ----------
    random_slopes : sequence of str or int, default=()
        The features whose coefficients vary by group: column names of a DataFrame
        X, or positions.  Each is also a fixed effect, as in lme4.
    covariance : {"unstructured", "diagonal"}, default="unstructured"
        The random effects' covariance: a full q x q matrix (lme4's ``(1 + x | g)``)
        or independent effects (``(1 + x || g)``, the usual cure for a singular fit).
    method : {"reml", "ml"}, default="reml"
        Restricted maximum likelihood (lme4's default) or maximum likelihood.
    fit_intercept : bool, default=True
        Whether the fixed part has an intercept; the random intercept is always there.
    group_column : str or int, default=None
        See RandomInterceptRegressor.
    unseen_groups : {"population", "error"}, default="population"
        See RandomInterceptRegressor.
    max_iter : int, default=200
        With random slopes, at most ``10 * max_iter`` quasi-Newton steps after the
        one EM cycle; without, the random intercept model's most EM iterations.
    tol : float, default=1e-10
        The random intercept model's EM tolerance (``random_slopes=()``); with
        random slopes the polish stops when the criterion's gradient is 0.
    verbose : int, default=0
        Print the random intercept model's EM iterations (``random_slopes=()``).

    Attributes
    ----------
    coef_ : ndarray of shape (n_features,)
        Fixed-effect coefficients (beta), in the units of X and y.
    intercept_ : float
        Fixed intercept; 0.0 when ``fit_intercept=False``.
    variance_components_ : dict
        ``{"group": Sigma, "residual": s2e}``: Sigma, of shape (q, q), the random
        effects' covariance, ``q = 1 + len(random_slopes)``.
    random_effect_names_ : list of str
        ``["Intercept", *slopes]``: the order of Sigma's rows and of the effects.
    groups_ : ndarray of shape (n_groups,)
        The group labels seen in fit, sorted as in RandomInterceptRegressor.
    random_effects_ : ndarray of shape (n_groups, q)
        The BLUPs (lme4's ``ranef``), aligned with ``groups_``.
    random_effects_var_ : ndarray of shape (n_groups, q, q)
        Their conditional covariances (lme4's ``condVar``).
    log_likelihood_ : float
        The maximized log-likelihood (ML) or REML criterion's log-likelihood.
    log_likelihood_history_ : ndarray of shape (3,)
        At lme4's start, after the EM cycle and after the polish (without random
        slopes: RandomInterceptRegressor's, of shape (``n_iter_``,)).
    aic_, bic_ : float
        lme4's ``AIC`` and ``BIC``.
    n_iter_ : int
        The EM cycle and the quasi-Newton steps (without slopes: EM iterations).
    converged_ : bool
        Whether the criterion's gradient reached 0 (or the fit is singular).
    singular_ : bool
        lme4's isSingular: a relative standard deviation (a diagonal entry of
        Lambda) below 1e-4: a variance at 0 or a correlation at +-1.
    n_features_in_ : int
        Number of features seen in fit.
    feature_names_in_ : ndarray of shape (``n_features_in_``,)
        Names of the features seen in fit, when X is a DataFrame with string names.

    See Also
    --------
    RandomInterceptRegressor : The random intercept model, with more inference.
    lmer : The same model from ``lmer("y ~ x + (x | g)", data)``.
    skhlm.plotting.plot_random_effects : A caterpillar panel per random effect.

    Examples
    --------
    >>> from skhlm import LinearMixedRegressor
    >>> from skhlm.datasets import make_longitudinal
    >>> X, y, subject = make_longitudinal(random_state=0)  # lme4's sleepstudy design
    >>> model = LinearMixedRegressor(random_slopes=["time"]).fit(X, y, groups=subject)
    >>> model.random_effect_names_, model.random_effects_.shape
    (['Intercept', 'time'], (18, 2))
    """

    _parameter_constraints = {
        "random_slopes": ["array-like"],
        "covariance": [StrOptions({"unstructured", "diagonal"})],
        "method": [StrOptions({"reml", "ml"})],
        "fit_intercept": ["boolean"],
        "group_column": [None, str, Integral],
        "unseen_groups": [StrOptions({"population", "error"})],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left")],
        "verbose": ["verbose"],
    }

    __metadata_request__fit = {"groups": True}
    __metadata_request__partial_fit = {"groups": True}
    __metadata_request__predict = {"groups": True, "return_std": True}
    __metadata_request__score = {"groups": True}

    def __init__(
        self,
        *,
        random_slopes=(),
        covariance="unstructured",
        method="reml",
        fit_intercept=True,
        group_column=None,
        unseen_groups="population",
        max_iter=200,
        tol=1e-10,
        verbose=0,
    ):
        self.random_slopes = random_slopes
        self.covariance = covariance
        self.method = method
        self.fit_intercept = fit_intercept
        self.group_column = group_column
        self.unseen_groups = unseen_groups
        self.max_iter = max_iter
        self.tol = tol
        self.verbose = verbose

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, groups=None, sample_weight=None):
        """Fit the model: one pass over the rows, then EM and a polish.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            The features, random slopes among them; no intercept column.
        y : array-like of shape (n_samples,)
            Response.
        groups : array-like of shape (n_samples,), default=None
            Cluster label of each row (or use ``group_column``).
        sample_weight : array-like of shape (n_samples,), default=None
            Precision weights, lme4's ``weights``: ``Var(e_i) = s2e / w_i``, as in
            RandomInterceptRegressor's ``fit``.

        Returns
        -------
        self : LinearMixedRegressor
            The fitted estimator.

        See Also
        --------
        partial_fit : The same fit, from chunks of rows.

        Examples
        --------
        >>> from skhlm import LinearMixedRegressor
        >>> from skhlm.datasets import make_longitudinal
        >>> X, y, subject = make_longitudinal(random_state=0)  # true slope 10.5
        >>> model = LinearMixedRegressor(random_slopes=["time"]).fit(X, y, groups=subject)
        >>> round(model.intercept_, 1), model.coef_.round(2)
        (250.1, array([12.31]))
        """
        return self._fit_or_nothing(X, y, groups, sample_weight)

    def _slope_positions(self, n_features, feature_names):
        slopes = list(self.random_slopes)
        positions = []
        for s in slopes:
            if isinstance(s, str):
                if feature_names is None:
                    raise ValueError(
                        f"random_slopes names the column {s!r}, but X has no column names; "
                        "pass a DataFrame, or give the slopes as integer positions."
                    )
                names = [str(n) for n in feature_names]
                if s not in names:
                    raise ValueError(f"random_slopes: {s!r} is not a column of X (its columns: {names}).")
                positions.append(names.index(s))
            elif isinstance(s, Integral) and not isinstance(s, bool):
                if not 0 <= s < n_features:
                    raise ValueError(f"random_slopes: position {s} is out of range for X with {n_features} columns.")
                positions.append(int(s))
            else:
                raise ValueError(f"random_slopes holds {s!r}; give column names or integer positions.")
        if len(set(positions)) != len(positions):
            raise ValueError(f"random_slopes names a column more than once: {slopes}.")
        return np.asarray(positions, dtype=np.intp)

    # -- partial_fit (IncrementalFitMixin) --

    def _prepare_chunk(self, X, y, groups, sample_weight, reset):
        return prepare(self, X, y, groups, sample_weight, reset=reset, chunk=True)

    def _new_accumulator(self, data):
        slopes = self._slope_positions(data.X.shape[1], data.feature_names) if data.grouped else ()
        previous = getattr(self, "_accumulator", None)
        if previous is not None and tuple(slopes) != previous.slopes:
            raise ValueError(
                "random_slopes changed between partial_fit calls; the statistics of the "
                f"chunks so far hold the slopes of the columns {list(previous.slopes)}. Call "
                "fit, or a new estimator, to start over."
            )
        return StatsAccumulator(fit_intercept=self.fit_intercept, slopes=slopes)

    def _slopes_of_data(self, n_features, feature_names):
        """The slope positions for skhlm.dask.fit (its sums are summed with them)."""
        return tuple(self._slope_positions(n_features, feature_names))

    def _fit_and_publish(self, stats, units, levels, names, slopes=None):
        slopes = np.asarray(self._accumulator.slopes if slopes is None else slopes, dtype=np.intp)
        if levels is not None and slopes.size:
            self._publish_slopes(self._fit_slopes(stats, units, levels, slopes, names))
            return
        inner = self._intercepts_model()
        inner.n_features_in_ = self.n_features_in_
        inner._publish(inner._fit_statistics(stats, units, levels, names))
        self._adopt_intercepts(inner)
        if levels is None and len(self.random_slopes):
            self._zero_slopes(self._slope_positions(self.n_features_in_, getattr(self, "feature_names_in_", None)))
        else:
            self._slope_columns_ = np.zeros(0, dtype=np.intp)

    def _fit(self, X, y, groups, sample_weight=None):
        self._forget_chunks()
        if len(self.random_slopes) == 0:
            self._fit_intercepts(X, y, groups, sample_weight)
            self._slope_columns_ = np.zeros(0, dtype=np.intp)
            return self
        if self.group_column is None and groups is None:
            return self._fit_without_groups(X, y, sample_weight)
        data = prepare(self, X, y, groups, sample_weight)
        slopes = self._slope_positions(data.X.shape[1], data.feature_names)
        with blas_threads(data.X.shape[1]):
            stats, units, levels = accumulate(data, self.fit_intercept, slopes)
            fit = self._fit_slopes(stats, units, levels, slopes, data.names)
        self._publish_slopes(fit)
        # lme4's scaled residuals, (y - x'beta - z'b_j) / sigma: one more pass.
        quantiles = slope_residual_quantiles(
            data.X, data.y, data.coding, self.coef_, self.intercept_, self.random_effects_,
            self._slope_columns_, self.variance_components_["residual"], data.weights,
        )
        self._result = dataclasses.replace(fit, residual_quantiles=quantiles)
        return self

    def _fit_slopes(self, stats, units, levels, slopes, names):
        """The engine's fit of the statistics (the accumulator's, with these slopes)."""
        dropped = [int(s) for s in slopes if not units.kept[s]]
        if dropped:
            raise ValueError(
                f"The random slope column(s) {dropped} are constant or linear "
                "combinations of other columns of X, so their fixed effects were "
                "dropped; a random slope needs its fixed effect. Remove them from "
                "random_slopes."
            )
        diagonal = self.covariance == "diagonal"
        ztz, ztd, T = slope_data.slope_statistics(stats, units, slopes, diagonal=diagonal)
        engine_stats = slope_data.build(stats, ztz, ztd)
        with small_matrix_blas(stats.n_params):
            result = vector.fit(engine_stats, self.method, diagonal=diagonal, limits=Limits(self.max_iter, self.tol))
        return SlopeFit(
            result=result,
            slope_stats=engine_stats,
            stats=stats,
            units=units,
            T=T,
            levels=levels,
            level=stats.groups.level,
            slopes=slopes,
            method=self.method,
            diagonal=diagonal,
            n_obs=stats.n_obs,
            names=names,
        )

    def _fit_without_groups(self, X, y, sample_weight=None):
        """No groups: no random effects, ordinary least squares (with a warning), as
        for RandomInterceptRegressor; Sigma is 0."""
        self._fit_intercepts(X, y, None, sample_weight)
        self._zero_slopes(self._slope_positions(self.n_features_in_, getattr(self, "feature_names_in_", None)))
        return self

    def _zero_slopes(self, slopes):
        """Without groups, the slopes' Sigma is 0 and there are no effects."""
        q = 1 + slopes.size
        self._slope_columns_ = slopes
        self.variance_components_["group"] = np.zeros((q, q))
        names = getattr(self, "feature_names_in_", None)
        self.random_effect_names_ = ["Intercept", *[str(names[s]) if names is not None else f"x{s}" for s in slopes]]
        self.random_effects_ = np.zeros((0, q))
        self.random_effects_var_ = np.zeros((0, q, q))

    def _intercepts_model(self):
        return RandomInterceptRegressor(
            method=self.method,
            fit_intercept=self.fit_intercept,
            max_iter=self.max_iter,
            tol=self.tol,
            verbose=self.verbose,
            group_column=self.group_column,
            unseen_groups=self.unseen_groups,
        )

    def _fit_intercepts(self, X, y, groups, sample_weight=None):
        """``random_slopes=()``: the random intercept model, by its own estimator."""
        inner = self._intercepts_model()
        inner._fit_prepared(prepare(self, X, y, groups, sample_weight))
        return self._adopt_intercepts(inner)

    def _adopt_intercepts(self, inner):
        """The random intercept model's fit as this estimator's."""
        self._result = inner._result
        self.coef_, self.intercept_ = inner.coef_, inner.intercept_
        s2u, s2e = inner.variance_components_["group"], inner.variance_components_["residual"]
        self.variance_components_ = {"group": np.array([[s2u]]), "residual": s2e}
        self.random_effect_names_ = ["Intercept"]
        self.groups_ = inner.groups_
        self.random_effects_ = inner.random_effects_[:, None]
        self.random_effects_var_ = inner.random_effects_var_[:, None, None]
        for name in ("log_likelihood_", "log_likelihood_history_", "aic_", "bic_", "n_iter_", "converged_", "singular_"):
            setattr(self, name, getattr(inner, name))
        return self

    def _publish_slopes(self, fit):
        result, units = fit.result, fit.units
        self._result = fit
        self._slope_columns_ = fit.slopes
        self.coef_, self.intercept_ = units.coef_to_user(result.beta)
        self.intercept_ = float(self.intercept_)
        self.variance_components_ = {
            "group": fit.sigma_to_user(result.sigma),
            "residual": float(units.variance_to_user(result.s2e)),
        }
        names = fit.names.features
        self.random_effect_names_ = ["Intercept", *[names[s] for s in fit.slopes]]
        self.groups_ = fit.levels  # (the slopes' fit always has groups)
        # In the user's units (b = y_scale T b_internal) and label order (the
        # engine's groups are in size order: engine group j is label level[j]).
        with small_matrix_blas(units.n_params):
            self.random_effects_, self.random_effects_var_ = slope_pass.posterior(
                fit.slope_stats, result.lam, result.beta, result.s2e, units.y_scale * fit.T @ result.lam, fit.level
            )
        self.log_likelihood_ = fit.user_log_likelihood
        self.log_likelihood_history_ = np.array([fit.user_log_likelihood_of(d) for d in result.history])
        self.aic_, self.bic_ = fit.aic, fit.bic
        self.n_iter_ = result.n_iter
        self.converged_ = result.converged
        self.singular_ = fit.singular
        if not result.converged:
            _checks.warn(
                "LinearMixedRegressor did not converge: the gradient of the criterion is "
                "not 0 at the last point. Increase max_iter.",
                ConvergenceWarning,
            )
        if self.singular_:
            _checks.warn(
                "The fit is singular (lme4: boundary (singular) fit): a random-effect "
                "variance is 0 or a correlation is +-1, so the data do not support this "
                "covariance. Drop a random slope, or use covariance='diagonal'."
            )

    def summary(self, *, level=0.95, ddf="satterthwaite"):
        """Tables and tests of the fit, printed in lme4's layout.

        Fixed effects with standard errors (lme4's ``vcov``), lmerTest's Satterthwaite
        df, t tests and t intervals; the random effects' variances, standard deviations
        and correlations.  Without random slopes, RandomInterceptRegressor's summary.

        Parameters
        ----------
        level : float, default=0.95
            Confidence level of the intervals.
        ddf : {"satterthwaite", "residual", "asymptotic"}, default="satterthwaite"
            Denominator degrees of freedom of the t tests: Satterthwaite's, n - p,
            or none (z tests).

        Returns
        -------
        :class:`~skhlm._slope_summary.SlopeSummary` or :class:`~skhlm._summary.Summary`
            The tables as attributes, lme4's layout in print; without slopes, a Summary.

        See Also
        --------
        skhlm.compare : Likelihood-ratio tests, e.g. of a random slope.

        Examples
        --------
        >>> from skhlm import LinearMixedRegressor
        >>> from skhlm.datasets import make_longitudinal
        >>> X, y, subject = make_longitudinal(random_state=0)
        >>> s = LinearMixedRegressor(random_slopes=["time"]).fit(X, y, groups=subject).summary()
        >>> s.random_effects.round(1)
                     variance  std_dev
        (Intercept)     545.2     23.3
        time             30.9      5.6
        Residual        630.6     25.1
        >>> float(s.correlations.loc["(Intercept)", "time"].round(2))
        -0.06
        """
        self._check_fitted_for_predict()
        check_is_fitted(self)
        if not isinstance(self._result, SlopeFit):
            from ._summary import summarize

            with small_matrix_blas(self._result.stats.n_params):
                return summarize(self._result, level=level, ddf=ddf)
        from ._slope_summary import summarize_slopes

        return summarize_slopes(self, level=level, ddf=ddf)

    def predict(self, X, groups=None, return_std=False, *, population=False):
        """Predict, with each seen group's random intercept and slopes.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            The features, the columns of fit.
        groups : array-like of shape (n_samples,), default=None
            A group seen in fit gets ``x' beta + z' b_j``; a new group ``x' beta``.
        return_std : bool, default=False
            Also return the standard deviation of a new observation: the square root
            of ``x' Cov(beta) x + z' condVar_j z + s2e`` for a seen group and
            ``x' Cov(beta) x + z' Sigma z + s2e`` for a new one.
        population : bool, default=False
            ``x' beta`` for every row, with no warning (lme4's ``re.form = NA``).

        Returns
        -------
        y_pred : ndarray of shape (n_samples,)
            The predictions.
        y_std : ndarray of shape (n_samples,)
            The standard deviation of a new observation; only with ``return_std=True``.

        See Also
        --------
        score : R^2 of these predictions.

        Examples
        --------
        >>> from skhlm import LinearMixedRegressor
        >>> from skhlm.datasets import make_longitudinal
        >>> X, y, subject = make_longitudinal(random_state=0)
        >>> model = LinearMixedRegressor(random_slopes=["time"]).fit(X, y, groups=subject)
        >>> model.predict(X.iloc[[9, 9]], groups=[0, 99]).round(1)  # day 9: subject 0; new
        array([360.1, 360.9])
        """
        self._check_fitted_for_predict()
        X, groups = self._validate_for_predict(X, groups, check_finite=False)
        y_pred = self._fixed_part(X)
        n = X.shape[0]
        Z = np.column_stack([np.ones(n), X[:, self._slope_columns_]])
        index = np.full(n, -1)
        if groups is None and not population and self.groups_.size:
            self._warn_population(type(self).__name__)
        if groups is not None and not population:
            effects, index = self._random_part(groups, n, self.random_effects_)
            y_pred += np.einsum("ij,ij->i", Z, effects)
        if not return_std:
            return y_pred
        return y_pred, self._predictive_std(X, Z, index)

    def _predictive_std(self, X, Z, index):
        fit = self._result
        if not isinstance(fit, SlopeFit):  # no slopes: the random intercept model's
            from .inference.vcov import predictive_std

            return predictive_std(fit, X, index)
        units = fit.units
        cov = units.coef_covariance_to_user(fit.result.coef_cov)
        D = np.column_stack([np.ones(X.shape[0]), X]) if units.fit_intercept else X
        estimated = np.isfinite(np.diag(cov))
        Ds, covs = D[:, estimated], cov[np.ix_(estimated, estimated)]
        fixed = np.einsum("ij,jk,ik->i", Ds, covs, Ds)
        var_b = np.append(self.random_effects_var_, self.variance_components_["group"][None], axis=0)[index]
        random = np.einsum("ij,ijk,ik->i", Z, var_b, Z)
        return np.sqrt(fixed + random + self.variance_components_["residual"])
