"""Shared test configuration."""

import sys

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
