"""Group labels of every kind: the coding of fit and the lookup of predict.

skhlm.data.groups takes each kind of label by its fastest path (a table for small
ints, a Categorical's codes, pyarrow's dictionary encoding, pandas' string hash
table); these tests hold every path to one reference: pandas' factorize (sort=True)
over all rows for the coding, ``pd.Index(levels).get_indexer`` of all rows for the
lookup.
"""

import numpy as np
import pandas as pd
import pytest

from skhlm import RandomInterceptRegressor
from skhlm.data.groups import encode_groups, factorize, lookup_groups



def reference_coding(labels):
    """(codes in size order, sizes, levels) the slow, obvious way."""
    try:
        codes, levels = pd.factorize(labels, sort=True)
    except TypeError:
        codes, levels = pd.factorize(labels, sort=False)
    sizes = np.bincount(codes, minlength=len(levels))
    level = np.argsort(sizes, kind="stable")
    rank = np.empty_like(level)
    rank[level] = np.arange(level.size)
    return rank[codes], sizes[level], np.asarray(levels)[level]


def label_kinds(strings):
    """The same string labels as every kind a user may pass."""
    strings = np.asarray(strings, dtype=object)
    return {
        "object": strings,
        "object Series": pd.Series(strings, dtype=object),
        "python str": pd.Series(strings, dtype=pd.StringDtype("python")),
        "pyarrow str": pd.Series(strings, dtype="string[pyarrow]"),
        "Categorical": pd.Categorical(strings),
        "Categorical Series": pd.Series(strings, dtype="category"),
        "numpy str": strings.astype(str),
    }


STRINGS = np.random.default_rng(0).choice([f"school-{k:03d}" for k in range(40)], size=500)

CODING_CASES = {
    **label_kinds(STRINGS),
    "small ints": np.random.default_rng(1).integers(0, 30, 300),
    "large ints": np.random.default_rng(2).integers(0, 30, 300) * 10**12,
    "negative ints": np.random.default_rng(3).integers(-15, 15, 300),
    "floats": np.random.default_rng(4).integers(0, 30, 300) / 4.0,
    "ints and strings": np.array([3, "b", 1, "a", 3, "b", 1, 1], dtype=object),
    "unsortable": np.array([(1, 2), 3, (1, 2), 3, 3, "x"], dtype=object),
    "nullable Int64": pd.Series(np.arange(60) % 7, dtype="Int64"),
}


@pytest.mark.parametrize("kind", list(CODING_CASES))
def test_the_coding_of_every_kind_of_label_is_pandas_sorted_factorize(kind):
    labels = CODING_CASES[kind]
    coding = encode_groups(labels, len(labels))
    codes, sizes, levels = reference_coding(labels)
    np.testing.assert_array_equal(coding.codes, codes)
    np.testing.assert_array_equal(coding.sizes, sizes)
    np.testing.assert_array_equal(coding.levels[coding.level], levels)
    assert coding.codes.dtype == np.intp


def test_a_categoricals_levels_are_its_used_categories_in_category_order():
    labels = pd.Categorical(["b", "c", "b", "a"], categories=["c", "unused", "b", "a"])
    coding = encode_groups(labels, 4)
    np.testing.assert_array_equal(coding.levels, ["c", "b", "a"])
    np.testing.assert_array_equal(coding.levels[coding.level][coding.codes], np.asarray(labels))


def test_python_strings_are_factorized_as_their_objects():
    labels = pd.Series(["b", None, "a", "b"], dtype=pd.StringDtype("python"))
    codes, uniques, ordered = factorize(labels)
    np.testing.assert_array_equal(codes, [0, -1, 1, 0])
    np.testing.assert_array_equal(uniques, ["b", "a"])
    assert not ordered


@pytest.mark.parametrize("kind", ["python str", "pyarrow str", "Categorical Series", "object"])
def test_missing_labels_are_refused_for_every_kind(kind):
    labels = label_kinds(["a", "b", "a", None, "b", None])[kind]
    with pytest.raises(ValueError, match="2 missing label"):
        encode_groups(labels, 6)


LEVELS = np.array(sorted(set(STRINGS))[:30], dtype=object)  # 10 schools unseen


def lookup_cases():
    strings = np.array(list(STRINGS[:200]) + [None, "new"], dtype=object)
    cases = {f"{k} (strings)": v for k, v in label_kinds(strings[:200]).items()}
    cases["object with None and new"] = (strings, LEVELS)
    cases["pyarrow with null"] = (pd.Series(strings, dtype="string[pyarrow]"), LEVELS)
    cases["python str with NA"] = (pd.Series(strings, dtype=pd.StringDtype("python")), LEVELS)
    cases = {k: (v if isinstance(v, tuple) else (v, LEVELS)) for k, v in cases.items()}
    ints = np.array([5, 3, 99, 0, 3, 7, 5])
    cases["small ints"] = (ints, np.array([0, 3, 5, 7]))
    cases["ints beyond the table"] = (ints * 10**12, np.array([0, 3, 5, 7]) * 10**12)
    cases["negative ints"] = (ints - 4, np.array([-4, -1, 1, 3]))
    cases["ints against float levels"] = (ints, np.array([0.0, 3.0, 5.5]))
    cases["floats with NaN"] = (np.array([1.0, np.nan, 2.5]), np.array([1, 2]))
    cases["strings against int levels"] = (np.array(["3", "5"], dtype=object), np.array([3, 5]))
    cases["ints against string levels"] = (np.array([3, 5]), np.array(["3", "5"], dtype=object))
    cases["mixed objects"] = (np.array([1, True, "a", 2.0, None, 0, False], dtype=object),
                              np.array([1, 2, "a"], dtype=object))
    cases["Categorical with unseen categories"] = (
        pd.Categorical(["a", "z", "b", "a"], categories=["z", "b", "a", "q"]),
        np.array(["a", "b"], dtype=object),
    )
    cases["bools"] = (np.array([True, False, True]), np.array([False, True]))
    return cases


LOOKUP_CASES = lookup_cases()


@pytest.mark.parametrize("kind", list(LOOKUP_CASES))
def test_the_lookup_of_every_kind_of_label_is_the_index_lookup_of_every_row(kind):
    labels, levels = LOOKUP_CASES[kind]
    expected = pd.Index(levels).get_indexer(np.asarray(labels))
    got = lookup_groups(labels, levels, len(labels))
    np.testing.assert_array_equal(got, expected)
    assert got.dtype.kind == "i"  # an index, whatever path found it
    assert (got >= 0).any() or kind.startswith(("strings against", "ints against string"))


def test_fit_and_predict_agree_across_every_kind_of_label():
    rng = np.random.default_rng(5)
    n = 600
    X = rng.normal(size=(n, 2))
    y = X @ [1.0, -0.5] + rng.normal(size=40)[rng.integers(0, 40, n)] + rng.normal(size=n)
    kinds = label_kinds(np.random.default_rng(6).choice([f"g{k:02d}" for k in range(40)], n))
    reference = RandomInterceptRegressor().fit(X, y, groups=kinds["object"])
    new_rows = np.array(list(kinds["object"][:50]) + ["never seen"] * 10, dtype=object)
    expected = reference.predict(X[:60], groups=new_rows)
    for name, labels in kinds.items():
        model = RandomInterceptRegressor().fit(X, y, groups=labels)
        np.testing.assert_array_equal(model.coef_, reference.coef_, err_msg=name)
        np.testing.assert_array_equal(model.random_effects_, reference.random_effects_, err_msg=name)
        np.testing.assert_array_equal(model.groups_.astype(str), reference.groups_.astype(str))
        given = label_kinds(new_rows)[name]
        np.testing.assert_array_equal(model.predict(X[:60], groups=given), expected, err_msg=name)
    # The unseen rows got x'beta, the seen ones their group's intercept on top.
    np.testing.assert_allclose(expected[50:], reference.predict(X[50:60], population=True))
    assert np.all(expected[:50] != reference.predict(X[:50], population=True))


# -- predict's other shortcuts: X read once, the BLAS context --


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("column", [0, 2])  # a fitted column, a dropped one (coef 0)
def test_predict_refuses_a_non_finite_value_in_any_column(value, column):
    rng = np.random.default_rng(7)
    X = rng.normal(size=(80, 2))
    X = np.column_stack([X, X[:, 0]])  # column 2 duplicates 0: dropped, coef 0
    y = X[:, 0] + rng.normal(size=80)
    groups = np.arange(80) % 8
    with pytest.warns(UserWarning, match="rank deficient"):
        model = RandomInterceptRegressor().fit(X, y, groups=groups)
    assert model.coef_[2] == 0.0 and np.all(model.coef_[:2] != 0.0)
    bad = X.copy()
    bad[5, column] = value
    with pytest.raises(ValueError, match=rf"by column: \{{'{column}': 1\}}.* before predicting"):
        model.predict(bad, groups=groups)
    np.testing.assert_allclose(model.predict(X, groups=groups), model.predict(X[:, [0, 1, 0]], groups=groups))


def test_predict_is_x_beta_plus_the_seen_groups_intercept():
    rng = np.random.default_rng(8)
    X = rng.normal(size=(90, 2))
    groups = np.arange(90) % 9
    y = X @ [2.0, 1.0] + rng.normal(size=9)[groups] + rng.normal(size=90)
    model = RandomInterceptRegressor().fit(X, y, groups=groups)
    given = np.array([0, 4, 8, 100, -3])
    expected = X[:5] @ model.coef_ + model.intercept_
    expected[:3] += model.random_effects_[[0, 4, 8]]
    np.testing.assert_allclose(model.predict(X[:5], groups=given), expected, rtol=1e-14)


def test_the_serial_blas_context_restores_the_thread_counts_and_nests():
    from threadpoolctl import threadpool_info

    from skhlm._blas import SERIAL_BLAS_MAX_COLUMNS, blas_threads, small_matrix_blas

    def counts():
        return [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]

    before = counts()
    with small_matrix_blas(3):
        assert set(counts()) == {1}
        with blas_threads(3):
            assert set(counts()) == {1}
        assert set(counts()) == {1}  # the inner context left the outer's setting
    assert counts() == before
    with pytest.raises(RuntimeError), blas_threads(3):
        raise RuntimeError
    assert counts() == before
    with blas_threads(SERIAL_BLAS_MAX_COLUMNS + 1):
        assert counts() == before  # wide: BLAS keeps its threads
