"""
Complete, no and partial pooling side by side, on a few schools
===============================================================

- Complete pooling: one regression of math on ESCS for all students; schools ignored.
- No pooling: a separate regression in every school; small schools give wild lines.
- Partial pooling: the random intercept model; each school's line is its own
  intercept shrunk toward the average, more so for small schools, with the common
  ESCS slope.

Run: ``python examples/plot_pooling.py [output directory]`` (needs skhlm[plot])
"""

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.linear_model import LinearRegression  # noqa: E402

from skhlm import RandomInterceptRegressor  # noqa: E402
from skhlm.datasets import make_pisa_like  # noqa: E402


def main(out_dir):
    pisa = make_pisa_like()
    escs, math = pisa[["escs"]].to_numpy(), pisa["math"].to_numpy()
    complete = LinearRegression().fit(escs, math)
    partial = RandomInterceptRegressor().fit(escs, math, groups=pisa["school"])

    sizes = pisa["school"].value_counts()
    shown = list(sizes.index[-3:]) + list(sizes.index[:3])  # the 3 smallest, the 3 largest
    fig, axes = plt.subplots(2, 3, figsize=(11, 6.5), sharex=True, sharey=True)
    grid = np.linspace(-2.5, 2.5, 2)
    print(f"{'school':>7} {'n':>3}  {'no pooling':>22}  {'partial pooling':>22}")
    for ax, school in zip(axes.ravel(), shown):
        rows = pisa[pisa["school"] == school]
        alone = LinearRegression().fit(rows[["escs"]].to_numpy(), rows["math"].to_numpy())
        ax.scatter(rows["escs"], rows["math"], s=10, color="0.5")
        ax.plot(grid, complete.predict(grid[:, None]), "k--", label="complete pooling")
        ax.plot(grid, alone.predict(grid[:, None]), "C3", label="no pooling")
        ax.plot(grid, partial.predict(grid[:, None], groups=[school] * 2), "C0", lw=2,
                label="partial pooling")
        ax.set_title(f"{school} ({len(rows)} students)")
        at_zero = partial.predict(np.zeros((1, 1)), groups=[school])[0]
        print(
            f"{school:>7} {len(rows):>3}  {alone.intercept_:7.1f} + {alone.coef_[0]:6.1f} escs"
            f"  {at_zero:7.1f} + {partial.coef_[0]:6.1f} escs"
        )
    for ax in axes[-1]:
        ax.set_xlabel("ESCS")
    for ax in axes[:, 0]:
        ax.set_ylabel("math")
    axes[0, 0].legend(frameon=False, fontsize=8)
    fig.suptitle("Three smallest and three largest schools: complete, no and partial pooling")
    fig.tight_layout()
    path = Path(out_dir) / "pooling.png"
    fig.savefig(path, dpi=80)
    print(f"Complete pooling: {complete.intercept_:.1f} + {complete.coef_[0]:.1f} escs for every school.")
    print(f"Saved {path}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parent / "images")
