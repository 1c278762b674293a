"""partial_fit: chunks of rows in any order and size give the fit of all of them."""

import pickle
import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.exceptions import NotFittedError

from skhlm import LinearMixedRegressor, RandomInterceptRegressor, fit_parquet
from skhlm.engine.result import ModelNames

RTOL = 1e-8  # EM's tolerance (1e-10 on the parameters) is the limit


def simulate(n=4000, n_groups=60, p=3, offset=0.0, seed=0):
    rng = np.random.default_rng(seed)
    g = rng.integers(0, n_groups, n)
    X = rng.normal(size=(n, p)) + offset
    X[:, -1] = rng.normal(size=n_groups)[g] + offset  # a level-2 column
    y = X @ np.linspace(1.0, -1.0, p) + 2.0 * rng.normal(size=n_groups)[g] + rng.normal(size=n) + offset
    w = rng.uniform(0.5, 2.0, n)
    return X, y, g, w


def assert_same_fit(a, b, rtol=RTOL):
    np.testing.assert_allclose(a.coef_, b.coef_, rtol=rtol, atol=rtol * np.abs(b.coef_).max())
    assert a.intercept_ == pytest.approx(b.intercept_, rel=rtol, abs=rtol)
    for key in ("group", "residual"):
        assert a.variance_components_[key] == pytest.approx(b.variance_components_[key], rel=rtol)
    assert a.log_likelihood_ == pytest.approx(b.log_likelihood_, rel=1e-12, abs=1e-8)
    np.testing.assert_array_equal(a.groups_, b.groups_)
    np.testing.assert_allclose(a.random_effects_, b.random_effects_, rtol=rtol, atol=rtol * np.abs(b.random_effects_).max())
    np.testing.assert_allclose(a.random_effects_var_, b.random_effects_var_, rtol=rtol)


def in_chunks(model, X, y, g, w, cuts, order=None):
    order = np.arange(len(y)) if order is None else order
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # one group so far: tested below
        for start, stop in zip(cuts[:-1], cuts[1:]):
            rows = order[start:stop]
            model.partial_fit(X[rows], y[rows], groups=g[rows], sample_weight=None if w is None else w[rows])
    return model


@pytest.mark.parametrize("method", ["reml", "ml"])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_chunks_in_random_order_equal_one_fit(method, weighted, seed):
    X, y, g, w = simulate(seed=seed)
    w = w if weighted else None
    whole = RandomInterceptRegressor(method=method).fit(X, y, groups=g, sample_weight=w)
    rng = np.random.default_rng(seed + 10)
    order = rng.permutation(len(y))
    cuts = np.unique(np.r_[0, 1, 2, rng.integers(3, len(y), 6), len(y)])
    chunked = in_chunks(RandomInterceptRegressor(method=method), X, y, g, w, cuts, order)
    assert_same_fit(chunked, whole)


def test_groups_split_across_chunks_and_new_groups_later():
    X, y, g, w = simulate(n_groups=40)
    order = np.argsort(g, kind="stable")  # groups arrive one after another...
    cuts = np.r_[0, 50, 333, 1000, 2500, len(y)]  # ...cut through the middle of some
    chunked = in_chunks(RandomInterceptRegressor(), X, y, g, w, cuts, order)
    whole = RandomInterceptRegressor().fit(X, y, groups=g, sample_weight=w)
    assert_same_fit(chunked, whole)


def test_chunks_of_one_row():
    X, y, g, w = simulate(n=300, n_groups=12)
    chunked = in_chunks(RandomInterceptRegressor(), X, y, g, w, np.arange(len(y) + 1))
    assert_same_fit(chunked, RandomInterceptRegressor().fit(X, y, groups=g, sample_weight=w))


def test_large_offsets_lose_no_digits_in_any_order():
    # Columns and y around 1e8 with unit spread: the chunks' sums are merged about
    # their combined mean, so the digits survive, in either order.
    X, y, g, _ = simulate(offset=1e8)
    whole = RandomInterceptRegressor().fit(X - 1e8, y - 1e8, groups=g)
    cuts = np.r_[0, 7, 900, 2000, len(y)]
    for order in (np.arange(len(y)), np.arange(len(y))[::-1]):
        chunked = in_chunks(RandomInterceptRegressor(), X, y, g, None, cuts, order)
        np.testing.assert_allclose(chunked.coef_, whole.coef_, rtol=1e-7)
        assert chunked.variance_components_["group"] == pytest.approx(whole.variance_components_["group"], rel=1e-7)
        assert chunked.variance_components_["residual"] == pytest.approx(whole.variance_components_["residual"], rel=1e-7)


def test_string_labels_and_dataframes_keep_their_names():
    X, y, g, _ = simulate()
    df = pd.DataFrame(X, columns=["a", "b", "c"])
    labels = np.array([f"school {k:03d}" for k in g])
    chunked = in_chunks(RandomInterceptRegressor(), df.to_numpy(), y, labels, None, np.r_[0, 1000, len(y)])
    named = RandomInterceptRegressor()
    named.partial_fit(df.iloc[:1000], y[:1000], groups=labels[:1000])
    named.partial_fit(df.iloc[1000:], y[1000:], groups=labels[1000:])
    assert named.feature_names_in_.tolist() == ["a", "b", "c"]
    assert_same_fit(named, RandomInterceptRegressor().fit(df, y, groups=labels))
    assert_same_fit(chunked, named)
    with pytest.raises(ValueError, match="feature names"):
        named.partial_fit(df.rename(columns={"c": "d"}), y, groups=labels)


def test_until_identified_it_only_accumulates_and_says_why_once():
    X, y, g, _ = simulate(n=200, n_groups=10)
    model = RandomInterceptRegressor()
    one_group = g == g[0]
    with pytest.warns(UserWarning, match="partial_fit only added the chunk: all of them are in one group"):
        model.partial_fit(X[one_group], y[one_group], groups=g[one_group])
    with pytest.raises(NotFittedError, match=f"partial_fit has seen {one_group.sum()} rows, and all of them are in one group"):
        model.predict(X, groups=g)
    with pytest.raises(NotFittedError, match="one group"):
        model.summary()
    assert not hasattr(model, "coef_")
    # Still one group: no second warning.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.partial_fit(X[one_group][:3], y[one_group][:3], groups=g[one_group][:3])
    rest = ~one_group
    model.partial_fit(X[rest], y[rest], groups=g[rest])
    both = np.r_[np.flatnonzero(one_group), np.flatnonzero(one_group)[:3], np.flatnonzero(rest)]
    assert_same_fit(model, RandomInterceptRegressor().fit(X[both], y[both], groups=g[both]))


def test_no_within_group_replication_yet():
    X, y, g, _ = simulate(n=200, n_groups=10)
    first = np.unique(g, return_index=True)[1]  # one row of each group
    model = RandomInterceptRegressor()
    with pytest.warns(UserWarning, match="no group has 2 rows yet"):
        model.partial_fit(X[first], y[first], groups=g[first])
    with pytest.raises(NotFittedError, match="no group has 2 rows yet"):
        model.predict(X[:3], groups=g[:3])


def state(model):
    return pickle.dumps(model)


@pytest.mark.parametrize(
    "bad, message",
    [
        (lambda X, y, g: (np.where(np.arange(X.shape[0])[:, None] == 5, np.nan, X), y, g), "NaN"),
        (lambda X, y, g: (X, np.where(np.arange(y.shape[0]) == 3, np.inf, y), g), r"y contains 1 NaN or infinite value\(s\)"),
        (lambda X, y, g: (np.column_stack([X, X[:, 0]]), y, g), "features"),
        (lambda X, y, g: (X.astype(str).astype(object) + "x", y, g), "could not convert string to float"),
        (lambda X, y, g: (X, y, g[:-1]), "groups"),
    ],
)
def test_a_failed_chunk_leaves_the_model_exactly_as_it_was(bad, message):
    X, y, g, _ = simulate()
    model = RandomInterceptRegressor()
    model.partial_fit(X[:2000], y[:2000], groups=g[:2000])
    before = state(model)
    coef = model.coef_.copy()
    with pytest.raises(ValueError, match=message):
        model.partial_fit(*bad(X[2000:], y[2000:], g[2000:]))
    assert state(model) == before
    np.testing.assert_array_equal(model.coef_, coef)
    model.partial_fit(X[2000:], y[2000:], groups=g[2000:])
    assert_same_fit(model, RandomInterceptRegressor().fit(X, y, groups=g))


def test_a_failed_first_chunk_leaves_an_unfitted_model():
    X, y, g, _ = simulate()
    model = RandomInterceptRegressor()
    before = state(model)
    with pytest.raises(ValueError, match="negative"):
        model.partial_fit(X, y, groups=g, sample_weight=-np.ones(len(y)))
    assert state(model) == before
    with pytest.raises(NotFittedError):
        model.predict(X, groups=g)


def test_between_chunks_the_model_pickles_and_resumes():
    X, y, g, w = simulate()
    model = in_chunks(RandomInterceptRegressor(), X, y, g, w, np.r_[0, 1500, 2500])
    resumed = pickle.loads(pickle.dumps(model))
    for m in (model, resumed):
        in_chunks(m, X, y, g, w, np.r_[2500, len(y)])
    np.testing.assert_array_equal(resumed.coef_, model.coef_)
    np.testing.assert_array_equal(resumed.random_effects_, model.random_effects_)
    assert resumed.log_likelihood_ == model.log_likelihood_
    assert_same_fit(resumed, RandomInterceptRegressor().fit(X, y, groups=g, sample_weight=w))


def test_the_model_keeps_no_rows():
    # Its size is that of the per-group sums, whatever the number of rows.
    small = simulate(n=20_000, n_groups=50)
    large = simulate(n=200_000, n_groups=50)
    sizes = []
    for X, y, g, _ in (small, large):
        model = in_chunks(RandomInterceptRegressor(), X, y, g, None, np.linspace(0, len(y), 5).astype(int))
        sizes.append(len(pickle.dumps(model)))
    assert sizes[1] < 1.1 * sizes[0]
    assert sizes[1] < 200 * 50 * 8  # a few hundred numbers per group, no rows


def test_fit_starts_over_and_partial_fit_after_fit_adds_to_nothing_of_fit():
    X, y, g, _ = simulate()
    model = RandomInterceptRegressor()
    model.partial_fit(X[:1000], y[:1000], groups=g[:1000])
    model.fit(X[1000:], y[1000:], groups=g[1000:])
    assert_same_fit(model, RandomInterceptRegressor().fit(X[1000:], y[1000:], groups=g[1000:]))
    model.partial_fit(X[:1000], y[:1000], groups=g[:1000])  # a new stream: fit's rows are not in it
    assert_same_fit(model, RandomInterceptRegressor().fit(X[:1000], y[:1000], groups=g[:1000]))


def test_chunks_with_and_without_groups_or_another_intercept_are_refused():
    X, y, g, _ = simulate()
    model = RandomInterceptRegressor()
    model.partial_fit(X[:1000], y[:1000], groups=g[:1000])
    with pytest.raises(ValueError, match=r"^Every chunk of partial_fit must have groups, or none: the earlier chunks had groups, this one has none\.$"):
        model.partial_fit(X[1000:], y[1000:])
    ungrouped = RandomInterceptRegressor()
    with pytest.warns(UserWarning, match="got no groups"):
        ungrouped.partial_fit(X[:1000], y[:1000])
    with pytest.raises(ValueError, match=r"the earlier chunks had no groups, this one has\.$"):
        ungrouped.partial_fit(X[1000:], y[1000:], groups=g[1000:])
    model.set_params(fit_intercept=False)
    with pytest.raises(ValueError, match=r"^fit_intercept changed between partial_fit calls; the statistics of the chunks so far were built with fit_intercept=True\. Call fit"):
        model.partial_fit(X[1000:], y[1000:], groups=g[1000:])


def test_without_groups_the_chunks_give_least_squares():
    X, y, g, _ = simulate()
    model = RandomInterceptRegressor()
    with pytest.warns(UserWarning, match="got no groups"):
        model.partial_fit(X[:100], y[:100])
    model.partial_fit(X[100:], y[100:])
    ols = np.linalg.lstsq(np.column_stack([np.ones(len(y)), X]), y, rcond=None)[0]
    np.testing.assert_allclose(np.r_[model.intercept_, model.coef_], ols, rtol=1e-10)


def test_groups_column_and_routing_reach_partial_fit():
    X, y, g, _ = simulate()
    df = pd.DataFrame(X, columns=["a", "b", "c"]).assign(school=g)
    model = RandomInterceptRegressor(group_column="school")
    model.partial_fit(df.iloc[:2000], y[:2000])
    model.partial_fit(df.iloc[2000:], y[2000:])
    assert_same_fit(model, RandomInterceptRegressor().fit(df[["a", "b", "c"]], y, groups=g))
    assert RandomInterceptRegressor().get_metadata_routing().partial_fit.requests["groups"] is True


# --- fit_parquet --------------------------------------------------------------------


def frame(n=3000, n_groups=50, seed=0):
    X, y, g, w = simulate(n=n, n_groups=n_groups, seed=seed)
    return pd.DataFrame({"a": X[:, 0], "b": X[:, 1], "c": X[:, 2], "y": y, "school": [f"s{k:02d}" for k in g], "w": w})


@pytest.mark.parametrize("batch_rows", [1, 257, 10_000])
def test_fit_parquet_equals_the_fit_in_memory(tmp_path, batch_rows):
    d = frame(n=600 if batch_rows == 1 else 3000)
    shuffled = d.sample(frac=1.0, random_state=1)
    for k, rows in enumerate(np.array_split(np.arange(len(d)), 3)):
        shuffled.iloc[rows].to_parquet(tmp_path / f"part{k}.parquet")
    streamed = fit_parquet(RandomInterceptRegressor(), tmp_path, target="y", columns=["a", "b", "c"], group="school", weight="w", batch_rows=batch_rows)
    whole = RandomInterceptRegressor().fit(d[["a", "b", "c"]], d["y"], groups=d["school"], sample_weight=d["w"])
    assert_same_fit(streamed, whole)
    assert streamed.feature_names_in_.tolist() == ["a", "b", "c"]
    assert streamed.summary().residual_quantiles is None


def test_fit_parquet_reads_csv_and_a_list_of_files(tmp_path):
    d = frame()
    d.iloc[:1000].to_csv(tmp_path / "one.csv", index=False)
    d.iloc[1000:].to_parquet(tmp_path / "two.parquet")
    streamed = fit_parquet(RandomInterceptRegressor(method="ml"), [tmp_path / "one.csv", str(tmp_path / "two.parquet")], target="y", columns=["a", "c"], group="school", batch_rows=400)
    assert_same_fit(streamed, RandomInterceptRegressor(method="ml").fit(d[["a", "c"]], d["y"], groups=d["school"]))


def test_fit_parquet_errors_name_the_file_and_leave_the_model(tmp_path):
    d = frame()
    d.to_parquet(tmp_path / "good.parquet")
    model = RandomInterceptRegressor().fit(d[["a"]], d["y"], groups=d["school"])
    before = state(model)
    with pytest.raises(ValueError, match=r"has no column\(s\) \['z'\]; its columns are"):
        fit_parquet(model, tmp_path / "good.parquet", target="y", columns=["a", "z"], group="school")
    bad = d.copy()
    bad.loc[2500, "b"] = np.nan
    bad.to_parquet(tmp_path / "bad.parquet")
    with pytest.raises(ValueError, match=r"bad.parquet', a batch of 1000 rows: .*NaN"):
        fit_parquet(model, [tmp_path / "good.parquet", tmp_path / "bad.parquet"], target="y", columns=["a", "b"], group="school", batch_rows=1000)
    one_group = d.assign(school="only")
    one_group.to_parquet(tmp_path / "one_group.parquet")
    with pytest.raises(ValueError, match="cannot identify the model: all of them are in one group"):
        fit_parquet(model, tmp_path / "one_group.parquet", target="y", columns=["a"], group="school")
    with pytest.raises(ValueError, match="No such file"):
        fit_parquet(model, tmp_path / "missing.parquet", target="y", columns=["a"])
    assert state(model) == before
    from skhlm import MixedEffectsRegressor

    with pytest.raises(TypeError, match="fits RandomInterceptRegressor and LinearMixedRegressor; got MixedEffectsRegressor"):
        fit_parquet(MixedEffectsRegressor(), tmp_path / "good.parquet", target="y", columns=["a"])


def test_fit_parquet_progress_bar(tmp_path, capsys):
    d = frame()
    d.to_parquet(tmp_path / "d.parquet")
    fit_parquet(RandomInterceptRegressor(), tmp_path / "d.parquet", target="y", columns=["a"], group="school", batch_rows=1000, progress=True)
    assert "3.00k/3.00k" in capsys.readouterr().err
    fit_parquet(RandomInterceptRegressor(), tmp_path / "d.parquet", target="y", columns=["a"], group="school", batch_rows=1000)
    assert capsys.readouterr().err == ""  # "auto": no bar for 3000 rows


@pytest.mark.parametrize("weighted", [False, True])
def test_in_place_adds_equal_merges_also_across_a_far_chunk(weighted):
    # fit_parquet adds batches into the accumulator's own arrays when a batch's point
    # is near the sums' (most batches); a far one (here offset by 50 SD) is merged as
    # partial_fit merges, and in-place adds resume after it.
    from skhlm.data.accumulator import StatsAccumulator
    from skhlm.data.groups import encode_groups

    X, y, g, w = simulate(n=3000, n_groups=80)
    X[2000:2300] += 50.0
    labels = np.array([f"s{k:02d}" for k in g])
    w = w if weighted else None
    cuts = np.r_[0, 1, 2, 500, 2000, 2300, 2301, 3000]
    results = []
    for in_place in (False, True):
        accumulator = StatsAccumulator(slopes=(0,))
        for start, stop in zip(cuts[:-1], cuts[1:]):
            accumulator.add(X[start:stop], y[start:stop], encode_groups(labels[start:stop], stop - start),
                            None if w is None else w[start:stop], in_place=in_place)
        results.append(accumulator.finalize())
    (a, ua, la), (b, ub, lb) = results
    np.testing.assert_array_equal(la, lb)
    assert list(la) == sorted(la)
    # In the user's units (the two are centered at different points).
    for x, z in zip(ua.column_moments(a), ub.column_moments(b)):
        np.testing.assert_allclose(x, z, rtol=1e-10)
    np.testing.assert_allclose(ua.response_sums(a), ub.response_sums(b), rtol=1e-12)
    np.testing.assert_allclose(ua.group_response_sums(a), ub.group_response_sums(b), rtol=1e-10)
    np.testing.assert_allclose(a.group_sizes, b.group_sizes, rtol=1e-12)
    # The random slopes' sums: the same fit.
    fits = [LinearMixedRegressor(random_slopes=[0])._fit_slopes(s, u, lv, np.array([0]), ModelNames())
            for s, u, lv in results]
    np.testing.assert_allclose(fits[0].units.coef_to_user(fits[0].result.beta)[0],
                               fits[1].units.coef_to_user(fits[1].result.beta)[0], rtol=1e-8)
    np.testing.assert_allclose(fits[0].sigma_to_user(fits[0].result.sigma), fits[1].sigma_to_user(fits[1].result.sigma), rtol=1e-7)


# --- LinearMixedRegressor -----------------------------------------------------------


def slope_data(n=4000, n_groups=60, seed=0):
    rng = np.random.default_rng(seed)
    g = rng.integers(0, n_groups, n)
    X = rng.normal(size=(n, 3)) + [5.0, 100.0, 0.0]
    b = rng.normal(size=(n_groups, 2))
    y = X @ [1.0, 2.0, 3.0] + b[g, 0] + b[g, 1] * X[:, 0] + rng.normal(size=n)
    return X, y, g, rng.uniform(0.5, 2.0, n)


def assert_same_slopes_fit(a, b, rtol=RTOL):
    np.testing.assert_allclose(a.coef_, b.coef_, rtol=rtol)
    assert a.intercept_ == pytest.approx(b.intercept_, rel=rtol)
    np.testing.assert_allclose(a.variance_components_["group"], b.variance_components_["group"], rtol=1e-7, atol=1e-12)
    assert a.variance_components_["residual"] == pytest.approx(b.variance_components_["residual"], rel=rtol)
    assert a.log_likelihood_ == pytest.approx(b.log_likelihood_, rel=1e-12)
    np.testing.assert_array_equal(a.groups_, b.groups_)
    np.testing.assert_allclose(a.random_effects_, b.random_effects_, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(a.random_effects_var_, b.random_effects_var_, rtol=1e-7, atol=1e-12)


@pytest.mark.parametrize("covariance", ["unstructured", "diagonal"])
@pytest.mark.parametrize("weighted", [False, True])
def test_random_slopes_in_chunks_equal_one_fit(covariance, weighted):
    X, y, g, w = slope_data()
    w = w if weighted else None
    whole = LinearMixedRegressor(random_slopes=[0], covariance=covariance).fit(X, y, groups=g, sample_weight=w)
    rng = np.random.default_rng(3)
    chunked = in_chunks(LinearMixedRegressor(random_slopes=[0], covariance=covariance), X, y, g, w,
                        np.r_[0, 1, 2, 60, 700, 2000, len(y)], rng.permutation(len(y)))
    assert_same_slopes_fit(chunked, whole)
    assert chunked.summary().residual_quantiles is None


def test_random_slopes_chunks_until_identified_and_changed_slopes():
    X, y, g, _ = slope_data()
    model = LinearMixedRegressor(random_slopes=[0])
    one = g == g[0]
    with pytest.warns(UserWarning, match="all of them are in one group"):
        model.partial_fit(X[one], y[one], groups=g[one])
    with pytest.raises(NotFittedError, match="one group"):
        model.predict(X, groups=g)
    model.partial_fit(X[~one], y[~one], groups=g[~one])
    order = np.r_[np.flatnonzero(one), np.flatnonzero(~one)]
    assert_same_slopes_fit(model, LinearMixedRegressor(random_slopes=[0]).fit(X[order], y[order], groups=g[order]))
    before = state(model)
    model.set_params(random_slopes=[0, 1])
    with pytest.raises(ValueError, match=r"random_slopes changed between partial_fit calls; .* columns \[0\]"):
        model.partial_fit(X, y, groups=g)
    model.set_params(random_slopes=[0])
    assert state(model) == before


def test_linear_mixed_regressor_chunks_without_slopes_or_groups():
    X, y, g, _ = slope_data()
    no_slopes = in_chunks(LinearMixedRegressor(), X, y, g, None, np.r_[0, 1000, len(y)])
    ri = RandomInterceptRegressor().fit(X, y, groups=g)
    np.testing.assert_allclose(no_slopes.coef_, ri.coef_, rtol=RTOL)
    assert no_slopes.variance_components_["group"][0, 0] == pytest.approx(ri.variance_components_["group"], rel=RTOL)
    model = LinearMixedRegressor(random_slopes=[0])
    with pytest.warns(UserWarning, match="got no groups"):
        model.partial_fit(X[:100], y[:100])
    model.partial_fit(X[100:], y[100:])
    np.testing.assert_array_equal(model.variance_components_["group"], np.zeros((2, 2)))
    ols = np.linalg.lstsq(np.column_stack([np.ones(len(y)), X]), y, rcond=None)[0]
    np.testing.assert_allclose(np.r_[model.intercept_, model.coef_], ols, rtol=1e-10)


# --- gaps found by mutation testing ------------------------------------------------


def test_an_unidentified_first_chunk_after_fit_clears_fits_state_and_keeps_checking_features():
    X, y, g, _ = simulate()
    model = RandomInterceptRegressor().fit(X, y, groups=g)
    one = g == g[0]
    with pytest.warns(UserWarning, match="one group"):
        model.partial_fit(X[one], y[one], groups=g[one])  # a new stream: fit's state goes
    assert not hasattr(model, "coef_") and not hasattr(model, "groups_")
    assert model.n_features_in_ == 3
    with pytest.raises(NotFittedError, match="one group"):
        model.predict(X, groups=g)
    with pytest.raises(ValueError, match="features"):
        model.partial_fit(X[:, :2], y, groups=g)
    named = RandomInterceptRegressor()
    frame_ = pd.DataFrame(X, columns=["a", "b", "c"])
    with pytest.warns(UserWarning, match="one group"):
        named.partial_fit(frame_[one], y[one], groups=g[one])
    assert named.feature_names_in_.tolist() == ["a", "b", "c"]  # kept while pending
    with pytest.raises(ValueError, match="feature names"):
        named.partial_fit(frame_.rename(columns={"c": "d"}), y, groups=g)


def test_dropped_columns_warn_when_they_change_not_at_every_chunk():
    X, y, g, _ = simulate()
    X = pd.DataFrame(np.column_stack([X, 2.0 * X[:, 0]]), columns=["a", "b", "c", "twice a"])
    model = RandomInterceptRegressor()
    with pytest.warns(UserWarning, match=r"rank deficient: column\(s\) \['twice a'\]"):
        model.partial_fit(X[:2000], y[:2000], groups=g[:2000])
    import warnings as w

    with w.catch_warnings():
        w.simplefilter("error")
        model.partial_fit(X.iloc[2000:], y[2000:], groups=g[2000:])
    assert model.coef_[3] == 0.0


def _in_place(chunks, slopes=()):
    from skhlm.data.accumulator import StatsAccumulator
    from skhlm.data.groups import encode_groups

    results = []
    for in_place in (False, True):
        accumulator = StatsAccumulator(slopes=slopes)
        for X, y, labels, w in chunks:
            accumulator.add(X, y, encode_groups(labels, len(y)), w, in_place=in_place)
        results.append(accumulator.finalize())
    return results


def test_in_place_from_a_first_chunk_of_many_groups_keeps_the_slope_sums_by_label():
    X, y, g, _ = simulate(n=3000, n_groups=80)
    labels = np.array([f"s{k:02d}" for k in g])
    chunks = [(X[a:b], y[a:b], labels[a:b], None) for a, b in ((0, 1500), (1500, 3000))]
    (a, ua, la), (b, ub, lb) = _in_place(chunks, slopes=(0,))
    np.testing.assert_array_equal(la, lb)
    fits = [LinearMixedRegressor(random_slopes=[0])._fit_slopes(s, u, lv, np.array([0]), ModelNames())
            for s, u, lv in ((a, ua, la), (b, ub, lb))]
    np.testing.assert_allclose(fits[0].sigma_to_user(fits[0].result.sigma), fits[1].sigma_to_user(fits[1].result.sigma), rtol=1e-8)


def test_in_place_keeps_labels_of_other_types_apart_and_a_categorys_order():
    X, y, g, _ = simulate(n=2000, n_groups=20)
    ints = g.astype(np.int64)
    strings = np.array([str(k) for k in g])  # <U2: concatenated with ints, numpy makes them strings
    (a, _, la), (b, _, lb) = _in_place([(X[:1000], y[:1000], ints[:1000], None), (X[1000:], y[1000:], strings[1000:], None)])
    assert len(lb) == 40 and list(la) == list(lb)  # 1 and "1" are different groups
    assert [type(v) for v in lb] == [type(v) for v in la]  # ints stay ints (not 1.0)
    (_, _, la), (_, _, lb) = _in_place([(X[:500], y[:500], ints[:500], None), (X[500:], y[500:], ints[500:] + 100, None)])
    assert lb.dtype == la.dtype == np.int64  # new labels of the same type: no object array
    order = [f"c{k}" for k in range(19, -1, -1)]  # categories in reverse order
    cats = pd.Categorical([f"c{k}" for k in g], categories=order)
    (_, _, la), (_, _, lb) = _in_place([(X[:1000], y[:1000], cats[:1000], None)] + [(X[i:i + 1], y[i:i + 1], cats[i:i + 1], None) for i in range(1000, 1010)])
    assert list(lb) == list(la) == [c for c in order if c in set(cats[:1010])]


def test_in_place_takes_weighted_chunks_after_unweighted_ones_and_drops_weightless_groups(tmp_path):
    X, y, g, w = simulate(n=3000, n_groups=50)
    labels = g.astype(object)
    labels[2000:2100] = "only zero weights"
    w = w.copy()
    w[2000:2100] = 0.0
    (a, ua, la), (b, ub, lb) = _in_place([(X[:1500], y[:1500], labels[:1500], None), (X[1500:], y[1500:], labels[1500:], w[1500:])])
    assert "only zero weights" not in list(lb) and list(la) == list(lb)
    np.testing.assert_allclose(ua.group_response_sums(a), ub.group_response_sums(b), rtol=1e-10)
    np.testing.assert_allclose(a.group_sizes, b.group_sizes, rtol=1e-12)
    d = frame(n=3000, n_groups=50)
    d.loc[d["school"] == "s07", "w"] = 0.0
    d.to_parquet(tmp_path / "d.parquet")
    streamed = fit_parquet(RandomInterceptRegressor(), tmp_path / "d.parquet", target="y", columns=["a", "b"], group="school", weight="w", batch_rows=500)
    whole = RandomInterceptRegressor().fit(d[["a", "b"]], d["y"], groups=d["school"], sample_weight=d["w"])
    assert "s07" not in streamed.groups_
    assert_same_fit(streamed, whole)


def test_merging_other_random_slopes_is_refused():
    from skhlm.data.accumulator import StatsAccumulator
    from skhlm.data.groups import encode_groups

    X, y, g, _ = simulate(n=200)
    a, b = StatsAccumulator(slopes=(0,)), StatsAccumulator(slopes=(1,))
    b.add(X, y, encode_groups(g, 200))
    with pytest.raises(ValueError, match=r"random slopes \(1,\) into \(0,\)"):
        a.merge(b)


def test_weightless_groups_go_and_light_ones_stay_with_their_slope_sums():
    # The accumulator (which partial_fit and fit_parquet feed) takes zero weights: a
    # group whose rows all weigh 0 is dropped at finalize, one that weighs 0.4 in
    # all stays; the per-group sums by label and the slopes' fit equal those of the
    # rows without the weightless group.
    from skhlm.data.accumulator import StatsAccumulator
    from skhlm.data.groups import encode_groups

    X, y, g, w = simulate(n=2000, n_groups=40)
    labels = g.astype(object)
    labels[:30] = "weightless"
    w = w.copy()
    w[:30] = 0.0
    labels[30] = "light"
    w[30] = 0.4
    keep = w > 0

    def finalized(rows):
        accumulator = StatsAccumulator(slopes=(0,))
        accumulator.add(X[rows], y[rows], encode_groups(labels[rows], int(rows.sum())), w[rows])
        return accumulator.finalize()

    (a, ua, la), (b, ub, lb) = finalized(np.ones(len(y), dtype=bool)), finalized(keep)
    assert "weightless" not in list(la) and "light" in list(la)
    assert list(la) == list(lb)
    np.testing.assert_allclose(a.group_sizes, b.group_sizes, rtol=1e-12)
    np.testing.assert_allclose(ua.group_response_sums(a), ub.group_response_sums(b), rtol=1e-10)
    fits = [LinearMixedRegressor(random_slopes=[0])._fit_slopes(s, u, lv, np.array([0]), ModelNames())
            for s, u, lv in ((a, ua, la), (b, ub, lb))]
    np.testing.assert_allclose(fits[0].sigma_to_user(fits[0].result.sigma), fits[1].sigma_to_user(fits[1].result.sigma), rtol=1e-8)
    np.testing.assert_allclose(fits[0].units.coef_to_user(fits[0].result.beta)[0],
                               fits[1].units.coef_to_user(fits[1].result.beta)[0], rtol=1e-9)
