"""Load the lme4 reference fits (tests/data/lme4) for the tests.

The data and the JSON come from tests/data/make_reference_data.py and
tests/data/lme4/fit_lme4.R; R is not needed to read them.
"""

import json
from functools import lru_cache
from pathlib import Path

import pandas as pd

HERE = Path(__file__).parent / "data" / "lme4"


@lru_cache(maxsize=1)
def reference():
    with open(HERE / "lme4_reference.json") as f:
        return json.load(f)


def fit_keys():
    """Keys "data/model/method" of every reference fit."""
    return sorted(reference()["fits"])


@lru_cache(maxsize=None)
def frame(name):
    return pd.read_csv(HERE / f"{name}.csv")


def design(key):
    """(X, y, groups, reference fit) for a key: X has the model's terms as columns."""
    data, model, _ = key.split("/")
    fit = reference()["fits"][key]
    d = frame(data)
    columns = [name for name in fit["fixef_names"] if name != "(Intercept)"]
    return d[columns], d["y"], d["g"], fit
