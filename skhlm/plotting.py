"""Pictures of a fitted random intercept model (needs matplotlib: ``skhlm[plot]``).

- :func:`plot_random_effects`: the caterpillar plot, each group's BLUP with its
  interval, sorted.
- :func:`plot_shrinkage`: partial pooling, each group's raw mean residual against
  its BLUP, sized by the group's number of rows.

Both take a fitted :class:`~skhlm.RandomInterceptRegressor`, or a fitted
scikit-learn Pipeline whose last step is one.
"""

from numbers import Integral, Real

import numpy as np
from scipy import stats
from sklearn.pipeline import Pipeline
from sklearn.utils.validation import check_consistent_length, check_is_fitted

from ._base import GroupedRegressorMixin
from .data.groups import lookup_groups

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


def _last_step(model):
    """The estimator at the end of ``model``: itself, or a Pipeline's (nested) last step."""
    while isinstance(model, Pipeline) and len(model.steps) > 0:
        model = model.steps[-1][1]
    return model


def _fitted_with_groups(model, caller):
    """The fitted skhlm model in ``model`` (itself or the last step of a Pipeline)."""
    last = _last_step(model)
    if not isinstance(last, GroupedRegressorMixin):
        given = f"a {type(model).__name__}"
        if last is not model:
            given += (
                f" whose last step is {last!r}" if isinstance(last, str) or last is None
                else f" whose last step is a {type(last).__name__}"
            )
        hint = (
            " For a search such as GridSearchCV, pass its best_estimator_ once it is fitted."
            if hasattr(model, "best_estimator_") or hasattr(model, "param_grid")
            or hasattr(model, "param_distributions") else ""
        )
        raise TypeError(
            f"{caller} got {given}, which is not a skhlm model: pass the fitted "
            "RandomInterceptRegressor, or a fitted Pipeline whose last step is one."
            + hint
        )
    check_is_fitted(last)
    if last.groups_.size == 0:
        raise ValueError(
            "The model was fitted without groups, so it has no random effects to plot. "
            "Fit it with groups= (or group_column) first."
        )
    return last


def _through_pipeline(model, X):
    """X as the last step of ``model`` sees it: through the transform of every step
    before it when ``model`` is a Pipeline (nested ones too)."""
    while isinstance(model, Pipeline) and len(model.steps) > 0:
        if len(model.steps) > 1:
            X = model[:-1].transform(X)
        model = model.steps[-1][1]
    return X


def _percent(level):
    """0.95 as '95%', 0.975 as '97.5%'."""
    return f"{100 * level:g}%"


_SMALLEST_LABEL = 6.0  # points: the smallest font a spread-out group label gets
_LEADER = 10.0  # points: the length of the leader lines, between the labels and the axis


def _label_every_group(ax, names):
    ax.set_yticks(np.arange(len(names)), [str(name) for name in names])


def _label_the_extremes(ax, names, max_labels):
    """Label the lowest and highest of the sorted groups ``names`` on the y axis.

    Rows of many groups are too close for a label each, so the labels of each end
    are spread out, one font height apart, with a leader line from each label to
    its row.  At most ``max_labels`` are shown, fewer when no more fit at the
    axes' height in a font of at least ``_SMALLEST_LABEL`` points; half (rounded
    down) are the lowest and the rest the highest.  Returns what to say of them.
    """
    from matplotlib.collections import LineCollection
    from matplotlib.font_manager import FontProperties

    n = len(names)
    figure = ax.get_figure()
    box = ax.get_position()
    height = box.height * figure.get_figheight() * 72  # points
    width = box.width * figure.get_figwidth() * 72
    bottom, top = ax.get_ylim()
    per_row = height / (top - bottom)  # points between neighbouring rows
    size = FontProperties(size=_pyplot().rcParams["ytick.labelsize"]).get_size_in_points()
    fit = int((n - 1) * per_row // (1.25 * _SMALLEST_LABEL)) + 1
    k = max(0, min(max_labels, fit))
    n_low, n_high = k // 2, k - k // 2
    gap = 1.25 * size / per_row  # rows between labels, for a label of the usual size
    if k > 1:
        gap = min(gap, (n - 1) / (k - 1))  # the labels of the two ends never cross
    gap = max(gap, 1.0)
    rows = np.r_[np.arange(n_low), np.arange(n - n_high, n)]
    at = np.r_[np.arange(n_low) * gap, (n - 1) - np.arange(n_high)[::-1] * gap]
    ax.set_yticks(at, [str(names[row]) for row in rows])
    ax.tick_params(axis="y", length=0, pad=_LEADER + 2,
                   labelsize=min(size, gap * per_row / 1.25))
    lead = _LEADER / width  # in axes fractions
    leaders = LineCollection(
        [[(-lead, y), (0.0, row)] for y, row in zip(at, rows)],
        transform=ax.get_yaxis_transform(), colors="0.4", linewidths=0.6, clip_on=False,
        gid="group label leaders",
    )
    ax.add_collection(leaders, autolim=False)
    says = f"{k} of {n} groups labelled"
    if n_low:
        says += f": the {n_low} lowest and {n_high} highest"
    elif n_high:
        says += ": the highest"
    return says


def plot_random_effects(model, *, level=0.95, ax=None, max_labels=40):
    """Caterpillar plot: every group's random intercept with its interval, sorted.

    Each point is a BLUP ``u_j`` (lme4's ``ranef``) and each bar its interval
    ``u_j +/- z sqrt(condVar_j)``, conditional on the estimated beta.  Groups whose
    interval excludes 0 are drawn in a stronger colour (``C0``), the others in grey;
    the legend names the colours drawn, with the number of groups of each, e.g.
    "95% interval excludes 0 (11 groups)" and "95% interval includes 0 (14 groups)".
    A colour no group has (every interval includes 0, say) has no legend entry.

    For a LinearMixedRegressor with random slopes there is a panel per random effect
    (the intercept, then each slope), side by side and sharing the rows: the groups
    are in the order of their intercepts in every panel, as lme4's ``dotplot`` of
    ``ranef``, and each bar is the effect's own conditional interval.

    Parameters
    ----------
    model : RandomInterceptRegressor, LinearMixedRegressor or Pipeline
        A fitted model with groups, or a fitted Pipeline whose last step is one.
    level : float, default=0.95
        Coverage of the intervals, between 0 and 1.
    ax : matplotlib Axes, default=None
        Where to draw; a new figure when None.  With random slopes, a sequence of
        one Axes per effect.
    max_labels : int, default=40
        The most groups to name on the y axis.  With at most this many groups every
        group is labelled at its row.  With more, all are still drawn but only the
        most extreme are labelled: of ``k`` labels, the ``k // 2`` lowest BLUPs and
        the ``k - k // 2`` highest, spread apart with a leader line from each label
        to its row.  ``k`` is ``max_labels``, or fewer when no more fit at the axes'
        height (when plotted) in a font of at least 6 points: make the figure
        taller for more.  The y axis label says how many, e.g. "40 of 164 groups
        labelled: the 20 lowest and 20 highest".  0 labels none.

    Returns
    -------
    ax : matplotlib Axes, or ndarray of Axes of shape (q,)
        The drawing: one Axes, or with random slopes one per effect (q of them).

    Raises
    ------
    TypeError
        If ``model`` is not a skhlm model or a Pipeline ending in one.
    sklearn.exceptions.NotFittedError
        If the model is not fitted.
    ValueError
        If the model was fitted without groups, or ``level`` or ``max_labels`` is
        out of range.

    See Also
    --------
    plot_shrinkage : How far each group's intercept is pulled toward 0.
    skhlm.RandomInterceptRegressor.summary : Its ``group_intercepts``, the same intervals.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> from skhlm import RandomInterceptRegressor
    >>> from skhlm.datasets import make_multilevel_regression
    >>> from skhlm.plotting import plot_random_effects
    >>> X, y, g = make_multilevel_regression(n_groups=20, icc=0.4, random_state=0)
    >>> model = RandomInterceptRegressor().fit(X, y, groups=g)
    >>> ax = plot_random_effects(model)
    >>> ax.get_xlabel()
    'Random intercept (BLUP) with 95% interval'
    >>> [text.get_text() for text in ax.get_legend().get_texts()]
    ['95% interval excludes 0 (4 groups)', '95% interval includes 0 (16 groups)']

    With more groups than ``max_labels``, the extremes are labelled:

    >>> ax = plot_random_effects(model, max_labels=6)
    >>> print(ax.get_ylabel())
    Group, sorted by its random intercept
    6 of 20 groups labelled: the 3 lowest and 3 highest
    """
    if isinstance(level, bool) or not isinstance(level, Real) or not 0 < level < 1:
        raise ValueError(f"level must be between 0 and 1 (exclusive), e.g. 0.95; got {level!r}.")
    if isinstance(max_labels, bool) or not isinstance(max_labels, Integral) or max_labels < 0:
        raise ValueError(f"max_labels must be a non-negative integer; got {max_labels!r}.")
    model = _fitted_with_groups(model, "plot_random_effects")
    effects = np.asarray(model.random_effects_)
    if effects.ndim == 1:  # the random intercept model
        ax = _axes(ax)
        order = np.argsort(effects, kind="stable")
        _caterpillar(ax, effects[order], model.random_effects_var_[order], model.groups_[order], level, max_labels)
        ax.set_xlabel(f"Random intercept (BLUP) with {_percent(level)} interval")
        ax.set_ylabel("Group, sorted by its random intercept" + ax.get_ylabel())
        ax.set_title(f"{effects.size} groups, s2u = {model.variance_components_['group']:.4g}")
        return ax
    # Random slopes: a panel per effect, the groups in the order of their intercepts
    # in every panel (as lme4's dotplot of ranef).
    q = effects.shape[1]
    if ax is None:
        fig, axes = _pyplot().subplots(1, q, sharey=True, figsize=(4.0 * q, 6.0), squeeze=False)
        axes = axes[0]
    else:
        axes = np.atleast_1d(np.asarray(ax, dtype=object)).ravel()
        if axes.size != q:
            raise ValueError(f"The model has {q} random effects: pass {q} axes (one per effect), or ax=None.")
    order = np.argsort(effects[:, 0], kind="stable")
    variances = np.diagonal(model.random_effects_var_, axis1=1, axis2=2)
    sigma = model.variance_components_["group"]
    for k, (panel, name) in enumerate(zip(axes, model.random_effect_names_)):
        _caterpillar(panel, effects[order, k], variances[order, k], model.groups_[order], level,
                     max_labels if k == 0 else None)
        panel.set_xlabel(f"{name}: BLUP with {_percent(level)} interval")
        panel.set_title(f"{name}, variance {sigma[k, k]:.4g}")
    axes[0].set_ylabel(f"Group ({effects.shape[0]}), sorted by its random intercept" + axes[0].get_ylabel())
    return axes


def _caterpillar(ax, u, var, names, level, max_labels):
    """One caterpillar panel: the sorted BLUPs ``u`` with their intervals, coloured by
    whether they exclude 0; the groups labelled (all, or the extremes: the
    explanation goes to the y label, which the caller completes)."""
    half = stats.norm.ppf(0.5 + level / 2) * np.sqrt(var)
    rank = np.arange(u.size)
    excludes_zero = np.abs(u) > half
    shown = _percent(level)
    for mask, color, says in ((excludes_zero, "C0", "excludes"), (~excludes_zero, "0.6", "includes")):
        count = int(mask.sum())
        if count == 0:
            continue
        ax.errorbar(u[mask], rank[mask], xerr=half[mask], fmt="o", ms=3, color=color,
                    ecolor=color, elinewidth=1, capsize=0,
                    label=f"{shown} interval {says} 0 ({count} group{'s' if count != 1 else ''})")
    ax.axvline(0.0, color="k", lw=0.8)
    ax.set_ylabel("")
    if max_labels is None:  # a panel beside the first, sharing its rows
        ax.tick_params(labelleft=False)
    elif u.size <= max_labels:
        _label_every_group(ax, names)
    else:
        ax.set_ylabel("\n" + _label_the_extremes(ax, names, max_labels))
    # Sorted ascending, the points run from bottom left to top right: the upper left
    # corner is the emptiest.
    ax.legend(loc="upper left", frameon=False, fontsize="small")


def plot_shrinkage(model, X, y, groups=None, *, ax=None):
    """Partial pooling: each group's raw mean residual against its BLUP.

    The x axis is the no-pooling estimate of a group's intercept, the mean of
    ``y - x' beta`` over its rows; the y axis is the BLUP, which shrinks it toward 0
    by the factor ``n_j s2u / (s2e + n_j s2u)``.  Marker area is proportional to the
    group's size, so small groups, shrunk the most, are easy to spot.  The dashed
    line is no shrinkage (y = x).

    Parameters
    ----------
    model : RandomInterceptRegressor or Pipeline
        A fitted model with groups, or a fitted Pipeline whose last step is one.
    X, y, groups : array-like
        The data the model was fitted to (or any data of the same groups), as given
        to ``fit``: for a Pipeline, X before its transformers, which are applied to
        it here.  Rows of groups not seen in fit are ignored.  For a model with
        ``group_column``, X holds the column (for a Pipeline, the column the
        transformers pass through) and ``groups`` may be left out; groups given
        take its place.
    ax : matplotlib Axes, default=None
        Where to draw; a new figure when None.

    Returns
    -------
    ax : matplotlib Axes
        The drawing: a point per group seen among the rows.

    Raises
    ------
    TypeError
        If ``model`` is not a skhlm model or a Pipeline ending in one.
    sklearn.exceptions.NotFittedError
        If the model is not fitted.
    ValueError
        If the model was fitted without groups, if no groups are given, or if X is
        not what the model was fitted to (other columns, as in ``predict``).

    See Also
    --------
    plot_random_effects : Each group's intercept with its interval.

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

    For a Pipeline, pass X as the Pipeline takes it; its transformers are applied here:

    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.preprocessing import StandardScaler
    >>> pipe = make_pipeline(StandardScaler(), RandomInterceptRegressor())
    >>> pipe = pipe.fit(X, y, randominterceptregressor__groups=g)
    >>> ax = plot_shrinkage(pipe, X, y, g)
    >>> len(ax.collections[0].get_offsets())  # a point per group
    20
    """
    fitted = _fitted_with_groups(model, "plot_shrinkage")
    X = _through_pipeline(model, X)  # a Pipeline's transformers first, then the group column
    model = fitted
    # The model's own check of X, as in predict: the features as floats, in the
    # columns of fit, and the labels of group_column when it has one.
    X, column = model._validate_for_predict(X, None)
    groups = column if groups is None else groups
    if groups is None:
        raise ValueError(
            "plot_shrinkage needs the groups of the rows of X: pass groups=, the labels "
            "the model was fitted with (or fit the model with group_column)."
        )
    check_consistent_length(X, y)
    population = X @ model.coef_ + model.intercept_  # x'beta
    residual = np.asarray(y, dtype=float) - population
    index = lookup_groups(groups, model.groups_, residual.shape[0])
    seen = index >= 0
    if not seen.any():
        raise ValueError(
            f"None of the {index.size} rows belong to a group seen in fit, so there is no "
            "shrinkage to plot. Pass the data the model was fitted to, or rows of its groups."
        )
    ax = _axes(ax)
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
