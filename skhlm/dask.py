"""Fitting on a Dask DataFrame: the statistics computed where the partitions live.

``skhlm.dask.fit(model, ddf, y="y", groups="school")`` fits a RandomInterceptRegressor
or a LinearMixedRegressor on a dask DataFrame of any size.  Each partition's sums are computed by the worker
that holds it, and Dask's own machinery merges them: a tree reduction (``sum`` with
``split_every``) for the cross-products, and a groupby aggregation (with
``split_out``) for the per-group sums.  Only those sums, O(G p) numbers, reach the
client, which runs the EM on them.  :func:`predict` returns a lazy dask Series.

Needs the ``dask`` extra: ``pip install "skhlm[dask]"``.

The data are read twice: once for their (weighted) means, the point they are
centered at, so that large offsets lose no digits, and once for the sums.
``ddf.persist()`` first, where the data fit in the cluster's memory, to read them
once.
"""

import numpy as np
import pandas as pd

from . import _checks
from .data.accumulator import _Sums
from .data.finalize import _finalize
from .data.groups import encode_groups
from .engine.result import ModelNames


def _dask():
    try:
        import dask.dataframe as dd
    except ImportError as error:  # pragma: no cover - dask is in the test extra
        raise ImportError('skhlm.dask needs dask: pip install "skhlm[dask]"') from error
    return dd


def fit(model, X, y, groups=None, sample_weight=None, *, split_every=None, split_out=1):
    """Fit ``model`` on a dask DataFrame, as ``model.fit`` would on it in memory.

    Parameters
    ----------
    model : RandomInterceptRegressor or LinearMixedRegressor
        Fitted in place (an earlier fit is discarded); its parameters apply (the
        random slopes' products are summed per group with the rest).
    X : dask DataFrame
        The features, or the features and the columns named by ``y``, ``groups`` and
        ``sample_weight``.
    y : str or dask Series
        The response: a column of ``X`` (then not a feature), or a Series with X's
        partitions.
    groups : str or dask Series, default=None
        The group labels, likewise; None fits ordinary least squares (with a warning).
    sample_weight : str or dask Series, default=None
        Precision weights, likewise.
    split_every : int, default=None
        The tree reduction's fan-in (Dask's default when None).
    split_out : int, default=1
        Output partitions of the per-group aggregation: more spreads the group sums
        over the workers when there are many groups.

    Returns
    -------
    model
        The fitted estimator: its numbers equal an in-memory fit on the same rows
        (to EM's tolerance), whatever the partitioning.  It has no scaled residuals.

    Raises
    ------
    ValueError
        For bad values in a partition (named, with its number), missing columns, or
        data that cannot identify the model; the model is then as it was.

    See Also
    --------
    predict : Lazy predictions on a dask DataFrame.
    skhlm.fit_parquet : The same fit from files, on one machine.

    Examples
    --------
    >>> import dask.dataframe as dd
    >>> import numpy as np
    >>> import skhlm.dask
    >>> from skhlm import RandomInterceptRegressor
    >>> from skhlm.datasets import make_multilevel_regression
    >>> X, y, groups = make_multilevel_regression(n_groups=30, random_state=0)
    >>> ddf = dd.from_pandas(X.assign(y=y, school=groups), npartitions=3)
    >>> model = skhlm.dask.fit(RandomInterceptRegressor(), ddf, y="y", groups="school")
    >>> in_memory = RandomInterceptRegressor().fit(X, y, groups=groups)
    >>> bool(np.allclose(model.coef_, in_memory.coef_, rtol=1e-8))
    True
    """
    if not hasattr(model, "_fit_and_publish") or not hasattr(model, "_forget_chunks"):
        raise TypeError(
            "skhlm.dask.fit fits RandomInterceptRegressor and LinearMixedRegressor; got "
            f"{type(model).__name__}."
        )
    frame, features, target, group, weight = _frame(X, y, groups, sample_weight)
    slopes = ()
    if hasattr(model, "_slopes_of_data") and group is not None:
        slopes = model._slopes_of_data(len(features), np.asarray(features, dtype=object))
    before = dict(vars(model))
    try:
        _fit(model, frame, features, target, group, weight, split_every, split_out, slopes)
    except BaseException:
        vars(model).clear()
        vars(model).update(before)
        raise
    return model


def _frame(X, y, groups, sample_weight):
    """One dask DataFrame with every column, and the names of the parts."""
    dd = _dask()
    if not isinstance(X, dd.DataFrame):
        raise TypeError(f"X must be a dask DataFrame; got {type(X).__name__}. Use model.fit for data in memory.")
    frame, names = X, {}
    for role, value in (("y", y), ("groups", groups), ("sample_weight", sample_weight)):
        if value is None:
            names[role] = None
        elif isinstance(value, str):
            if value not in X.columns:
                raise ValueError(f"{role}={value!r} is not a column of X (its columns: {list(X.columns)}).")
            names[role] = value
        elif isinstance(value, dd.Series):
            if value.npartitions != X.npartitions:
                raise ValueError(
                    f"{role} has {value.npartitions} partitions and X {X.npartitions}; give "
                    "them the same partitions, or pass a column name of X."
                )
            names[role] = f"__skhlm_{role}"
            frame = frame.assign(**{names[role]: value})
        else:
            raise TypeError(f"{role} must be a column name of X or a dask Series; got {type(value).__name__}.")
    if names["y"] is None:
        raise ValueError("y is required: a column name of X or a dask Series.")
    roles = {v for v in names.values() if v is not None}
    features = [str(c) for c in X.columns if c not in roles]
    return frame, features, names["y"], names["groups"], names["sample_weight"]


def _arrays(part, features, target, weight, number):
    """A partition's X, y and weights as float64, refusing bad values by name."""
    where = f"partition {number}"
    try:
        X = part[features].to_numpy(dtype=np.float64)
        y = part[target].to_numpy(dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{where}: a feature or the response is not numeric ({error}).") from None
    bad = ~np.isfinite(X)
    if bad.any():
        counts = {features[j]: int(c) for j, c in enumerate(bad.sum(axis=0)) if c}
        raise ValueError(f"{where}: NaN or infinite values in X, by column: {counts}. Drop or impute them.")
    if not np.isfinite(y).all():
        raise ValueError(f"{where}: y has {int((~np.isfinite(y)).sum())} NaN or infinite value(s).")
    w = None
    if weight is not None:
        try:
            w = _checks.sample_weights(part[weight].to_numpy(), len(part)) if len(part) else np.zeros(0)
        except ValueError as error:
            if "is 0 for every row" not in str(error):  # another partition may weigh
                raise ValueError(f"{where}: {error}") from None
            w = np.zeros(len(part))
    return X, y, w


def _moments(part, features, target, weight, partition_info=None):
    """Pass 1: the partition's sum of weights and weighted sums of X and y."""
    X, y, w = _arrays(part, features, target, weight, (partition_info or {}).get("number"))
    w = np.ones(len(y)) if w is None else w
    row = np.concatenate([[w.sum()], w @ X, [w @ y]])
    return pd.DataFrame([row], columns=_moment_names(features))


def _moment_names(features):
    return ["w", *(f"x{j}" for j in range(len(features))), "y"]


def _cross_products(part, features, target, weight, x_ref, y_ref, partition_info=None):
    """Pass 2: the partition's centered, weighted cross-products (one flat row)."""
    X, y, w = _arrays(part, features, target, weight, (partition_info or {}).get("number"))
    xc, yc = X - x_ref, y - y_ref
    k = len(features)
    if w is not None:
        root = np.sqrt(w)
        xc *= root[:, None]
        yc *= root
        positive = w[w > 0]
        counts = [positive.shape[0], np.log(positive).sum()]
    else:
        counts = [len(y), 0.0]
    row = np.concatenate([(xc.T @ xc).ravel(), yc @ xc, [yc @ yc], counts])
    return pd.DataFrame([row], columns=_cross_names(k))


def _cross_names(k):
    return [f"c{j}" for j in range(k * k + k + 1)] + ["n", "log_w"]


def _group_rows(part, features, target, group, weight, x_ref, y_ref, slopes, partition_info=None):
    """The partition's rows as the per-group sums need them: w (x - ref), w (y - ref)
    and w, by group label (summed by the groupby); with random slopes also each
    slope's products w (x_s - ref_s) [x - ref, y - ref]."""
    X, y, w = _arrays(part, features, target, weight, (partition_info or {}).get("number"))
    if part[group].isna().any():
        raise ValueError(
            f"partition {(partition_info or {}).get('number')}: {int(part[group].isna().sum())} "
            "missing group label(s). Drop those rows or give them a label."
        )
    w = np.ones(len(y)) if w is None else w
    xc, yc = X - x_ref, y - y_ref
    columns = [w, xc * w[:, None], yc * w]
    if slopes:
        d = np.column_stack([xc, yc])
        columns.append((xc[:, list(slopes), None] * d[:, None, :] * w[:, None, None]).reshape(len(y), -1))
    values = np.column_stack(columns)
    out = pd.DataFrame(values, columns=_group_names(features, slopes), index=part.index)
    out.insert(0, "__skhlm_group", part[group].to_numpy())
    return out


def _group_names(features, slopes):
    k = len(features)
    return _moment_names(features) + [f"z{a}_{j}" for a in range(len(slopes)) for j in range(k + 1)]


def _fit(model, frame, features, target, group, weight, split_every, split_out, slopes=()):
    import dask

    k = len(features)
    args = (features, target, weight)
    meta = pd.DataFrame({c: pd.Series(dtype="f8") for c in _moment_names(features)})
    moments = frame.map_partitions(_moments, *args, meta=meta).sum(split_every=split_every).compute()
    total = float(moments["w"])
    if not total > 0:
        raise ValueError("The data have no rows (or only rows of weight 0).")
    if model.fit_intercept:
        x_ref = moments.iloc[1 : k + 1].to_numpy() / total
        y_ref = float(moments["y"]) / total
    else:
        x_ref, y_ref = np.zeros(k), 0.0
    cross_meta = pd.DataFrame({c: pd.Series(dtype="f8") for c in _cross_names(k)})
    cross = frame.map_partitions(_cross_products, *args, x_ref, y_ref, meta=cross_meta)
    cross = cross.sum(split_every=split_every)
    if group is not None:
        rows_meta = pd.DataFrame({c: pd.Series(dtype="f8") for c in _group_names(features, slopes)})
        rows_meta.insert(0, "__skhlm_group", pd.Series(dtype=frame[group].dtype))
        rows = frame.map_partitions(_group_rows, features, target, group, weight, x_ref, y_ref, slopes, meta=rows_meta)
        by_group = rows.groupby("__skhlm_group").sum(split_out=split_out)
        cross, by_group = dask.compute(cross, by_group)
    else:
        cross = cross.compute()
    c = cross.to_numpy()
    xtx = c[: k * k].reshape(k, k)
    xty, yty = c[k * k : k * k + k], float(c[k * k + k])
    if not (np.isfinite(xtx).all() and np.isfinite(xty).all() and np.isfinite(yty)):
        raise ValueError("The squares of X or y overflow float64 (values beyond about 1e150); rescale them.")
    n, log_w = int(cross["n"]), float(cross["log_w"])
    if group is not None:
        labels = by_group.index.to_numpy()
        levels = encode_groups(labels, labels.shape[0]).levels  # fit's order of the labels
        position = pd.Index(labels).get_indexer(levels)
        by_label = by_group.iloc[position]
        sizes = by_label["w"].to_numpy()
        gx = np.ascontiguousarray(by_label.iloc[:, 1 : k + 1].to_numpy())
        gy = by_label["y"].to_numpy()
        gz = None
        if slopes:
            gz = np.ascontiguousarray(by_label.iloc[:, k + 2 :].to_numpy()).reshape(-1, len(slopes), k + 1)
    else:
        gz = None
        levels = np.zeros(1, dtype=np.intp)
        sizes = np.array([total])
        gx = (moments.iloc[1 : k + 1].to_numpy() - total * x_ref)[None, :]
        gy = np.array([float(moments["y"]) - total * y_ref])
    weighted = weight is not None
    sums = _Sums(
        n=n, weight=total, weighted=weighted, log_weights=log_w, x_ref=x_ref, y_ref=y_ref,
        xtx=xtx, xty=xty, yty=yty, sizes=sizes if weighted else np.rint(sizes).astype(np.int64),
        gx=gx, gy=gy, level=np.arange(levels.shape[0]), levels=levels, by_size=False,
        slopes=tuple(slopes), gz=gz,
    )
    stats, units, levels = _finalize(sums, model.fit_intercept)
    grouped = group is not None
    if grouped:
        _checks.group_count(stats.n_groups, stats.n_obs)
    else:
        _checks.warn(
            "skhlm.dask.fit got no groups, so the model has no random effects and the fit "
            "is ordinary least squares (s2u = 0). Pass groups=<column>."
        )
    _checks.identifiable(stats, grouped)
    _checks.redundant_columns(units, features)
    model._forget_chunks()
    for name in [n for n in vars(model) if n.endswith("_")]:
        delattr(model, name)
    model.n_features_in_ = k
    model.feature_names_in_ = np.asarray(features, dtype=object)
    names = ModelNames(str(target), str(group or "group"), tuple(features))
    model._fit_and_publish(stats, units, levels if grouped else None, names, slopes=slopes)


def predict(model, X, groups=None, *, population=False):
    """``model.predict`` on every partition of a dask DataFrame: a lazy dask Series.

    Parameters
    ----------
    model : fitted RandomInterceptRegressor (or any skhlm estimator)
        The model, sent to the workers with each partition's task.
    X : dask DataFrame
        The features, and the group column when ``groups`` names one.
    groups : str, default=None
        The column of X with the group labels (not a feature).
    population : bool, default=False
        ``x' beta`` for every row, as ``predict(..., population=True)``.

    Returns
    -------
    dask Series
        Computed only when asked (``.compute()``, ``.to_parquet()``): scoring a
        billion rows never gathers them.

    See Also
    --------
    fit : The fit on a dask DataFrame.
    skhlm.RandomInterceptRegressor.predict : What each partition runs.

    Examples
    --------
    >>> import dask.dataframe as dd
    >>> import skhlm.dask
    >>> from skhlm import RandomInterceptRegressor
    >>> from skhlm.datasets import make_multilevel_regression
    >>> X, y, groups = make_multilevel_regression(n_groups=30, random_state=0)
    >>> model = RandomInterceptRegressor().fit(X, y, groups=groups)
    >>> ddf = dd.from_pandas(X.assign(school=groups), npartitions=3)
    >>> lazy = skhlm.dask.predict(model, ddf, groups="school")
    >>> bool((lazy.compute().to_numpy() == model.predict(X, groups=groups)).all())
    True
    """
    dd = _dask()
    if not isinstance(X, dd.DataFrame):
        raise TypeError(f"X must be a dask DataFrame; got {type(X).__name__}.")
    if groups is not None and groups not in X.columns:
        raise ValueError(f"groups={groups!r} is not a column of X (its columns: {list(X.columns)}).")
    features = [c for c in X.columns if c != groups]
    if groups is None and not population and getattr(model, "groups_", np.array([])).size:
        model._warn_population(type(model).__name__)
    return X.map_partitions(_predict_partition, model, features, groups, population, meta=(None, "f8"))


def _predict_partition(part, model, features, groups, population):
    labels = None if groups is None else part[groups].to_numpy()
    values = model.predict(part[features], groups=labels, population=population or groups is None)
    return pd.Series(values, index=part.index)
