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

# %%
# Two fits on all the students
# ----------------------------
#
# Complete pooling is an ordinary :class:`~sklearn.linear_model.LinearRegression` of
# math on ESCS: one line for every school. Partial pooling is the random intercept
# model: one common ESCS slope, and an intercept per school that is the school's own
# level shrunk toward the average, the more so the fewer students it has.

import sys
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from sklearn.linear_model import LinearRegression

from skhlm import RandomInterceptRegressor
from skhlm.datasets import make_pisa_like

pisa = make_pisa_like()
escs, math = pisa[["escs"]].to_numpy(), pisa["math"].to_numpy()
complete = LinearRegression().fit(escs, math)
partial = RandomInterceptRegressor().fit(escs, math, groups=pisa["school"])

# %%
# Six schools, three lines each
# -----------------------------
#
# No pooling fits a separate regression in each school, from that school's students
# alone. The loop does so for the three smallest schools (top row) and the three
# largest (bottom row), draws the three lines over the school's students, and prints
# each school's no-pooling and partial-pooling lines as intercept + slope
# :math:`\times` ESCS. The partial-pooling intercept is the model's prediction at
# ESCS = 0 for that school (the overall intercept plus the school's BLUP).
#
# How to read the panels: grey points are students; the dashed black line (complete
# pooling) is the same in every panel; the red line (no pooling) follows the few
# students of a small school wherever they lead, slope included; the blue line
# (partial pooling) keeps the common slope and moves its level toward the school's
# students only as far as their number warrants. In a small school it stays near the
# black line, in a large one it follows the school's own students.

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

# %%
# Complete pooling, for comparison
# --------------------------------
#
# Its one line, and the figure saved to the folder given as the first argument
# (``examples/images/`` by default).

out_dir = sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parent / "images"
path = Path(out_dir) / "pooling.png"
fig.savefig(path, dpi=80)
print(f"Complete pooling: {complete.intercept_:.1f} + {complete.coef_[0]:.1f} escs for every school.")
print(f"Saved {path}")
