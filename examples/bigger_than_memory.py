"""
Data bigger than memory: the same model three ways, with the same numbers
=========================================================================

1. ``partial_fit`` over chunks, as they arrive (a stream, a database cursor);
2. ``skhlm.fit_parquet`` over Parquet files, read in batches by pyarrow;
3. ``skhlm.dask.fit`` on a Dask cluster (here a LocalCluster of two worker
   processes), where each worker sums its own partitions.

Each keeps only the sufficient statistics (per-group sums), never the rows, and each
equals the fit in memory.  The data here are small so that the example runs in
seconds; the mechanics are those of a billion rows.

Run: ``python examples/bigger_than_memory.py`` (needs the dask extra)
"""

import tempfile
from pathlib import Path

import numpy as np

from skhlm import RandomInterceptRegressor, fit_parquet
from skhlm.datasets import make_pisa_like


def main():
    pisa = make_pisa_like(random_state=2018)
    features = ["desk", "escs", "stratio"]
    in_memory = RandomInterceptRegressor().fit(pisa[features], pisa["math"], groups=pisa["school"])

    # 1. Chunks of 500 rows, in a shuffled order: schools span chunks.
    shuffled = pisa.sample(frac=1.0, random_state=0)
    chunked = RandomInterceptRegressor()
    for start in range(0, len(shuffled), 500):
        chunk = shuffled.iloc[start : start + 500]
        chunked.partial_fit(chunk[features], chunk["math"], groups=chunk["school"])

    with tempfile.TemporaryDirectory() as folder:
        # 2. Four Parquet files, read in batches of 700 rows.
        for k, part in enumerate(np.array_split(np.arange(len(shuffled)), 4)):
            shuffled.iloc[part].to_parquet(Path(folder) / f"part{k}.parquet")
        streamed = fit_parquet(
            RandomInterceptRegressor(), folder, target="math", columns=features, group="school", batch_rows=700
        )

        # 3. The same files as a dask DataFrame on a two-worker cluster.
        import dask.dataframe as dd
        from distributed import Client, LocalCluster

        import skhlm.dask

        with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster, Client(cluster):
            ddf = dd.read_parquet(folder)[[*features, "math", "school"]]
            distributed = skhlm.dask.fit(RandomInterceptRegressor(), ddf, y="math", groups="school")
            scores = skhlm.dask.predict(distributed, ddf[[*features, "school"]], groups="school")
            print(f"predict on the cluster: a lazy {type(scores).__name__} of {ddf.npartitions} partitions; "
                  f"its first values {scores.head(3).round(2).tolist()}")

    print(f"\n{'fit':<32}{'desk':>10}{'escs':>10}{'stratio':>10}{'s2u':>10}{'s2e':>10}")
    for name, model in [("in memory", in_memory), ("partial_fit, chunks of 500", chunked),
                        ("fit_parquet, 4 files", streamed), ("skhlm.dask, 2 workers", distributed)]:
        s2u, s2e = model.variance_components_["group"], model.variance_components_["residual"]
        print(f"{name:<32}" + "".join(f"{v:>10.4f}" for v in [*model.coef_, s2u, s2e]))
    worst = max(
        np.max(np.abs(m.coef_ / in_memory.coef_ - 1)) for m in (chunked, streamed, distributed)
    )
    print(f"\nlargest relative difference of a coefficient from the fit in memory: {worst:.1e}")


if __name__ == "__main__":
    main()
