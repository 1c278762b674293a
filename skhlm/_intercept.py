"""RandomInterceptRegressor: the scikit-learn face of the EM engine."""

from dataclasses import dataclass
from numbers import Integral, Real

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, RegressorMixin, _fit_context
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted, validate_data

from . import _checks
from ._base import GroupedRegressorMixin, group_coding
from ._incremental import IncrementalFitMixin
from ._blas import blas_threads, small_matrix_blas
from ._summary import summarize
from .data.accumulator import NonFiniteStatistics, StatsAccumulator, TinyValues
from .data.groups import GroupCoding
from .engine import result as fit_result
from .engine.em import Limits
from .inference.residuals import scaled_residual_quantiles
from .inference.vcov import predictive_std


@dataclass(frozen=True, eq=False)
class PreparedData:
    """Validated input of a linear model's fit: X and y as float arrays, the groups'
    coding, and the names for printing."""

    X: np.ndarray
    y: np.ndarray
    coding: GroupCoding
    grouped: bool
    names: fit_result.ModelNames
    feature_names: object  # feature_names_in_, or None
    weights: np.ndarray = None  # (n,) precision weights >= 0, or None


def prepare(estimator, X, y, groups, sample_weight=None, *, reset=True, chunk=False):
    """Validate a linear mixed model's input (and set ``n_features_in_`` and
    ``feature_names_in_``): numeric X, finite y, the groups' coding, the weights.
    Warns, as lme4 would not fit, when there are no groups, and for a binary y.

    Rows of zero weight stay, with no copy: a zero precision weight is an infinite
    variance, so the row adds nothing to the sums, is not counted, and a group of
    only such rows is not fitted (skhlm.data.accumulator and finalize drop it, as
    for Dask's partitions).  (lme4 keeps such rows and adds log 0 to its
    log-likelihood, which is then -Inf.)

    A ``chunk`` of partial_fit is not refused for its number of groups (the chunks
    together count); ``reset=False`` (a later chunk) checks X against the features
    seen before instead of setting them, and warns about missing groups or a binary
    y no more (the first chunk did)."""
    _checks.not_dask(X)
    X, groups = estimator._take_groups(X, groups)
    # For the printed formula only: the names of a Series y and groups.
    response = str(getattr(y, "name", None) or "y")
    group_name = str(getattr(groups, "name", None) or "group")
    _checks.numeric_columns(X)
    _checks.finite_response(y)
    if isinstance(y, pd.Series) and isinstance(y.dtype, np.dtype):
        # Validation's pandas path for y costs more than a fit on small data; a
        # numpy-typed Series is its values (nullable ones are left to it).
        y = y.to_numpy()
    # An intercept-only model (lmer(y ~ 1 + (1 | g))) has an X with no columns.
    intercept_only = groups is not None and estimator.fit_intercept
    X, y = validate_data(
        estimator,
        _checks.no_columns_as_array(X),
        y,
        dtype=[np.float64, np.float32],
        y_numeric=True,
        ensure_min_features=0 if intercept_only else 1,
        ensure_all_finite=False,
        reset=reset,
    )
    if reset:
        _checks.binary_response(y, type(estimator).__name__)
    feature_names = getattr(estimator, "feature_names_in_", None)
    n_samples = X.shape[0]
    name = type(estimator).__name__
    coding = group_coding(
        groups,
        n_samples,
        None if not reset else f"{name}.fit got no groups, so the model has no random "
        "effects and the fit is ordinary least squares (s2u = 0). Pass "
        "fit(X, y, groups=labels), or name the column of X that holds them with "
        "group_column; inside a Pipeline or model selection tool, enable "
        "metadata routing and pass params={'groups': labels} (without routing, "
        "GridSearchCV.fit(X, y, groups=labels) gives the groups to the splitter "
        "only).",
        count=not chunk,
    )
    weights = _checks.sample_weights(sample_weight, n_samples)
    printed = feature_names if feature_names is not None else [f"x{k}" for k in range(X.shape[1])]
    names = fit_result.ModelNames(response, group_name, tuple(str(n) for n in printed))
    return PreparedData(X, y, coding, groups is not None, names, feature_names, weights)


def accumulate(data, fit_intercept, slopes=()):
    """The one pass over the rows: the sufficient statistics, the standardization and
    the group labels in the statistics' order; refuses data whose likelihood has no
    maximum, and warns about dropped (redundant) columns."""
    accumulator = StatsAccumulator(fit_intercept=fit_intercept, slopes=slopes)
    try:
        accumulator.add(data.X, data.y, data.coding, data.weights)
    except NonFiniteStatistics:
        _checks.finite(data.X, data.feature_names)  # NaN or inf in X: say where; else overflow
        raise
    except TinyValues as tiny:
        raise ValueError(_checks.tiny_values_message(tiny, data.feature_names)) from None
    stats, standardization, levels = accumulator.finalize()
    _checks.identifiable(stats, grouped=data.grouped)
    _checks.redundant_columns(standardization, data.feature_names)
    return stats, standardization, levels


class RandomInterceptRegressor(IncrementalFitMixin, GroupedRegressorMixin, RegressorMixin, BaseEstimator):
    """Linear model with a random intercept per group, fitted by EM (REML or ML).

    The model is ``y_ij = x_ij' beta + u_j + e_ij`` with ``u_j ~ N(0, s2u)`` and
    ``e_ij ~ N(0, s2e)``: lme4's ``lmer(y ~ x + (1 | group))``.  The fit makes one
    pass over the data to build sufficient statistics, then runs accelerated EM
    (SQUAREM) on group-level sums only, so it costs about as much as a linear
    regression.

    Parameters
    ----------
    method : {"reml", "ml"}, default="reml"
        Restricted maximum likelihood (lme4's default) or maximum likelihood.
        Compare models with different fixed effects by their ML fits.
    fit_intercept : bool, default=True
        Whether the fixed part has an intercept.  The data are centered before the
        cross-products are formed only when it does.
    max_iter : int, default=200
        The most EM iterations.  One iteration is a SQUAREM cycle of at most a few
        EM updates; typical fits need 3 to 15.  One not converged after 25 is
        finished by a 1-D search of the profiled likelihood (its optimum is then
        close to s2u = 0, where EM is slow), which EM confirms.
    tol : float, default=1e-10
        Stop when no parameter changes by more than ``tol`` in one EM update:
        absolutely for the coefficients in standardized units, relatively for the
        variance components.
    verbose : int, default=0
        Print the log-likelihood of every iteration when positive, in the units
        of ``log_likelihood_history_``.
    group_column : str or int, default=None
        Read the group labels from this column of X (a name for a DataFrame, a
        position for an array) instead of from the ``groups`` argument, in fit,
        predict and score alike.  The column is not a feature.  This is how groups
        reach ``predict`` inside ``cross_val_predict`` and scikit-learn's scorers,
        which pass no metadata to ``predict`` even with metadata routing enabled.
    unseen_groups : {"population", "error"}, default="population"
        What ``predict`` does with a group not seen in fit: predict ``x' beta``
        (lme4's ``allow.new.levels=TRUE``) or raise a ValueError.

    Attributes
    ----------
    coef_ : ndarray of shape (n_features,)
        Fixed-effect coefficients (beta), in the units of X and y.
    intercept_ : float
        Fixed intercept; 0.0 when ``fit_intercept=False``.
    variance_components_ : dict
        ``{"group": s2u, "residual": s2e}``: the between-group variance of the
        random intercepts and the residual variance.
    icc_ : float
        Intraclass correlation ``s2u / (s2u + s2e)``.
    groups_ : ndarray of shape (n_groups,)
        The group labels seen in fit, sorted as pandas sorts them (numbers before
        strings when both occur; a pandas Categorical's in the order of its
        categories; labels that do not compare, such as tuples among ints, in order
        of appearance).
    random_effects_ : ndarray of shape (n_groups,)
        The BLUPs (conditional modes) of the random intercepts, aligned with
        ``groups_``: lme4's ``ranef``.
    random_effects_var_ : ndarray of shape (n_groups,)
        Their conditional variances given y at the estimated beta,
        ``s2u s2e / (s2e + n_j s2u)``: lme4's ``condVar``.  A 95% interval for a
        group's intercept is ``random_effects_ +/- 1.96 sqrt(random_effects_var_)``.
    n_iter_ : int
        EM iterations run.  A fit on the boundary (s2u = 0) is found in closed
        form, which counts as one iteration.
    converged_ : bool
        Whether EM met ``tol`` within ``max_iter``.
    singular_ : bool
        True when s2u is estimated at 0 (or, as lme4's ``isSingular``, its ratio
        ``sqrt(s2u / s2e)`` is below 1e-4): the data show no between-group variance
        and the fit equals ordinary least squares.
    log_likelihood_ : float
        The REML log-likelihood (``method="reml"``) or the ML one: lme4's
        ``logLik``.
    log_likelihood_history_ : ndarray of shape (``n_iter_``,)
        The log-likelihood after every iteration; EM never lets it decrease.
    aic_ : float
        ``-2 log_likelihood_ + 2 k`` with ``k`` = number of fixed effects + 2, as
        lme4's ``AIC``.
    bic_ : float
        ``-2 log_likelihood_ + k log(n)``, as lme4's ``BIC``.
    n_features_in_ : int
        Number of features seen in fit.
    feature_names_in_ : ndarray of shape (``n_features_in_``,)
        Names of the features seen in fit, when X is a DataFrame with string
        column names.

    See Also
    --------
    LinearMixedRegressor : Random slopes too, lme4's ``(1 + x | g)``.
    lmer : The same models from lme4's formula and a DataFrame.
    MixedEffectsRegressor : Random intercepts around any scikit-learn regressor.

    Notes
    -----
    Without random effects (s2u = 0, or no groups) the coefficients are those of
    scikit-learn's `LinearRegression <https://scikit-learn.org/stable/modules/generated/sklearn.linear_model.LinearRegression.html>`__.

    The log-likelihoods, and so AIC and BIC, use lme4's constants and are
    comparable with R's numbers.  For a REML fit they are REML quantities, which
    are comparable only between models with the same fixed effects.

    Groups reach the estimator in one of two ways.  As metadata: ``fit``,
    ``predict`` and ``score`` request ``groups`` by default, so with
    ``sklearn.set_config(enable_metadata_routing=True)`` a Pipeline,
    ``cross_validate`` (whose GroupKFold takes the same groups), GridSearchCV and
    ``cross_val_score`` pass ``params={"groups": groups}`` on to it.  Or as a column
    of X, with ``group_column``; this works everywhere, routing or not.

    References
    ----------
    .. [1] Bates, Maechler, Bolker & Walker (2015). Fitting linear mixed-effects
       models using lme4. Journal of Statistical Software 67(1).
    .. [2] Laird, Lange & Stram (1987). Maximum likelihood computations with
       repeated measures: application of the EM algorithm. JASA 82, 97-105.
    .. [3] Varadhan & Roland (2008). Simple and globally convergent methods for
       accelerating the convergence of any EM algorithm. Scand. J. Stat. 35.

    Examples
    --------
    >>> import numpy as np
    >>> from skhlm import RandomInterceptRegressor
    >>> rng = np.random.default_rng(0)
    >>> groups = np.repeat(np.arange(50), 20)
    >>> X = rng.normal(size=(1000, 1))
    >>> y = 2.0 + 3.0 * X[:, 0] + rng.normal(size=50)[groups] + rng.normal(size=1000)
    >>> model = RandomInterceptRegressor().fit(X, y, groups=groups)
    >>> model.coef_.round(2)
    array([3.])
    >>> {name: round(v, 3) for name, v in model.variance_components_.items()}
    {'group': 0.819, 'residual': 1.058}
    >>> round(model.icc_, 2)
    0.44
    >>> model.predict(X[:2], groups=[0, 99]).round(2)  # a seen group, a new one
    array([3.27, 1.59])
    """

    _parameter_constraints = {
        "method": [StrOptions({"reml", "ml"})],
        "fit_intercept": ["boolean"],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left")],
        "verbose": ["verbose"],
        "group_column": [None, str, Integral],
        "unseen_groups": [StrOptions({"population", "error"})],
    }

    # Request groups by default, so that metadata routing delivers them unasked
    # (sample_weight, as scikit-learn's estimators, only when asked to).
    __metadata_request__fit = {"groups": True}
    __metadata_request__partial_fit = {"groups": True}
    __metadata_request__predict = {"groups": True, "return_std": True}
    __metadata_request__score = {"groups": True}

    def __init__(
        self,
        *,
        method="reml",
        fit_intercept=True,
        max_iter=200,
        tol=1e-10,
        verbose=0,
        group_column=None,
        unseen_groups="population",
    ):
        self.method = method
        self.fit_intercept = fit_intercept
        self.max_iter = max_iter
        self.tol = tol
        self.verbose = verbose
        self.group_column = group_column
        self.unseen_groups = unseen_groups

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, groups=None, sample_weight=None):
        """Fit the model by EM.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Level-1 and level-2 predictors (a level-2 predictor is constant within
            a group).  No intercept column: see ``fit_intercept``.
        y : array-like of shape (n_samples,)
            Response.
        groups : array-like of shape (n_samples,), default=None
            Cluster label of each row, of any hashable dtype.  Without groups (and
            without ``group_column``) the model has no random effects and the fit is
            ordinary least squares, with a warning.
        sample_weight : array-like of shape (n_samples,), default=None
            Precision weights, lme4's ``weights``: ``Var(e_i) = s2e / w_i``, so a row
            of weight 2 counts as the mean of two rows.  Multiplying all weights by a
            constant changes only s2e; a row of weight 0 is dropped.  Weights are not
            frequency weights (a row repeated w times) nor survey weights.

        Returns
        -------
        self : RandomInterceptRegressor
            The fitted estimator.

        See Also
        --------
        partial_fit : The same fit, from chunks of rows.
        skhlm.fit_parquet : The same fit, from files too large for memory.

        Examples
        --------
        >>> from skhlm import RandomInterceptRegressor
        >>> from skhlm.datasets import make_multilevel_regression
        >>> X, y, groups = make_multilevel_regression(n_groups=30, random_state=0)
        >>> model = RandomInterceptRegressor().fit(X, y, groups=groups)
        >>> model.converged_, model.coef_.round(2), round(model.icc_, 2)
        (True, array([ 0.51, -0.91, -1.75]), 0.21)
        """
        return self._fit_or_nothing(X, y, groups, sample_weight)

    def _fit(self, X, y, groups, sample_weight=None):
        self._forget_chunks()
        return self._fit_prepared(prepare(self, X, y, groups, sample_weight))

    def _fit_prepared(self, data):
        """The fit of :func:`prepare`'s validated data."""
        # Serial BLAS for the pass and all that follows, unless X is wide (then the
        # pass keeps BLAS's threads and the small-matrix algebra sets its own).
        with blas_threads(data.X.shape[1]):
            stats, standardization, levels = accumulate(data, self.fit_intercept)
            result = self._fit_statistics(stats, standardization, levels if data.grouped else None, data.names)
            with small_matrix_blas(stats.n_params):
                quantiles = scaled_residual_quantiles(data.X, data.y, data.coding, result, data.weights)
                self._publish(result.with_residual_quantiles(quantiles))
        return self

    def _prepare_chunk(self, X, y, groups, sample_weight, reset):
        return prepare(self, X, y, groups, sample_weight, reset=reset, chunk=True)

    def _fit_and_publish(self, stats, standardization, levels, names, slopes=()):
        self._publish(self._fit_statistics(stats, standardization, levels, names))

    def _fit_statistics(self, stats, standardization, levels, names):
        """EM on the statistics: the FitResult (without residuals: they need the rows)."""
        with small_matrix_blas(stats.n_params):
            result = fit_result.fit(
                stats,
                standardization,
                self.method,
                limits=Limits(self.max_iter, self.tol),
                levels=levels,
                names=names,
                verbose=self.verbose,
            )
        return result

    def predict(self, X, groups=None, return_std=False, *, population=False):
        """Predict, with the group's random intercept where the group is known.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            The features, the columns of fit.
        groups : array-like of shape (n_samples,), default=None
            Group labels.  A group seen in fit gets ``x' beta + u_j`` (the BLUP);
            a new group gets the population-level ``x' beta`` (or an error, see
            ``unseen_groups``).  Labels match by value and type, as in pandas: 1
            and "1" are different groups (a warning says so when no label was seen
            in fit and their type differs from fit's).  Without groups every row
            gets ``x' beta``, with a warning for a model fitted with groups.
        return_std : bool, default=False
            Also return the standard deviation of a new observation at each row:
            the square root of ``x' Cov(beta) x + condVar_j + s2e`` for a seen
            group and ``x' Cov(beta) x + s2u + s2e`` for a new one.
        population : bool, default=False
            Predict ``x' beta`` for every row, as for a group not seen in fit, with
            no warning: lme4's ``predict(..., re.form = NA)``.  ``groups`` is then
            ignored.

        Returns
        -------
        y_pred : ndarray of shape (n_samples,)
            The predictions.
        y_std : ndarray of shape (n_samples,)
            The standard deviation of a new observation; only with ``return_std=True``.

        See Also
        --------
        score : R^2 of these predictions.
        skhlm.dask.predict : The same on a dask DataFrame, lazily.

        Examples
        --------
        >>> from skhlm import RandomInterceptRegressor
        >>> from skhlm.datasets import make_multilevel_regression
        >>> X, y, groups = make_multilevel_regression(n_groups=30, random_state=0)
        >>> model = RandomInterceptRegressor().fit(X, y, groups=groups)
        >>> y_pred, y_std = model.predict(X[:2], groups=[0, 99], return_std=True)
        >>> y_pred.round(2), y_std.round(2)  # group 0 was seen in fit, 99 was not
        (array([ 0.53, -0.15]), array([0.95, 1.05]))
        """
        self._check_fitted_for_predict()
        X, groups = self._validate_for_predict(X, groups, check_finite=False)
        y_pred = self._fixed_part(X)
        index = None
        if groups is None and not population and self.groups_.size:
            self._warn_population(type(self).__name__)
        if groups is not None and not population:
            intercepts, index = self._random_part(groups, X.shape[0], self.random_effects_)
            y_pred += intercepts
        if return_std and index is None:
            index = np.full(X.shape[0], -1)
        if return_std:
            return y_pred, predictive_std(self._result, X, index)
        return y_pred

    def summary(self, *, level=0.95, ddf="satterthwaite"):
        """Tables and tests of the fit, printed in lme4's layout.

        Fixed effects with standard errors (lme4's ``vcov``), degrees of freedom, t
        tests and Wald intervals; variance components; profile-likelihood intervals
        (lme4's ``confint(method="profile")``); the ICC with its interval; the
        likelihood-ratio test of s2u = 0; each group's intercept with its interval.

        Parameters
        ----------
        level : float, default=0.95
            Confidence level of every interval.
        ddf : {"satterthwaite", "residual", "asymptotic"}, default="satterthwaite"
            Denominator degrees of freedom of the t tests: Satterthwaite's, as
            lmerTest's ``summary``; n - p; or none (z tests).

        Returns
        -------
        :class:`~skhlm._summary.Summary`
            Attributes ``fixed_effects``, ``random_effects``, ``icc``,
            ``icc_interval``, ``confint``, ``group_variance_test``,
            ``group_intercepts``, ``log_likelihood``, ``aic``, ``bic``,
            ``deviance`` or ``reml_criterion``, ``n_obs``, ``n_groups``, ``group_name``,
            ``singular``, ``converged``, ``n_iter``; ``print`` shows the block.
            ``confint`` and ``group_intercepts``, which the block does not show, are
            computed on first access (as lme4's ``confint``), then kept.

        See Also
        --------
        skhlm.compare : Likelihood-ratio tests between nested models.

        Examples
        --------
        >>> from skhlm import RandomInterceptRegressor
        >>> from skhlm.datasets import make_multilevel_regression
        >>> X, y, groups = make_multilevel_regression(n_groups=30, random_state=0)
        >>> s = RandomInterceptRegressor().fit(X, y, groups=groups).summary()
        >>> s.fixed_effects[["estimate", "std_error", "p_value"]].round(3)
                     estimate  std_error  p_value
        (Intercept)     0.108      0.097    0.272
        x1              0.507      0.039    0.000
        x2             -0.911      0.040    0.000
        z1             -1.754      0.098    0.000
        >>> s.group_variance_test["p_value"] < 0.05  # is the multilevel model needed?
        True
        """
        self._check_fitted_for_predict()
        check_is_fitted(self)
        with small_matrix_blas(self._result.stats.n_params):
            return summarize(self._result, level=level, ddf=ddf)
