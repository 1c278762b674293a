"""
Data bigger than memory: the same model three ways, with the same numbers
=========================================================================

1. ``partial_fit`` over chunks, as they arrive (a stream, a database cursor);
2. ``skhlm.fit_parquet`` over Parquet files, read in batches by pyarrow;
3. ``skhlm.dask.fit`` on a Dask cluster (here a LocalCluster of two workers),
   where each worker sums its own partitions.

Each keeps only the sufficient statistics (per-group sums), never the rows, and each
equals the fit in memory.  The data here are small so that the example runs in
seconds; the mechanics are those of a billion rows.

Run: ``python examples/bigger_than_memory.py`` (needs the dask extra)
"""

# %%
# The fit in memory, for reference
# --------------------------------
#
# RIM2 of the :ref:`quickstart <sphx_glr_auto_examples_quickstart.py>`: math on
# ``desk``, ``escs`` and ``stratio``, with a random intercept per school. The fit
# needs only sums over the rows: :math:`X'X`, :math:`X'y`, :math:`y'y`, and each
# school's number of students and sums of its rows. Sums can be added up a piece at a
# time, so the three fits below reach the same estimates without ever holding all
# the rows.

import tempfile
from pathlib import Path

import numpy as np

from skhlm import RandomInterceptRegressor, fit_parquet
from skhlm.datasets import make_pisa_like

pisa = make_pisa_like(random_state=2018)
features = ["desk", "escs", "stratio"]
in_memory = RandomInterceptRegressor().fit(pisa[features], pisa["math"], groups=pisa["school"])

# %%
# 1. ``partial_fit`` over chunks
# ------------------------------
#
# :meth:`~skhlm.RandomInterceptRegressor.partial_fit` adds a chunk's sums to those
# of the chunks before it, then refits from the sums. The rows are shuffled first, so
# a school's students are spread over several chunks: the per-group sums are merged
# by school label, whatever chunk a student comes in.

# Chunks of 500 rows, in a shuffled order: schools span chunks.
shuffled = pisa.sample(frac=1.0, random_state=0)
chunked = RandomInterceptRegressor()
for start in range(0, len(shuffled), 500):
    chunk = shuffled.iloc[start : start + 500]
    chunked.partial_fit(chunk[features], chunk["math"], groups=chunk["school"])

# %%
# 2. ``fit_parquet`` over files
# -----------------------------
#
# :func:`~skhlm.fit_parquet` reads a folder of Parquet files in batches of
# ``batch_rows`` rows, adds up each batch's sums, and runs the fit once at the end.
# Here the shuffled rows are written to four files in a temporary folder, read in
# batches of 700 rows.


def write_parts(frame, folder, n_files=4):
    """Write ``frame`` to ``n_files`` Parquet files in ``folder``."""
    for k, part in enumerate(np.array_split(np.arange(len(frame)), n_files)):
        frame.iloc[part].to_parquet(Path(folder) / f"part{k}.parquet")


with tempfile.TemporaryDirectory() as folder:
    write_parts(shuffled, folder)
    streamed = fit_parquet(
        RandomInterceptRegressor(), folder, target="math", columns=features, group="school", batch_rows=700
    )

# %%
# 3. ``skhlm.dask.fit`` on a cluster
# ----------------------------------
#
# The same four files, read as a Dask DataFrame of four partitions. Each worker
# computes the sums of the partitions it holds; Dask merges them, and the client
# receives only the per-group sums. :func:`skhlm.dask.predict` returns a lazy Dask
# Series with one partition per partition of the input: nothing is computed until
# asked for, here by ``head(3)``.
#
# ``processes=False`` makes the two workers threads of this process. With worker
# processes (LocalCluster's default, and what a real cluster has), each worker starts
# by re-running the script's top level, so a script must then start the cluster
# under ``if __name__ == "__main__":``. The calls to skhlm are the same.

import dask.dataframe as dd
from distributed import Client, LocalCluster

import skhlm.dask

with (
    tempfile.TemporaryDirectory() as folder,
    LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cluster,
    Client(cluster),
):
    write_parts(shuffled, folder)
    ddf = dd.read_parquet(folder)[[*features, "math", "school"]]
    distributed = skhlm.dask.fit(RandomInterceptRegressor(), ddf, y="math", groups="school")
    scores = skhlm.dask.predict(distributed, ddf[[*features, "school"]], groups="school")
    print(f"predict on the cluster: a lazy {type(scores).__name__} of {ddf.npartitions} partitions; "
          f"its first values {scores.head(3).round(2).tolist()}")

# %%
# Four fits, one set of numbers
# -----------------------------
#
# The coefficients of the three predictors and the two variances, :math:`\sigma^2_u`
# (``s2u``, between schools) and :math:`\sigma^2_e` (``s2e``, within schools), of each
# fit. The sums are added up in a different order each time, so the results may
# differ in their last digits: the last line gives the largest relative difference
# of a coefficient from the fit in memory.

print(f"\n{'fit':<32}{'desk':>10}{'escs':>10}{'stratio':>10}{'s2u':>10}{'s2e':>10}")
for name, model in [("in memory", in_memory), ("partial_fit, chunks of 500", chunked),
                    ("fit_parquet, 4 files", streamed), ("skhlm.dask, 2 workers", distributed)]:
    s2u, s2e = model.variance_components_["group"], model.variance_components_["residual"]
    print(f"{name:<32}" + "".join(f"{v:>10.4f}" for v in [*model.coef_, s2u, s2e]))
worst = max(
    np.max(np.abs(m.coef_ / in_memory.coef_ - 1)) for m in (chunked, streamed, distributed)
)
print(f"\nlargest relative difference of a coefficient from the fit in memory: {worst:.1e}")
