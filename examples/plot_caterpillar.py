"""
Caterpillar plot and shrinkage plot of a fitted random intercept model
======================================================================

Left: every school's random intercept (its BLUP, lme4's ranef) with a 95% interval,
sorted: schools whose interval excludes 0 differ from the average school after
accounting for desk and ESCS.  Right: partial pooling: a school's raw mean residual
(no pooling) against its BLUP, marker area by school size: small schools are pulled
hardest toward 0.

Run: ``python examples/plot_caterpillar.py [output directory]`` (needs skhlm[plot])
"""

# %%
# The model
# ---------
#
# RIM1 of the :ref:`quickstart <sphx_glr_auto_examples_quickstart.py>`: math on
# ``desk`` and ``escs``, with a random intercept per school. After the fit, each
# school's intercept :math:`u_j` (how far the school lies above or below the average
# school, at equal desk and ESCS) is estimated by its BLUP, the best linear unbiased
# prediction: ``random_effects_``, aligned with the labels in ``groups_``. Its
# conditional variance, ``random_effects_var_``, says how well the school's own
# students pin it down.

import sys
from pathlib import Path

import matplotlib.pyplot as plt

from skhlm import RandomInterceptRegressor
from skhlm.datasets import make_pisa_like
from skhlm.plotting import plot_random_effects, plot_shrinkage

pisa = make_pisa_like()
X, y, school = pisa[["desk", "escs"]], pisa["math"], pisa["school"]
model = RandomInterceptRegressor().fit(X, y, groups=school)

# %%
# Two pictures of the random intercepts
# -------------------------------------
#
# :func:`~skhlm.plotting.plot_random_effects` (left) draws one row per school, sorted
# by its BLUP, with the interval :math:`\hat u_j \pm 1.96 \sqrt{\mathrm{Var}(u_j \mid
# y)}`. Blue intervals exclude 0: those schools differ from the average school after
# accounting for desk and ESCS. Grey intervals include 0. The 20 lowest and
# 20 highest schools are labelled.
#
# :func:`~skhlm.plotting.plot_shrinkage` (right) shows partial pooling. The x axis is
# a school's raw mean residual :math:`\bar r_j`, the mean of :math:`y - x'\hat\beta`
# over its students: the estimate of a model with a free intercept per school (no
# pooling). The y axis is its BLUP. The dashed line :math:`y = x` is no pooling and
# the horizontal line at 0 is complete pooling (one intercept for all schools). Every
# school lies between them: its BLUP is its raw mean residual shrunk toward 0. Marker
# area is the school's number of students; small schools lie furthest from the
# dashed line.

fig, (left, right) = plt.subplots(1, 2, figsize=(11, 6))
plot_random_effects(model, ax=left)
plot_shrinkage(model, X, y, school, ax=right)
fig.suptitle("RIM1: math ~ desk + escs + (1 | school), simulated PISA-like data")
fig.tight_layout()

# %%
# The numbers behind the pictures
# -------------------------------
#
# The count of blue intervals, and the shrinkage factor: a school of :math:`n_j`
# students keeps the share
#
# .. math::
#
#     \frac{n_j \sigma^2_u}{\sigma^2_e + n_j \sigma^2_u}
#
# of its raw mean residual, :math:`\hat u_j = \frac{n_j \sigma^2_u}{\sigma^2_e + n_j
# \sigma^2_u} \bar r_j`. The share grows with the school's size: a large school's
# mean is measured well, a small school's is mostly noise, and the model trusts it
# less.

half = 1.96 * model.random_effects_var_**0.5
distinct = int((abs(model.random_effects_) > half).sum())
print(f"{distinct} of {len(model.groups_)} schools have a 95% interval that excludes 0.")
n_j = school.value_counts().reindex(model.groups_).to_numpy()
s2u, s2e = model.variance_components_["group"], model.variance_components_["residual"]
shrink = n_j * s2u / (s2e + n_j * s2u)
print(
    f"A school of {n_j.min()} students keeps {shrink.min():.0%} of its raw mean "
    f"residual; one of {n_j.max()} keeps {shrink.max():.0%}."
)

# %%
# Save the figure
# ---------------
#
# To the folder given as the first argument, ``examples/images/`` by default.

out_dir = sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parent / "images"
path = Path(out_dir) / "caterpillar.png"
fig.savefig(path, dpi=90)
print(f"Saved {path}")
