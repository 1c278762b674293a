r"""
ICC, design effect and effective sample size: what a survey researcher asks first
=================================================================================

Students of one school are alike, so n clustered students carry less information
than n independent ones.  With an average cluster size m and intraclass correlation
ICC, Kish's design effect

.. math::

    \mathrm{deff} = 1 + (m - 1)\,\mathrm{ICC}

is the factor by which clustering inflates the variance of a mean, and n / deff is
the effective sample size: the number of independent students worth as much.  With
unequal cluster sizes m is replaced by :math:`\sum_j n_j^2 / n`.

Run: ``python examples/icc_and_design_effect.py``
"""

# %%
# The ICC from the model with no predictors
# -----------------------------------------
#
# The ICC comes from the random intercept model without predictors (lme4's
# ``math ~ 1 + (1 | school)``): ``pisa[[]]`` is an ``X`` with no columns, so the model
# has only the overall intercept, a random intercept per school, and the residual.
# It splits the variance of math into a part between schools, :math:`\sigma^2_u`
# (``s2u``), and a part within schools, :math:`\sigma^2_e` (``s2e``). The ICC is the
# share between schools. It is also the correlation between the scores of two
# students of the same school.

import numpy as np

from skhlm import RandomInterceptRegressor
from skhlm.datasets import make_pisa_like

pisa = make_pisa_like()
model = RandomInterceptRegressor().fit(pisa[[]], pisa["math"], groups=pisa["school"])
s2u, s2e = model.variance_components_["group"], model.variance_components_["residual"]
n = len(pisa)
sizes = pisa["school"].value_counts().to_numpy()

print(f"{n} students in {sizes.size} schools, {sizes.min()} to {sizes.max()} per school")
print(f"Between schools s2u = {s2u:.1f}, within schools s2e = {s2e:.1f}")
print(f"ICC = s2u / (s2u + s2e) = {model.icc_:.3f}: {model.icc_:.0%} of the variance in math lies between schools")

# %%
# Design effect and effective sample size
# ---------------------------------------
#
# The design effect depends on the ICC and on how many students share a school. The
# schools here have unequal sizes, so two values of :math:`m` are printed: the plain
# average size, and the size-weighted :math:`\sum_j n_j^2 / n`: the average, over
# students, of the size of the student's school, the one to use with unequal
# clusters. Large schools count once per student in it, so it is larger than the
# plain average. The effective sample size is
# :math:`n / \mathrm{deff}`.

m_mean = sizes.mean()
m_kish = (sizes**2).sum() / n
for label, m in [("average size", m_mean), ("size-weighted, sum(n_j^2)/n", m_kish)]:
    deff = 1 + (m - 1) * model.icc_
    print(
        f"Design effect with m = {m:.1f} ({label}): {deff:.2f}; effective sample size "
        f"{n / deff:.0f} of {n}"
    )

# %%
# What it does to a standard error
# --------------------------------
#
# The standard error of a mean is :math:`\sqrt{(\sigma^2_u + \sigma^2_e) / n}` for
# independent students. Clustering multiplies the variance by the design effect, so
# the standard error grows by :math:`\sqrt{\mathrm{deff}}` (here with the
# size-weighted :math:`m`). The last line inverts the design effect formula:
# :math:`\mathrm{deff} > 2` when :math:`m > 1 + 1 / \mathrm{ICC}`. Beyond that school
# size, each extra student in a school adds little that the school's other students
# have not already said.

se_naive = np.sqrt((s2u + s2e) / n)
deff = 1 + (m_kish - 1) * model.icc_
print(
    f"The standard error of the mean score is {se_naive:.2f} if students were "
    f"independent, {se_naive * np.sqrt(deff):.2f} with clustering: "
    f"{np.sqrt(deff):.1f} times larger."
)
print(
    "For planning: with this ICC, adding schools buys far more precision than adding "
    f"students per school; beyond m = {1 + 1 / model.icc_:.0f} students per school the "
    "design effect exceeds 2."
)
