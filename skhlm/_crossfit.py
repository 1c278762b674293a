"""Cross-fitting for MixedEffectsRegressor: the two halves of the groups, each
row's prediction by the learner fitted on the other half, the learner's own
variance, and which learners go on from their last fit (warm starts).

A learner fitted on one half never saw a group of the other, so its residuals
there cannot have absorbed that group's intercept or noise: the random intercept
model fitted to them gives honest variance components (skhlm._mixed).
"""

import numpy as np
from sklearn.base import clone
from sklearn.ensemble import BaggingRegressor, ExtraTreesRegressor, RandomForestRegressor
from sklearn.utils import _safe_indexing


def group_halves(codes, sizes, rng):
    """The rows of two halves of the groups, each group wholly in one half.

    The groups are shuffled and cut where the rows reach half of all: a group goes
    to the first half when its middle row comes before the cut, so the halves hold
    about as many rows (within a group's size) and, with 2 or more groups, both hold
    one at least.  A learner fitted on one half never saw a group of the other, so
    its predictions there cannot have learned that group's intercept.
    """
    order = rng.permutation(sizes.shape[0])
    ends = np.cumsum(sizes[order])
    middle = ends - 0.5 * sizes[order]
    first = np.zeros(sizes.shape[0], dtype=bool)
    first[order] = middle < 0.5 * ends[-1]
    in_first = first[codes]
    return [np.flatnonzero(in_first), np.flatnonzero(~in_first)]


def warm_startable(learner):
    """Whether the learner, refitted with ``warm_start=True``, goes on from its last
    fit: any learner with that parameter (an iterative solver starts from its last
    coefficients; gradient boosting keeps its trees and adds those its early stopping
    finds useful) except the bagging ensembles, which would fit no new member (their
    warm start adds members to those already fitted, to the old target)."""
    bagging = (RandomForestRegressor, ExtraTreesRegressor, BaggingRegressor)
    return "warm_start" in learner.get_params(deep=False) and not isinstance(learner, bagging)


def _cross_fit(learner, X, target, halves, previous=None):
    """Each row's prediction by the learner fitted on the other half, and the two
    halves' fitted learners; with ``previous`` (the last round's two), those are
    refitted with warm starts."""
    prediction = np.empty(target.shape[0])
    models = []
    for k, (rows, other) in enumerate((halves, halves[::-1])):
        model = clone(learner) if previous is None else previous[k].set_params(warm_start=True)
        model.fit(_safe_indexing(X, rows), target[rows])
        prediction[other] = model.predict(_safe_indexing(X, other))
        models.append(model)
    return prediction, models


def _learner_variance(models, X, halves, out_of_fold):
    """The learner's variance: half the mean squared difference between the two
    halves' learners' predictions, over all rows (they are fitted on disjoint rows,
    so independently).  Each half's own learner predicts it here; the other one's
    prediction is ``out_of_fold``."""
    total = 0.0
    for model, rows in zip(models, halves):
        own = np.asarray(model.predict(_safe_indexing(X, rows)), dtype=np.float64)
        total += float(np.sum((own - out_of_fold[rows]) ** 2))
    return 0.5 * total / out_of_fold.shape[0] if out_of_fold.shape[0] else 0.0
