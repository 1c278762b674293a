"""
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

import numpy as np

from skhlm import RandomInterceptRegressor
from skhlm.datasets import make_pisa_like


def main():
    pisa = make_pisa_like()
    model = RandomInterceptRegressor().fit(pisa[[]], pisa["math"], groups=pisa["school"])
    s2u, s2e = model.variance_components_["group"], model.variance_components_["residual"]
    n = len(pisa)
    sizes = pisa["school"].value_counts().to_numpy()
    m_mean = sizes.mean()
    m_kish = (sizes**2).sum() / n

    print(f"{n} students in {sizes.size} schools, {sizes.min()} to {sizes.max()} per school")
    print(f"Between schools s2u = {s2u:.1f}, within schools s2e = {s2e:.1f}")
    print(f"ICC = s2u / (s2u + s2e) = {model.icc_:.3f}: {model.icc_:.0%} of the variance in math lies between schools")
    for label, m in [("average size", m_mean), ("size-weighted, sum(n_j^2)/n", m_kish)]:
        deff = 1 + (m - 1) * model.icc_
        print(
            f"Design effect with m = {m:.1f} ({label}): {deff:.2f}; effective sample size "
            f"{n / deff:.0f} of {n}"
        )
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


if __name__ == "__main__":
    main()
