"""
Gradient boosting with random intercepts, against boosting alone and with the group
===================================================================================

Simulated data: Friedman #1's nonlinear fixed part plus a random intercept per group
(ICC 0.3 of the random part), the truth known.  Three models are fitted on the same
rows and scored on held-out rows of the groups seen in training and on groups never
seen:

- boosting alone: cannot see the groups at all;
- boosting with the group id as a feature (native categorical): learns the seen
  groups, but has nothing to say about a new one beyond what it learned to do with an
  unknown category;
- skhlm's MixedEffectsRegressor around the same boosting: learns the groups as
  random intercepts, shrunk by how much each group's rows say, estimates the variance
  components honestly, and predicts a new group by the fixed part alone.

The left panel shows the RMSEs; the right one each seen group's estimated intercept
against its true one.

Run: ``python examples/plot_mixed_effects.py [output directory]`` (needs skhlm[plot])
"""

# %%
# Simulated data with known groups
# --------------------------------
#
# :func:`~sklearn.datasets.make_friedman1` gives a nonlinear function :math:`f(x)` of
# ten features (five of them irrelevant), the part a boosting model is good at. Each
# row also belongs to one of 200 groups, and its group adds an intercept
# :math:`u_j \sim N(0, \sigma^2_u)`, on top of noise :math:`e \sim N(0, \sigma^2_e)`:
#
# .. math::
#
#     y = f(x) + u_j + e, \qquad \frac{\sigma^2_u}{\sigma^2_u + \sigma^2_e} = 0.3.
#
# The true intercepts ``u`` are kept, to compare with the estimated ones.

import sys
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import make_friedman1
from sklearn.ensemble import HistGradientBoostingRegressor

from skhlm import MixedEffectsRegressor

N_ROWS, N_GROUPS, S2E = 20_000, 200, 4.0
S2U = S2E * 0.3 / 0.7


def simulate(seed=0):
    rng = np.random.default_rng(seed)
    X, f = make_friedman1(N_ROWS, n_features=10, noise=0, random_state=seed)
    groups = rng.integers(0, N_GROUPS, N_ROWS)
    u = rng.normal(0, np.sqrt(S2U), N_GROUPS)
    return X, f + u[groups] + rng.normal(0, np.sqrt(S2E), N_ROWS), groups, u


X, y, groups, u = simulate()
print(f"{N_ROWS} rows, {N_GROUPS} groups; truth s2u = {S2U:.3f}, s2e = {S2E:.3f}")

# %%
# Seen groups and new groups
# --------------------------
#
# A fifth of the groups (40) are held out whole: the models never see them, as a
# model in production meets new stores, patients or schools. Of the other groups, a
# fifth of the rows are held out too: new rows of groups seen in training. The rest
# is the training set.

rng = np.random.default_rng(1)
unseen_groups = rng.choice(N_GROUPS, N_GROUPS // 5, replace=False)
unseen = np.isin(groups, unseen_groups)
held = ~unseen & (rng.random(N_ROWS) < 0.2)
train = ~unseen & ~held

# %%
# Three models around the same boosting
# -------------------------------------
#
# The same :class:`~sklearn.ensemble.HistGradientBoostingRegressor`, three ways:
#
# - alone, on the ten features;
# - with the group id as an eleventh, categorical, feature: the trees can split on
#   groups and learn each group's level;
# - inside :class:`~skhlm.MixedEffectsRegressor`, which alternates between fitting
#   the boosting to :math:`y - \hat u_j` and fitting a random intercept model to the
#   boosting's residuals. Each group's intercept is its mean residual shrunk toward 0,
#   the more so the fewer rows the group has, and the model estimates the two
#   variances. The residuals it uses are cross-fitted (each row's prediction comes
#   from a boosting fitted without that row's group), so that the boosting's overfit
#   does not pass for group effects.
#
# The printed variances are the mixed model's estimates, to set against the truth
# above; ``n_iter_`` is the number of rounds of the alternation.


def boosting(**kwargs):
    return HistGradientBoostingRegressor(early_stopping=True, random_state=0, **kwargs)


alone = boosting().fit(X[train], y[train])
with_group = boosting(categorical_features=[10]).fit(
    np.column_stack([X[train], groups[train]]), y[train]
)
mixed = MixedEffectsRegressor(boosting(), random_state=0).fit(X[train], y[train], groups=groups[train])
vc = mixed.variance_components_
print(f"MixedEffectsRegressor: s2u = {vc['group']:.3f}, s2e = {vc['residual']:.3f} "
      f"({mixed.n_iter_} rounds)")

# %%
# Prediction error
# ----------------
#
# Root mean squared error on the held-out rows of seen groups, and on the new
# groups. No model can beat the noise, so :math:`\sqrt{\sigma^2_e} = 2` is the floor.
# For a seen group, the mixed model adds the group's estimated intercept to the
# boosting's prediction. For a new group it has no intercept to add and predicts the
# boosting's :math:`f(x)` alone; the group-as-feature model sees an unknown category
# (given as missing, NaN) and does whatever its trees do with one.


def rmse(rows, prediction):
    return float(np.sqrt(np.mean((prediction - y[rows]) ** 2)))


# An unseen group is an unknown category to the group-as-feature model.
as_feature = np.where(unseen, np.nan, groups)
scores = {
    "boosting alone": [rmse(r, alone.predict(X[r])) for r in (held, unseen)],
    "boosting + group feature": [
        rmse(r, with_group.predict(np.column_stack([X[r], as_feature[r]]))) for r in (held, unseen)
    ],
    "MixedEffectsRegressor": [rmse(r, mixed.predict(X[r], groups=groups[r])) for r in (held, unseen)],
}
print(f"{'model':26s} {'RMSE seen groups':>17s} {'RMSE new groups':>16s}")
for name, (seen_rmse, new_rmse) in scores.items():
    print(f"{name:26s} {seen_rmse:17.3f} {new_rmse:16.3f}")

# %%
# The figure
# ----------
#
# Left, the table above as bars, with the noise floor dotted. Right, each seen group's
# estimated intercept (BLUP, ``random_effects_``) against its true ``u``, with the
# grey line :math:`y = x`. A group has 100 rows on average, 80 of them in training,
# so its intercept is measured well and shrunk little: the points lie close to the
# line.

fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
names = list(scores)
at = np.arange(len(names))
left.bar(at - 0.2, [scores[n][0] for n in names], 0.4, label="held-out rows, seen groups")
left.bar(at + 0.2, [scores[n][1] for n in names], 0.4, label="new groups")
left.axhline(np.sqrt(S2E), color="0.3", ls=":", lw=1)
left.text(-0.6, np.sqrt(S2E) + 0.03, "noise floor, sqrt(s2e)", ha="left", va="bottom", fontsize=8)
left.set_xticks(at, [n.replace(" + ", "\n+ ") for n in names], fontsize=9)
left.set_ylabel("test RMSE")
left.legend(loc="lower left", fontsize=8)
left.set_title("Prediction error")

seen_labels = mixed.groups_
right.scatter(u[seen_labels], mixed.random_effects_, s=12)
lim = np.abs(u).max() * 1.1
right.plot([-lim, lim], [-lim, lim], color="0.5", lw=1)
right.set_xlabel("true group intercept")
right.set_ylabel("estimated (BLUP)")
right.set_title("Random intercepts of the seen groups")
fig.tight_layout()

# %%
# Save the figure
# ---------------
#
# To the folder given as the first argument, ``examples/images/`` by default.

out_dir = sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parent / "images"
path = Path(out_dir) / "mixed_effects.png"
fig.savefig(path, dpi=110)
print(f"Saved {path}")
