"""MixedEffectsRegressor: random intercepts around any scikit-learn regressor."""

from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator, MetaEstimatorMixin, RegressorMixin, _fit_context, clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LinearRegression
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.validation import (
    _num_samples,
    check_array,
    check_is_fitted,
    column_or_1d,
    validate_data,
)

from . import _checks
from ._base import GroupedRegressorMixin, group_coding
from ._crossfit import _cross_fit, _learner_variance, group_halves, warm_startable
from ._blas import small_matrix_blas
from .data.accumulator import StatsAccumulator
from .engine import result as fit_result
from .engine.em import Limits


def _two_dimensional(X):
    """Refuse an X that is not a table: the learner gets X as it is (a DataFrame
    keeps its dtypes), so only its shape is checked here."""
    ndim = getattr(X, "ndim", None)
    if ndim is None:
        ndim = np.ndim(np.asarray(X, dtype=object))
    if ndim != 2:
        raise ValueError(
            f"Expected a 2D X (rows by features), got {ndim}D. Reshape your data either "
            "using array.reshape(-1, 1) if your data has a single feature or "
            "array.reshape(1, -1) if it contains a single sample."
        )


# The linear start uses at most this many columns of X: its pass costs n p^2, which
# for wider X can exceed a learner's fit.
_LINEAR_START_MAX_COLUMNS = 200


def numeric_columns(X):
    """X's numeric columns with finite values only, as a float64 array, and their
    names (positions for an array); an X of other kinds (sparse, strings) has none."""
    if hasattr(X, "select_dtypes"):
        names = list(X.select_dtypes(include="number").columns)
        values = X[names].to_numpy(dtype=np.float64, na_value=np.nan) if names else np.empty((len(X), 0))
    elif isinstance(X, np.ndarray) and X.ndim == 2 and X.dtype.kind in "biuf":
        values, names = np.asarray(X, dtype=np.float64), list(range(X.shape[1]))
    else:
        return np.empty((_num_samples(X), 0)), []
    finite = np.isfinite(values).all(axis=0)
    if not finite.all():
        values, names = values[:, finite], [name for name, keep in zip(names, finite) if keep]
    return values, names


def group_identifying_columns(X, coding):
    """The numeric columns of X that are constant within every group and take a
    value of their own in at least half of the groups: from such a column a flexible
    learner can learn each group's mean itself, and s2u shrinks toward 0."""
    values, names = numeric_columns(X)
    sizes = coding.sizes.astype(np.float64)
    found = []
    with np.errstate(invalid="ignore", over="ignore"):
        for k, name in enumerate(names):
            centred = values[:, k] - values[:, k].mean()
            sums = np.bincount(coding.codes, centred, minlength=sizes.size)
            within = centred @ centred - sums @ (sums / sizes)
            if within > 1e-10 * (centred @ centred):
                continue  # varies within some group
            if np.unique(sums / sizes).size >= 0.5 * sizes.size:
                found.append(name)
    return found


def _warn_group_identifying_columns(X, coding):
    found = group_identifying_columns(X, coding)
    if found:
        _checks.warn(
            f"Column(s) {found} of X are constant within every group and differ between "
            "most groups: a flexible learner can learn each group's mean from them, and "
            "the random intercepts, and s2u, then shrink toward 0. Leave such columns "
            "out of the learner's features, or use RandomInterceptRegressor, whose "
            "linear fixed part cannot absorb the group effects."
        )


def residual_model(residuals, coding, grouped, limits, X=None):
    """lme4's ``lmer(r ~ 1 + (1 | g), REML = FALSE)`` on the learner's residuals:
    their mean, the variance components and the groups' BLUPs (a FitResult); with
    ``X``, ``lmer(r ~ X + (1 | g), REML = FALSE)``."""
    accumulator = StatsAccumulator(fit_intercept=True)
    accumulator.add(np.empty((residuals.shape[0], 0)) if X is None else X, residuals, coding)
    stats, units, levels = accumulator.finalize()
    _checks.identifiable(stats, grouped=grouped)
    with small_matrix_blas(stats.n_params):
        return fit_result.fit(stats, units, "ml", limits=limits, levels=levels if grouped else None)


def starting_intercepts(X, y, coding, limits):
    """The random intercepts the rounds start from: those of the linear mixed model
    on X's numeric columns, ``lmer(y ~ x + (1 | g), REML = FALSE)``, which has taken
    out the part of the group means that the features explain linearly (a school's
    mean intake), or, where X has no such columns (or too many, or they do not fit),
    those of ``lmer(y ~ 1 + (1 | g))``."""
    values, _ = numeric_columns(X)
    if 0 < values.shape[1] <= _LINEAR_START_MAX_COLUMNS:
        try:
            return residual_model(y, coding, True, limits, X=values).random_effects[0]
        except ValueError:  # values too small for float64, or y fitted exactly by X
            pass
    return residual_model(y, coding, True, limits).random_effects[0]


class MixedEffectsRegressor(MetaEstimatorMixin, GroupedRegressorMixin, RegressorMixin, BaseEstimator):
    """Random intercepts around any scikit-learn regressor, fitted by alternation.

    The model is ``y_ij = f(x_ij) + u_j + e_ij`` with ``u_j ~ N(0, s2u)`` and
    ``e_ij ~ N(0, s2e)``: the fixed part ``f`` is whatever ``estimator`` learns
    (gradient boosting, a forest, a linear model), the groups get random
    intercepts, as MERF (Hajjem, Bellavance & Larocque 2014) and GPBoost do.

    Each round fits the learner to ``y - u_g`` and then the random intercept model
    to the learner's residuals, with skhlm's engine (``lmer(r ~ 1 + (1 | g),
    REML = FALSE)``: one pass over the rows, EM on group sums).  The rounds start
    from the intercepts of the linear mixed model on X's numeric columns
    (``lmer(y ~ x + (1 | g), REML = FALSE)``), which has taken out of the group
    means what the features explain linearly, and stop when the intercepts move by
    less than ``tol`` of their spread.  From the second round a learner with a
    ``warm_start`` parameter goes on from its last fit: gradient boosting keeps its
    trees and adds those that its early stopping finds useful, an iterative solver
    starts from its last coefficients (a boosting learner without early stopping has
    spent its ``max_iter`` in the first round, and keeps that fit).  Bagging
    ensembles (forests), whose warm start would fit no new tree, are refitted.

    The variance components and intercepts are estimated from cross-fitted
    residuals (``residuals``): the learner that predicts a row was not fitted on it.
    A flexible learner's in-sample residuals are too small (it fits part of the
    noise), so estimates from them shrink s2e toward 0 and inflate the intercepts:
    MERF's known flaw.  A linear learner with few features barely overfits, and with
    ``estimator=None`` the default is in-sample residuals, for which the fit is
    lme4's ML fit of the linear model.

    Parameters
    ----------
    estimator : regressor, default=None
        The learner of the fixed part; ``LinearRegression()`` when None.  It is
        cloned, never fitted in place; the learner fitted on all rows is
        ``estimator_``.
    residuals : {"auto", "cross-fitted", "in-sample"}, default="auto"
        Which residuals of the learner the random intercept model is fitted to.
        "cross-fitted": the groups are split in two halves (each group wholly in
        one), the learner is fitted on each half and predicts the other,
        and the learner's variance, half the mean squared difference of the two
        halves' predictions, is taken off s2e (see Notes).  "in-sample": the
        learner's residuals on the rows it was fitted on, as MERF; right for a
        learner that does not overfit.  "auto" is "in-sample" for
        ``estimator=None`` (linear regression, for which the fit is lme4's ML fit)
        and "cross-fitted" for any other learner.
    max_iter : int, default=10
        The most rounds.
    tol : float, default=5e-2
        Stop when the random intercepts change by at most ``tol`` times their
        standard deviation ``sqrt(s2u)`` (root mean square over the groups) in one
        round, or, from the third round, when they change no less than in the round
        before (a boosting or forest learner's own round-to-round variability).
    group_column : str or int, default=None
        Read the group labels from this column of X instead of from ``groups``
        (see RandomInterceptRegressor); the column is not passed to the learner.
    unseen_groups : {"population", "error"}, default="population"
        What ``predict`` does with a group not seen in fit: the learner's
        prediction alone, or a ValueError.
    random_state : int, RandomState instance or None, default=None
        The assignment of rows to folds.  The learner's own randomness is its
        ``random_state``'s.
    verbose : int, default=0
        Print each round's log-likelihood and change when positive.

    Attributes
    ----------
    estimator_ : regressor
        The learner fitted on all rows to ``y - u_g``.
    variance_components_ : dict
        ``{"group": s2u, "residual": s2e}``, from the residual model of the last
        round, with ``learner_variance_`` taken off s2e.
    learner_variance_ : float
        The variance of the learner's predictions that the cross-fitted residuals
        carry on top of s2e (0 for in-sample residuals).
    icc_ : float
        ``s2u / (s2u + s2e)``.
    groups_ : ndarray of shape (n_groups,)
        The group labels seen in fit, sorted as in RandomInterceptRegressor.
    random_effects_ : ndarray of shape (n_groups,)
        Each group's random intercept (BLUP), aligned with ``groups_``.
    random_effects_var_ : ndarray of shape (n_groups,)
        Their conditional variances.
    n_iter_ : int
        Rounds run.
    converged_ : bool
        Whether the rounds stopped before ``max_iter``: the intercepts moved by less
        than ``tol`` of their spread, or (from the third round) by no less than in
        the round before, the floor of a learner that changes with every refit.
    log_likelihood_history_ : ndarray of shape (``n_iter_``,)
        The ML log-likelihood of each round's residual model: the objective, per
        round.
    n_features_in_ : int
        Number of features seen in fit.
    feature_names_in_ : ndarray of shape (``n_features_in_``,)
        When X is a DataFrame with string column names.

    See Also
    --------
    RandomInterceptRegressor : The linear model, with REML, inference and summary.
    LinearMixedRegressor : A linear fixed part with random slopes.

    Notes
    -----
    A cross-fitted residual ``y - f_other_half(x)`` is ``u_j + e + (f - f_half)(x)``:
    the learner's error adds to the noise.  Its variance part is measured by the
    two halves' learners, fitted on disjoint rows: half the mean squared difference
    of their predictions.  It is taken off the residual variance of the fitted
    random intercept model to give s2e; the part of the learner's error that is bias
    (the same in both halves) is not, and stays in s2e.  s2u is unaffected: the
    learner's error does not depend on the group.  The intercepts (BLUPs) are those
    of the residual model, whose noise is the residuals' own.

    A column that is constant within every group and differs between most groups (a
    school-level variable with a value of its own per school) lets a flexible learner
    learn the group means itself, and s2u shrinks toward 0: fit warns, naming it
    (not for scikit-learn's linear models, which fit a line through it).

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.ensemble import RandomForestRegressor
    >>> from skhlm import MixedEffectsRegressor, RandomInterceptRegressor
    >>> rng = np.random.default_rng(0)
    >>> groups = np.repeat(np.arange(50), 20)
    >>> X = rng.normal(size=(1000, 2))
    >>> y = X @ [1.0, -2.0] + rng.normal(size=50)[groups] + rng.normal(size=1000)

    The linear learner, iterated to convergence, is lme4's ML fit:

    >>> model = MixedEffectsRegressor(max_iter=200, tol=1e-10).fit(X, y, groups=groups)
    >>> {k: round(v, 3) for k, v in model.variance_components_.items()}
    {'group': 1.098, 'residual': 0.975}
    >>> ml = RandomInterceptRegressor(method="ml").fit(X, y, groups=groups)
    >>> {k: round(v, 3) for k, v in ml.variance_components_.items()}
    {'group': 1.098, 'residual': 0.975}
    >>> model.predict(X[:2], groups=[0, 99]).round(2)  # a seen group, a new one
    array([0.8 , 0.44])

    A random forest (or gradient boosting, any regressor), with cross-fitted residuals:

    >>> forest = RandomForestRegressor(n_estimators=20, min_samples_leaf=5, random_state=0)
    >>> forested = MixedEffectsRegressor(forest, random_state=0).fit(X, y, groups=groups)
    >>> {k: round(v, 2) for k, v in forested.variance_components_.items()}
    {'group': 1.09, 'residual': 1.04}
    """

    _parameter_constraints = {
        "estimator": [HasMethods(["fit", "predict"]), None],
        "residuals": [StrOptions({"auto", "cross-fitted", "in-sample"})],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left")],
        "group_column": [None, str, Integral],
        "unseen_groups": [StrOptions({"population", "error"})],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    __metadata_request__fit = {"groups": True}
    __metadata_request__predict = {"groups": True}
    __metadata_request__score = {"groups": True}

    def __init__(
        self,
        estimator=None,
        *,
        residuals="auto",
        max_iter=10,
        tol=5e-2,
        group_column=None,
        unseen_groups="population",
        random_state=None,
        verbose=0,
    ):
        self.estimator = estimator
        self.residuals = residuals
        self.max_iter = max_iter
        self.tol = tol
        self.group_column = group_column
        self.unseen_groups = unseen_groups
        self.random_state = random_state
        self.verbose = verbose

    def _learner(self):
        return LinearRegression() if self.estimator is None else self.estimator

    def _cross_fitted(self):
        if self.residuals == "auto":
            return self.estimator is not None
        return self.residuals == "cross-fitted"

    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y, groups=None):
        """Fit the learner and the random intercepts by alternation.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Whatever the learner accepts (a DataFrame keeps its dtypes).
        y : array-like of shape (n_samples,)
            Response.
        groups : array-like of shape (n_samples,), default=None
            Cluster label of each row.  Without groups the model is the learner
            alone, with a warning.

        Returns
        -------
        self : MixedEffectsRegressor
            The fitted estimator.

        See Also
        --------
        RandomInterceptRegressor.fit : The linear model's fit, by EM.

        Examples
        --------
        >>> from sklearn.tree import DecisionTreeRegressor
        >>> from skhlm import MixedEffectsRegressor
        >>> from skhlm.datasets import make_multilevel_regression
        >>> X, y, groups = make_multilevel_regression(n_groups=30, n_level2=0, random_state=0)
        >>> tree = DecisionTreeRegressor(min_samples_leaf=10, random_state=0)
        >>> model = MixedEffectsRegressor(tree, random_state=0).fit(X, y, groups=groups)
        >>> model.converged_, model.n_iter_  # rounds of learner and random intercepts
        (True, 4)
        >>> {k: round(v, 2) for k, v in model.variance_components_.items()}  # true: 0.2, 0.8
        {'group': 0.25, 'residual': 0.88}
        """
        return self._fit_or_nothing(X, y, groups)

    def _fit(self, X, y, groups):
        X, groups = self._take_groups(X, groups)
        _two_dimensional(X)
        validate_data(self, X, skip_check_array=True)
        n = _num_samples(X)
        if y is None:
            raise ValueError(f"{type(self).__name__} requires y to be passed, but the target y is None.")
        _checks.finite_response(y)
        y = column_or_1d(check_array(y, ensure_2d=False, dtype=np.float64, input_name="y"), warn=True)
        if y.shape[0] != n:
            raise ValueError(f"X has {n} rows but y has {y.shape[0]} values; pass one per row.")
        coding = group_coding(
            groups,
            n,
            "MixedEffectsRegressor.fit got no groups, so the model has no random "
            "effects: it is the learner alone. Pass fit(X, y, groups=labels), or set "
            "group_column.",
        )
        grouped = groups is not None
        # Each row's group, as the label number of groups_ (the engine's order).
        row_group = coding.level[coding.codes]
        learner = self._learner()
        # A linear learner fits a line through such a column, not each group's mean.
        linear = type(learner).__module__.startswith("sklearn.linear_model")
        if grouped and not linear:
            _warn_group_identifying_columns(X, coding)
        halves = None
        if self._cross_fitted() and grouped:
            rng = check_random_state(self.random_state)
            halves = group_halves(coding.codes, coding.sizes, rng)
        limits = Limits()
        # Start from the intercepts of the linear mixed model: the first round's
        # learner gets y less group effects that are not the features' (linear) doing.
        u = starting_intercepts(X, y, coding, limits) if grouped else None
        # From the second round the learners go on from their last fit where they can.
        warm = warm_startable(learner)
        history, converged, fitted, models, learner_variance, previous = [], False, None, None, 0.0, np.inf
        for n_iter in range(1, self.max_iter + 1):
            target = y - u[row_group] if grouped else y
            if halves is None:
                fitted = clone(learner) if fitted is None or not warm else fitted.set_params(warm_start=True)
                prediction = fitted.fit(X, target).predict(X)
            else:
                prediction, models = _cross_fit(learner, X, target, halves, models if warm else None)
            result = residual_model(y - prediction, coding, grouped, limits)
            history.append(result.user_log_likelihood)
            if not grouped:
                converged = True
                break
            new = result.random_effects[0]
            spread = np.sqrt(result.variance_components[0])
            change = float(np.sqrt(np.mean((new - u) ** 2)) / spread) if spread > 0 else 0.0
            u = new
            if self.verbose:
                print(f"round {n_iter:3d}  log-likelihood {history[-1]:.6f}  change {change:.3e}")
            # Converged: the intercepts moved by less than tol of their spread, or, from
            # the third round, by no less than in the round before: a learner that
            # changes with every refit (boosting, a forest) moves them by its own
            # variability, which more rounds do not reduce.
            if change <= self.tol or (n_iter >= 3 and change >= previous):
                converged = True
                break
            previous = change
        if not converged:
            _checks.warn(
                f"MixedEffectsRegressor did not converge in max_iter={self.max_iter} rounds "
                f"(tol={self.tol}); in the last round the random intercepts moved by "
                f"{change:.3g} of their standard deviation. Increase max_iter, or loosen tol.",
                ConvergenceWarning,
            )
        if halves is not None:  # (in-sample, the last round's learner is kept)
            learner_variance = _learner_variance(models, X, halves, prediction)
            fitted = clone(learner).fit(X, y - u[row_group])
        elif warm:
            fitted.set_params(warm_start=learner.get_params()["warm_start"])
        self.estimator_ = fitted
        self._result = result
        s2u, s2e = result.variance_components
        # The cross-fitted residuals carry the learner's variance on top of s2e.
        s2e = max(s2e - learner_variance, 0.0)
        self.learner_variance_ = learner_variance
        self.variance_components_ = {"group": s2u, "residual": s2e}
        self.icc_ = s2u / (s2u + s2e) if s2u > 0 else 0.0
        self.groups_ = result.levels if grouped else np.array([])
        self.random_effects_, self.random_effects_var_ = result.random_effects
        self.n_iter_ = n_iter
        self.converged_ = converged
        self.log_likelihood_history_ = np.asarray(history)
        return self

    def predict(self, X, groups=None, *, population=False):
        """The learner's prediction plus the group's random intercept where known.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Whatever the learner accepts, with the columns of fit.
        groups : array-like of shape (n_samples,), default=None
            Group labels: a group seen in fit adds its intercept, a new one adds
            nothing (or raises, see ``unseen_groups``).
        population : bool, default=False
            The learner's prediction alone for every row, with no warning.

        Returns
        -------
        y_pred : ndarray of shape (n_samples,)
            The predictions.

        See Also
        --------
        score : R^2 of these predictions.

        Examples
        --------
        >>> from skhlm import MixedEffectsRegressor
        >>> from skhlm.datasets import make_multilevel_regression
        >>> X, y, groups = make_multilevel_regression(n_groups=30, random_state=0)
        >>> model = MixedEffectsRegressor().fit(X, y, groups=groups)
        >>> model.predict(X[:2], groups=[0, 99]).round(2)  # a seen group, a new one
        array([ 0.53, -0.15])
        """
        check_is_fitted(self)
        X, groups = self._take_groups(X, groups)
        _two_dimensional(X)
        validate_data(self, X, skip_check_array=True, reset=False)
        y_pred = np.asarray(self.estimator_.predict(X), dtype=np.float64).copy()
        if groups is None and not population and self.groups_.size:
            self._warn_population(type(self).__name__)
        if groups is not None and not population:
            y_pred += self._random_part(groups, y_pred.shape[0], self.random_effects_)[0]
        return y_pred

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        learner = self._learner()
        inner = learner.__sklearn_tags__()
        tags.input_tags.allow_nan = inner.input_tags.allow_nan
        tags.input_tags.sparse = inner.input_tags.sparse
        tags.input_tags.categorical = inner.input_tags.categorical
        tags.input_tags.string = inner.input_tags.string
        return tags

