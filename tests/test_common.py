"""scikit-learn's estimator checks, the whole suite, with no expected failures."""

import pytest
from sklearn.utils.estimator_checks import parametrize_with_checks

from skhlm import LinearMixedRegressor, MixedEffectsRegressor, RandomInterceptRegressor


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
    ]
)
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)
