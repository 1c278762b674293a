"""skhlm: hierarchical linear (random intercept) models for scikit-learn.

The model ``y_ij = x_ij' beta + u_j + e_ij`` fitted by EM on sufficient statistics,
with REML and ML numbers equal to lme4's.
"""

from .inference.compare import compare
from ._formula import LmerModel, lmer
from ._formula_transformer import FormulaTransformer
from ._intercept import RandomInterceptRegressor
from ._mixed import MixedEffectsRegressor
from ._slopes import LinearMixedRegressor
from ._streaming import fit_parquet

__version__ = "0.1.0.dev0"

__all__ = [
    "FormulaTransformer",
    "LinearMixedRegressor",
    "LmerModel",
    "MixedEffectsRegressor",
    "RandomInterceptRegressor",
    "compare",
    "fit_parquet",
    "lmer",
    "__version__",
]
