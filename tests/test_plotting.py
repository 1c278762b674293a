"""The plots draw what they claim: points, intervals, labels (rendered with Agg)."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.collections import LineCollection, PathCollection  # noqa: E402

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
    residual = y - model.predict(X)
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
