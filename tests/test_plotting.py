"""The plots draw what they claim: points, intervals, labels (rendered with Agg)."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.collections import LineCollection, PathCollection  # noqa: E402
from matplotlib.colors import to_rgba  # noqa: E402
from scipy import stats  # noqa: E402
from sklearn.compose import ColumnTransformer  # noqa: E402
from sklearn.exceptions import NotFittedError  # noqa: E402
from sklearn.linear_model import LinearRegression  # noqa: E402
from sklearn.model_selection import GridSearchCV  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

from skhlm import RandomInterceptRegressor  # noqa: E402
from skhlm.datasets import make_multilevel_regression  # noqa: E402
from skhlm.plotting import plot_random_effects, plot_shrinkage  # noqa: E402


@pytest.fixture(scope="module")
def fitted():
    X, y, groups = make_multilevel_regression(n_groups=25, group_size=(2, 40), icc=0.4, random_state=2)
    return RandomInterceptRegressor().fit(X, y, groups=groups), X, y, groups


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def test_caterpillar_draws_every_group_inside_its_interval(fitted):
    model = fitted[0]
    ax = plot_random_effects(model, level=0.9)
    points, intervals = {}, {}
    for line in ax.lines:
        if line.get_linestyle() == "None":  # the markers of errorbar
            points.update(zip(line.get_ydata(), line.get_xdata()))
    for collection in ax.collections:
        if isinstance(collection, LineCollection):
            for segment in collection.get_segments():
                intervals[segment[0, 1]] = (segment[:, 0].min(), segment[:, 0].max())
    n_groups = len(model.groups_)
    assert sorted(points) == sorted(intervals) == list(range(n_groups))  # one row per group
    order = np.argsort(model.random_effects_, kind="stable")
    for row, group in enumerate(order):
        lo, hi = intervals[row]
        assert points[row] == pytest.approx(model.random_effects_[group], rel=1e-12)
        assert lo < points[row] < hi
        half = 1.6448536270 * np.sqrt(model.random_effects_var_[group])  # 90%
        assert (lo, hi) == pytest.approx((points[row] - half, points[row] + half), rel=1e-8)
    assert [points[row] for row in range(n_groups)] == sorted(points.values())
    assert ax.get_xlabel() == "Random intercept (BLUP) with 90% interval"
    assert ax.get_ylabel() == "Group, sorted by its random intercept"
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels == [str(g) for g in model.groups_[np.argsort(model.random_effects_, kind="stable")]]


def test_caterpillar_colours_intervals_that_exclude_zero_on_either_side(fitted):
    model = fitted[0]
    ax = plot_random_effects(model, level=0.9)
    rows = {container.lines[0].get_color(): set(container.lines[0].get_ydata().tolist())
            for container in ax.containers}
    order = np.argsort(model.random_effects_, kind="stable")
    u = model.random_effects_[order]
    half = 1.6448536270 * np.sqrt(model.random_effects_var_[order])
    below, above = np.flatnonzero(u + half < 0), np.flatnonzero(u - half > 0)
    assert (below.size, above.size) == (6, 5)
    assert rows["C0"] == set(below.tolist()) | set(above.tolist())
    assert rows["0.6"] == set(range(u.size)) - rows["C0"]


def test_shrinkage_plots_raw_means_against_blups(fitted):
    model, X, y, groups = fitted
    ax = plot_shrinkage(model, X, y, groups)
    (points,) = [c for c in ax.collections if isinstance(c, PathCollection)]
    offsets = points.get_offsets()
    assert offsets.shape == (len(model.groups_), 2)
    residual = y - model.predict(X, population=True)
    raw = residual.groupby(groups).mean().reindex(model.groups_).to_numpy()
    np.testing.assert_allclose(offsets[:, 0], raw, rtol=1e-10)
    np.testing.assert_allclose(offsets[:, 1], model.random_effects_, rtol=1e-12)
    # Partial pooling: every BLUP lies between 0 and its raw mean.
    assert np.all(np.abs(offsets[:, 1]) <= np.abs(offsets[:, 0]) + 1e-12)
    assert np.all(offsets[:, 0] * offsets[:, 1] >= 0)
    sizes = points.get_sizes()
    n_j = groups.value_counts().reindex(model.groups_).to_numpy()
    np.testing.assert_allclose(sizes / sizes.max(), n_j / n_j.max())
    assert ax.get_xlabel() == "Raw group mean of y - x'beta: no pooling"
    assert ax.get_ylabel() == "Random intercept (BLUP): partial pooling"


def test_plots_refuse_a_model_without_groups(fitted):
    _, X, y, _ = fitted
    with pytest.warns(UserWarning, match="no groups"):
        model = RandomInterceptRegressor().fit(X, y)
    with pytest.raises(ValueError, match="fitted without groups"):
        plot_random_effects(model)


def test_shrinkage_of_a_model_with_a_group_column(fitted):
    model, X, y, groups = fitted
    with_column = RandomInterceptRegressor(group_column="g").fit(X.assign(g=groups), y)
    ax = plot_shrinkage(with_column, X.assign(g=groups), y)
    (points,) = [c for c in ax.collections if isinstance(c, PathCollection)]
    reference = plot_shrinkage(model, X, y, groups, ax=plt.subplots()[1])
    (expected,) = [c for c in reference.collections if isinstance(c, PathCollection)]
    np.testing.assert_allclose(points.get_offsets(), expected.get_offsets(), rtol=1e-10)


def caterpillar_rows(ax):
    """{row: BLUP} of the points of a caterpillar plot."""
    points = {}
    for line in ax.lines:
        if line.get_linestyle() == "None":
            points.update(zip(line.get_ydata(), line.get_xdata()))
    return points


def shrinkage_offsets(ax):
    (points,) = [c for c in ax.collections if isinstance(c, PathCollection)]
    return points.get_offsets()


def test_caterpillar_legend_names_the_two_colours(fitted):
    model = fitted[0]
    ax = plot_random_effects(model, level=0.9)
    legend = ax.get_legend()
    assert [t.get_text() for t in legend.get_texts()] == [
        "90% interval excludes 0 (11 groups)",
        "90% interval includes 0 (14 groups)",
    ]
    colours = [tuple(handle.get_color()[0]) for handle in legend.legend_handles]  # their bars
    assert colours == [to_rgba("C0"), to_rgba("0.6")]  # the colours of the bars they name
    for container in ax.containers:  # and each bar is drawn in the colour its label says
        excludes = container.get_label().endswith(f"excludes 0 ({len(container.lines[0].get_ydata())} groups)")
        assert to_rgba(container.lines[0].get_color()) == to_rgba("C0" if excludes else "0.6")


def test_caterpillar_legend_shows_only_the_colours_drawn():
    X, y, groups = make_multilevel_regression(n_groups=12, group_size=(5, 10), icc=0.05, random_state=0)
    model = RandomInterceptRegressor().fit(X, y, groups=groups)
    z = np.abs(model.random_effects_) / np.sqrt(model.random_effects_var_)
    assert z.max() < stats.norm.ppf(0.975)  # every 95% interval includes 0
    ax = plot_random_effects(model)
    legend = ax.get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["95% interval includes 0 (12 groups)"]
    assert [tuple(h.get_color()[0]) for h in legend.legend_handles] == [to_rgba("0.6")]
    assert len(ax.containers) == 1


def test_caterpillar_legend_uses_the_level_given(fitted):
    ax = plot_random_effects(fitted[0], level=0.975)
    assert all(t.get_text().startswith("97.5% interval ") for t in ax.get_legend().get_texts())
    assert ax.get_xlabel() == "Random intercept (BLUP) with 97.5% interval"


def label_leaders(ax):
    """{label y: row} of the leader lines from the group labels to their rows."""
    (leaders,) = [c for c in ax.collections if c.get_gid() == "group label leaders"]
    return {segment[0, 1]: segment[1, 1] for segment in leaders.get_segments()}


def assert_labels_do_not_overlap(ax):
    ax.get_figure().canvas.draw()
    boxes = [t.get_window_extent() for t in ax.get_yticklabels() if t.get_text()]
    for below, above in zip(boxes, boxes[1:]):
        assert below.y1 <= above.y0 + 0.5, "two group labels overlap"


@pytest.mark.parametrize("max_labels, n_low, n_high, says", [
    (6, 3, 3, "6 of 25 groups labelled: the 3 lowest and 3 highest"),
    (5, 2, 3, "5 of 25 groups labelled: the 2 lowest and 3 highest"),
    (1, 0, 1, "1 of 25 groups labelled: the highest"),
    (0, 0, 0, "0 of 25 groups labelled"),
])
def test_caterpillar_with_many_groups_labels_the_extremes(fitted, max_labels, n_low, n_high, says):
    model = fitted[0]
    ax = plot_random_effects(model, max_labels=max_labels)
    order = np.argsort(model.random_effects_, kind="stable")
    rows = list(range(n_low)) + list(range(25 - n_high, 25))
    assert [t.get_text() for t in ax.get_yticklabels()] == [str(model.groups_[order[r]]) for r in rows]
    leaders = label_leaders(ax)  # each label has a line to its group's row
    assert [leaders[y] for y in ax.get_yticks()] == rows
    assert ax.get_ylabel() == f"Group, sorted by its random intercept\n{says}"
    assert sorted(caterpillar_rows(ax)) == list(range(25))  # every group still drawn
    assert_labels_do_not_overlap(ax)


@pytest.fixture(scope="module")
def many_groups():
    X, y, groups = make_multilevel_regression(n_groups=164, group_size=(5, 30), icc=0.3, random_state=3)
    return RandomInterceptRegressor().fit(X, y, groups=groups)


@pytest.mark.parametrize("figsize", [(6, 12), (6.4, 4.8), (4, 2.5)])
def test_caterpillar_labels_of_many_groups_can_be_read(many_groups, figsize):
    model = many_groups
    ax = plot_random_effects(model, ax=plt.subplots(figsize=figsize)[1])  # max_labels=40
    order = np.argsort(model.random_effects_, kind="stable")
    texts = [t.get_text() for t in ax.get_yticklabels()]
    k = len(texts)
    n_low, n_high = k // 2, k - k // 2
    rows = list(range(n_low)) + list(range(164 - n_high, 164))
    assert texts == [str(model.groups_[order[r]]) for r in rows]
    assert [label_leaders(ax)[y] for y in ax.get_yticks()] == rows
    assert ax.get_ylabel().endswith(f"\n{k} of 164 groups labelled: the {n_low} lowest and {n_high} highest")
    assert_labels_do_not_overlap(ax)
    assert min(t.get_fontsize() for t in ax.get_yticklabels()) >= 6
    if figsize == (6, 12):
        assert k == 40  # a tall figure has room for max_labels
    else:
        assert 0 < k < 40  # as many as fit, fewer than asked


def test_caterpillar_labels_every_group_up_to_max_labels(fitted):
    model = fitted[0]
    ax = plot_random_effects(model, max_labels=25)
    assert len(ax.get_yticklabels()) == 25
    assert ax.get_ylabel() == "Group, sorted by its random intercept"


@pytest.mark.parametrize("argument, match", [
    ({"max_labels": -1}, "max_labels must be a non-negative integer; got -1"),
    ({"max_labels": 2.5}, "max_labels must be a non-negative integer; got 2.5"),
    ({"level": 95}, r"level must be between 0 and 1 \(exclusive\), e.g. 0.95; got 95"),
    ({"level": 1.0}, r"level must be between 0 and 1 \(exclusive\), e.g. 0.95; got 1.0"),
])
def test_caterpillar_refuses_bad_arguments(fitted, argument, match):
    with pytest.raises(ValueError, match=match):
        plot_random_effects(fitted[0], **argument)


def test_plots_of_a_fitted_pipeline_use_its_last_step(fitted):
    _, X, y, groups = fitted
    pipe = make_pipeline(StandardScaler(), RandomInterceptRegressor())
    pipe.fit(X, y, randominterceptregressor__groups=groups)
    model = pipe[-1]
    ax = plot_random_effects(pipe)
    points = caterpillar_rows(ax)
    order = np.argsort(model.random_effects_, kind="stable")
    np.testing.assert_allclose([points[r] for r in range(25)], model.random_effects_[order], rtol=1e-12)
    assert [t.get_text() for t in ax.get_yticklabels()] == [str(g) for g in model.groups_[order]]

    # plot_shrinkage scales X as the pipeline does before it takes x'beta
    offsets = shrinkage_offsets(plot_shrinkage(pipe, X, y, groups, ax=plt.subplots()[1]))
    raw = (y - pipe.predict(X, population=True)).groupby(groups).mean().reindex(model.groups_).to_numpy()
    np.testing.assert_allclose(offsets[:, 0], raw, rtol=1e-10)
    np.testing.assert_allclose(offsets[:, 1], model.random_effects_, rtol=1e-12)
    unscaled = (y - (X.to_numpy() @ model.coef_ + model.intercept_)).groupby(groups).mean()
    assert not np.allclose(offsets[:, 0], unscaled.reindex(model.groups_).to_numpy())


def test_shrinkage_of_a_pipeline_reads_the_group_column_after_the_transformers(fitted):
    model, X, y, groups = fitted
    Xg = X.assign(g=groups.to_numpy())
    prep = ColumnTransformer(
        [("num", StandardScaler(), list(X.columns))],
        remainder="passthrough",
        verbose_feature_names_out=False,
    ).set_output(transform="pandas")
    pipe = make_pipeline(prep, RandomInterceptRegressor(group_column="g")).fit(Xg, y)
    offsets = shrinkage_offsets(plot_shrinkage(pipe, Xg, y))
    direct = RandomInterceptRegressor().fit(StandardScaler().fit_transform(X), y, groups=groups)
    expected = shrinkage_offsets(plot_shrinkage(
        direct, StandardScaler().fit(X).transform(X), y, groups, ax=plt.subplots()[1]))
    np.testing.assert_allclose(offsets, expected, rtol=1e-8)


def test_shrinkage_checks_the_features_as_predict_does(fitted):
    model, X, y, groups = fitted
    with pytest.raises(ValueError, match="feature names"):
        plot_shrinkage(model, X[X.columns[::-1]], y, groups)  # columns out of order
    with pytest.raises(ValueError, match="needs the groups of the rows of X"):
        plot_shrinkage(model, X, y)
    with pytest.raises(ValueError, match="None of the 3 rows belong to a group seen in fit"):
        plot_shrinkage(model, X[:3], y[:3], ["new"] * 3)
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        plot_shrinkage(model, X, y[:-1], groups)


@pytest.mark.parametrize("plot", ["random_effects", "shrinkage"])
def test_plots_say_what_they_need_when_given_something_else(fitted, plot):
    _, X, y, groups = fitted

    def draw(model):
        if plot == "random_effects":
            return plot_random_effects(model)
        return plot_shrinkage(model, X, y, groups)

    name = f"plot_{plot}"
    need = "pass the fitted RandomInterceptRegressor, or a fitted Pipeline whose last step is one"
    with pytest.raises(TypeError, match=rf"{name} got a LinearRegression.*{need}"):
        draw(LinearRegression().fit(X, y))
    with pytest.raises(TypeError, match=rf"{name} got a Pipeline whose last step is a "
                                        rf"LinearRegression.*{need}"):
        draw(make_pipeline(StandardScaler(), LinearRegression()).fit(X, y))
    search = GridSearchCV(RandomInterceptRegressor(), {"method": ["ml"]}, cv=2)
    with pytest.raises(TypeError, match=r"got a GridSearchCV.*its best_estimator_"):
        draw(search)
    with pytest.raises(TypeError, match=r"got a str"):
        draw("model")
    with pytest.raises(NotFittedError):
        draw(RandomInterceptRegressor())
    with pytest.raises(NotFittedError, match="RandomInterceptRegressor"):
        draw(make_pipeline(StandardScaler(), RandomInterceptRegressor()))


@pytest.mark.slow
def test_missing_matplotlib_names_the_extra(monkeypatch, fitted):
    import subprocess
    import sys

    code = "import sys, skhlm, skhlm.plotting; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"  # imported lazily, at the first plot
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)  # as if not installed
    with pytest.raises(ImportError, match=r"pip install 'skhlm\[plot\]'"):
        plot_random_effects(fitted[0])


def test_caterpillar_of_random_slopes_draws_a_panel_per_effect():
    from skhlm import LinearMixedRegressor
    from skhlm.datasets import make_longitudinal

    X, y, subject = make_longitudinal(n_subjects=12, random_state=0)
    model = LinearMixedRegressor(random_slopes=["time"]).fit(X, y, groups=subject)
    axes = plot_random_effects(model)
    assert len(axes) == 2
    assert axes[0].get_title().startswith("Intercept, variance") and axes[1].get_title().startswith("time, variance")
    order = np.argsort(model.random_effects_[:, 0], kind="stable")
    for k, panel in enumerate(axes):
        markers = [line for line in panel.lines if line.get_linestyle() == "None"]  # not the 0 line
        points = np.concatenate([line.get_xdata() for line in markers])
        np.testing.assert_allclose(np.sort(points), np.sort(model.random_effects_[:, k]))
    # Both panels in the intercepts' order: the slope panel's point at row r is the
    # slope of the group with the r-th smallest intercept.
    rows = {}
    for line in [line for line in axes[1].lines if line.get_linestyle() == "None"]:
        for x_value, row in zip(line.get_xdata(), line.get_ydata()):
            rows[int(row)] = x_value
    np.testing.assert_allclose([rows[r] for r in range(12)], model.random_effects_[order, 1])
    labels = [t.get_text() for t in axes[0].get_yticklabels()]
    assert labels == [str(g) for g in model.groups_[order]]
    with pytest.raises(ValueError, match="2 random effects: pass 2 axes"):
        plot_random_effects(model, ax=axes[0])
