"""The scikit-learn glue that every skhlm estimator shares.

Groups from the ``groups`` argument or from ``group_column``, the policy for groups
not seen in fit, input validation for predict, the public attributes read from a
:class:`~skhlm.engine.result.FitResult`, and the rule that a failed fit leaves no
fitted state behind.
"""

import numpy as np
import pandas as pd
from sklearn.metrics import r2_score
from sklearn.utils.validation import check_is_fitted, validate_data

from . import _checks
from .data.groups import GroupCoding, as_labels, encode_groups, lookup_groups, split_group_column


def group_coding(groups, n_samples, no_groups_warning, count=True):
    """The rows' :class:`GroupCoding`; without groups, all rows in one group, with
    ``no_groups_warning`` (what the model then is, and how to pass the groups; None
    for none).  ``count``: refuse too few groups, warn for few."""
    if groups is None:
        if no_groups_warning is not None:
            _checks.warn(no_groups_warning)
        return GroupCoding.single(n_samples)
    coding = encode_groups(groups, n_samples)
    if count:  # (a chunk of partial_fit may hold one group)
        _checks.group_count(coding.n_groups, n_samples)
    return coding


class GroupedRegressorMixin:
    """Groups, unseen groups and fitted state for a regressor with random effects.

    A subclass has the parameters ``group_column`` and ``unseen_groups``, fits in
    ``_fit`` and stores its result with :meth:`_publish`.
    """

    def __sklearn_is_fitted__(self):
        return hasattr(self, "_result")

    def _fit_or_nothing(self, *args):
        """Run ``_fit``; if it fails, remove any fitted state it left."""
        try:
            return self._fit(*args)
        except BaseException:
            for name in [n for n in vars(self) if n.endswith("_") or n == "_result"]:
                delattr(self, name)
            raise

    def _publish(self, result):
        """Store the fit result and the public attributes derived from it."""
        self._result = result
        self.coef_, self.intercept_ = result.coef_and_intercept()
        s2u, s2e = result.variance_components
        self.variance_components_ = {"group": s2u, "residual": s2e}
        self.icc_ = s2u / (s2u + s2e) if s2u > 0 else 0.0
        self.n_iter_ = result.n_iter
        self.converged_ = result.converged
        self.log_likelihood_history_ = result.user_log_likelihood_history
        self.log_likelihood_ = result.user_log_likelihood
        self.groups_ = result.levels if result.grouped else np.array([])
        self.random_effects_, self.random_effects_var_ = result.random_effects
        self.singular_ = result.singular
        self.aic_ = result.aic
        self.bic_ = result.bic

    def score(self, X, y, groups=None, sample_weight=None):
        """R^2 of ``predict(X, groups)``: conditional on the groups where known.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            The features, as in ``predict``.
        y : array-like of shape (n_samples,)
            The true responses.
        groups : array-like of shape (n_samples,), default=None
            Group labels, as in ``predict``.
        sample_weight : array-like of shape (n_samples,), default=None
            Weights of the rows in the R^2 (as scikit-learn's ``r2_score``).

        Returns
        -------
        score : float
            R^2 of the predictions: 1 is perfect, 0 is predicting the mean of y.

        See Also
        --------
        predict : The predictions that are scored.

        Examples
        --------
        >>> from skhlm import RandomInterceptRegressor
        >>> from skhlm.datasets import make_multilevel_regression
        >>> X, y, groups = make_multilevel_regression(n_groups=30, random_state=0)
        >>> model = RandomInterceptRegressor().fit(X, y, groups=groups)
        >>> round(model.score(X, y, groups=groups), 3)  # with the groups' intercepts
        0.839
        >>> round(model.score(X, y, groups=[-1] * len(y)), 3)  # as new groups: x'beta
        0.79
        """
        return r2_score(y, self.predict(X, groups=groups), sample_weight=sample_weight)

    def _take_groups(self, X, groups):
        """(X, groups) with the groups taken from ``group_column`` when it is set."""
        if self.group_column is None:
            return X, groups
        if isinstance(self.group_column, bool):  # an Integral, but surely a mistake
            raise ValueError(
                f"group_column={self.group_column} is a bool; pass a column name or an "
                "integer position."
            )
        if groups is not None:
            raise ValueError(
                f"Got groups both from group_column={self.group_column!r} and from the "
                "groups argument; pass one. (With metadata routing on, stop the routed "
                "groups with set_fit_request(groups=False) and "
                "set_predict_request(groups=False).)"
            )
        return split_group_column(X, self.group_column)

    def _validate_for_predict(self, X, groups, *, check_finite=True):
        """(X as a float array, groups) for predict: fitted, same features, finite
        (unless ``check_finite`` is False: then :meth:`_fixed_part` checks)."""
        check_is_fitted(self)
        _checks.not_dask(X, "predict")
        X, groups = self._take_groups(X, groups)
        _checks.numeric_columns(X)
        X = validate_data(
            self,
            _checks.no_columns_as_array(X),
            dtype=[np.float64, np.float32],
            reset=False,
            ensure_min_features=min(self.n_features_in_, 1),
            ensure_all_finite=False,
        )
        if check_finite:
            _checks.finite(X, getattr(self, "feature_names_in_", None), when="predicting")
        return X, groups

    def _fixed_part(self, X):
        """x'beta + intercept for each row of a validated X, refusing NaN and inf in X.

        A non-finite value in a column with a nonzero coefficient makes its row's
        product non-finite, so the product's sum tests X without a pass of its own
        (X is read once, not twice); with a zero coefficient (a dropped column) X is
        tested directly.
        """
        with np.errstate(invalid="ignore", over="ignore"):  # inf * 0: refused below
            y_pred = X @ self.coef_
            y_pred += self.intercept_
        if not (np.isfinite(y_pred.sum()) and self.coef_.all()):
            _checks.finite(X, getattr(self, "feature_names_in_", None), when="predicting")
        return y_pred

    def _random_part(self, groups, n_samples, values):
        """Each row's entry of ``values`` (one per group of groups_, e.g. the random
        intercepts), 0 for a group not seen in fit, and the rows' group index."""
        index = self._group_index(groups, n_samples)
        # One gather: an unseen group's index, -1, takes the appended 0.
        return np.append(values, np.zeros((1,) + values.shape[1:]), axis=0)[index], index

    def _warn_population(self, estimator_name):
        """Say that predict without groups ignores the group intercepts of a model
        fitted with them: inside model selection tools the groups silently miss."""
        _checks.warn(
            f"{estimator_name}.predict got no groups, so it returned population-level "
            "predictions (x'beta), without the group intercepts the model was fitted "
            "with. Pass predict(X, groups=labels). cross_val_predict and scikit-learn's "
            "scorers (scoring='r2' and the like) pass no groups to predict, even with "
            "metadata routing: set group_column so that the labels travel in X. For "
            "population-level predictions on purpose, pass population=True (lme4's "
            "re.form = NA)."
        )

    def _group_index(self, groups, n_samples):
        """Index into groups_ of each row's group; -1 for an unseen group."""
        index = lookup_groups(groups, self.groups_, n_samples)
        if n_samples and (index < 0).all():
            _checks.unseen_label_types(as_labels(groups), self.groups_)
        if self.unseen_groups == "error" and (index < 0).any():
            labels = as_labels(groups)[index < 0]
            unseen = pd.unique(labels)
            shown = ", ".join(repr(_checks.scalar(v)) for v in unseen[:5])
            shown += ", ..." if unseen.size > 5 else ""
            raise ValueError(
                f"{labels.size} rows belong to {unseen.size} group(s) not seen in fit "
                f"({shown}) and unseen_groups='error'. Set unseen_groups='population' to "
                "predict x'beta for them."
            )
        return index
