"""The benchmark's machinery: a tiny end-to-end run, and the rules that skip a peer.

Speed itself is measured by benchmarks/run_benchmark.py, never by a test; these tests
check that the benchmark runs, reports what it says, and skips what it cannot run.
"""

import json
import subprocess
import sys
import textwrap
from argparse import Namespace
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import run_benchmark  # noqa: E402


def test_a_tiny_run_reports_times_ratios_memory_and_estimates(tmp_path):
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / "run_benchmark.py"), "--sizes", "2e3",
         "--systems", "skhlm", "linreg", "--reps", "1", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr
    results = json.loads((tmp_path / "results.json").read_text())["results"]
    assert [(r["n"], r["groups"]) for r in results] == [(2000, 20), (2000, 200)]
    for config in results:
        rows = {r["system"]: r for r in config["systems"]}
        skhlm, linreg = rows["skhlm"], rows["linreg"]
        assert skhlm["status"] == linreg["status"] == "ok"
        assert skhlm["ratio"] == 1.0 and linreg["ratio"] == pytest.approx(linreg["time"] / skhlm["time"])
        assert skhlm["time"] > 0
        # Memory beyond the loaded data: a fit on 0.15 MB of X needs well under 16 MB (the
        # child's own RSS, ~165 MB, would show if the RSS before the fit were not subtracted).
        assert skhlm["mem_mb"] < 16
        assert skhlm["mem_over_X"] == pytest.approx(skhlm["mem_mb"] / (2000 * 10 * 8 / 2**20))
        # The data have s2u = 1 and s2e = 4: the estimates say so, and OLS's
        # coefficients are close to the mixed model's.
        assert 0.3 < skhlm["s2u"] < 3 and 3 < skhlm["s2e"] < 5
        assert linreg["max_abs_dbeta"] < 0.3
    table = (tmp_path / "results.md").read_text()
    assert "| 2e3 | 10 | 2e1 |" in table and "| 2e3 | 10 | 2e2 |" in table
    assert (tmp_path / "results.csv").read_text().count("\n") == 1 + 2 * 2


@pytest.mark.skipif(sys.platform != "linux", reason="the peak RSS is reset through /proc")
def test_memory_is_the_peak_the_fit_allocates_beyond_its_input(tmp_path):
    # A peer that writes 32 MiB during the timed fit and frees it, after 128 MiB in the
    # warm-up: the measured memory is the fit's 32 MiB.  Read after the fit instead of
    # at its peak it would be ~0; without the reset of the peak, >= 128 MiB.
    X, y, g = run_benchmark.make_data(2000, 10, 20)
    run_benchmark.write_data(tmp_path, X, y, g, for_r=False)
    code = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(BENCHMARKS)!r})
        import numpy as np
        import peers
        sizes = iter([128, 32])  # MiB: the warm-up fit's, then the timed fit's
        def fit(X, y, g):
            block = np.ones(next(sizes) * 2**20 // 8)  # every page written
            del block
            return dict
        peers.FITS["alloc"] = fit
        peers.version = lambda system: system
        peers.main("alloc", {str(tmp_path)!r})
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    record = json.loads(done.stdout.strip().splitlines()[-1])
    assert record["memory_method"] == "VmHWM reset before the fit"
    row = run_benchmark.summarize("alloc", [dict(record, status="ok", wall=1.0)])
    assert 31 < row["mem_mb"] < 40  # RSS counters lag by a few pages


def test_missing_peers_are_skipped_with_the_reason(monkeypatch):
    monkeypatch.setattr(run_benchmark.shutil, "which", lambda name: None)
    monkeypatch.setattr(run_benchmark.importlib.util, "find_spec", lambda name: None)
    missing = run_benchmark.availability(["skhlm", "statsmodels", "lme4", "merf"])
    assert set(missing) == {"statsmodels", "lme4", "merf"}
    assert "Rscript is not on PATH" in missing["lme4"]
    assert "pip install '.[bench]'" in missing["statsmodels"]


def test_a_peer_predicted_over_the_cap_is_skipped():
    args = Namespace(merf_max_n=1e5, merf_max_groups=1e3)
    policy = run_benchmark.CapPolicy(cap=60.0, memory_mb=1e6)

    def config(n, p, groups):
        return {"n": n, "p": p, "groups": groups, "name": f"n={n} p={p} G={groups}"}

    policy.record("statsmodels", config(10**4, 10, 100), 10.0, 50.0, "ok")
    # Ten times the rows at the same n / G: 100 s predicted, over the 60 s cap.
    reason = policy.reason_to_skip("statsmodels", config(10**5, 10, 1000), args)
    assert reason.startswith("predicted 100 s > cap 60 s")
    # Another n / G has no smaller data set to predict from: it runs.
    assert policy.reason_to_skip("statsmodels", config(10**5, 10, 10**4), args) is None
    # MERF is capped by size alone.
    assert "MERF is run only for" in policy.reason_to_skip("merf", config(10**6, 10, 10**4), args)
