"""Shared test configuration, and the simulator of multilevel data the tests use.

``tests/`` has no ``__init__.py``: pytest's default ("prepend") import mode puts it
first on ``sys.path`` and imports this file as the module ``conftest``, so a test file
imports the simulator with ``from conftest import simulate_multilevel`` (the module
pytest loaded, not a second copy), as it imports ``dense``.
"""

import sys

import numpy as np
import pytest

# Under mutmut (CONTRIBUTING.md) a mutant runs every test that covers its function
# until one fails.  The files whose tests are fast and sensitive to any numeric
# change run first, so that a killed mutant dies early; the few slow tests (marked
# ``slow``: seconds each, covered by faster tests of the same code) are skipped, so
# the score measured is a lower bound.
_MUTATION_ORDER = [
    "test_lme4_agreement.py",
    "test_engine.py",
    "test_em.py",
    "test_regressor.py",
    "test_robustness.py",
]


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: takes seconds; skipped under mutation testing")


def pytest_collection_modifyitems(config, items):
    if "mutmut" not in sys.modules:
        return
    rank = {name: k for k, name in enumerate(_MUTATION_ORDER)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))
    skip = pytest.mark.skip(reason="slow: skipped under mutation testing")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def record_calls(monkeypatch):
    """``record_calls(module, name)`` wraps ``module.name`` for the test and returns
    the list of the positional arguments of each call, in order."""

    def record(module, name):
        calls, original = [], getattr(module, name)

        def wrapper(*args, **kwargs):
            calls.append(args)
            return original(*args, **kwargs)

        monkeypatch.setattr(module, name, wrapper)
        return calls

    return record


def simulate_multilevel(
    seed=0,
    *,
    coef,
    n_groups=None,
    sizes=(2, 9),
    n_within=1,
    n_between=1,
    intercept=0.0,
    intercept_column=False,
    s2u=1.0,
    s2e=1.0,
    offset=0.0,
    between_scale=1.0,
    center_within=False,
):
    """Random intercept data: ``y = intercept + X @ coef + u[groups] + e``.

    The draws, from ``np.random.default_rng(seed)`` (a seed or a Generator, which is
    used as it is), come in this order, and a test tuned to a seed relies on it:

    1. the group sizes, ``rng.integers(low, high, size=n_groups)``, if ``sizes`` is a
       ``(low, high)`` tuple (an int is that size for every group, an array one size
       per group; neither draws anything);
    2. ``n_within`` level-1 columns, ``rng.normal(size=(n, n_within))``, centered
       within their groups if ``center_within`` and then shifted by ``offset``;
    3. ``n_between`` level-2 columns, ``rng.normal(size=(n_groups, n_between))``,
       repeated over each group's rows and multiplied by ``between_scale``;
    4. the random intercepts ``u``, ``rng.normal(scale=sqrt(s2u), size=n_groups)``;
    5. the residuals ``e``, ``rng.normal(scale=sqrt(s2e), size=n)``.

    A draw of size 0 is skipped.  ``X`` holds the level-1 columns, then the level-2
    ones, after a column of ones if ``intercept_column`` (``coef`` then starts with its
    coefficient).  Returns ``X``, ``y`` and the group codes ``0 .. n_groups - 1``, in
    blocks of consecutive rows.
    """
    rng = np.random.default_rng(seed)
    if isinstance(sizes, tuple):
        low, high = sizes
        sizes = rng.integers(low, high, size=n_groups)
    elif np.ndim(sizes) == 0:
        sizes = np.full(n_groups, sizes)
    else:
        sizes = np.asarray(sizes)
        if n_groups is not None and n_groups != sizes.size:
            raise ValueError(f"n_groups={n_groups} but {sizes.size} group sizes")
    n_groups = sizes.size
    codes = np.repeat(np.arange(n_groups), sizes)
    n = codes.size

    columns = [np.ones((n, 1))] if intercept_column else []
    if n_within:
        within = rng.normal(size=(n, n_within))
        if center_within:
            for k in range(n_within):
                within[:, k] -= np.bincount(codes, within[:, k])[codes] / sizes[codes]
        columns.append(within + offset)
    if n_between:
        columns.append(rng.normal(size=(n_groups, n_between))[codes] * between_scale)
    X = np.hstack(columns) if columns else np.empty((n, 0))

    y = intercept + X @ np.asarray(coef, dtype=float)
    y = y + rng.normal(scale=np.sqrt(s2u), size=n_groups)[codes]
    y += rng.normal(scale=np.sqrt(s2e), size=n)
    return X, y, codes
