"""The benchmark's machinery: a tiny end-to-end run, and the rules that skip a peer.

Speed itself is measured by benchmarks/run_benchmark.py, never by a test; these tests
check that the benchmark runs, reports what it says, and skips what it cannot run.
"""

import json
import subprocess
import sys
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
        assert skhlm["time"] > 0 and skhlm["mem_mb"] >= 0
        # The data have s2u = 1 and s2e = 4: the estimates say so, and OLS's
        # coefficients are close to the mixed model's.
        assert 0.3 < skhlm["s2u"] < 3 and 3 < skhlm["s2e"] < 5
        assert linreg["max_abs_dbeta"] < 0.3
    table = (tmp_path / "results.md").read_text()
    assert "| 2e3 | 10 | 2e1 |" in table and "| 2e3 | 10 | 2e2 |" in table
    assert (tmp_path / "results.csv").read_text().count("\n") == 1 + 2 * 2


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
