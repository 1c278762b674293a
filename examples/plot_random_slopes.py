"""
Random intercepts, then random slopes, on repeated measures (sleepstudy's design)
=================================================================================

Each subject's reaction time is measured on days 0 to 9.  The random intercept model
gives every subject its own level but one common trend; lme4's ``(1 + Days |
Subject)`` gives every subject its own trend too.  The example fits both, tests the
random slope (a likelihood-ratio test whose null puts the slope's variance on the
boundary: the 50:50 mixture of chi2(1) and chi2(2)), and draws each subject's two
fitted lines over its data.

Run: ``python examples/plot_random_slopes.py [output directory]`` (needs skhlm[plot])
"""

# %%
# Two models of the same measurements
# -----------------------------------
#
# :func:`~skhlm.datasets.make_longitudinal` simulates 18 subjects measured on days 0
# to 9, with lme4's estimates on ``sleepstudy`` as the true values. Here the groups
# are subjects and the rows are a subject's repeated measurements.
#
# :class:`~skhlm.RandomInterceptRegressor` gives each subject its own level and one
# common slope of time. :class:`~skhlm.LinearMixedRegressor` with
# ``random_slopes=["time"]`` gives each subject its own slope too, lme4's
# ``y ~ time + (1 + time | subject)``. Its random effects are a pair per subject,
# :math:`(b_{0j}, b_{1j})`, with a 2 x 2 covariance matrix to estimate.
#
# In its summary, *Random effects* has one line per variance: the intercepts', the
# slopes' (how much subjects' trends differ, in ms per day, squared) and the
# residual; ``Corr`` is the correlation between a subject's intercept and slope.
# *Fixed effects* are the average subject's line.

import sys
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from skhlm import LinearMixedRegressor, RandomInterceptRegressor, compare
from skhlm.datasets import make_longitudinal

X, y, subject = make_longitudinal(n_subjects=18, random_state=1)
intercepts = RandomInterceptRegressor().fit(X, y, groups=subject)
slopes = LinearMixedRegressor(random_slopes=["time"]).fit(X, y, groups=subject)
print(slopes.summary())

# %%
# Does each subject need its own slope?
# -------------------------------------
#
# :func:`~skhlm.compare` refits both models by ML and runs the likelihood-ratio test.
# The slopes model has two more parameters (the slopes' variance and their
# covariance with the intercepts), so the naive reference distribution is
# chi-squared with 2 df (``p_value``). But the null hypothesis, a slope variance of
# 0, lies on the boundary of what a variance can be, and there the statistic follows
# a 50:50 mixture of chi-squared with 1 and with 2 df (Stram & Lee 1994):
# ``p_boundary``, smaller than the naive p-value. Both are printed; either way the
# random slope is needed here.

table = compare(intercepts, slopes, refit=True, names=["(1 | subject)", "(1 + time | subject)"])
print()
print(table[["npar", "logLik", "Chisq", "Df", "p_value", "p_boundary"]].to_string(float_format="%.4g"))
row = table.iloc[1]
print(f"\nLRT of the random slope: chi2 = {row['Chisq']:.2f} on {row['Df']:.0f} df, "
      f"p = {row['p_boundary']:.2g} (50:50 mixture of chi2(1) and chi2(2); naive chi2(2): "
      f"{row['p_value']:.2g})")
sd = np.sqrt(np.diag(slopes.variance_components_["group"]))
print(f"Subjects' slopes vary with SD {sd[1]:.1f} around the mean slope {slopes.coef_[0]:.1f}")

# %%
# Each subject's two fitted lines
# -------------------------------
#
# One panel per subject: grey points are its measurements, the orange line its fit
# by the random intercept model (its own level, the common slope), the blue line its
# fit with a random slope too (its own level and slope). Where a subject's trend is
# steeper or flatter than the average, only the blue line follows it. Each line is
# ``predict`` with the subject's label in ``groups``, so it includes the subject's
# BLUPs.

fig, axes = plt.subplots(3, 6, figsize=(14, 7), sharex=True, sharey=True)
days = np.arange(10.0)
for ax, label in zip(axes.ravel(), slopes.groups_):
    rows = subject.to_numpy() == label
    ax.scatter(X["time"][rows], y[rows], s=10, color="0.5")
    frame = X.iloc[:10].assign(time=days)
    ax.plot(days, intercepts.predict(frame, groups=[label] * 10), color="C1", lw=1.2,
            label="random intercept")
    ax.plot(days, slopes.predict(frame, groups=[label] * 10), color="C0", lw=1.5,
            label="random intercept and slope")
    ax.set_title(f"subject {label}", fontsize="small")
axes[0, 0].legend(fontsize="x-small", frameon=False, loc="upper left")
fig.supxlabel("days")
fig.supylabel("reaction time (ms)")
fig.tight_layout()

# %%
# Save the figure
# ---------------
#
# To the folder given as the first argument, ``examples/images/`` by default.

out_dir = sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parent / "images"
path = Path(out_dir) / "random_slopes.png"
fig.savefig(path, dpi=90)
print(f"Saved {path}")
