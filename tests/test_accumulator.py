"""The statistics accumulator: chunks added and merged give the statistics of one pass.

The statistics of merged chunks are those of the data centered at the merged
reference point; they are checked against a dense design with that centering, and
the fits on them against the fit on all rows at once.
"""

import dense
import numpy as np
import pytest
from conftest import simulate_multilevel

from skhlm.data.accumulator import NonFiniteStatistics, StatsAccumulator, compute_statistics
from skhlm.data.groups import encode_groups
from skhlm.engine import result as fit_result


def data(seed=0, offset=0.0):
    X, y, codes = simulate_multilevel(
        seed, coef=[1.0, -0.5, 0.3], n_groups=25, sizes=(1, 12), n_within=2, s2u=0.8, offset=offset
    )
    return X, y, codes


def accumulate(X, y, labels, chunks, fit_intercept=True):
    """An accumulator fed the rows in ``chunks`` (lists of row indices), in order."""
    acc = StatsAccumulator(fit_intercept=fit_intercept)
    for rows in chunks:
        acc.add(X[rows], y[rows], encode_groups(labels[rows], len(rows)))
    return acc


def dense_stats(X, y, labels, units):
    """The statistics of the design [1, (X - offset) / scale], built row by row."""
    design = (X[:, units.kept] - units.x_offset[units.kept]) / units.x_scale[units.kept]
    if units.fit_intercept:
        design = np.column_stack([np.ones(len(y)), design])
    codes = np.unique(labels, return_inverse=True)[1]
    return dense.naive_stats(design, (y - units.y_offset) / units.y_scale, codes)


def assert_same_stats(stats, expected):
    scale = np.abs(expected.xtx).max()
    np.testing.assert_allclose(stats.xtx, expected.xtx, rtol=1e-12, atol=1e-12 * scale)
    np.testing.assert_allclose(stats.xty, expected.xty, rtol=1e-12, atol=1e-12 * scale)
    assert stats.yty == pytest.approx(expected.yty, rel=1e-12)
    assert stats.n_obs == expected.n_obs
    np.testing.assert_array_equal(stats.group_sizes, expected.group_sizes)
    atol = 1e-12 * np.abs(expected.group_xsum).max()
    np.testing.assert_allclose(stats.group_xsum, expected.group_xsum, rtol=1e-12, atol=atol)
    np.testing.assert_allclose(stats.group_ysum, expected.group_ysum, rtol=1e-12, atol=atol)
    for name in ("size", "count", "ss", "st", "tt", "s", "t"):
        got, want = getattr(stats.classes, name), getattr(expected.classes, name)
        np.testing.assert_allclose(got, want, rtol=1e-11, atol=1e-11 * np.abs(want).max())


def fit(acc, method="reml"):
    stats, units, levels = acc.finalize()
    return fit_result.fit(stats, units, method, levels=levels)


def chunkings(n, rng):
    """Row orders and chunkings: in order, shuffled, one-row chunks first, uneven."""
    order = rng.permutation(n)
    return {
        "two halves": [np.arange(n // 2), np.arange(n // 2, n)],
        "shuffled, 7 chunks": np.array_split(order, 7),
        "one-row chunks, then the rest": [order[:1], order[1:2], order[2:3], order[3:]],
        "every row alone": [np.array([i]) for i in order[:40]] + [order[40:]],
    }


@pytest.mark.parametrize("fit_intercept", [True, False])
@pytest.mark.parametrize("name", ["two halves", "shuffled, 7 chunks", "one-row chunks, then the rest", "every row alone"])
def test_chunks_give_the_statistics_of_their_design(name, fit_intercept):
    X, y, codes = data(offset=3.0)
    labels = np.array([f"school-{c:02d}" for c in codes])
    chunks = chunkings(len(y), np.random.default_rng(1))[name]
    stats, units, levels = accumulate(X, y, labels, chunks, fit_intercept).finalize()
    np.testing.assert_array_equal(levels, np.unique(labels))
    assert_same_stats(stats, dense_stats(X, y, labels, units))


@pytest.mark.parametrize("method", ["reml", "ml"])
@pytest.mark.parametrize("name", ["two halves", "shuffled, 7 chunks", "one-row chunks, then the rest", "every row alone"])
def test_chunks_fit_as_all_rows_at_once(name, method):
    """Groups split across chunks and groups new in later chunks: the estimates of
    one pass, to 1e-8 relative (EM's tolerance is the limit)."""
    X, y, codes = data(seed=3)
    chunks = chunkings(len(y), np.random.default_rng(2))[name]
    whole = fit(accumulate(X, y, codes, [np.arange(len(y))]), method)
    parts = fit(accumulate(X, y, codes, chunks), method)
    np.testing.assert_allclose(parts.coef_and_intercept()[0], whole.coef_and_intercept()[0], rtol=1e-8)
    assert parts.coef_and_intercept()[1] == pytest.approx(whole.coef_and_intercept()[1], rel=1e-8)
    np.testing.assert_allclose(parts.variance_components, whole.variance_components, rtol=1e-8)
    assert parts.user_log_likelihood == pytest.approx(whole.user_log_likelihood, rel=1e-10)
    np.testing.assert_allclose(parts.random_effects[0], whole.random_effects[0], rtol=1e-7, atol=1e-9)
    np.testing.assert_array_equal(parts.levels, whole.levels)


def test_merge_of_two_accumulators_is_adding_both_chunks():
    X, y, codes = data(seed=4)
    a = accumulate(X, y, codes, [np.arange(100)])
    b = accumulate(X, y, codes, [np.arange(100, len(y))])
    a.merge(b)
    a.merge(StatsAccumulator())  # an empty one adds nothing
    assert a.n_obs == len(y)
    stats, units, _ = a.finalize()
    assert_same_stats(stats, dense_stats(X, y, codes, units))


def test_sorted_chunks_far_from_the_first_lose_no_digits():
    """A column at 1e8 whose chunks arrive sorted by it: each merge moves the sums to
    the combined mean, so the fit equals that on the column minus 1e8 (exact), as a
    single fixed reference at the first chunk's mean would not (its square sums carry
    (1e3 / 1)^2 = 1e6 times the spread)."""
    X, y, codes = data(seed=5)
    order = np.argsort(X[:, 0])
    shifted = X.copy()
    shifted[:, 0] = 1e8 + 1e3 * X[:, 0]
    near = X.copy()
    near[:, 0] = 1e3 * X[:, 0]
    chunks = np.array_split(order, 10)
    far = fit(accumulate(shifted, y, codes, chunks))
    reference = fit(accumulate(near, y, codes, [np.arange(len(y))]))
    np.testing.assert_allclose(far.coef_and_intercept()[0], reference.coef_and_intercept()[0], rtol=1e-8)
    np.testing.assert_allclose(far.variance_components, reference.variance_components, rtol=1e-8)
    stats, units, _ = accumulate(shifted, y, codes, chunks).finalize()
    assert abs(units.x_offset[0] - shifted[:, 0].mean()) < 1e-6 * shifted[:, 0].std()


def test_labels_are_merged_by_value_sorted_when_they_sort():
    X, y, _ = data()
    labels = np.array(["c", "b", "c", "a", "d", "b"])
    acc = accumulate(X[:6], y[:6], labels, [np.arange(3), np.arange(3, 6)])
    stats, units, levels = acc.finalize()
    np.testing.assert_array_equal(levels, ["a", "b", "c", "d"])
    np.testing.assert_array_equal(stats.group_sizes, [1, 2, 2, 1])
    totals = [y[:6][labels == g].sum() for g in "abcd"]
    np.testing.assert_allclose(units.group_response_sums(stats), totals, rtol=1e-12)


def test_int_and_string_labels_of_different_chunks_stay_apart():
    """1 and "1" are different labels, as pandas keeps them."""
    X, y, _ = data()
    acc = StatsAccumulator()
    acc.add(X[:3], y[:3], encode_groups(np.array([1, 1, 2]), 3))
    acc.add(X[3:5], y[3:5], encode_groups(np.array(["1", "1"]), 2))
    stats, _, levels = acc.finalize()
    assert list(levels) == [1, 2, "1"] and [type(v) for v in levels] == [int, int, str]
    np.testing.assert_array_equal(stats.group_sizes, [2, 1, 2])


def test_labels_in_category_order_are_not_sorted_into_others():
    """A Categorical's labels come in its categories' order, which is not sorted: the
    union keeps the order of appearance."""
    import pandas as pd

    X, y, _ = data()
    acc = StatsAccumulator()
    acc.add(X[:4], y[:4], encode_groups(np.array(["a", "b", "a", "b"]), 4))
    # The categories' first label is their smallest, the others are not in order.
    labels = pd.Categorical(["c", "z", "y", "z"], categories=["c", "z", "y"])
    acc.add(X[4:8], y[4:8], encode_groups(labels, 4))
    np.testing.assert_array_equal(acc.finalize()[2], ["a", "b", "c", "z", "y"])


def test_chunks_centered_at_a_sample_away_from_their_mean():
    """Chunks of more than 8192 rows are centered at the mean of every second row
    or so; with the even rows shifted, that point is far from the chunk's mean, and
    merging must carry the sums' cross terms exactly."""
    rng = np.random.default_rng(8)
    n = 2 * 9000
    codes = rng.integers(0, 50, size=n)
    X = rng.normal(size=(n, 2))
    X[::2] += [5.0, -3.0]
    y = X @ [1.0, 2.0] + rng.normal(size=50)[codes] + rng.normal(size=n)
    y[::2] += 10.0
    acc = accumulate(X, y, codes, [np.arange(9000), np.arange(9000, n)])
    stats, units, _ = acc.finalize()
    assert_same_stats(stats, dense_stats(X, y, codes, units))
    np.testing.assert_allclose(units.x_offset, X.mean(axis=0), rtol=1e-12)
    assert units.y_offset == pytest.approx(y.mean(), rel=1e-12)


def test_merged_groups_are_ordered_by_size_for_the_size_classes():
    X, y, _ = data()
    labels = np.array(["a"] * 5 + ["b"] + ["c"] * 3 + ["b"] * 3)
    acc = accumulate(X[:12], y[:12], labels, [np.arange(6), np.arange(6, 12)])
    stats, _, levels = acc.finalize()
    np.testing.assert_array_equal(stats.groups.sizes, [3, 4, 5])  # c, b, a
    np.testing.assert_array_equal(levels[stats.groups.level], ["c", "b", "a"])
    np.testing.assert_array_equal(stats.classes.size, [3, 4, 5])


def test_a_chunk_that_fails_leaves_the_sums_as_they_were():
    X, y, codes = data()
    acc = accumulate(X, y, codes, [np.arange(50)])
    before = acc.finalize()[0]
    bad = X[50:60].copy()
    bad[3, 1] = np.nan
    with pytest.raises(NonFiniteStatistics):
        acc.add(bad, y[50:60], encode_groups(codes[50:60], 10))
    after = acc.finalize()[0]
    np.testing.assert_array_equal(after.xtx, before.xtx)
    np.testing.assert_array_equal(after.group_ysum, before.group_ysum)


def test_chunks_that_do_not_fit_together_are_refused():
    X, y, codes = data()
    acc = accumulate(X, y, codes, [np.arange(20)])
    with pytest.raises(ValueError, match="The chunk has 1 columns; earlier chunks had 3"):
        acc.add(X[20:30, :1], y[20:30], encode_groups(codes[20:30], 10))
    with pytest.raises(ValueError, match="^Cannot merge statistics with and without an intercept.$"):
        acc.merge(StatsAccumulator(fit_intercept=False))
    with pytest.raises(ValueError, match="^No rows were added.$"):
        StatsAccumulator().finalize()


def test_one_chunk_is_compute_statistics():
    X, y, codes = data(seed=6, offset=-2.0)
    acc = accumulate(X, y, codes, [np.arange(len(y))])
    stats, units, levels = acc.finalize()
    single, single_units = compute_statistics(X, y, encode_groups(codes, len(y)))
    np.testing.assert_array_equal(stats.xtx, single.xtx)
    np.testing.assert_array_equal(stats.group_xsum, single.group_xsum)
    np.testing.assert_array_equal(units.x_offset, single_units.x_offset)
    np.testing.assert_array_equal(levels, np.arange(25))
