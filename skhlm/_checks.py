"""Checks of the input and of the data's identifiability, with messages that say what
is wrong and what to do.  Each either passes, warns, or raises."""

import os
import sys
import warnings

import numpy as np
import pandas as pd

from .data.groups import is_polars
from .engine import criterion as crit

# Below this many groups s2u rests on too few group intercepts to be estimated
# well; the usual advice for random effects is at least 5 or 6 levels.
FEW_GROUPS = 5


def _internal_prefixes():
    import functools

    import joblib
    import sklearn

    # functools: a fit result computes its ML refit in a cached_property.
    folders = tuple(os.path.dirname(m.__file__) for m in (sys.modules[__package__], sklearn, joblib))
    return folders + (functools.__file__,)


def warn(message, category=UserWarning):
    """``warnings.warn`` attributed to the user's line: the first frame outside skhlm,
    scikit-learn, joblib and functools, however deep in a Pipeline or a model selection tool the
    warning arose (a fixed stacklevel would point into skhlm from some callers)."""
    internal = _internal_prefixes()
    frame, level = sys._getframe(1), 2
    while frame is not None and frame.f_code.co_filename.startswith(internal):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level)


def no_columns_as_array(X):
    """A DataFrame with no columns as an (n, 0) array, which validation accepts."""
    shape = getattr(X, "shape", None)
    if hasattr(X, "columns") and shape is not None and len(shape) == 2 and shape[1] == 0:
        return np.empty((shape[0], 0))
    return X


def not_dask(X, method="fit"):
    """Refuse a dask collection, which numpy would gather into memory whole."""
    if type(X).__module__.split(".")[0] in ("dask", "dask_expr"):
        door = "skhlm.dask.fit(model, X, y=..., groups=...)" if method == "fit" else "skhlm.dask.predict(model, X, groups=...)"
        raise TypeError(
            f"{method} got a dask {type(X).__name__}; converting it would gather every row "
            f"into this process. Use {door}, which computes on the workers."
        )


def numeric_columns(X):
    """Refuse a DataFrame (pandas or polars) with non-numeric columns, naming them."""
    if is_polars(X):
        bad = [n for n, t in X.schema.items() if not (t.is_numeric() or str(t) == "Boolean")]
    elif isinstance(X, pd.DataFrame):
        bad = [
            name
            for name, dtype in X.dtypes.items()
            if not (pd.api.types.is_numeric_dtype(dtype) or pd.api.types.is_bool_dtype(dtype))
        ]
    else:
        return
    if bad:
        raise ValueError(
            f"X has non-numeric column(s) {bad}. Encode them first (e.g. OneHotEncoder in "
            "a ColumnTransformer); if one holds the group labels, pass it as "
            "group_column instead."
        )


def finite_response(y):
    """Refuse NaN or infinite values in y, counting them (before validation, whose
    message would not)."""
    values = np.asarray(y) if y is not None else None
    if values is None or values.dtype.kind not in "fiu":
        return  # missing, non-numeric or complex: validation says so
    with np.errstate(invalid="ignore", over="ignore"):  # inf - inf: a NaN, no warning
        total = values.sum(dtype=np.float64)
    if not np.isfinite(total):
        count = int((~np.isfinite(values)).sum())
        if count:
            raise ValueError(
                f"y contains {count} NaN or infinite value(s) out of {values.size}. Drop "
                "those rows before fitting."
            )


def finite(X, feature_names=None, when="fitting"):
    """Refuse NaN or infinite values in X, counting them and naming their columns;
    ``when`` says what the caller is doing ("fitting", "predicting").

    The sum is a one-pass test (a non-finite value makes it non-finite); the
    element-wise test runs only when it fails.
    """
    with np.errstate(invalid="ignore", over="ignore"):  # inf - inf: a NaN, no warning
        total = X.sum(dtype=np.float64)
    if not np.isfinite(total):
        bad = ~np.isfinite(X)
        if bad.any():
            per_column = bad.sum(axis=0)
            names = feature_names if feature_names is not None else np.arange(X.shape[1])
            where = {str(names[k]): int(c) for k, c in enumerate(per_column) if c}
            raise ValueError(
                f"X contains {int(per_column.sum())} NaN or infinite value(s), by column: "
                f"{where}. Drop those rows or impute the values (e.g. "
                f"sklearn.impute.SimpleImputer in a Pipeline) before {when}."
            )


def tiny_values_message(tiny, feature_names=None):
    """What to say of columns (or y) too small for float64 (skhlm.data.accumulator.TinyValues)."""
    parts = []
    if tiny.spreads:
        where = {
            (str(feature_names[j]) if feature_names is not None else j): float(f"{s:.2g}")
            for j, s in tiny.spreads.items()
        }
        parts.append(f"X has column(s) whose values vary by too little for float64 (largest "
                     f"deviation from the mean, by column: {where})")
    if tiny.response_spread is not None:
        parts.append(f"y varies by too little for float64 (largest deviation from its "
                     f"mean: {tiny.response_spread:.2g})")
    return (
        "; ".join(parts) + ". Squares of such values underflow (below ~1e-300), so the "
        "fit would lose them. Rescale before fitting, e.g. multiply by a power of 10."
    )


def sample_weights(sample_weight, n_samples):
    """The rows' precision weights as a float64 array, or None: one finite weight
    >= 0 per row, not all 0 (a scalar weighs every row the same)."""
    if sample_weight is None:
        return None
    if is_polars(sample_weight):
        sample_weight = sample_weight.to_numpy()
    w = np.asarray(sample_weight)
    if w.ndim == 0:
        w = np.full(n_samples, w)
    if w.dtype.kind not in "iufb":
        raise ValueError(
            f"sample_weight must be numeric; got dtype {w.dtype}. Pass one number per row."
        )
    w = w.astype(np.float64)
    if w.ndim != 1 or w.shape[0] != n_samples:
        raise ValueError(
            f"sample_weight must be 1-D with one weight per row (n_samples={n_samples}); got "
            f"shape {w.shape}."
        )
    bad = ~np.isfinite(w)
    if bad.any():
        raise ValueError(
            f"sample_weight has {int(bad.sum())} NaN or infinite value(s), the first at row "
            f"{int(np.argmax(bad))}. Weights are precision weights, Var(e_i) = s2e / w_i: "
            "give every row a finite weight (0 drops the row)."
        )
    if (w < 0).any():
        raise ValueError(
            f"sample_weight has {int((w < 0).sum())} negative value(s), the first at row "
            f"{int(np.argmax(w < 0))} ({w[np.argmax(w < 0)]:g}). Precision weights are >= 0: "
            "Var(e_i) = s2e / w_i."
        )
    if n_samples and not (w > 0).any():
        raise ValueError(
            "sample_weight is 0 for every row, and a zero weight drops its row: there "
            "is nothing to fit. Give the rows positive weights."
        )
    return w


def group_count(n_groups, n_samples):
    """lme4's two refusals about the number of groups, and our warning for few."""
    if n_groups < 2:
        raise ValueError(
            f"groups has {n_groups} distinct label(s); a random intercept needs at least "
            "2 groups (lme4: grouping factors must have > 1 sampled level). Check the "
            "groups, or fit without groups for ordinary least squares."
        )
    if n_groups >= n_samples:
        raise ValueError(
            f"groups has {n_groups} distinct labels for {n_samples} rows; s2u and s2e are "
            "not identifiable unless some group has 2 or more rows (lme4: number of "
            "levels of each grouping factor must be < number of observations)."
        )
    if n_groups < FEW_GROUPS:
        warn(
            f"Only {n_groups} groups: s2u is estimated from {n_groups} group intercepts "
            "and is poorly determined (its standard error is large). Consider a fixed "
            "effect per group (one-hot columns) instead of a random intercept."
        )


def redundant_columns(standardization, feature_names):
    """Warn, as lme4 does, when columns were dropped as linear combinations of others."""
    dropped = np.flatnonzero(~standardization.kept)
    if dropped.size == 0:
        return
    names = [str(feature_names[k]) for k in dropped] if feature_names is not None else dropped.tolist()
    warn(
        f"X is rank deficient: column(s) {names} are constant or linear combinations of "
        "earlier columns, so they were dropped and get a coefficient of 0 (lme4: "
        "fixed-effect model matrix is rank deficient so dropping columns)."
    )


def identifiable(stats, grouped):
    """Refuse data whose likelihood has no maximum.

    Always: more fixed effects than rows.  With groups: a constant y, a y that X fits
    exactly, or a y that X plus a constant per group fits exactly (for instance y
    constant within every group).  Then s2e = 0 and the likelihood grows without
    bound (lme4 warns or fails to converge).  Without groups the model is ordinary
    least squares, for which an exact fit is a legitimate answer (s2e = 0).
    """
    if stats.n_obs <= stats.n_params:
        raise ValueError(
            f"Got n_samples={stats.n_obs} for {stats.n_params} fixed effects; the model "
            "needs more samples than fixed effects (intercept included)."
        )
    if not grouped:
        return
    # The statistics are standardized (a constant y has y'y = 0, not n).
    rss_ols = crit.ols_rss(stats, crit.gls_beta(stats, 0.0)[0])
    if stats.yty == 0 or rss_ols <= 1e-12 * stats.yty:
        raise ValueError(
            "y is constant, or fitted exactly by X: there is no residual variance to "
            "decompose. Check that y is the response you mean and that no column of X "
            "copies it."
        )
    if crit.within_group_rss(stats) <= 1e-10 * stats.yty:
        raise ValueError(
            "y does not vary within groups beyond what X explains exactly (e.g. y is "
            "constant within every group): the residual variance s2e is 0 and the "
            "likelihood has no maximum. Model the group means instead (one row per "
            "group, ordinary regression), or check the groups."
        )


def not_identified_yet(stats, grouped):
    """Why the rows seen so far (by partial_fit) cannot identify the model, or None:
    what :func:`group_count` and :func:`identifiable` refuse, which more rows may
    cure."""
    if grouped and stats.n_groups < 2:
        return "all of them are in one group; a random intercept needs rows of 2 or more groups."
    if grouped and stats.n_groups >= stats.n_obs:
        return (
            "no group has 2 rows yet, so s2u and s2e cannot be told apart; it fits once "
            "some group has 2 or more rows."
        )
    try:
        identifiable(stats, grouped)
    except ValueError as error:
        return f"they cannot identify the model yet: {error}"
    return None


def binary_response(y, estimator="RandomInterceptRegressor"):
    """Warn when y takes two values only: the model is for a continuous response.
    Two values among the first 64 rows are rare for a continuous y, so the full
    check (a sort of y) runs only then."""
    if np.unique(y[:64]).size > 2:
        return
    values = np.unique(y)
    if values.size == 2:
        shown = " and ".join(f"{v:g}" for v in values)
        warn(
            f"y takes only two values ({shown}). {estimator} fits a linear "
            "(Gaussian) mixed model for a continuous response; on a binary outcome it is "
            "a linear probability model, with predictions outside [0, 1] and wrong "
            "standard errors. A binary outcome needs a logistic mixed model (lme4's "
            "glmer(..., family = binomial)), which skhlm does not fit."
        )


def label_kind(labels):
    """"number", "string" or "other": the kind of a label array, by its dtype or, for
    objects, by its first label."""
    kind = labels.dtype.kind
    if kind in "iufb":
        return "number"
    if kind in "US":
        return "string"
    if kind == "O" and labels.size:
        first = labels[0]
        if isinstance(first, str):
            return "string"
        if isinstance(first, (int, float, np.number)) and not isinstance(first, bool):
            return "number"
    return "other"


def scalar(value):
    """A numpy scalar as the Python value it holds, for messages."""
    return value.item() if isinstance(value, np.generic) else value


def unseen_label_types(labels, levels):
    """Warn when no label given to predict was seen in fit and they are of another
    kind than fit's (1 against "1"): every row would silently be a new group."""
    given, fitted = label_kind(labels), label_kind(levels)
    if given == fitted or "other" in (given, fitted):
        return
    warn(
        f"None of the {labels.size} group labels given to predict was seen in fit: they "
        f"are {given}s (e.g. {scalar(labels[0])!r}) and fit's were {fitted}s (e.g. "
        f"{scalar(levels[0])!r}), "
        "so every row gets the population-level prediction. skhlm matches labels by "
        "value and type, as pandas does: 1 and '1' are different groups. Convert the "
        f"labels to fit's type, e.g. groups.astype({'str' if fitted == 'string' else 'int'})."
    )
