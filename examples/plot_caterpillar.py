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

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from skhlm import RandomInterceptRegressor  # noqa: E402
from skhlm.datasets import make_pisa_like  # noqa: E402
from skhlm.plotting import plot_random_effects, plot_shrinkage  # noqa: E402


def main(out_dir):
    pisa = make_pisa_like()
    X, y, school = pisa[["desk", "escs"]], pisa["math"], pisa["school"]
    model = RandomInterceptRegressor().fit(X, y, groups=school)

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 6))
    plot_random_effects(model, ax=left)
    plot_shrinkage(model, X, y, school, ax=right)
    fig.suptitle("RIM1: math ~ desk + escs + (1 | school), simulated PISA-like data")
    fig.tight_layout()
    path = Path(out_dir) / "caterpillar.png"
    fig.savefig(path, dpi=90)

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
    print(f"Saved {path}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parent / "images")
