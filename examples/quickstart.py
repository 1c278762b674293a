r"""
Quickstart: the seed article's three random intercept models of math achievement
================================================================================

"A Basic Introduction to Hierarchical Linear Modeling" fits, with lme4, on PISA 2018
(USA) students nested in schools::

    RIM0: math ~ 1 + (1 | school)                       s2u 1524, s2e 6608, ICC 0.19
    RIM1: math ~ desk + escs + (1 | school)             desk 8.77
    RIM2: math ~ desk + escs + stratio + (1 | school)   stratio 0.55

The PISA file cannot be downloaded here, so this runs on a simulated data set with
the same shape and population values (skhlm.datasets.make_pisa_like).  Each model is
printed as lme4's summary prints it, then read off in words.

Run: ``python examples/quickstart.py``
"""

# %%
# The data
# --------
#
# :func:`~skhlm.datasets.make_pisa_like` returns one row per student: the label of
# the ``school``, the ``math`` score, and three predictors. ``desk`` is 1 if the
# student has a desk to study at home, ``escs`` is the student's economic, social
# and cultural status, and ``stratio`` is the school's student-teacher ratio, the same
# for every student of a school. Students of one school share teachers and a
# neighbourhood, so their scores are correlated. An ordinary regression would treat
# them as independent.

from skhlm import RandomInterceptRegressor, compare
from skhlm.datasets import make_pisa_like

pisa = make_pisa_like(random_state=2018)
print(
    f"Simulated PISA-like data: {len(pisa)} students in "
    f"{pisa['school'].nunique()} schools. The 'seed' values quoted below are the "
    "article's, from the real PISA sample; this sample is drawn from the article's "
    "population values, so its estimates differ from them by sampling error.\n"
)

# %%
# Three random intercept models
# -----------------------------
#
# A random intercept model is a linear regression in which every school has its own
# intercept. For student :math:`i` of school :math:`j`:
#
# .. math::
#
#     \mathrm{math}_{ij} = \beta_0 + x_{ij}'\beta + u_j + e_{ij}, \qquad
#     u_j \sim N(0, \sigma^2_u), \qquad e_{ij} \sim N(0, \sigma^2_e).
#
# The school effects :math:`u_j` are not 164 free parameters: they are drawn from one
# normal distribution, and the model estimates its variance :math:`\sigma^2_u` (how
# much schools differ, printed ``s2u``) next to the residual variance
# :math:`\sigma^2_e` (how much students of one school differ, ``s2e``). RIM0 has no
# predictors, RIM1 adds ``desk`` and ``escs``, RIM2 adds ``stratio``.
#
# :class:`~skhlm.RandomInterceptRegressor` is a scikit-learn estimator: ``fit`` takes
# the predictors ``X``, the outcome ``y`` and the group labels ``groups``. It fits by
# REML, lme4's default, and :meth:`~skhlm.RandomInterceptRegressor.summary` prints
# what lme4's ``summary()`` prints with lmerTest loaded. In each summary, read:
#
# - *Random effects*: the two variances and their square roots.
# - *Fixed effects*: the coefficients with their standard errors, and t tests whose
#   degrees of freedom (``df``) come from Satterthwaite's approximation, as lmerTest.
# - The last two lines (not printed by lme4): the intraclass correlation
#   :math:`\mathrm{ICC} = \sigma^2_u / (\sigma^2_u + \sigma^2_e)` with a profile
#   likelihood interval, and the likelihood-ratio test of :math:`\sigma^2_u = 0`.

MODELS = {
    "RIM0": [],
    "RIM1": ["desk", "escs"],
    "RIM2": ["desk", "escs", "stratio"],
}

fits, summaries = {}, {}
for name, predictors in MODELS.items():
    model = RandomInterceptRegressor()  # REML, as lme4's default
    model.fit(pisa[predictors], pisa["math"], groups=pisa["school"])
    summary = model.summary()
    print(f"===== {name} " + "=" * 60)
    print(summary)
    print()
    fits[name], summaries[name] = model, summary

# %%
# What the numbers say
# --------------------
#
# The summaries are also objects: ``fixed_effects`` and ``random_effects`` are
# DataFrames, and ``icc``, ``icc_interval`` and ``group_variance_test`` hold the last
# two lines. The sentences below are computed from them.
#
# Two things differ from an ordinary regression. The coefficient of ``desk`` is read
# as a comparison of two students *of the same school*: the school's own intercept
# :math:`u_j` is held fixed. And ``stratio`` varies only between schools, so the information about
# it comes from 164 schools, not from 4,978 students: its ``df`` is near the number
# of schools.

rim0, rim1, rim2 = (summaries[name] for name in MODELS)
s2u, s2e = rim0.random_effects["variance"]
lo, hi = rim0.icc_interval
print("===== What the numbers say " + "=" * 45)
print(
    f"- RIM0: ICC = {s2u:.0f} / ({s2u:.0f} + {s2e:.0f}) = {rim0.icc:.3f}: "
    f"{rim0.icc:.0%} of the variance in math lies between schools (95% interval "
    f"{lo:.2f} to {hi:.2f}; the seed reports 1524 / (1524 + 6608) = 0.19). Students "
    "of one school are alike, so treating them as independent would overstate the "
    "evidence; the likelihood-ratio test of no school variance gives "
    f"chi2 = {rim0.group_variance_test['statistic']:.0f}."
)
mean = rim0.fixed_effects.loc["(Intercept)"]
print(
    f"- RIM0: the grand mean is {mean['estimate']:.2f} points (SE {mean['std_error']:.2f}; "
    "seed: 477.14): the expected score of a student in an average school."
)
desk, escs = rim1.fixed_effects.loc["desk"], rim1.fixed_effects.loc["escs"]
print(
    f"- RIM1: a student with a desk to study at home scores {desk['estimate']:.2f} "
    f"points more (SE {desk['std_error']:.2f}, t = {desk['t_value']:.2f}, "
    f"p = {desk['p_value']:.3f}; seed: 8.77) than a student of the same school and "
    f"ESCS without one; one more unit of ESCS adds {escs['estimate']:.1f} points."
)
print(
    f"- RIM1: ESCS and desk explain part of the between-school variance: s2u falls "
    f"from {s2u:.0f} to {rim1.random_effects.loc['Groups', 'variance']:.0f}."
)
stratio = rim2.fixed_effects.loc["stratio"]
print(
    f"- RIM2: one more student per teacher goes with {stratio['estimate']:.2f} points "
    f"(SE {stratio['std_error']:.2f}, 95% CI {stratio['ci_lower']:.2f} to "
    f"{stratio['ci_upper']:.2f}), holding desk and ESCS fixed. Student-teacher "
    f"ratio is a level-2 (school) predictor, so its df is near the number of "
    f"schools ({stratio['df']:.0f}), not of students. The article reports 0.55 from "
    f"the real PISA sample; this simulated sample is not the article's, and with "
    f"only {rim2.n_groups} schools the estimate is imprecise: 0.55 lies "
    f"{abs(stratio['estimate'] - 0.55) / stratio['std_error']:.1f} SE from it."
)

# %%
# The models compared
# -------------------
#
# :func:`~skhlm.compare` is lme4's ``anova()`` for nested models. Models that differ
# in their fixed effects are compared by maximum likelihood (ML), not REML: the REML
# criterion depends on the fixed effects, so two REML fits with different predictors
# are not comparable. ``refit=True`` refits each model by ML first, as ``anova()``
# does. Each row gives the number of parameters (``npar``), AIC and BIC (smaller is
# better), the log-likelihood and the deviance (:math:`-2` log-likelihood). ``Chisq``
# is the likelihood-ratio statistic against the row above, with ``Df`` the number of
# parameters added, and ``p_value`` its chi-squared p-value.

print("\n===== Nested models compared, as lme4's anova() (refitted with ML) " + "=" * 5)
table = compare(*fits.values(), refit=True, names=list(fits))
# lme4's columns (p_boundary, for a model that adds a random effect, is NaN here:
# the three models differ in their fixed effects).
print(table.drop(columns="p_boundary").round(4).to_string())
