"""Fit time of two checkouts of skhlm on the same data, in interleaved fresh processes.

    python benchmarks/compare_trees.py BEFORE_DIR AFTER_DIR [--groups 100 1e4 5e5] [--rounds 5]

Each measurement is a fresh process that builds run_benchmark's data (n = 1e6, p = 10,
rows in random order), fits once to warm up, and reports the median of three fits;
LinearRegression is timed the same way.  Rounds interleave the systems, and the table
gives medians over rounds and the ratios.  BEFORE_DIR can be a ``git worktree`` of an
older commit.
"""

import argparse
import statistics
import subprocess
import sys
from pathlib import Path

ONE = """
import sys, time
root, system, groups = sys.argv[1], sys.argv[2], int(float(sys.argv[3]))
sys.path[:0] = [root, root + "/benchmarks"]
from run_benchmark import make_data
X, y, g = make_data(10**6, 10, groups)
if system == "ols":
    from sklearn.linear_model import LinearRegression
    fit = lambda: LinearRegression().fit(X, y)
else:
    import skhlm
    assert skhlm.__file__.startswith(root), skhlm.__file__
    fit = lambda: skhlm.RandomInterceptRegressor().fit(X, y, groups=g)
fit()
times = []
for _ in range(3):
    start = time.perf_counter(); fit(); times.append(time.perf_counter() - start)
print(sorted(times)[1])
"""


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before")
    parser.add_argument("after")
    parser.add_argument("--groups", nargs="+", type=float, default=[100, 1e4, 5e5])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    roots = {"before": str(Path(args.before).resolve()), "after": str(Path(args.after).resolve())}
    times = {}
    for _ in range(args.rounds):
        for groups in args.groups:
            for system in ("before", "after", "ols"):
                root = roots.get(system, roots["after"])
                out = subprocess.run(
                    [sys.executable, "-P", "-c", ONE, root, "ols" if system == "ols" else "skhlm", str(groups)],
                    capture_output=True, text=True, check=True,
                ).stdout
                times.setdefault((groups, system), []).append(float(out))
    print("| groups | before | after | after / before | LinearRegression | after / LR |")
    print("|---:|---:|---:|---:|---:|---:|")
    for groups in args.groups:
        b, a, o = (statistics.median(times[(groups, s)]) for s in ("before", "after", "ols"))
        print(f"| {groups:g} | {b * 1e3:.1f} ms | {a * 1e3:.1f} ms | {a / b:.2f} | {o * 1e3:.0f} ms | {a / o:.2f} |")


if __name__ == "__main__":
    main()
