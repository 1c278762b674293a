"""Data bigger than memory: fit_parquet over Parquet files, and skhlm.dask on a cluster.

    python benchmarks/out_of_core.py --rows 1e8            # out of core (~15 min here)
    python benchmarks/out_of_core.py --dask --rows 1e7     # Dask, 1 and 2 workers

Data: 10 features, groups drawn uniformly (1e6 groups for 1e8 rows: n / 100), a random
intercept, written as Parquet files of 1e7 rows (row groups of 1e6) under --dir (not
the repository), once; later runs reuse them.

Out of core: the time of pyarrow reading the same columns of the same files in the
same batches (the floor: the read alone), then fit_parquet, each in a fresh child
process whose peak resident memory (VmHWM) is reported.

Dask: a LocalCluster of 1 and then 2 worker processes (one thread each), reading
the files with dask.dataframe.read_parquet, against the fit in memory of the same
rows (read into pandas first; the read is not timed).
"""

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
P = 10
FILE_ROWS = 10_000_000
COLUMNS = [f"x{j}" for j in range(P)]


def write(directory, n, n_groups, seed=0):
    import pyarrow as pa
    import pyarrow.parquet as pq

    directory.mkdir(parents=True, exist_ok=True)
    stamp = directory / f"done_{n}_{n_groups}"
    if stamp.exists():
        return sorted(directory.glob("part*.parquet"))
    for old in directory.glob("part*.parquet"):
        old.unlink()
    rng = np.random.default_rng(seed)
    u = rng.normal(size=n_groups)
    beta = np.linspace(1.0, -1.0, P)
    chunk = 1_000_000
    for f, start in enumerate(range(0, n, FILE_ROWS)):
        rows = min(FILE_ROWS, n - start)
        with pq.ParquetWriter(directory / f"part{f:04d}.parquet", _schema()) as writer:
            for s in range(0, rows, chunk):
                m = min(chunk, rows - s)
                X = rng.normal(size=(m, P))
                g = rng.integers(0, n_groups, m)
                y = 1.0 + X @ beta + u[g] + 2.0 * rng.normal(size=m)
                cols = {c: X[:, j] for j, c in enumerate(COLUMNS)}
                cols.update(y=y, g=g)
                writer.write_table(pa.table(cols, schema=_schema()), row_group_size=chunk)
        print(f"  wrote {directory / f'part{f:04d}.parquet'}", flush=True)
    stamp.write_text("")
    return sorted(directory.glob("part*.parquet"))


def _schema():
    import pyarrow as pa

    return pa.schema([*(pa.field(c, pa.float64()) for c in COLUMNS), pa.field("y", pa.float64()), pa.field("g", pa.int64())])


def _child(code):
    """Run code in a fresh interpreter; it prints one JSON line; add its peak RSS."""
    wrapper = code + "\nimport json\nprint('PEAK', open('/proc/self/status').read().split('VmHWM:')[1].split()[0])\n"
    out = subprocess.run([sys.executable, "-c", wrapper], capture_output=True, text=True, check=True).stdout
    lines = out.strip().splitlines()
    result = json.loads(lines[-2])
    result["peak_mb"] = int(lines[-1].split()[1]) / 1024
    return result


READ = """
import json, time, pyarrow.parquet as pq
files = {files!r}
start = time.perf_counter(); rows = 0
for f in files:
    for batch in pq.ParquetFile(f).iter_batches(batch_size={batch}, columns={columns!r}):
        for c in batch.columns:
            c.to_numpy()
        rows += batch.num_rows
print(json.dumps({{"seconds": time.perf_counter() - start, "rows": rows}}))
"""

FIT = """
import json, time, sys
sys.path.insert(0, {repo!r})
from skhlm import RandomInterceptRegressor, fit_parquet
start = time.perf_counter()
m = fit_parquet(RandomInterceptRegressor(), {files!r}, target="y", columns={features!r}, group="g", batch_rows={batch}, progress=False)
seconds = time.perf_counter() - start
print(json.dumps({{"seconds": seconds, "rows": int(m.summary().n_obs), "coef0": float(m.coef_[0]),
                   "s2u": m.variance_components_["group"], "s2e": m.variance_components_["residual"], "groups": int(m.groups_.size)}}))
"""


def out_of_core(files, batch):
    columns = [*COLUMNS, "y", "g"]
    read = _child(READ.format(files=[str(f) for f in files], batch=batch, columns=columns))
    fit = _child(FIT.format(repo=str(HERE.parent), files=[str(f) for f in files], features=COLUMNS, batch=batch))
    return read, fit


def dask_runs(files):
    import dask.dataframe as dd
    import pandas as pd
    from distributed import Client, LocalCluster

    sys.path.insert(0, str(HERE.parent))
    import skhlm.dask as skd
    from skhlm import RandomInterceptRegressor

    d = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
    times = []
    for _ in range(3):
        start = time.perf_counter()
        memory = RandomInterceptRegressor().fit(d[COLUMNS], d["y"], groups=d["g"])
        times.append(time.perf_counter() - start)
    in_memory = float(np.median(times))
    del d
    out = {"in_memory_seconds": in_memory, "rows": int(memory.summary().n_obs)}
    for workers in (1, 2):
        with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None, memory_limit="8GB") as cluster, Client(cluster):
            ddf = dd.read_parquet([str(f) for f in files], split_row_groups=True)
            times = []
            for _ in range(3):
                start = time.perf_counter()
                model = skd.fit(RandomInterceptRegressor(), ddf, y="y", groups="g", split_out=workers)
                times.append(time.perf_counter() - start)
            out[f"workers_{workers}_seconds"] = float(np.median(times))
            out[f"workers_{workers}_coef_rel"] = float(np.max(np.abs(model.coef_ / memory.coef_ - 1)))
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=float, default=1e8)
    parser.add_argument("--groups", type=float, default=None, help="default: rows / 100")
    parser.add_argument("--batch", type=int, default=1_000_000)
    parser.add_argument("--dir", type=Path, default=Path("/tmp/skhlm_out_of_core"))
    parser.add_argument("--dask", action="store_true")
    args = parser.parse_args(argv)
    n = int(args.rows)
    n_groups = int(args.groups or n // 100)
    directory = args.dir / f"n{n:.0e}"
    print(f"data: {n:.0e} rows x {P} features, {n_groups:.0e} groups, in {directory}", flush=True)
    files = write(directory, n, n_groups)
    if args.dask:
        result = dask_runs(files)
        print(json.dumps(result, indent=1))
        return
    read, fit = out_of_core(files, args.batch)
    print(json.dumps({"read": read, "fit": fit}, indent=1))
    print(
        f"pyarrow read: {read['seconds']:.1f} s ({read['rows'] / read['seconds']:.3g} rows/s), "
        f"peak {read['peak_mb']:.0f} MB\n"
        f"fit_parquet: {fit['seconds']:.1f} s ({fit['rows'] / fit['seconds']:.3g} rows/s, "
        f"{fit['seconds'] / read['seconds']:.2f}x the read), peak {fit['peak_mb']:.0f} MB"
    )


if __name__ == "__main__":
    main()
