"""scikit-learn's estimator checks, the whole suite; one expected failure, which
assumes frequency weights."""

import pytest
from sklearn.utils.estimator_checks import parametrize_with_checks

from skhlm import LinearMixedRegressor, MixedEffectsRegressor, RandomInterceptRegressor


# Precision weights (lme4's, Var(e_i) = s2e / w_i) are not frequency weights: a row
# of weight 3 is one observation with a third of the variance, not three rows.  The
# check compares a fit with integer weights to one on rows repeated that many times;
# its data (15 rows of 30 random columns, weights 0 to 4) then have 9 rows of positive
# weight for 31 fixed effects, which a precision-weighted fit refuses (n <= p) and the
# repeated rows' fit does not.  tests/test_weights.py tests what the weights mean,
# against lme4's weighted fits (and that integer weights differ from repeated rows,
# in lme4 too).
FREQUENCY_WEIGHTS = (
    "precision weights, as lme4's: a weight of 3 is not 3 repeated rows "
    "(tests/test_weights.py tests their meaning against lme4)"
)


def _expected_failed_checks(estimator):
    if isinstance(estimator, (RandomInterceptRegressor, LinearMixedRegressor)):
        return {"check_sample_weight_equivalence_on_dense_data": FREQUENCY_WEIGHTS}
    return {}


# The checks fit without groups, which is ordinary least squares (for
# MixedEffectsRegressor: the learner alone) with a UserWarning (tested in
# test_regressor.py and test_mixed.py); the warning is expected here.
@pytest.mark.filterwarnings("ignore:RandomInterceptRegressor.fit got no groups:UserWarning")
@pytest.mark.filterwarnings("ignore:MixedEffectsRegressor.fit got no groups:UserWarning")
@pytest.mark.filterwarnings("ignore:LinearMixedRegressor.fit got no groups:UserWarning")
@parametrize_with_checks(
    [
        RandomInterceptRegressor(),
        RandomInterceptRegressor(method="ml"),
        MixedEffectsRegressor(),
        MixedEffectsRegressor(residuals="cross-fitted", random_state=0),
        LinearMixedRegressor(),
        LinearMixedRegressor(random_slopes=[0]),
        LinearMixedRegressor(random_slopes=[0], covariance="diagonal", method="ml"),
    ],
    expected_failed_checks=_expected_failed_checks,
)
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)
