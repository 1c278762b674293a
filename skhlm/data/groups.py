"""Group labels: validation and integer coding.

Groups are integer codes plus an array of levels (the labels, sorted where they can
be), never an indicator matrix.
"""

from dataclasses import dataclass

import numpy as np
import pandas as pd


def is_polars(X):
    """Whether X is a polars DataFrame or Series (polars is not imported)."""
    return type(X).__module__.split(".")[0] == "polars"


def _as_1d(groups, name="groups"):
    if isinstance(groups, (pd.Series, pd.Index, pd.Categorical)):
        return groups
    if isinstance(groups, str):
        raise ValueError(
            f"{name}={groups!r} is a string, not one label per row. To take the groups "
            f"from the column {groups!r} of X, pass group_column={groups!r} to the "
            f"estimator, or pass the column itself: {name}=X[{groups!r}]."
        )
    if is_polars(groups):
        groups = groups.to_numpy()
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


@dataclass(frozen=True)
class GroupCoding:
    """The rows' groups as integers, with the groups numbered in order of size.

    Group i (of G) is the one with the i-th smallest size (ties in label order): the
    groups of each size are then a contiguous range of numbers, so that sums over
    groups of each size are taken on slices, with no gather (skhlm.data.stats).
    """

    codes: np.ndarray  # (n,) intp: the number of each row's group
    sizes: np.ndarray  # (G,) int64, ascending: rows per group
    level: np.ndarray  # (G,) intp: group i has label levels[level[i]]
    levels: np.ndarray  # (G,) the labels: sorted, in category order for a
    # Categorical, in order of appearance if they cannot be sorted

    @property
    def n_groups(self):
        return self.sizes.shape[0]

    @classmethod
    def single(cls, n_samples):
        """All rows in one group, labelled 0 (a fit without groups)."""
        return cls(
            codes=np.zeros(n_samples, dtype=np.intp),
            sizes=np.array([n_samples]),
            level=np.zeros(1, dtype=np.intp),
            levels=np.zeros(1, dtype=np.intp),
        )


def encode_groups(groups, n_samples):
    """The :class:`GroupCoding` of the rows' labels.

    Labels of any hashable dtype work: ints, strings, objects, pandas Categorical
    (unused categories are ignored; levels follow the category order).  Labels of
    mixed types that cannot be sorted keep their order of first appearance.

    Raises
    ------
    ValueError
        If groups is not 1-D, has the wrong length, or has missing labels.
    """
    labels = _labels_for_rows(groups, n_samples)
    fast = _small_int_coding(labels)
    if fast is not None:
        return fast
    codes, uniques, ordered = factorize(labels)
    n_missing = int(np.count_nonzero(codes < 0))
    if n_missing:
        raise ValueError(
            f"groups has {n_missing} missing label(s) (None or NaN) out of {n_samples} "
            "rows. Drop those rows or give them a group label before fitting."
        )
    counts = np.bincount(codes, minlength=uniques.shape[0])
    if ordered:  # a Categorical: the category order, unused categories left out
        order = np.flatnonzero(counts)
    else:  # sorted as pandas sorts (numbers before strings), else as they came
        order = _sort_order(uniques)
    level, rank, sorted_sizes = _size_order(counts[order])
    # label number (in uniques) -> its group's number in size order; one gather.
    table = np.zeros(uniques.shape[0], dtype=rank.dtype)
    table[order] = rank
    return GroupCoding(table[codes].astype(np.intp), sorted_sizes, level, np.asarray(uniques[order]))


def factorize(labels):
    """(codes, uniques, ordered): each row's number in ``uniques`` (-1 for a missing
    label) and the distinct labels, as a numpy array, in order of appearance or, for a
    Categorical (``ordered`` True), all its categories in their order.

    ``pd.factorize`` does it, through the fastest path for each kind of label: a
    Categorical's own codes, pyarrow's dictionary encoding for arrow-backed strings,
    pandas' string hash table for object strings; python-backed pandas strings are
    factorized as the object array they hold (their own path is 2x slower).
    """
    dtype = getattr(labels, "dtype", None)
    if isinstance(dtype, pd.CategoricalDtype):
        categorical = labels.array if isinstance(labels, (pd.Series, pd.Index)) else labels
        return np.asarray(categorical.codes), np.asarray(categorical.categories), True
    if isinstance(dtype, pd.StringDtype) and dtype.storage == "python":
        labels = labels.to_numpy(dtype=object)
    codes, uniques = pd.factorize(labels)
    return codes, np.asarray(uniques), False


def _sort_order(uniques):
    """The order that sorts the distinct labels as ``pd.factorize(sort=True)`` does
    (numbers before strings when they are mixed), or as they came when they cannot
    be sorted."""
    try:
        rank, _ = pd.factorize(uniques, sort=True)
    except TypeError:
        return np.arange(uniques.shape[0])
    order = np.empty_like(rank)
    order[rank] = np.arange(rank.shape[0])
    return order


def _size_order(sizes):
    """The groups by size (stable), each group's place in that order, and the sizes
    in that order."""
    # numpy sorts 16-bit integers by radix, O(G): 3x faster than int64 at G = 5e5.
    small = sizes.shape[0] == 0 or sizes.max() < 2**16
    level = np.argsort(sizes.astype(np.uint16) if small else sizes, kind="stable")
    dtype = _code_dtype(sizes.shape[0])
    rank = np.empty(sizes.shape[0], dtype=dtype)
    rank[level] = np.arange(sizes.shape[0], dtype=dtype)
    return level, rank, sizes[level]


def _code_dtype(n_groups):
    # int32: half the cache footprint of intp in the label table's gather.
    return np.int32 if n_groups < 2**31 else np.intp


def _small_int_coding(labels):
    """The coding of non-negative integer labels by a lookup table: the same levels
    as pd.factorize(sort=True), several times faster, and the rows' numbers in size
    order from the same lookup.  None when the labels are of another kind, or too
    large for a table of ~ n entries."""
    # numpy integer dtypes only: pandas' nullable Int64 may hold NA (then factorize
    # below reports the missing labels).
    dtype = labels.dtype if isinstance(labels, (np.ndarray, pd.Series)) else None
    if not isinstance(dtype, np.dtype) or dtype.kind not in "iu":
        return None
    values = np.asarray(labels)
    if values.size == 0 or values.min() < 0 or values.max() > 4 * values.size + 1024:
        return None
    counts = np.bincount(values)
    levels = np.flatnonzero(counts > 0)  # 3x faster on a bool
    sizes = counts[levels]
    level, rank, sorted_sizes = _size_order(sizes)
    # label -> its group's number (int32: the gather below is 40% faster at 5e5
    # groups than from the int64 counts).
    table = np.empty(counts.shape[0], dtype=rank.dtype)
    table[levels] = rank
    # The codes are copied out as intp: the fit reads them ~10 ms faster at 5e5
    # groups (n = 1e6) than the int32 gather's own output, in a fresh process.
    codes = table[values].astype(np.intp)
    return GroupCoding(codes, sorted_sizes, level, levels.astype(values.dtype, copy=False))


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
    """Index of each label in ``levels``, -1 for a label not seen in fit.

    Labels match as in ``pd.Index(levels).get_indexer(labels)``.  The rows' labels are
    factorized (:func:`factorize`), and only the distinct ones are looked up: 4x to
    50x faster than looking up every row, for strings and Categoricals.
    """
    labels = _labels_for_rows(groups, n_samples)
    index = pd.Index(levels)
    dtype = getattr(labels, "dtype", None)
    if isinstance(dtype, np.dtype) and dtype.kind in "iufb":
        fast = _small_int_lookup(np.asarray(labels), levels)
        # other numbers: a direct lookup is fast
        return fast if fast is not None else index.get_indexer(np.asarray(labels))
    # factorize merges the labels that are equal and hash alike, as the index's own
    # lookup does (1, 1.0 and True alike).  A missing label (code -1) is unseen: it
    # takes the table's last entry.
    codes, uniques, _ = factorize(labels)
    table = np.append(index.get_indexer(uniques), -1)
    return table[codes]


def _small_int_lookup(labels, levels):
    """lookup_groups for non-negative integer labels and levels, by a table of
    ~ n entries (as _small_int_coding); None for other labels."""
    if labels.dtype.kind not in "iu" or levels.dtype.kind not in "iu" or not labels.size:
        return None
    top = max(int(labels.max()), int(levels.max(initial=0)))
    if labels.min() < 0 or levels.min(initial=0) < 0 or top > 4 * labels.size + 1024:
        return None
    table = np.full(top + 1, -1, dtype=np.intp)
    table[levels] = np.arange(levels.shape[0])
    return table[labels]


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
        if is_polars(X):
            return X.drop(group_column), X.get_column(group_column)
        return X.drop(columns=group_column), X[group_column]

    if not (hasattr(X, "iloc") or is_polars(X)):
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
    if is_polars(X):
        name = X.columns[group_column]
        return X.drop(name), X.get_column(name)
    if hasattr(X, "iloc"):
        return X.drop(columns=X.columns[group_column]), X.iloc[:, group_column]
    return np.delete(X, group_column, axis=1), X[:, group_column]
