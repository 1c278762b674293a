"""fit_parquet: a fit on Parquet or CSV files, streamed in batches of rows."""

from pathlib import Path

import numpy as np
import pandas as pd

# Rows of a file after which a progress bar is worth showing (with tqdm installed).
_PROGRESS_ROWS = 10_000_000


def fit_parquet(model, paths, *, target, columns, group=None, weight=None, batch_rows=1_000_000, progress="auto"):
    """Fit a model on Parquet (or CSV) files too large for memory, batch by batch.

    The files are read with pyarrow in batches of ``batch_rows`` rows; each batch's
    sufficient statistics are added to those of the batches before (as
    ``partial_fit`` adds them), and EM runs once, on the statistics of every row.
    Memory holds one batch and the per-group sums, whatever the number of rows, and
    the result equals ``model.fit`` on all the rows at once (to EM's tolerance).

    Parameters
    ----------
    model : RandomInterceptRegressor or LinearMixedRegressor
        The estimator to fit, in place, as ``fit`` would (earlier fits and chunks are
        discarded).  Its parameters (``method``, ``fit_intercept``, ...) apply.
    paths : str, Path or sequence of them
        Parquet files (``.parquet``, ``.pq``), CSV files (``.csv``), or directories
        of Parquet files; read in the order given (a directory's files sorted).
    target : str
        The response's column.
    columns : sequence of str
        The features' columns, in order; they become ``feature_names_in_``.
    group : str, default=None
        The group labels' column (None: no groups, ordinary least squares).
    weight : str, default=None
        A column of precision weights (``sample_weight``).
    batch_rows : int, default=1_000_000
        Rows per batch: the memory used is about ``batch_rows * (len(columns) + 3)``
        float64 numbers, plus the per-group sums.
    progress : bool or "auto", default="auto"
        Show a progress bar (needs tqdm); "auto" shows one when tqdm is installed
        and the files hold more than 1e7 rows.

    Returns
    -------
    model
        The fitted estimator.  Its summary has no scaled residuals (they would need
        the rows again).

    Raises
    ------
    ValueError
        A missing column (named, with the file's columns), a batch that fails
        validation (the file and its first row are named), or rows that cannot
        identify the model.  The model is then as it was before the call.
    ImportError
        Without pyarrow: ``pip install pyarrow``.

    See Also
    --------
    RandomInterceptRegressor.partial_fit : The same sums, from chunks you pass.
    skhlm.dask.fit : The same sums, computed on a dask cluster.

    Examples
    --------
    >>> import numpy as np, pandas as pd, tempfile, os
    >>> from skhlm import RandomInterceptRegressor, fit_parquet
    >>> rng = np.random.default_rng(0)
    >>> d = pd.DataFrame({"school": rng.integers(0, 40, 2000), "x": rng.normal(size=2000)})
    >>> d["y"] = 1 + 2 * d["x"] + rng.normal(size=40)[d["school"]] + rng.normal(size=2000)
    >>> folder = tempfile.mkdtemp()
    >>> for k in range(4):
    ...     d.iloc[500 * k : 500 * (k + 1)].to_parquet(os.path.join(folder, f"part{k}.parquet"))
    >>> streamed = fit_parquet(RandomInterceptRegressor(), folder, target="y", columns=["x"],
    ...                        group="school", batch_rows=300)
    >>> in_memory = RandomInterceptRegressor().fit(d[["x"]], d["y"], groups=d["school"])
    >>> bool(np.allclose(streamed.coef_, in_memory.coef_, rtol=1e-8))
    True
    """
    if not hasattr(model, "_add_chunk"):
        raise TypeError(
            "fit_parquet fits RandomInterceptRegressor and LinearMixedRegressor; got "
            f"{type(model).__name__}."
        )
    if isinstance(batch_rows, bool) or not isinstance(batch_rows, (int, np.integer)) or batch_rows < 1:
        raise ValueError(f"batch_rows must be a positive integer, got {batch_rows!r}.")
    files = _files(paths)
    columns = [str(c) for c in columns]
    needed = list(dict.fromkeys([*columns, target, *(c for c in (group, weight) if c is not None)]))
    readers = [_reader(path, needed, batch_rows) for path in files]
    total = sum(r[1] for r in readers) if all(r[1] is not None for r in readers) else None
    bar = _progress_bar(progress, total)
    before = dict(vars(model))
    try:
        model._forget_chunks()
        for path, (batches, _) in zip(files, readers):
            for batch in batches():
                _add_batch(model, batch, path, columns, target, group, weight)
                if bar is not None:
                    bar.update(batch.num_rows)
        if not hasattr(model, "_accumulator"):
            raise ValueError(f"The files {[str(f) for f in files]} hold no rows.")
        model._not_fitted_reason = ""  # one message, raised below, not a warning
        model._refit()
        if model._not_fitted_reason:
            raise ValueError(f"The {model._accumulator.n_obs} rows cannot identify the model: {model._not_fitted_reason}")
    except BaseException:
        vars(model).clear()
        vars(model).update(before)
        raise
    finally:
        if bar is not None:
            bar.close()
    return model


def _files(paths):
    if isinstance(paths, (str, Path)):
        paths = [paths]
    files = []
    for p in map(Path, paths):
        if p.is_dir():
            inside = sorted(f for f in p.iterdir() if f.suffix in (".parquet", ".pq"))
            if not inside:
                raise ValueError(f"The directory {str(p)!r} has no .parquet files.")
            files.extend(inside)
        elif p.exists():
            files.append(p)
        else:
            raise ValueError(f"No such file or directory: {str(p)!r}.")
    if not files:
        raise ValueError("paths names no files.")
    return files


def _pyarrow():
    try:
        import pyarrow  # noqa: F401
        import pyarrow.csv
        import pyarrow.parquet
    except ImportError as error:  # pragma: no cover - pyarrow is in the test extra
        raise ImportError("fit_parquet reads files with pyarrow: pip install pyarrow") from error
    return pyarrow


def _reader(path, needed, batch_rows):
    """(a function returning the file's batches of the needed columns, its rows or
    None when unknown), after checking that the columns are there."""
    pa = _pyarrow()
    if path.suffix == ".csv":
        names = pa.csv.open_csv(path).schema.names
        _check_columns(needed, names, path)
        options = pa.csv.ConvertOptions(include_columns=needed)

        def batches():
            with pa.csv.open_csv(path, convert_options=options) as stream:
                yield from _rebatched(stream, batch_rows)

        return batches, None
    file = pa.parquet.ParquetFile(path)
    _check_columns(needed, file.schema_arrow.names, path)

    def batches():
        yield from pa.parquet.ParquetFile(path).iter_batches(batch_size=batch_rows, columns=needed)

    return batches, file.metadata.num_rows


def _rebatched(stream, batch_rows):
    """CSV blocks (of pyarrow's block size) joined into batches of ``batch_rows``."""
    import pyarrow as pa

    pending, rows = [], 0
    for block in stream:
        pending.append(block)
        rows += block.num_rows
        if rows >= batch_rows:
            yield pa.Table.from_batches(pending).combine_chunks().to_batches()[0]
            pending, rows = [], 0
    if rows:
        yield pa.Table.from_batches(pending).combine_chunks().to_batches()[0]


def _check_columns(needed, names, path):
    missing = [c for c in needed if c not in names]
    if missing:
        raise ValueError(f"{str(path)!r} has no column(s) {missing}; its columns are {list(names)}.")


def _column(batch, name):
    return batch.column(name).to_numpy(zero_copy_only=False)


def _add_batch(model, batch, path, columns, target, group, weight):
    # Column-major: each column is one contiguous copy (row-major writes are strided,
    # 2-3x slower); the pass centers either layout.
    X = np.empty((len(columns), batch.num_rows)).T
    try:
        for k, name in enumerate(columns):
            X[:, k] = _column(batch, name)
        y = _column(batch, target).astype(np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{str(path)!r}: a feature or the target is not numeric ({error}).") from None
    groups = None if group is None else _column(batch, group)
    w = None if weight is None else _column(batch, weight)
    try:
        model._add_chunk(pd.DataFrame(X, columns=columns, copy=False), y, groups, w, in_place=True)
    except ValueError as error:
        raise ValueError(f"{str(path)!r}, a batch of {batch.num_rows} rows: {error}") from None


def _progress_bar(progress, total):
    if progress == "auto":
        if total is None or total < _PROGRESS_ROWS:
            return None
        try:
            from tqdm.auto import tqdm
        except ImportError:
            return None
    elif progress:
        try:
            from tqdm.auto import tqdm
        except ImportError as error:
            raise ImportError("progress=True needs tqdm: pip install tqdm") from error
    else:
        return None
    return tqdm(total=total, unit="rows", unit_scale=True, desc="fit_parquet")
