"""Quickstart: the seed article's three random intercept models of math achievement.

"A Basic Introduction to Hierarchical Linear Modeling" fits, with lme4, on PISA 2018
(USA) students nested in schools:

    RIM0: math ~ 1 + (1 | school)                       s2u 1524, s2e 6608, ICC 0.19
    RIM1: math ~ desk + escs + (1 | school)             desk 8.77
    RIM2: math ~ desk + escs + stratio + (1 | school)   stratio 0.55

The PISA file cannot be downloaded here, so this runs on a simulated data set with
the same shape and population values (skhlm.datasets.make_pisa_like).

Run:  python examples/quickstart.py
"""

import pandas as pd

from skhlm import RandomInterceptRegressor
from skhlm.datasets import make_pisa_like

MODELS = {
    "RIM0": [],
    "RIM1": ["desk", "escs"],
    "RIM2": ["desk", "escs", "stratio"],
}


def report(name, predictors, model, n_obs):
    """Print one fit laid out like lme4's summary: random effects, then fixed."""
    s2u = model.variance_components_["group"]
    s2e = model.variance_components_["residual"]
    formula = " + ".join(predictors or ["1"])
    print(f"{name}: math ~ {formula} + (1 | school)   [{model.method.upper()}]")
    print(f"  REML log-likelihood {model.log_likelihood_:.2f}   AIC {model.aic_:.1f}")
    print("  Random effects:")
    print(f"    {'Groups':<9}{'Name':<13}{'Variance':>10}{'Std.Dev.':>10}")
    print(f"    {'school':<9}{'(Intercept)':<13}{s2u:>10.1f}{s2u ** 0.5:>10.2f}")
    print(f"    {'Residual':<9}{'':<13}{s2e:>10.1f}{s2e ** 0.5:>10.2f}")
    print(f"  Number of obs: {n_obs}, groups: school, {len(model.groups_)}")
    print("  Fixed effects:")
    print(f"    {'(Intercept)':<13}{model.intercept_:>10.2f}")
    for column, value in zip(predictors, model.coef_):
        print(f"    {column:<13}{value:>10.2f}")
    print(f"  ICC = {s2u:.1f} / ({s2u:.1f} + {s2e:.1f}) = {model.icc_:.3f}")
    print(f"  (EM: {model.n_iter_} iterations, converged: {model.converged_})")
    print()


def main():
    pisa = make_pisa_like(random_state=2018)
    print(
        f"Simulated PISA-like data: {len(pisa)} students in "
        f"{pisa['school'].nunique()} schools\n"
    )
    fits = {}
    for name, predictors in MODELS.items():
        model = RandomInterceptRegressor(method="reml")
        model.fit(pisa[predictors], pisa["math"], groups=pisa["school"])
        report(name, predictors, model, len(pisa))
        fits[name] = model

    rim0, rim1, rim2 = fits["RIM0"], fits["RIM1"], fits["RIM2"]
    print("What the numbers say")
    print(
        f"- RIM0: {100 * rim0.icc_:.0f}% of the variance in math lies between schools "
        f"(ICC {rim0.icc_:.2f}; the seed reports 1524 / (1524 + 6608) = 0.19). Students "
        "of one school are alike, so ordinary regression would overstate the evidence."
    )
    print(
        f"- RIM0: the grand mean is {rim0.intercept_:.2f} points (seed: 477.14): the "
        "expected score of a student in an average school."
    )
    desk, escs = rim1.coef_
    print(
        f"- RIM1: a student with a desk to study at home scores {desk:.2f} points more "
        f"(seed: 8.77), and one more unit of ESCS adds {escs:.1f} points, comparing "
        "students in the same school (same random intercept)."
    )
    print(
        f"- RIM1: ESCS and desk explain part of the between-school variance: s2u falls "
        f"from {rim0.variance_components_['group']:.0f} to "
        f"{rim1.variance_components_['group']:.0f}."
    )
    print(
        f"- RIM2: one more student per teacher goes with {rim2.coef_[2]:.2f} points "
        "(seed: 0.55), holding desk and ESCS fixed: a level-2 (school) predictor."
    )
    table = pd.DataFrame(
        {
            name: {
                "intercept": m.intercept_,
                **dict(zip(MODELS[name], m.coef_)),
                "s2u": m.variance_components_["group"],
                "s2e": m.variance_components_["residual"],
                "ICC": m.icc_,
            }
            for name, m in fits.items()
        }
    )
    print("\nSide by side:")
    print(table.round(3).to_string(na_rep=""))


if __name__ == "__main__":
    main()
