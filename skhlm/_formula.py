"""``lmer(formula, data)``: lme4's formula as the front door to skhlm's estimators.

The formula is read once, at fit: :mod:`skhlm._formula_terms` takes out the
random-effects term, formulaic builds the fixed part's design matrix, and the
columns get lme4's names.  :class:`LmerModel` keeps formulaic's ModelSpec and
applies it to new data at predict.  The estimators never see a string.
"""

import dataclasses
import re
import warnings
from collections.abc import Mapping

import numpy as np
import pandas as pd

from . import _checks
from ._formula_terms import SUPPORTED, formula_error, lme4_name, parse
from ._intercept import RandomInterceptRegressor
from ._slopes import LinearMixedRegressor

# The estimators' parameters that the formula or REML sets, and what sets them.
_SET_BY_LMER = {
    "method": "REML=True or REML=False",
    "random_slopes": "the random-effects term, (x | g)",
    "covariance": "the bar of the random-effects term, | or ||",
    "fit_intercept": "the formula (0 + ... or - 1 removes the intercept)",
    "group_column": "the random-effects term's grouping column, (1 | g)",
}
_INTERCEPT = "Intercept"  # formulaic's name of the intercept column
_UNSEEN_LEVELS = "Data has categories outside of the nominated levels"


def _formulaic():
    try:
        import formulaic
    except ImportError as error:
        raise ImportError(
            "lmer needs formulaic to build the fixed effects of a formula; install it "
            'with pip install "skhlm[formula]" (or pip install formulaic).'
        ) from error
    return formulaic


def _as_frame(data, who):
    if isinstance(data, pd.DataFrame):
        return data
    if hasattr(data, "to_pandas"):  # polars, pyarrow
        return data.to_pandas()
    if isinstance(data, Mapping):
        return pd.DataFrame(data)
    raise TypeError(f"{who} takes the data as a pandas DataFrame, got {type(data).__name__}.")


def fixed_design(matrix):
    """(X, fit_intercept) of formulaic's model matrix: X a float DataFrame without the
    intercept column (the estimators fit their own), its columns named as lme4's."""
    names = [str(n) for n in matrix.columns]
    keep = [k for k, n in enumerate(names) if n != _INTERCEPT]
    columns = [lme4_name(names[k]) for k in keep]
    if len(set(columns)) < len(columns):
        raise ValueError(
            f"Two columns of the fixed part get the same lme4 name: {columns} (from "
            f"formulaic's {[names[k] for k in keep]}). Rename a column or a level."
        )
    values = matrix.to_numpy(dtype=np.float64)[:, keep]
    return pd.DataFrame(values, columns=columns), _INTERCEPT in names


def _estimator(term, fit_intercept, REML, params):
    for name in params:
        if name in _SET_BY_LMER:
            raise TypeError(f"lmer sets {name} from {_SET_BY_LMER[name]}; do not pass {name}=.")
    method = "reml" if REML else "ml"
    if term.slopes:
        return LinearMixedRegressor(
            random_slopes=list(term.slopes),
            covariance=term.covariance,
            method=method,
            fit_intercept=fit_intercept,
            **params,
        )
    return RandomInterceptRegressor(method=method, fit_intercept=fit_intercept, **params)


def _check_slopes(term, data, X, fixed):
    for slope in term.slopes:
        if slope not in data.columns:
            raise ValueError(
                f"The random slope {slope!r} of {term.text} is not a column of the data. "
                f"{SUPPORTED}."
            )
        column = data[slope]
        if not pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column):
            raise ValueError(
                f"The random slope {slope!r} of {term.text} is a {column.dtype} column; "
                "a random slope must be numeric (random effects of a factor's levels "
                f"are not supported). {SUPPORTED}."
            )
        if slope not in X.columns:
            raise ValueError(
                f"The random slope {slope!r} of {term.text} is not a fixed effect: the "
                f"fixed part {fixed!r} has no column {slope!r} (its columns: "
                f"{list(X.columns)}). Add it: ... + {slope} + {term.text}."
            )


def lmer(formula, data, *, REML=True, weights=None, **estimator_params):
    """Fit a linear mixed model written as lme4's formula.

    ``lmer("y ~ x + (1 | g)", data)`` fits RandomInterceptRegressor, and
    ``lmer("y ~ x + (x | g)", data)`` LinearMixedRegressor with ``x`` as a random
    slope (``(x || g)``: uncorrelated, ``covariance="diagonal"``), on the design that
    formulaic builds from the fixed part: factors (strings, pandas Categoricals,
    ``C(x)``) with treatment contrasts, interactions (``a * b``, ``a:b``),
    transforms (``log(x)``, ``I(x ** 2)``; formulaic evaluates them as Python, so a
    power is ``**``).  The columns are named as lme4 names them (``sexM``, not
    formulaic's ``sex[T.M]``).  Rows with a missing value in a variable of the
    model are dropped, as lme4 drops them, with a warning.

    Parameters
    ----------
    formula : str
        ``response ~ fixed terms + (1 + slopes | group)``: one random-effects term
        with a random intercept, grouped by a column of ``data``.  Each random slope
        must be a numeric column of ``data`` that is also a fixed effect.
    data : DataFrame
        The columns the formula names (a polars DataFrame or a dict of columns is
        converted to pandas).
    REML : bool, default=True
        REML (lme4's default) or, with False, maximum likelihood.
    weights : str or array-like of shape (len(data),), default=None
        Precision weights, as lme4's ``weights``: the name of a column of ``data``
        (lme4's ``weights = w``) or one weight per row.  ``Var(e_i) = s2e / w_i``;
        a row with a missing weight is dropped with the other incomplete rows, one
        of weight 0 is dropped by the fit (lme4 keeps it, and its logLik is -Inf).
    **estimator_params
        Passed to the estimator: ``max_iter``, ``tol``, ``verbose``,
        ``unseen_groups``.  The formula sets the others.

    Returns
    -------
    LmerModel
        The fitted model.

    Raises
    ------
    ValueError
        For a formula lmer cannot fit (no random-effects term, two of them, nested
        or crossed grouping, no random intercept, a slope that is not a fixed
        effect), naming the term and saying what is supported.
    ImportError
        Without formulaic: ``pip install "skhlm[formula]"``.

    See Also
    --------
    LmerModel : What lmer returns: the estimator, and the formula for new data.
    RandomInterceptRegressor : The estimator of ``(1 | g)``.
    LinearMixedRegressor : The estimator of ``(x | g)`` and ``(x || g)``.
    FormulaTransformer : A formula's fixed part as a Pipeline step.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from skhlm import lmer
    >>> rng = np.random.default_rng(0)
    >>> d = pd.DataFrame({"g": np.repeat(np.arange(30), 8), "x": rng.normal(size=240),
    ...                   "sex": rng.choice(["F", "M"], 240)})
    >>> d["y"] = 1 + d["x"] + 2 * (d["sex"] == "M") + rng.normal(size=30)[d["g"]] + rng.normal(size=240)
    >>> m = lmer("y ~ x + sex + (1 | g)", d)
    >>> m.estimator_
    RandomInterceptRegressor()
    >>> m.feature_names_in_.tolist(), m.coef_.round(2).tolist()
    (['x', 'sexM'], [1.02, 2.24])
    """
    parsed = parse(formula)
    data = _as_frame(data, "lmer")
    if not isinstance(REML, (bool, np.bool_)):
        raise TypeError(f"REML must be True or False, got {REML!r}.")
    term = parsed.term
    if term.group not in data.columns:
        raise ValueError(
            f"The grouping column {term.group!r} of {term.text} is not a column of the "
            f"data (its columns: {list(data.columns)})."
        )
    formulaic = _formulaic()
    # Positions, which survive formulaic's dropping of rows with missing values.
    rows = data.reset_index(drop=True)
    w = _weights(weights, rows)
    complete = rows[term.group].notna().to_numpy().copy()
    if w is not None:
        complete &= w.notna().to_numpy()
    rows = rows[complete]
    try:
        matrices = formulaic.model_matrix(f"{parsed.response} ~ {parsed.fixed}", rows)
    except Exception as error:
        formula_error(error, formula, rows.columns)  # a ValueError if formulaic's
        raise
    lhs, rhs = matrices.lhs, matrices.rhs
    if lhs.shape[1] != 1 or not pd.api.types.is_numeric_dtype(lhs.iloc[:, 0]):
        raise ValueError(
            f"The response {parsed.response!r} must be one numeric column; formulaic "
            f"made {list(lhs.columns)} of it."
        )
    dropped = len(data) - len(rhs)
    if dropped:
        _checks.warn(
            f"lmer dropped {dropped} of {len(data)} rows with a missing value in a "
            "variable of the model, as lme4 does (na.action = na.omit)."
        )
    X, fit_intercept = fixed_design(rhs)
    if X.shape[1] == 0 and not fit_intercept:
        raise ValueError(
            f"The formula {formula!r} has neither an intercept nor fixed effects; "
            "skhlm's estimators need one of them. Remove the 0 or - 1."
        )
    _check_slopes(term, data, X, parsed.fixed)
    y = pd.Series(lhs.iloc[:, 0].to_numpy(dtype=np.float64), name=parsed.response)
    groups = rows[term.group].loc[rhs.index].reset_index(drop=True)
    estimator = _estimator(term, fit_intercept, REML, estimator_params)
    sample_weight = None if w is None else w.loc[rhs.index].to_numpy()
    estimator.fit(X, y, groups=groups, sample_weight=sample_weight)
    return LmerModel(formula, estimator, rhs.model_spec, term.group)


def _weights(weights, rows):
    """lmer's weights as a Series on the rows' positions (None without weights)."""
    if weights is None:
        return None
    if isinstance(weights, str):
        if weights not in rows.columns:
            raise ValueError(
                f"weights={weights!r} is not a column of the data (its columns: "
                f"{list(rows.columns)}). Pass a column name or one weight per row."
            )
        w = rows[weights]
    else:
        w = weights.to_numpy() if hasattr(weights, "to_numpy") else np.asarray(weights)
        if w.ndim != 1 or w.shape[0] != len(rows):
            raise ValueError(
                f"weights must be a column name or one weight per row of the data "
                f"({len(rows)} rows); got shape {w.shape}."
            )
        w = pd.Series(w, index=rows.index)
    if not pd.api.types.is_numeric_dtype(w):
        raise ValueError(f"weights must be numeric; got dtype {w.dtype}.")
    return w.astype(np.float64)


class LmerModel:
    """A linear mixed model fitted by :func:`lmer`: its estimator, and how the
    formula encodes new data.

    Made by :func:`lmer`, not by hand.  The fitted attributes of the estimator
    (names ending in ``_``: ``coef_``, ``intercept_``, ``variance_components_``,
    ``random_effects_``, ``log_likelihood_``, ``feature_names_in_``, ...) read
    through: ``model.coef_`` is ``model.estimator_.coef_``.  ``skhlm.compare`` takes
    LmerModels, and they pickle.

    Parameters
    ----------
    formula : str
        The formula, as given to :func:`lmer`.
    estimator : RandomInterceptRegressor or LinearMixedRegressor
        The estimator lmer fitted.
    model_spec : formulaic.ModelSpec
        formulaic's specification of the fixed part.
    group : str
        The grouping column of the random-effects term.

    Attributes
    ----------
    formula : str
        The formula, as given.
    estimator_ : RandomInterceptRegressor or LinearMixedRegressor
        The fitted estimator; its features are the fixed part's columns, under lme4's
        names (``feature_names_in_``), and its groups the grouping column's labels.
    model_spec_ : formulaic.ModelSpec
        formulaic's specification of the fixed part, with the levels of each factor
        seen in fit: it encodes new data for :meth:`predict`.

    See Also
    --------
    lmer : Fits the model and makes the LmerModel.
    skhlm.compare : Likelihood-ratio tests between LmerModels.

    Examples
    --------
    >>> from skhlm import lmer
    >>> from skhlm.datasets import make_pisa_like
    >>> m = lmer("math ~ desk + escs + (1 | school)", make_pisa_like())
    >>> m
    LmerModel('math ~ desk + escs + (1 | school)', estimator_=RandomInterceptRegressor())
    >>> m.coef_.round(1), {k: round(v) for k, v in m.variance_components_.items()}
    (array([ 8.9, 24.1]), {'group': 1554, 'residual': 6196})
    """

    def __init__(self, formula, estimator, model_spec, group):
        self.formula = formula
        self.estimator_ = estimator
        self.model_spec_ = model_spec
        self._group = group

    def __getattr__(self, name):
        # Only public fitted attributes; anything else (private names, pickle's
        # probes on an instance not yet restored) is not there.
        estimator = self.__dict__.get("estimator_")
        if estimator is not None and name.endswith("_") and not name.startswith("_"):
            return getattr(estimator, name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __repr__(self):
        return f"LmerModel({self.formula!r}, estimator_={self.estimator_!r})"

    def design(self, data):
        """The fixed part's design of new data: the estimator's X, with lme4's column
        names and without the intercept column.

        Factors are encoded with the levels seen in fit (a level never seen in fit,
        or a missing column or value, is a ValueError that names it).

        Parameters
        ----------
        data : DataFrame
            The columns of the fixed part (a polars DataFrame or a dict of columns is
            converted to pandas).

        Returns
        -------
        X : DataFrame of shape (n_samples, n_features)
            Float columns under lme4's names (``feature_names_in_``), with data's rows.

        See Also
        --------
        FormulaTransformer : The same encoding as a Pipeline step.

        Examples
        --------
        >>> import pandas as pd
        >>> from skhlm import lmer
        >>> from skhlm.datasets import make_pisa_like
        >>> m = lmer("math ~ escs * C(desk) + (1 | school)", make_pisa_like())
        >>> m.design(pd.DataFrame({"escs": [0.5, 1.0], "desk": [1, 0]}))
           escs  C(desk)1  escs:C(desk)1
        0   0.5       1.0            0.5
        1   1.0       0.0            0.0
        """
        return encode(self.model_spec_, _as_frame(data, "LmerModel"))

    def predict(self, data, *, return_std=False, population=False):
        """Predict new data: ``x' beta`` plus the random effects of each row's group
        where the group was seen in fit.

        Parameters
        ----------
        data : DataFrame
            The fixed part's columns and the grouping column (not needed with
            ``population=True``).
        return_std : bool, default=False
            Also return the standard deviation of a new observation.
        population : bool, default=False
            ``x' beta`` for every row (lme4's ``re.form = NA``).

        Returns
        -------
        y_pred : ndarray of shape (n_samples,)
            The predictions.
        y_std : ndarray of shape (n_samples,)
            The standard deviation of a new observation; only with ``return_std=True``.

        See Also
        --------
        RandomInterceptRegressor.predict : The estimator's predict, which this calls.

        Examples
        --------
        >>> import pandas as pd
        >>> from skhlm import lmer
        >>> from skhlm.datasets import make_pisa_like
        >>> m = lmer("math ~ desk + escs + (1 | school)", make_pisa_like())
        >>> new = pd.DataFrame({"school": ["S001", "S999"], "desk": [1, 1], "escs": [0.0, 0.0]})
        >>> m.predict(new).round(1)  # a school seen in fit, a new one
        array([535.4, 480.8])
        """
        data = _as_frame(data, "LmerModel.predict")
        X = self.design(data)
        groups = None
        if not population:
            if self._group not in data.columns:
                raise ValueError(
                    f"The data lack the grouping column {self._group!r}; pass it, or "
                    "population=True for x'beta without the random effects."
                )
            groups = data[self._group].reset_index(drop=True)
        return self.estimator_.predict(X, groups=groups, return_std=return_std, population=population)

    def summary(self, **kwargs):
        """The estimator's summary (``level``, ``ddf``), printed with this formula.

        Parameters
        ----------
        **kwargs
            ``level`` and ``ddf``, passed to the estimator's ``summary``.

        Returns
        -------
        :class:`~skhlm._summary.Summary` or :class:`~skhlm._slope_summary.SlopeSummary`
            As the estimator's, with the formula as it was given.

        See Also
        --------
        RandomInterceptRegressor.summary : What each number is.

        Examples
        --------
        >>> from skhlm import lmer
        >>> from skhlm.datasets import make_pisa_like
        >>> s = lmer("math ~ desk + escs + (1 | school)", make_pisa_like()).summary()
        >>> s.formula, s.n_groups
        ('math ~ desk + escs + (1 | school)', 164)
        """
        summary = self.estimator_.summary(**kwargs)
        return dataclasses.replace(summary, formula=" ".join(self.formula.split()))


def encode(spec, data):
    """The fixed part's design of ``data`` by formulaic's ``spec``: a float DataFrame with
    lme4's column names and without the intercept column (:func:`fixed_design`).

    Factors are encoded with the levels seen in fit; a level never seen in fit, a
    missing column or a missing value is a ValueError that names it (formulaic would
    encode an unseen level as the baseline, and drop a row with a missing value).
    """
    # formulaic names an attribute of a column as a variable (f.str.upper).
    used = spec.variables_by_source.get("data", ())
    variables = sorted({_column_of(v, data.columns) or v for v in used})
    missing = [v for v in variables if v not in data.columns]
    if missing:
        raise ValueError(
            f"The data lack the column(s) {missing} of the fixed part {str(spec.formula)!r} "
            f"(columns given: {list(data.columns)})."
        )
    for v in variables:
        n_missing = int(data[v].isna().sum())
        if n_missing:
            raise ValueError(
                f"Column {v!r} has {n_missing} missing value(s); the fixed part needs "
                "every row's value. Drop or fill those rows first."
            )
    # pandas deprecates (and will refuse) formulaic's recoding of a Categorical
    # that has categories beyond fit's levels, even unused ones.
    unused = {
        v: data[v].cat.remove_unused_categories()
        for v in variables
        if isinstance(data[v].dtype, pd.CategoricalDtype)
    }
    data = data.assign(**unused) if unused else data
    _check_levels(spec, data, variables)
    with warnings.catch_warnings():
        # formulaic's answer to an unseen level is to encode it as the baseline.
        warnings.filterwarnings("error", message=_UNSEEN_LEVELS)
        try:
            matrix = spec.get_model_matrix(data, na_action="raise")
        except Warning as unseen:
            raise ValueError(f"A factor has a level not seen in fit: {unseen}") from None
    return fixed_design(matrix)[0]


def _column_of(variable, columns):
    """The column of the data that a formulaic variable is, or is an attribute of."""
    parts = variable.split(".")
    for k in range(len(parts), 0, -1):
        if ".".join(parts[:k]) in columns:
            return ".".join(parts[:k])
    return None


def _check_levels(spec, data, variables):
    """A ValueError naming the column and the levels of a factor never seen in fit:
    formulaic would encode them as the baseline level."""
    for factor, state in spec.factor_contrasts.items():
        expr = str(factor.expr)
        used = [v for v in variables if v in factor.required_variables]
        if expr in data.columns:
            column = expr
        elif len(used) == 1 and re.fullmatch(rf"C\(\s*`?{re.escape(used[0])}`?\s*(,.*)?\)", expr, re.DOTALL):
            column = used[0]
        else:
            continue  # an expression of the data: formulaic's warning, made an error
        levels = pd.Index(list(state.levels))
        values = pd.unique(data[column].dropna())
        unseen = [v for v in values if levels.get_indexer([v])[0] < 0]
        if unseen:
            shown = ", ".join(repr(_checks.scalar(v)) for v in unseen[:5])
            shown += ", ..." if len(unseen) > 5 else ""
            raise ValueError(
                f"Column {column!r} has level(s) {shown} not seen in fit, which has no "
                f"coefficient for them (levels seen: {list(levels)}). Drop those rows or "
                "map them to a seen level."
            )
