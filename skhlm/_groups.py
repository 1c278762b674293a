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
    labels = _as_1d(groups)
    if len(labels) != n_samples:
        raise ValueError(
            f"groups has {len(labels)} labels but X has {n_samples} rows; "
            "pass one group label per row of X."
        )
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


def lookup_groups(groups, levels, n_samples):
    """Index of each label in ``levels``, -1 for a label not seen in fit."""
    labels = _as_1d(groups)
    if len(labels) != n_samples:
        raise ValueError(
            f"groups has {len(labels)} labels but X has {n_samples} rows; "
            "pass one group label per row of X."
        )
    return pd.Index(levels).get_indexer(np.asarray(labels))
