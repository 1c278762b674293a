"""
A machine-learning workflow: preprocessing, grid search, and two kinds of CV
============================================================================

Predicting a student's math score is two different tasks:

- for a school we have data on (KFold: every school is in the training folds), the
  model adds the school's random intercept, its BLUP, to x' beta;
- for a new school (GroupKFold: whole schools held out), it can only use x' beta.

The random intercept model is compared with LinearRegression (no schools at all)
and a per-school-mean baseline (only schools, no predictors).

Run: ``python examples/grid_search_groupkfold.py``
"""

# %%
# The data and a pipeline
# -----------------------
#
# ``X`` holds the three predictors and the ``school`` column. The model reads the
# group labels from that column (``group_column="school"``), so the whole pipeline
# takes one ``X``, as any scikit-learn pipeline does. The
# :class:`~sklearn.compose.ColumnTransformer` scales the predictors and passes the
# school column through untouched; ``set_output(transform="pandas")`` keeps the
# column names, so that the model can find ``school`` after the scaling.

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LinearRegression
from sklearn.model_selection import GridSearchCV, GroupKFold, KFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skhlm import RandomInterceptRegressor
from skhlm.datasets import make_pisa_like

FEATURES = ["desk", "escs", "stratio"]

pisa = make_pisa_like()
X, y, school = pisa[FEATURES + ["school"]], pisa["math"], pisa["school"]

# The school column passes through untouched: string labels must never be scaled.
preprocess = ColumnTransformer(
    [("scale", StandardScaler(), FEATURES)],
    remainder="passthrough",
    verbose_feature_names_out=False,
).set_output(transform="pandas")
hlm = make_pipeline(preprocess, RandomInterceptRegressor(group_column="school"))

# %%
# Grid search over the estimation method
# --------------------------------------
#
# :class:`~sklearn.model_selection.GridSearchCV` tries REML (lme4's default) and ML,
# scored by :math:`R^2` on held-out schools. :class:`~sklearn.model_selection.GroupKFold`
# keeps every school wholly in one fold, so each test fold holds schools the model has
# never seen. ``groups=school`` goes to the splitter only; the model still reads the
# labels from its column. REML and ML differ in how they estimate the variances; on
# these data they give nearly the same coefficients, and the two scores agree to the
# digits printed. ``search.best_estimator_`` is the pipeline with the method that
# scored best, refitted on all the rows.

search = GridSearchCV(
    hlm,
    {"randominterceptregressor__method": ["reml", "ml"]},
    cv=GroupKFold(n_splits=5),
)
search.fit(X, y, groups=school)  # groups feed the splitter; the model reads the column
print("Grid search (GroupKFold, R^2 for new schools):")
for params, score in zip(search.cv_results_["params"], search.cv_results_["mean_test_score"]):
    print(f"  {params}: {score:.4f}")
best = search.best_estimator_

# %%
# Two baselines
# -------------
#
# Linear regression uses the predictors and ignores the schools. The school-mean
# baseline does the opposite: it predicts the training mean of the student's school,
# and the grand mean for a school it has not seen. It is a small scikit-learn
# regressor written here: ``fit`` learns the means, ``predict`` looks them up.


class SchoolMeanRegressor(RegressorMixin, BaseEstimator):
    """Baseline: the training mean of the student's school; the grand mean for a new one."""

    def fit(self, X, y):
        frame = pd.DataFrame({"school": np.asarray(X["school"]), "y": np.asarray(y)})
        self.means_ = frame.groupby("school")["y"].mean()
        self.grand_mean_ = float(frame["y"].mean())
        return self

    def predict(self, X):
        return X["school"].map(self.means_).fillna(self.grand_mean_).to_numpy()


models = {
    "random intercept model": best,
    "linear regression": make_pipeline(
        ColumnTransformer([("scale", StandardScaler(), FEATURES)]), LinearRegression()
    ),
    "school mean baseline": SchoolMeanRegressor(),
}

# %%
# New schools and known schools
# -----------------------------
#
# Each model is scored twice by 5-fold cross-validation. GroupKFold holds out whole
# schools: the score of a model that will meet new schools. Shuffled
# :class:`~sklearn.model_selection.KFold` holds out students: each test student's
# school also has students in the training folds, the score of a model that predicts
# new students of schools it has seen. An :math:`R^2` below 0 means worse than
# predicting the mean of the test fold.

splits = {
    "new schools (GroupKFold)": (GroupKFold(n_splits=5), school),
    "known schools (KFold)": (KFold(n_splits=5, shuffle=True, random_state=0), None),
}
rows = {}
for name, model in models.items():
    rows[name] = {
        split: cross_val_score(model, X, y, cv=cv, groups=groups).mean()
        for split, (cv, groups) in splits.items()
    }
table = pd.DataFrame(rows).T
print("\nCross-validated R^2:")
print(table.round(4).to_string())
print(
    "\nWhy they differ: for a known school the model adds that school's BLUP, which "
    "carries what the school's other students reveal about it; that is worth "
    f"{table.iloc[0, 1] - table.iloc[0, 0]:+.3f} in R^2 here. For a new school there "
    "is no BLUP, so the model predicts x'beta and scores like linear regression; "
    "the school-mean baseline knows nothing about a new school but the grand mean. "
    "Report the score that matches the use: GroupKFold when the model will meet new "
    "schools, KFold when it predicts new students of schools it has seen."
)
