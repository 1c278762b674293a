"""Are MixedEffectsRegressor's variance components honest?  Friedman #1 plus random
intercepts at n = 1e5 (1e3 groups, ICC 0.3, s2e = 4: the truth is known), with
gradient boosting and a random forest as learners, cross-fitted (the default) and
in-sample (MERF's way, the control).

    python benchmarks/mixed_effects_variance.py        # ~3 min here

Prints s2u and s2e against the truth, in percent, the rounds and the fit time.
"""

import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from sklearn.ensemble import HistGradientBoostingRegressor, RandomForestRegressor  # noqa: E402

from mixed_effects import HGB, friedman, markdown  # noqa: E402
from skhlm import MixedEffectsRegressor  # noqa: E402

import pandas as pd  # noqa: E402


def main():
    X, y, g, truth = friedman(100_000, 1000)
    learners = {
        "HistGradientBoosting": HistGradientBoostingRegressor(**HGB),
        "RandomForest (30 trees, min_samples_leaf=5)": RandomForestRegressor(
            n_estimators=30, min_samples_leaf=5, n_jobs=-1, random_state=0
        ),
    }
    rows = []
    for name, learner in learners.items():
        for residuals in ("cross-fitted", "in-sample"):
            start = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model = MixedEffectsRegressor(learner, residuals=residuals, random_state=0).fit(X, y, groups=g)
            seconds = time.perf_counter() - start
            s2u, s2e = model.variance_components_["group"], model.variance_components_["residual"]
            rows.append({
                "learner": name, "residuals": residuals, "s2u": s2u, "s2e": s2e,
                "s2u vs truth %": 100 * (s2u / truth["group"] - 1),
                "s2e vs truth %": 100 * (s2e / truth["residual"] - 1),
                "learner variance": model.learner_variance_, "rounds": model.n_iter_, "fit s": seconds,
            })
            print(f"  {name}, {residuals}: done in {seconds:.1f} s", flush=True)
    print(f"\n### Friedman #1 + intercepts: 100000 rows, 1000 groups; truth {truth}")
    print(markdown(pd.DataFrame(rows)))


if __name__ == "__main__":
    main()
