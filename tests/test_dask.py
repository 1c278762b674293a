"""skhlm.dask on a real distributed.LocalCluster of two worker processes: the same
numbers as in memory, whatever the partitioning; bad partitions; a killed worker."""

import os
import pickle
import signal
import threading
import time

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest
from distributed import Client, LocalCluster

import skhlm.dask as skd
from skhlm import LinearMixedRegressor, RandomInterceptRegressor

RTOL = 1e-8


@pytest.fixture(scope="module")
def client():
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
    with Client(cluster) as c:
        yield c
    cluster.close()


def frame(n=6000, n_groups=150, offset=0.0, seed=0):
    rng = np.random.default_rng(seed)
    g = rng.integers(0, n_groups, n)
    X = rng.normal(size=(n, 3)) + offset
    y = X @ [1.0, -2.0, 0.5] + rng.normal(size=n_groups)[g] + rng.normal(size=n)
    return pd.DataFrame(X, columns=["a", "b", "c"]).assign(
        y=y, school=[f"s{k:03d}" for k in g], w=rng.uniform(0.5, 2.0, n)
    )


def assert_same_fit(a, b, rtol=RTOL):
    np.testing.assert_allclose(a.coef_, b.coef_, rtol=rtol)
    assert a.intercept_ == pytest.approx(b.intercept_, rel=rtol)
    for key in ("group", "residual"):
        assert a.variance_components_[key] == pytest.approx(b.variance_components_[key], rel=rtol)
    assert a.log_likelihood_ == pytest.approx(b.log_likelihood_, rel=1e-12)
    np.testing.assert_array_equal(a.groups_, b.groups_)
    np.testing.assert_allclose(a.random_effects_, b.random_effects_, rtol=rtol, atol=rtol)
    np.testing.assert_allclose(a.random_effects_var_, b.random_effects_var_, rtol=rtol)


@pytest.mark.parametrize("npartitions, split_out", [(1, 1), (4, 1), (9, 3)])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("method", ["reml", "ml"])
def test_equals_the_fit_in_memory_whatever_the_partitioning(client, npartitions, split_out, weighted, method):
    d = frame(offset=1e6)  # large offsets: centered at the data's mean, no digits lost
    shuffled = d.sample(frac=1.0, random_state=npartitions)
    columns = ["a", "b", "c", "y", "school"] + (["w"] if weighted else [])
    ddf = dd.from_pandas(shuffled[columns], npartitions=npartitions)
    fitted = skd.fit(
        RandomInterceptRegressor(method=method), ddf, y="y", groups="school",
        sample_weight="w" if weighted else None, split_out=split_out,
    )
    whole = RandomInterceptRegressor(method=method).fit(
        d[["a", "b", "c"]], d["y"], groups=d["school"], sample_weight=d["w"] if weighted else None
    )
    assert_same_fit(fitted, whole)
    assert fitted.feature_names_in_.tolist() == ["a", "b", "c"]
    assert fitted.summary().residual_quantiles is None


def test_series_for_y_groups_and_weights(client):
    d = frame()
    ddf = dd.from_pandas(d, npartitions=3)
    fitted = skd.fit(RandomInterceptRegressor(), ddf[["a", "b"]], ddf["y"], groups=ddf["school"], sample_weight=ddf["w"])
    whole = RandomInterceptRegressor().fit(d[["a", "b"]], d["y"], groups=d["school"], sample_weight=d["w"])
    assert_same_fit(fitted, whole)


def test_predict_is_lazy_and_equals_predict_in_memory(client):
    d = frame()
    ddf = dd.from_pandas(d, npartitions=4)
    model = skd.fit(RandomInterceptRegressor(), ddf[["a", "b", "c", "y", "school"]], y="y", groups="school")
    new = ddf[["a", "b", "c", "school"]]
    lazy = skd.predict(model, new, groups="school")
    assert isinstance(lazy, dd.Series)
    np.testing.assert_allclose(lazy.compute().to_numpy(), model.predict(d[["a", "b", "c"]], groups=d["school"]), rtol=1e-12)
    with pytest.warns(UserWarning, match="got no groups"):
        population = skd.predict(model, ddf[["a", "b", "c"]])
    np.testing.assert_allclose(population.compute().to_numpy(), model.predict(d[["a", "b", "c"]], population=True), rtol=1e-12)


def test_a_bad_partition_is_named_and_leaves_no_partial_state(client):
    d = frame()
    d.loc[4500, "b"] = np.nan  # in the last of 4 partitions
    ddf = dd.from_pandas(d[["a", "b", "c", "y", "school"]], npartitions=4)
    model = RandomInterceptRegressor()
    with pytest.raises(ValueError, match=r"partition 3: NaN or infinite values in X, by column: \{'b': 1\}"):
        skd.fit(model, ddf, y="y", groups="school")
    assert not hasattr(model, "coef_") and vars(model) == vars(RandomInterceptRegressor())
    fitted = RandomInterceptRegressor().fit(d[["a"]].iloc[:100], d["y"].iloc[:100], groups=d["school"].iloc[:100])
    before = pickle.dumps(fitted)
    bad_weights = dd.from_pandas(frame().assign(w=lambda f: np.where(f.index == 10, -1.0, f["w"])), npartitions=2)
    with pytest.raises(ValueError, match="partition 0: sample_weight has 1 negative"):
        skd.fit(fitted, bad_weights, y="y", groups="school", sample_weight="w")
    assert pickle.dumps(fitted) == before


def test_errors_for_what_is_not_a_dask_fit(client):
    d = frame()
    ddf = dd.from_pandas(d, npartitions=2)
    with pytest.raises(ValueError, match="'wt' is not a column of X"):
        skd.fit(RandomInterceptRegressor(), ddf, y="y", groups="school", sample_weight="wt")
    with pytest.raises(TypeError, match="X must be a dask DataFrame"):
        skd.fit(RandomInterceptRegressor(), d, y="y", groups="school")
    with pytest.raises(TypeError, match=r"Use skhlm.dask.fit\(model, X, y=..., groups=...\)"):
        RandomInterceptRegressor().fit(ddf[["a"]], ddf["y"], groups=ddf["school"])
    model = RandomInterceptRegressor().fit(d[["a"]], d["y"], groups=d["school"])
    with pytest.raises(TypeError, match=r"skhlm.dask.predict"):
        model.predict(ddf[["a"]])
    one = dd.from_pandas(d.assign(school="only"), npartitions=2)
    with pytest.raises(ValueError, match="at least 2 groups"):
        skd.fit(RandomInterceptRegressor(), one, y="y", groups="school")


def _slow(part):
    time.sleep(0.4)
    return part


def test_a_worker_killed_during_the_fit_changes_nothing(client):
    d = frame()
    parts = np.array_split(np.arange(len(d)), 12)
    ddf = dd.from_delayed([dask.delayed(_slow)(d.iloc[rows]) for rows in parts], meta=d.iloc[:0])
    whole = RandomInterceptRegressor().fit(d[["a", "b", "c", "w"]], d["y"], groups=d["school"])
    pids = client.run(os.getpid)
    result, errors = {}, []

    def run():
        try:
            result["model"] = skd.fit(RandomInterceptRegressor(), ddf, y="y", groups="school")
        except Exception as error:  # reported below
            errors.append(error)

    thread = threading.Thread(target=run)
    thread.start()
    deadline = time.time() + 30
    while not any(client.processing().values()) and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)  # tasks under way on both workers
    victim = sorted(pids)[0]
    os.kill(pids[victim], signal.SIGKILL)
    thread.join(120)
    assert not thread.is_alive() and not errors, errors
    assert_same_fit(result["model"], whole)
    client.wait_for_workers(2, timeout=60)  # the nanny restarted it
    assert pids[victim] not in client.run(os.getpid).values()


@pytest.mark.parametrize("covariance", ["unstructured", "diagonal"])
def test_random_slopes_on_the_cluster_equal_the_fit_in_memory(client, covariance):
    rng = np.random.default_rng(4)
    d = frame(offset=0.0)
    b = rng.normal(size=(150, 2))
    codes = d["school"].str[1:].astype(int).to_numpy()
    d["y"] += b[codes, 1] * d["a"]
    ddf = dd.from_pandas(d.sample(frac=1.0, random_state=2), npartitions=5)
    model = LinearMixedRegressor(random_slopes=["a"], covariance=covariance)
    fitted = skd.fit(model, ddf, y="y", groups="school", sample_weight="w", split_out=2)
    whole = LinearMixedRegressor(random_slopes=["a"], covariance=covariance).fit(
        d[["a", "b", "c"]], d["y"], groups=d["school"], sample_weight=d["w"]
    )
    np.testing.assert_allclose(fitted.coef_, whole.coef_, rtol=RTOL)
    np.testing.assert_allclose(fitted.variance_components_["group"], whole.variance_components_["group"], rtol=1e-7, atol=1e-12)
    assert fitted.log_likelihood_ == pytest.approx(whole.log_likelihood_, rel=1e-12)
    np.testing.assert_allclose(fitted.random_effects_, whole.random_effects_, rtol=1e-7, atol=1e-9)
