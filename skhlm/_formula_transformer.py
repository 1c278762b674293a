"""FormulaTransformer: a formula's fixed part as a scikit-learn transformer.

The fixed part is read at fit (formulaic's ModelSpec, with the levels of each
factor) and applied at transform by the same code as :meth:`LmerModel.design`, so
that a Pipeline clones and refits it with the model inside GridSearchCV.
"""

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin, _fit_context
from sklearn.utils.validation import check_is_fitted

from ._formula import _INTERCEPT, _as_frame, _formulaic, encode
from ._formula_terms import formula_error, split_top


def _fixed_formula(formula):
    """The right-hand side of a one-sided formula, "~ x + f" or "x + f"."""
    sides = split_top(formula, "~")
    if len(sides) > 2 or (len(sides) == 2 and sides[0][1]):
        raise ValueError(
            f"FormulaTransformer's formula {formula!r} has a left-hand side; it takes the "
            "fixed part only, such as '~ x + C(f)' (the response is the y of fit). For "
            "'y ~ x + (1 | g)' use skhlm.lmer."
        )
    rhs = sides[-1][1]
    if "|" in rhs:
        raise ValueError(
            f"FormulaTransformer's formula {formula!r} has a random-effects term (a bar, "
            "|); it takes the fixed part only. Use skhlm.lmer('y ~ x + (1 | g)', data) "
            "for a formula with random effects, or pass the group column with "
            "passthrough=['g'] to RandomInterceptRegressor(group_column='g')."
        )
    if not rhs:
        raise ValueError(f"FormulaTransformer's formula {formula!r} has no terms; write '~ x + C(f)'.")
    return rhs


class FormulaTransformer(TransformerMixin, BaseEstimator):
    """The fixed part of a formula as a design matrix, with lme4's column names.

    A Pipeline step that encodes a DataFrame by a one-sided formulaic formula
    (factors with treatment contrasts, interactions, ``log(x)``, ``I(x ** 2)``), as
    :func:`lmer` encodes a formula's fixed part.  The factors' levels are learned in
    ``fit`` and applied in ``transform``, so the step clones and refits with the
    model in ``GridSearchCV`` (whose grid can hold ``formulatransformer__formula``).
    The intercept column is left out: the estimator fits its own.

    Parameters
    ----------
    formula : str
        The fixed part, ``"~ x + C(f)"`` or ``"x + C(f)"``.  A left-hand side or a
        random-effects term (``(1 | g)``) is a ValueError: that is :func:`lmer`'s.
        So is a formula without an intercept (``0 + x``, ``x - 1``): the intercept
        cannot be removed here, set ``fit_intercept=False`` on the estimator.
    passthrough : sequence of str, default=()
        Columns copied unchanged after the design's columns, such as the group
        column that ``RandomInterceptRegressor(group_column=...)`` reads.

    Attributes
    ----------
    model_spec_ : formulaic.ModelSpec
        formulaic's specification of the formula, with the levels seen in fit.
    feature_names_out_ : ndarray of str of shape (n_design_columns,)
        The design's columns under lme4's names (``fM``, ``x:fM``), without the
        intercept and the passthrough columns.
    n_features_in_ : int
        Number of columns of the DataFrame seen in fit.
    feature_names_in_ : ndarray of str of shape (`n_features_in_`,)
        Its column names.

    See Also
    --------
    lmer : lme4's formula, random-effects term included, fitted in one call.

    Notes
    -----
    No row is ever dropped (formulaic's dropping of rows with missing values would
    misalign them with ``y``): a missing value, a missing column or a level not seen
    in fit is a ValueError that names it.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from sklearn.pipeline import make_pipeline
    >>> from skhlm import FormulaTransformer, RandomInterceptRegressor
    >>> rng = np.random.default_rng(0)
    >>> d = pd.DataFrame({"g": np.repeat(np.arange(30), 8), "x": rng.uniform(1, 2, 240),
    ...                   "f": rng.choice(["a", "b", "c"], 240)})
    >>> y = 1 + np.log(d["x"]) + 3 * (d["f"] == "c") + rng.normal(size=30)[d["g"]] + rng.normal(size=240)
    >>> FormulaTransformer("~ log(x) * f").fit(d).get_feature_names_out().tolist()
    ['log(x)', 'fb', 'fc', 'log(x):fb', 'log(x):fc']
    >>> pipe = make_pipeline(FormulaTransformer("~ x + C(f)", passthrough=["g"]),
    ...                      RandomInterceptRegressor(group_column="g")).fit(d, y)
    >>> pipe[-1].feature_names_in_.tolist(), pipe[-1].coef_.round(1).tolist()
    (['x', 'C(f)b', 'C(f)c'], [0.7, -0.3, 3.0])
    """

    _parameter_constraints = {
        "formula": [str],
        "passthrough": ["array-like"],
    }

    def __init__(self, formula, *, passthrough=()):
        self.formula = formula
        self.passthrough = passthrough

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Learn the formula's specification (the levels of its factors) from X.

        Parameters
        ----------
        X : DataFrame
            The columns the formula names, and the passthrough columns (a polars
            DataFrame is converted to pandas).
        y : None
            Ignored.

        Returns
        -------
        self : FormulaTransformer
            The fitted transformer.

        See Also
        --------
        transform : The design of data by what fit learned.

        Examples
        --------
        >>> import pandas as pd
        >>> from skhlm import FormulaTransformer
        >>> d = pd.DataFrame({"x": [1.0, 2.0, 3.0], "f": ["a", "b", "c"]})
        >>> FormulaTransformer("~ x + f").fit(d).feature_names_out_.tolist()
        ['x', 'fb', 'fc']
        """
        rhs = _fixed_formula(self.formula)
        data = self._frame(X)
        self._check_passthrough(data)
        try:
            # Rows with a missing value stay (and make encode's ValueError below).
            matrix = _formulaic().model_matrix(rhs, data, na_action="ignore")
        except Exception as error:
            formula_error(error, self.formula, data.columns)  # a ValueError if formulaic's
            raise
        if _INTERCEPT not in matrix.columns:
            raise ValueError(
                f"The formula {self.formula!r} removes the intercept, which "
                "FormulaTransformer cannot pass on to the estimator (its design never has "
                "the intercept column). Drop the 0 + (or - 1) and set "
                "fit_intercept=False on the estimator."
            )
        design = encode(matrix.model_spec, data)
        self.model_spec_ = matrix.model_spec
        self.feature_names_out_ = np.asarray(design.columns, dtype=object)
        clash = sorted(set(self.feature_names_out_) & set(self.passthrough))
        if clash:
            raise ValueError(
                f"The passthrough column(s) {clash} have the names of design columns of "
                f"{self.formula!r}; rename them."
            )
        self.feature_names_in_ = np.asarray([str(c) for c in data.columns], dtype=object)
        self.n_features_in_ = data.shape[1]
        return self

    def transform(self, X):
        """The design of X by the formula, then the passthrough columns.

        Parameters
        ----------
        X : DataFrame
            The columns the formula names, and the passthrough columns.

        Returns
        -------
        X_out : pandas DataFrame of shape (n_samples, n_design_columns + n_passthrough)
            The design (float columns under lme4's names, no intercept) with X's
            index, followed by the passthrough columns as they are in X.

        See Also
        --------
        LmerModel.design : The same encoding of a fitted lmer formula.

        Examples
        --------
        >>> import pandas as pd
        >>> from skhlm import FormulaTransformer
        >>> d = pd.DataFrame({"x": [1.0, 2.0, 3.0], "f": ["a", "b", "c"], "g": [1, 1, 2]})
        >>> step = FormulaTransformer("~ x + f", passthrough=["g"]).fit(d)
        >>> step.transform(d.iloc[1:])  # the levels of fit: "a" is the baseline
             x   fb   fc  g
        1  2.0  1.0  0.0  1
        2  3.0  0.0  1.0  2
        """
        check_is_fitted(self, "model_spec_")
        data = self._frame(X)
        self._check_passthrough(data)
        design = encode(self.model_spec_, data)
        design.index = data.index
        if not list(self.passthrough):
            return design
        return pd.concat([design, data[list(self.passthrough)]], axis=1)

    def get_feature_names_out(self, input_features=None):
        """The columns of :meth:`transform`'s output.

        Parameters
        ----------
        input_features : None
            Ignored (the names come from the formula).

        Returns
        -------
        feature_names_out : ndarray of str of shape (n_design_columns + n_passthrough,)
            ``feature_names_out_`` followed by the passthrough columns.

        See Also
        --------
        transform : Whose output's columns these are.

        Examples
        --------
        >>> import pandas as pd
        >>> from skhlm import FormulaTransformer
        >>> d = pd.DataFrame({"x": [1.0, 2.0, 3.0], "f": ["a", "b", "a"], "g": [1, 1, 2]})
        >>> step = FormulaTransformer("~ I(x ** 2) + x:f", passthrough=["g"]).fit(d)
        >>> step.get_feature_names_out()
        array(['I(x ** 2)', 'x:fa', 'x:fb', 'g'], dtype=object)
        """
        check_is_fitted(self, "model_spec_")
        return np.asarray([*self.feature_names_out_, *self.passthrough], dtype=object)

    def _frame(self, X):
        if not (isinstance(X, pd.DataFrame) or hasattr(X, "to_pandas")):
            raise TypeError(
                "FormulaTransformer takes a DataFrame (pandas or polars), whose columns "
                f"the formula names; got {type(X).__name__}."
            )
        return _as_frame(X, "FormulaTransformer")

    def _check_passthrough(self, data):
        missing = [c for c in self.passthrough if c not in data.columns]
        if missing:
            raise ValueError(
                f"The data lack the passthrough column(s) {missing} (columns given: "
                f"{list(data.columns)})."
            )

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.string = True
        tags.input_tags.categorical = True
        return tags
