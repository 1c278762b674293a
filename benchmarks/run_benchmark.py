"""Benchmark: skhlm's random intercept fit against OLS, statsmodels, lme4 and MERF.

    python benchmarks/run_benchmark.py --plot     # the full run (about 12 minutes on 2 cores)
    python benchmarks/run_benchmark.py --quick    # n <= 1e5, about a minute and a half
    python benchmarks/run_benchmark.py --sizes 1e4 1e5 1e6 --systems skhlm linreg

Every system fits the same synthetic data, one fit per child process, interleaved:
for each data set, repetition r runs every system once (in a rotated order) before
repetition r + 1 starts.  A system's time is the median over the repetitions of its
fit call alone (lme4: the lmer() call, timed inside R; the child's whole wall time,
with start-up and data loading, is reported apart).  Memory is the peak resident set
size of the child during the fit minus its resident set size just before the fit (see
peers.py and lme4_fit.R).  The estimates of every system are printed next to skhlm's.

A system is skipped where its fit is predicted to take longer than the time cap
(--cap, 60 s by default), linearly from its time on a smaller data set, and a fit still
running at the cap is killed; the output says which and why.

Writes benchmarks/results/results.json (every run, the machine, the versions),
results.csv (one row per data set and system), results.md (tables for the README) and,
with --plot, scaling.png (time against n, log-log; needs matplotlib).
"""

import argparse
import importlib.util
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from report import SYSTEMS, plot, print_config, save, sci

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
# The data-generating model: y = 1 + X beta + u_g + e, s2u = 1, s2e = 4 (ICC 0.2).
# The first p - 1 columns vary within and between groups, the last is a level-2
# predictor (constant within a group).  Groups are drawn uniformly, so their sizes vary
# (Poisson) and the rows are not sorted by group.
TRUE_S2U, TRUE_S2E = 1.0, 4.0


def make_data(n, p, n_groups, seed=0):
    rng = np.random.default_rng(seed)
    g = rng.integers(0, n_groups, size=n)
    X = rng.standard_normal((n, p))
    X[:, : p - 1] += 0.5 * rng.standard_normal((n_groups, p - 1))[g]
    X[:, p - 1] = rng.standard_normal(n_groups)[g]
    beta = np.linspace(0.1, 1.0, p)
    y = X @ beta
    y += 1.0 + np.sqrt(TRUE_S2U) * rng.standard_normal(n_groups)[g]
    y += np.sqrt(TRUE_S2E) * rng.standard_normal(n)
    # Labels, not codes: every system factorizes them itself.
    return X, y, (g * 7 + 3).astype(np.int64)


def write_data(directory, X, y, g, for_r):
    directory.mkdir(parents=True, exist_ok=True)
    np.save(directory / "X.npy", X)
    np.save(directory / "y.npy", y)
    np.save(directory / "g.npy", g)
    if for_r:
        (directory / "meta.txt").write_text(f"{X.shape[0]} {X.shape[1]}\n")
        for start in range(0, X.shape[1], 8):  # column-major, a few columns at a time
            with open(directory / "X.bin", "ab" if start else "wb") as f:
                np.asfortranarray(X[:, start : start + 8]).T.tofile(f)
        y.astype("<f8").tofile(directory / "y.bin")
        g.astype("<i4").tofile(directory / "g.bin")


# ----------------------------------------------------------------------------------------
# What to run


def configurations(args):
    """Data sets: the main grid, the wide case and the group-count sweep."""
    sizes = args.sizes or ([1e4, 1e5] if args.quick else [1e4, 1e5, 1e6, 1e7])
    configs = []
    for n in sorted(int(float(s)) for s in sizes):
        for divisor in (100, 10):
            configs.append(dict(kind="main", n=n, p=10, groups=n // divisor))
    if not args.quick and not args.sizes:
        configs.append(dict(kind="wide", n=10**6, p=100, groups=10**4))
        for groups in (100, 1000, 10**4, 10**5, 5 * 10**5):
            configs.append(dict(kind="groups", n=10**6, p=10, groups=groups))
    if args.only:
        if args.only != "main" and (args.quick or args.sizes):
            raise SystemExit(f"--only {args.only} runs at n = 1e6: drop --quick and --sizes.")
        configs = [c for c in configs if c["kind"] == args.only]
    for c in configs:
        c["name"] = f"n={sci(c['n'])} p={c['p']} G={sci(c['groups'])}"
    return configs


def systems_for(config, args):
    if config["kind"] == "groups":
        # The group-count sweep is about skhlm alone; OLS does not depend on groups.
        return [s for s in ("skhlm", "linreg") if s in args.systems]
    return list(args.systems)


def availability(systems):
    """Which systems can run here, and why not for the others."""
    missing = {}
    for module, system in [("statsmodels", "statsmodels"), ("merf", "merf")]:
        if system in systems and importlib.util.find_spec(module) is None:
            missing[system] = f"python package {module!r} is not installed (pip install '.[bench]')"
    if "merf" in systems and "merf" not in missing:
        problem = merf_problem()
        if problem:
            missing["merf"] = problem
    if "lme4" in systems:
        if shutil.which("Rscript") is None:
            missing["lme4"] = "Rscript is not on PATH (install R and lme4 to include it)"
        else:
            check = subprocess.run(
                ["Rscript", "-e", 'quit(status = !requireNamespace("lme4", quietly = TRUE))'],
                capture_output=True,
            )
            if check.returncode != 0:
                missing["lme4"] = "R package lme4 is not installed (install.packages('lme4'))"
    return missing


def merf_problem():
    """MERF 1.0 (2020) predates pandas 3 and numpy 2: check it runs before timing it."""
    code = (
        "import numpy as np, pandas as pd, logging\n"
        "from merf import MERF\n"
        "from sklearn.linear_model import LinearRegression\n"
        "logging.getLogger('merf').setLevel(logging.WARNING)\n"
        "g = np.repeat(np.arange(10), 10); X = np.random.default_rng(0).normal(size=(100, 2))\n"
        "MERF(LinearRegression(), max_iterations=2).fit(X, np.ones((100, 1)), pd.Series(g), X[:, 0] + g)\n"
    )
    check = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if check.returncode != 0:
        last = (check.stderr.strip().splitlines() or ["?"])[-1]
        return f"MERF does not run with these versions of pandas/numpy ({last}); skipped"
    return None


# ----------------------------------------------------------------------------------------
# Running one fit


def child_env(blas_threads=None):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO)] + [p for p in [env.get("PYTHONPATH")] if p])
    if blas_threads:
        for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            env[name] = str(blas_threads)
    return env


def run_fit(system, data_dir, timeout, blas_threads=None):
    if system == "lme4":
        cmd = ["Rscript", str(HERE / "lme4_fit.R"), str(data_dir)]
    else:
        cmd = [sys.executable, str(HERE / "peers.py"), system, str(data_dir)]
    start = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=child_env(blas_threads))
    except subprocess.TimeoutExpired:
        return {"status": "timeout", "wall": time.perf_counter() - start}
    wall = time.perf_counter() - start
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        tail = " | ".join(proc.stderr.strip().splitlines()[-3:])
        return {"status": "error", "wall": wall, "error": tail[-500:]}
    record = json.loads(lines[-1])
    record.update(status="ok", wall=wall)
    return record


class CapPolicy:
    """Skips a system where its fit would exceed the time cap (or the memory at hand).

    The prediction is linear in n and p from the same system's largest smaller data set
    with the same n / G (a lower bound for peers that scale worse than linearly).  A
    fit still running at the cap is killed and the system is not run on larger data.
    """

    def __init__(self, cap, memory_mb):
        self.cap = cap
        self.memory_mb = memory_mb
        self.seen = {}  # system -> list of (config, median time or None, peak rss MB)
        self.status = {}

    def reason_to_skip(self, system, config, args):
        if system == "merf" and (config["n"] > args.merf_max_n or config["groups"] > args.merf_max_groups):
            return (
                f"MERF is run only for n <= {sci(args.merf_max_n)} and G <= {sci(args.merf_max_groups)} "
                "(--merf-max-n, --merf-max-groups): its fit loops over the groups in Python"
            )
        best = None
        for past, t, rss in self.seen.get(system, []):
            if past["n"] > config["n"] or past["p"] > config["p"]:
                continue
            if past["p"] == config["p"] and past["n"] * config["groups"] != config["n"] * past["groups"]:
                continue
            if past["p"] != config["p"] and past["groups"] != config["groups"]:
                continue
            if best is None or (past["n"], past["p"]) > (best[0]["n"], best[0]["p"]):
                best = (past, t, rss)
        if best is None:
            return None
        past, t, rss = best
        if t is None:
            return f"did not finish at {past['name']} ({status_of(past, system, self)})"
        factor = (config["n"] / past["n"]) * (config["p"] / past["p"])
        if factor > 1 and t * factor > self.cap:
            return (
                f"predicted {t * factor:.0f} s > cap {self.cap:.0f} s "
                f"({t:.1f} s at {past['name']}, scaled linearly)"
            )
        if factor > 1 and rss * factor > 0.7 * self.memory_mb:
            return f"predicted peak memory {rss * factor / 1024:.0f} GiB > 70% of available"
        return None

    def record(self, system, config, median_time, peak_rss, status):
        self.seen.setdefault(system, []).append((config, median_time, peak_rss))
        self.status[(system, config["name"])] = status


def status_of(config, system, policy):
    return policy.status.get((system, config["name"]), "?")


# ----------------------------------------------------------------------------------------
# The run


def summarize(system, runs, skip_reason=None):
    ok = [r for r in runs if r["status"] == "ok"]
    row = {"system": system, "runs": runs}
    if skip_reason:
        row.update(status="skipped", note=skip_reason)
        return row
    if not ok:
        statuses = {r["status"] for r in runs}
        row.update(status="/".join(sorted(statuses)))
        row["note"] = next((r.get("error") for r in runs if r.get("error")), "")
        return row
    times = [r["time"] for r in ok]
    row.update(
        status="ok" if len(ok) == len(runs) else "partial",
        reps=len(ok),
        time=statistics.median(times),
        time_min=min(times),
        wall=statistics.median(r["wall"] for r in ok),
        mem_mb=statistics.median(max(r["rss_peak_mb"] - r["rss_loaded_mb"], 0.0) for r in ok),
        rss_peak_mb=max(r["rss_peak_mb"] for r in ok),
        version=ok[0].get("version", ""),
        messages=sorted({m for r in ok for m in r.get("messages", [])}),
    )
    last = ok[-1]
    for key in ("intercept", "coef", "s2u", "s2e", "loglik", "n_iter", "converged"):
        if key in last:
            row[key] = last[key]
    return row


def compare(rows, config):
    """Ratios and estimate differences against skhlm, in place."""
    ref = next((r for r in rows if r["system"] == "skhlm" and "time" in r), None)
    x_mb = config["n"] * config["p"] * 8 / 2**20
    for r in rows:
        if "time" not in r:
            continue
        r["mem_over_X"] = r["mem_mb"] / x_mb
        if ref is None:
            continue
        r["ratio"] = r["time"] / ref["time"]
        if r is ref:
            continue
        beta = np.r_[r["intercept"], r["coef"]]
        beta_ref = np.r_[ref["intercept"], ref["coef"]]
        r["max_abs_dbeta"] = float(np.max(np.abs(beta - beta_ref)))
        for key in ("s2u", "s2e"):
            if key in r:
                r[f"rel_d{key}"] = abs(r[key] - ref[key]) / abs(ref[key])
        if "loglik" in r:
            r["dloglik"] = r["loglik"] - ref["loglik"]


def machine_info():
    info = {
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "cpu_count": os.cpu_count(),
    }
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
        info["cpu"] = next(line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith("model name"))
        meminfo = Path("/proc/meminfo").read_text()
        kb = int(next(line.split()[1] for line in meminfo.splitlines() if line.startswith("MemTotal")))
        info["memory_gib"] = round(kb / 2**20, 1)
    except (OSError, StopIteration):
        info["cpu"] = platform.processor()
    versions = {}
    for name in ("numpy", "scipy", "sklearn", "pandas", "statsmodels", "merf", "matplotlib"):
        try:
            module = __import__(name)
            versions[name] = getattr(module, "__version__", "?")
        except ImportError:
            pass
    info["versions"] = versions
    try:
        from threadpoolctl import threadpool_info

        info["blas"] = [
            {k: d.get(k) for k in ("internal_api", "version", "num_threads", "architecture")}
            for d in threadpool_info()
        ]
    except ImportError:
        pass
    return info


def available_memory_mb():
    try:
        meminfo = Path("/proc/meminfo").read_text()
        kb = int(next(line.split()[1] for line in meminfo.splitlines() if line.startswith("MemAvailable")))
        return kb / 1024
    except (OSError, StopIteration):
        return float("inf")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="n in 1e4, 1e5 only (90 s)")
    parser.add_argument("--sizes", nargs="+", help="values of n (e.g. 1e4 1e6); default 1e4 1e5 1e6 1e7")
    parser.add_argument("--systems", nargs="+", choices=SYSTEMS, default=list(SYSTEMS))
    parser.add_argument(
        "--only", choices=["main", "wide", "groups"], help="run one part: the main grid, the wide case or the group sweep"
    )
    parser.add_argument("--reps", type=int, default=3, help="fits per system and data set (median taken)")
    parser.add_argument("--cap", type=float, help="time cap per fit in seconds (default 60, quick 5)")
    parser.add_argument("--merf-max-n", type=float, help="largest n MERF is run at (default 1e5, quick 1e4)")
    parser.add_argument("--merf-max-groups", type=float, help="most groups MERF is run with (default 1e3, quick 1e2)")
    parser.add_argument("--plot", action="store_true", help="write results/scaling.png (needs matplotlib)")
    parser.add_argument("--out", type=Path, default=HERE / "results", help="output directory")
    parser.add_argument("--keep-data", type=Path, help="write the data sets here and keep them")
    parser.add_argument(
        "--blas-threads", type=int, help="BLAS/OpenMP threads of every child (default: the libraries' own)"
    )
    parser.add_argument(
        "--report-only", action="store_true", help="rewrite results.csv/.md (and --plot) from results.json"
    )
    args = parser.parse_args(argv)
    if args.report_only:
        saved = json.loads((args.out / "results.json").read_text())
        for key, value in saved["settings"].items():
            if key not in ("out", "plot", "report_only"):
                setattr(args, key, value)
        save(saved["results"], saved["machine"], args)
        if args.plot:
            plot(saved["results"], args.out / "scaling.png")
        return
    args.cap = args.cap or (5.0 if args.quick else 60.0)
    args.merf_max_n = args.merf_max_n or (1e4 if args.quick else 1e5)
    args.merf_max_groups = args.merf_max_groups or (1e2 if args.quick else 1e3)
    if args.reps < 3:
        print(f"note: --reps {args.reps} < 3: medians of fewer than 3 runs are noisy", file=sys.stderr)

    configs = configurations(args)
    missing = availability(args.systems)
    for system, why in missing.items():
        print(f"[skip] {system}: {why}", flush=True)
    policy = CapPolicy(args.cap, available_memory_mb())
    info = machine_info()
    info["loadavg_start"] = os.getloadavg()
    if "lme4" in args.systems and "lme4" not in missing:
        info["r_version"] = subprocess.run(
            ["Rscript", "-e", 'cat(R.version.string, "with lme4", format(packageVersion("lme4")))'],
            capture_output=True,
            text=True,
        ).stdout.strip()
    print(
        f"machine: {info.get('cpu')}, {info['cpu_count']} cores, {info.get('memory_gib')} GiB; "
        f"load average {info['loadavg_start'][0]:.2f}; time cap {args.cap:.0f} s per fit; "
        f"{args.reps} runs per system, interleaved; BLAS threads: {args.blas_threads or 'library default'}",
        flush=True,
    )
    print(
        "columns: time = the fit call (median), x skhlm = time / skhlm's time, wall = the whole "
        "child process (start-up and data loading included), mem = peak RSS during the fit "
        "minus RSS before it, mem/X = mem / size of X; estimates, then their differences "
        "from skhlm's",
        flush=True,
    )

    results = []
    data_root = args.keep_data or Path(tempfile.mkdtemp(prefix="skhlm-bench-"))
    try:
        for config in configs:
            results.append(run_config(config, args, missing, policy, data_root))
            print_config(results[-1])
            save(results, info, args)
    finally:
        if not args.keep_data:
            shutil.rmtree(data_root, ignore_errors=True)
    info["loadavg_end"] = os.getloadavg()
    save(results, info, args)
    print(f"\nwrote {args.out / 'results.json'}, results.csv and results.md", flush=True)
    if args.plot:
        plot(results, args.out / "scaling.png")


def run_config(config, args, missing, policy, data_root):
    systems = systems_for(config, args)
    rows = {}
    runnable = []
    for system in systems:
        reason = missing.get(system) or policy.reason_to_skip(system, config, args)
        if reason:
            rows[system] = summarize(system, [], reason)
        else:
            runnable.append(system)
    print(f"\n== {config['name']} ({config['kind']}): running {', '.join(runnable) or 'nothing'}", flush=True)

    X, y, g = make_data(config["n"], config["p"], config["groups"])
    data_dir = data_root / config["name"].replace(" ", "_")
    write_data(data_dir, X, y, g, for_r="lme4" in runnable)
    n_groups_seen = int(np.unique(g).size)
    del X, y, g
    # Loading the data and building R's data frame come on top of the cap.
    timeout = args.cap + 10 + 5 * config["n"] / 1e6
    runs = {s: [] for s in runnable}
    for rep in range(args.reps):
        order = runnable[rep % len(runnable) :] + runnable[: rep % len(runnable)] if runnable else []
        for system in order:
            if runs[system] and runs[system][-1]["status"] != "ok":
                continue  # timed out or failed once: do not spend the cap again
            record = run_fit(system, data_dir, timeout, args.blas_threads)
            runs[system].append(record)
            shown = f"{record['time']:.3f} s" if record["status"] == "ok" else record["status"]
            print(f"   rep {rep + 1} {system:12s} {shown}", flush=True)
    shutil.rmtree(data_dir, ignore_errors=True)

    for system in runnable:
        row = summarize(system, runs[system])
        if row["status"] == "timeout":
            row["note"] = f"killed at the {args.cap:.0f} s cap"
        rows[system] = row
        policy.record(system, config, row.get("time"), row.get("rss_peak_mb", 0.0), row.get("note") or row["status"])
    ordered = [rows[s] for s in systems]
    compare(ordered, config)
    return dict(config, groups_seen=n_groups_seen, systems=ordered)


if __name__ == "__main__":
    main()
