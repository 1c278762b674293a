"""Pictures of a fitted random intercept model (needs matplotlib: ``skhlm[plot]``).

- :func:`plot_random_effects`: the caterpillar plot, each group's BLUP with its
  interval, sorted.
- :func:`plot_shrinkage`: partial pooling, each group's raw mean residual against
  its BLUP, sized by the group's number of rows.
"""

import numpy as np
from scipy import stats
from sklearn.utils.validation import check_is_fitted

from .data.groups import lookup_groups, split_group_column

__all__ = ["plot_random_effects", "plot_shrinkage"]


def _pyplot():
    try:
        import matplotlib.pyplot as plt
    except ImportError as error:  # pragma: no cover - exercised without matplotlib
        raise ImportError(
            "skhlm.plotting needs matplotlib, which is an optional extra: "
            "pip install 'skhlm[plot]'"
        ) from error
    return plt


def _axes(ax):
    return ax if ax is not None else _pyplot().subplots()[1]


def _fitted_with_groups(model):
    check_is_fitted(model)
    if model.groups_.size == 0:
        raise ValueError("The model was fitted without groups, so it has no random effects to plot.")


def plot_random_effects(model, *, level=0.95, ax=None, max_labels=40):
    """Caterpillar plot: every group's random intercept with its interval, sorted.

    Each point is a BLUP ``u_j`` (lme4's ``ranef``) and each bar its interval
    ``u_j +/- z sqrt(condVar_j)``, conditional on the estimated beta.  Groups whose
    interval excludes 0 are drawn in a stronger colour.

    Parameters
    ----------
    model : RandomInterceptRegressor
        A fitted model with groups.
    level : float, default=0.95
        Coverage of the intervals.
    ax : matplotlib Axes, default=None
        Where to draw; a new figure when None.
    max_labels : int, default=40
        Label the groups on the y axis when there are at most this many.

    Returns
    -------
    ax : matplotlib Axes

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> from skhlm import RandomInterceptRegressor
    >>> from skhlm.datasets import make_multilevel_regression
    >>> from skhlm.plotting import plot_random_effects
    >>> X, y, g = make_multilevel_regression(n_groups=20, icc=0.4, random_state=0)
    >>> ax = plot_random_effects(RandomInterceptRegressor().fit(X, y, groups=g))
    >>> ax.get_xlabel()
    'Random intercept (BLUP) with 95% interval'
    """
    _fitted_with_groups(model)
    ax = _axes(ax)
    order = np.argsort(model.random_effects_, kind="stable")
    u = model.random_effects_[order]
    half = stats.norm.ppf(0.5 + level / 2) * np.sqrt(model.random_effects_var_[order])
    rank = np.arange(u.size)
    excludes_zero = np.abs(u) > half
    for mask, color in ((~excludes_zero, "0.6"), (excludes_zero, "C0")):
        ax.errorbar(u[mask], rank[mask], xerr=half[mask], fmt="o", ms=3, color=color,
                    ecolor=color, elinewidth=1, capsize=0)
    ax.axvline(0.0, color="k", lw=0.8)
    ax.set_xlabel(f"Random intercept (BLUP) with {level:.0%} interval")
    ax.set_ylabel("Group, sorted by its random intercept")
    if u.size <= max_labels:
        ax.set_yticks(rank, [str(label) for label in model.groups_[order]])
    else:
        ax.set_yticks([])
    ax.set_title(f"{u.size} groups, s2u = {model.variance_components_['group']:.4g}")
    return ax


def plot_shrinkage(model, X, y, groups=None, *, ax=None):
    """Partial pooling: each group's raw mean residual against its BLUP.

    The x axis is the no-pooling estimate of a group's intercept, the mean of
    ``y - x' beta`` over its rows; the y axis is the BLUP, which shrinks it toward 0
    by the factor ``n_j s2u / (s2e + n_j s2u)``.  Marker area is proportional to the
    group's size, so small groups, shrunk the most, are easy to spot.  The dashed
    line is no shrinkage (y = x).

    Parameters
    ----------
    model : RandomInterceptRegressor
        A fitted model with groups.
    X, y, groups : array-like
        The data the model was fitted to (or any data of the same groups); rows of
        groups not seen in fit are ignored.  For a model with ``group_column``, X
        holds the column and ``groups`` may be left out.
    ax : matplotlib Axes, default=None

    Returns
    -------
    ax : matplotlib Axes

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> from skhlm import RandomInterceptRegressor
    >>> from skhlm.datasets import make_multilevel_regression
    >>> from skhlm.plotting import plot_shrinkage
    >>> X, y, g = make_multilevel_regression(n_groups=20, group_size=(2, 30), random_state=0)
    >>> model = RandomInterceptRegressor().fit(X, y, groups=g)
    >>> ax = plot_shrinkage(model, X, y, g)
    >>> ax.get_ylabel()
    'Random intercept (BLUP): partial pooling'
    """
    _fitted_with_groups(model)
    ax = _axes(ax)
    if model.group_column is not None:
        X, column = split_group_column(X, model.group_column)
        groups = column if groups is None else groups
    if groups is None:
        raise ValueError("plot_shrinkage needs the groups of the rows of X.")
    population = np.asarray(X, dtype=float) @ model.coef_ + model.intercept_  # x'beta
    residual = np.asarray(y, dtype=float) - population
    index = lookup_groups(groups, model.groups_, residual.shape[0])
    seen = index >= 0
    sizes = np.bincount(index[seen], minlength=model.groups_.size)
    sums = np.bincount(index[seen], weights=residual[seen], minlength=model.groups_.size)
    present = sizes > 0
    raw = sums[present] / sizes[present]
    blup = model.random_effects_[present]
    ax.scatter(raw, blup, s=12 * sizes[present] / sizes[present].mean(), alpha=0.6,
               edgecolors="k", linewidths=0.3)
    limits = [min(raw.min(), blup.min()), max(raw.max(), blup.max())]
    ax.plot(limits, limits, "k--", lw=0.8, label="no pooling (y = x)")
    ax.axhline(0.0, color="0.5", lw=0.8, label="complete pooling (0)")
    ax.set_xlabel("Raw group mean of y - x'beta: no pooling")
    ax.set_ylabel("Random intercept (BLUP): partial pooling")
    ax.set_title("Shrinkage; marker area = group size")
    ax.legend(loc="upper left", frameon=False)
    return ax
