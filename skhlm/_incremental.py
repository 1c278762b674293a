"""partial_fit: the sufficient statistics chunk by chunk, the small EM after each.

A chunk's rows are summed in one pass (skhlm.data.accumulator) and merged into the
sums of the chunks before, whose groups may reappear or be new; then EM runs on the
merged statistics, from the same moment estimates a fit on all the rows would start
from, so the model after every chunk is the fit of every row seen so far.  The model
keeps the sums, O(G p) numbers, and no rows.

A call is a transaction: if the chunk fails validation, or the fit on the merged sums
fails, the model is exactly as it was before the call.
"""

from sklearn.base import _fit_context
from sklearn.exceptions import NotFittedError

from . import _checks
from .data.accumulator import NonFiniteStatistics, StatsAccumulator, TinyValues


class IncrementalFitMixin:
    """``partial_fit`` for an estimator with ``_prepare_chunk`` (validated data of a
    chunk) and ``_fit_statistics`` (a fit from finalized statistics)."""

    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y, groups=None, sample_weight=None):
        """Add a chunk of rows to the statistics and refit on every row seen so far.

        The chunks may be of any size and order: the fit after them equals one fit on
        their rows together (to EM's tolerance).  A group may span chunks, and a
        later chunk may bring new groups.  While the rows seen so far cannot identify
        the model (one group, no group with two rows, fewer rows than fixed effects),
        the chunk is only added, with one warning that says why, and ``predict``
        raises NotFittedError with that reason.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            The chunk's rows: the same features, in the same order, as the first
            chunk's.
        y : array-like of shape (n_samples,)
            The chunk's responses.
        groups : array-like of shape (n_samples,), default=None
            The chunk's group labels (or use ``group_column``).  Every chunk has
            groups, or none does.
        sample_weight : array-like of shape (n_samples,), default=None
            Precision weights, as in ``fit``.

        Returns
        -------
        self
            The estimator, fitted to every row seen so far.

        Raises
        ------
        ValueError
            For a chunk that fails validation (NaN, other columns, ...): the model is
            then as it was before the call.

        See Also
        --------
        fit : One fit on all the rows; ``fit`` also discards the chunks so far.
        skhlm.fit_parquet : The chunks read from Parquet or CSV files.
        skhlm.dask.fit : The sums computed on a dask cluster.

        Examples
        --------
        >>> import numpy as np
        >>> from skhlm import RandomInterceptRegressor
        >>> from skhlm.datasets import make_multilevel_regression
        >>> X, y, groups = make_multilevel_regression(n_groups=30, random_state=0)
        >>> model = RandomInterceptRegressor()
        >>> for rows in np.array_split(np.arange(len(y)), 3):  # groups span chunks
        ...     model = model.partial_fit(X.iloc[rows], y.iloc[rows], groups=groups.iloc[rows])
        >>> at_once = RandomInterceptRegressor().fit(X, y, groups=groups)
        >>> bool(np.allclose(model.coef_, at_once.coef_, rtol=1e-8))
        True
        """
        before = dict(vars(self))
        try:
            self._partial_fit(X, y, groups, sample_weight)
        except BaseException:
            vars(self).clear()
            vars(self).update(before)
            raise
        return self

    def _partial_fit(self, X, y, groups, sample_weight):
        self._add_chunk(X, y, groups, sample_weight)
        self._refit()

    def _add_chunk(self, X, y, groups, sample_weight, in_place=False):
        """Validate a chunk and merge its sums into the chunks' before (no fit);
        ``in_place`` adds into the accumulator's arrays (no transaction: for
        fit_parquet, which restores the model itself)."""
        first = not hasattr(self, "_accumulator")
        if not first and self._accumulator.fit_intercept != self.fit_intercept:
            raise ValueError(
                "fit_intercept changed between partial_fit calls; the statistics of the "
                "chunks so far were built with fit_intercept="
                f"{self._accumulator.fit_intercept}. Call fit, or a new estimator, to start over."
            )
        has_groups = groups is not None or self.group_column is not None
        if not first and has_groups != self._chunks_grouped:
            raise ValueError(
                "Every chunk of partial_fit must have groups, or none: the earlier chunks "
                f"{'had' if self._chunks_grouped else 'had no'} groups, this one "
                f"{'has' if has_groups else 'has none'}."
            )
        data = self._prepare_chunk(X, y, groups, sample_weight, reset=first)
        if in_place and not first:
            accumulator = self._accumulator
        else:
            accumulator = self._new_accumulator(data)
            if not first:
                accumulator.merge(self._accumulator)
        try:
            accumulator.add(data.X, data.y, data.coding, data.weights, in_place=in_place)
        except NonFiniteStatistics:
            _checks.finite(data.X, data.feature_names)
            raise
        except TinyValues as tiny:
            raise ValueError(_checks.tiny_values_message(tiny, data.feature_names)) from None
        self._accumulator = accumulator
        self._chunks_grouped = data.grouped
        self._chunk_names = data.names if first else self._chunk_names

    def _refit(self):
        """EM on the sums of every chunk so far, or, while they cannot identify the
        model, no fit and the reason."""
        stats, units, levels = self._accumulator.finalize()
        grouped = self._chunks_grouped
        reason = _checks.not_identified_yet(stats, grouped)
        if reason is not None:
            for name in [n for n in vars(self) if n.endswith("_") and n not in ("n_features_in_", "feature_names_in_")]:
                delattr(self, name)
            self.__dict__.pop("_result", None)
            if getattr(self, "_not_fitted_reason", None) is None:
                _checks.warn(f"partial_fit only added the chunk: {reason}")
            self._not_fitted_reason = reason
            return
        self._not_fitted_reason = None
        dropped = tuple(~units.kept)
        if dropped != getattr(self, "_chunk_dropped", None):  # (it warns only if any)
            _checks.redundant_columns(units, getattr(self, "feature_names_in_", None))
        self._chunk_dropped = dropped
        self._fit_and_publish(stats, units, levels if grouped else None, self._chunk_names)

    def _new_accumulator(self, data):
        return StatsAccumulator(fit_intercept=self.fit_intercept)

    def _check_fitted_for_predict(self):
        """NotFittedError, with partial_fit's reason while it only accumulated."""
        reason = getattr(self, "_not_fitted_reason", None)
        if reason is not None and not self.__sklearn_is_fitted__():
            raise NotFittedError(
                f"This {type(self).__name__} is not fitted yet: partial_fit has seen "
                f"{self._accumulator.n_obs} rows, and {reason}"
            )

    def _forget_chunks(self):
        """fit starts over: the statistics of earlier partial_fit calls are dropped."""
        for name in ("_accumulator", "_chunks_grouped", "_chunk_names", "_chunk_dropped", "_not_fitted_reason"):
            self.__dict__.pop(name, None)
