"""Group labels: validation and integer coding.

Groups are integer codes plus a sorted array of levels, never an indicator matrix.
"""

import numpy as np
import pandas as pd


def _as_1d(groups, name="groups"):
    if isinstance(groups, (pd.Series, pd.Index, pd.Categorical)):
        return groups
    if isinstance(groups, pd.DataFrame):
        if groups.shape[1] != 1:
            raise ValueError(
                f"{name} must be 1-D, one label per row; got a DataFrame with "
                f"{groups.shape[1]} columns. Pass a single column, e.g. df['school']."
            )
        return groups.iloc[:, 0]
    arr = np.asarray(groups)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise ValueError(
            f"{name} must be 1-D, one label per row; got an array of shape {arr.shape}. "
            "Pass a 1-D array or a pandas Series of cluster labels."
        )
    return arr


def encode_groups(groups, n_samples):
    """Integer codes 0..G-1 for the rows and the sorted levels they index.

    Labels of any hashable dtype work: ints, strings, objects, pandas Categorical
    (unused categories are ignored; levels follow the category order).  Labels of
    mixed types that cannot be sorted keep their order of first appearance.

    Raises
    ------
    ValueError
        If groups is not 1-D, has the wrong length, or has missing labels.
    """
    labels = _labels_for_rows(groups, n_samples)
    fast = _small_int_codes(labels)
    if fast is not None:
        return fast
    try:
        codes, levels = pd.factorize(labels, sort=True)
    except TypeError:
        codes, levels = pd.factorize(labels, sort=False)
    n_missing = int(np.count_nonzero(codes < 0))
    if n_missing:
        raise ValueError(
            f"groups has {n_missing} missing label(s) (None or NaN) out of {n_samples} "
            "rows. Drop those rows or give them a group label before fitting."
        )
    return codes.astype(np.intp, copy=False), np.asarray(levels)


def _small_int_codes(labels):
    """Codes and sorted levels of non-negative integer labels by a lookup table:
    the same answer as pd.factorize(sort=True), several times faster.  None when
    the labels are of another kind, or too large for a table of ~ n entries."""
    if not isinstance(labels, (np.ndarray, pd.Series)) or labels.dtype.kind not in "iu":
        return None
    values = np.asarray(labels)
    if values.size == 0 or values.min() < 0 or values.max() > 4 * values.size + 1024:
        return None
    present = np.bincount(values) > 0
    lookup = np.cumsum(present) - 1
    return lookup[values].astype(np.intp), np.flatnonzero(present).astype(values.dtype)


def as_labels(groups):
    """The labels as a 1-D numpy array."""
    return np.asarray(_as_1d(groups))


def _labels_for_rows(groups, n_samples):
    """The labels, 1-D, one per row of X."""
    labels = _as_1d(groups)
    if len(labels) != n_samples:
        raise ValueError(
            f"groups has {len(labels)} labels but X has {n_samples} rows; "
            "pass one group label per row of X."
        )
    return labels


def lookup_groups(groups, levels, n_samples):
    """Index of each label in ``levels``, -1 for a label not seen in fit."""
    labels = np.asarray(_labels_for_rows(groups, n_samples))
    return pd.Index(levels).get_indexer(labels)


_PASSTHROUGH_HINT = (
    "If X comes out of a ColumnTransformer, pass the group column through untouched: "
    "ColumnTransformer(..., remainder='passthrough', verbose_feature_names_out=False)"
    ".set_output(transform='pandas'), and keep it out of every numeric transformer's "
    "column list."
)


def split_group_column(X, group_column):
    """Split X into (features, group labels) by ``group_column``.

    A string names a DataFrame column; an integer is a position (as in
    ColumnTransformer), for arrays and DataFrames alike.  The labels are returned
    untouched, so strings survive; the features are everything else.
    """
    if isinstance(group_column, str):
        columns = getattr(X, "columns", None)
        if columns is None:
            raise ValueError(
                f"group_column={group_column!r} names a column, but X has no column names "
                f"(it is a {type(X).__name__}). Pass X as a DataFrame, or group_column as "
                f"an integer position. {_PASSTHROUGH_HINT}"
            )
        if group_column not in columns:
            prefixed = [c for c in columns if str(c).endswith(f"__{group_column}")]
            hint = (
                f" X has {prefixed[0]!r}: the transformer prefixed the name; set "
                "verbose_feature_names_out=False."
                if prefixed
                else ""
            )
            shown = ", ".join(map(repr, list(columns)[:12])) + (", ..." if len(columns) > 12 else "")
            raise ValueError(
                f"X has no column {group_column!r} (group_column); its columns are "
                f"[{shown}].{hint} {_PASSTHROUGH_HINT}"
            )
        return X.drop(columns=group_column), X[group_column]

    if not hasattr(X, "iloc"):
        X = np.asarray(X)
        if X.ndim != 2:
            raise ValueError(
                f"X must be 2-D to hold the group column; got shape {X.shape}."
            )
    n_columns = X.shape[1]
    if not -n_columns <= group_column < n_columns:
        raise ValueError(
            f"group_column={group_column} is out of range: X has {n_columns} columns. "
            f"{_PASSTHROUGH_HINT}"
        )
    if hasattr(X, "iloc"):
        return X.drop(columns=X.columns[group_column]), X.iloc[:, group_column]
    return np.delete(X, group_column, axis=1), X[:, group_column]
