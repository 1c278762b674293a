"""The result of ``summary()``: numbers as attributes, and lme4's printed layout.

:func:`summarize` gathers the numbers of a fit result (computed in skhlm.inference) into a
:class:`Summary`, which only holds and formats them; :func:`fixed_effects_table`
builds its table of t tests.  The printed block follows
``print(summary(lmerTest::lmer(...)))``: criterion, scaled residuals, random
effects, counts, fixed effects with significance codes, then one line lme4 does
not print, the ICC with its interval.
"""

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import pandas as pd

from ._blas import small_matrix_blas
from .engine.result import INTERCEPT
from .inference import profile, vcov
from .inference.compare import group_variance_lrt

# R's format.pval prints p-values below the machine epsilon as "< 2e-16".
_P_FLOOR = 2.2e-16
_SIGNIF_LEGEND = "Signif. codes:  0 '***' 0.001 '**' 0.01 '*' 0.05 '.' 0.1 ' ' 1"
_DDF = {"satterthwaite", "residual", "asymptotic"}
# The tables' labels, made once: pandas takes ~100 us to build an Index of strings,
# a copy ~10 us (each table gets its own copy, so renaming one renames no other).
_FIXED_COLUMNS = pd.Index(
    ["estimate", "std_error", "df", "t_value", "p_value", "ci_lower", "ci_upper"]
)
_RANDOM_ROWS = pd.Index(["Groups", "Residual"])
_RANDOM_COLUMNS = pd.Index(["variance", "std_dev"])


@dataclass(frozen=True, repr=False)
class Summary:
    """Summary of a fitted random intercept model, laid out like lme4's.

    What ``summary()`` of RandomInterceptRegressor, of LmerModel and of
    LinearMixedRegressor without random slopes returns; ``print`` shows lme4's
    block.  Its attributes are the numbers, to read; it is not made by hand.

    Parameters
    ----------
    method, ddf, level, formula, fixed_effects, random_effects, icc, icc_interval, \
log_likelihood, aic, bic, deviance, reml_criterion, n_obs, n_groups, group_name, \
n_params, singular, converged, n_iter, residual_quantiles, group_variance_test, \
_result : object
        The attributes below, which ``summary()`` computes and passes.

    Attributes
    ----------
    method : {"reml", "ml"}
        How the model was fitted.
    ddf : {"satterthwaite", "residual", "asymptotic"}
        How ``fixed_effects`` got its degrees of freedom.
    level : float
        Confidence level of the intervals.
    formula : str
        The model in lme4's notation, for the printed header.
    fixed_effects : DataFrame of shape (n_coefficients, 7)
        Rows "(Intercept)" (when fitted) then the features; columns ``estimate``,
        ``std_error``, ``df``, ``t_value``, ``p_value``, ``ci_lower``, ``ci_upper``
        (Wald intervals with the t quantile at ``df``; normal when ``df`` is inf).
    random_effects : DataFrame of shape (2, 2)
        Rows "Groups" and "Residual", columns ``variance`` and ``std_dev``.
    icc : float
        Intraclass correlation ``s2u / (s2u + s2e)``.
    icc_interval : tuple of float
        Profile-likelihood interval of the ICC at ``level``.
    log_likelihood, aic, bic : float
        As the estimator's ``log_likelihood_``, ``aic_``, ``bic_``.
    deviance : float or None
        -2 log-likelihood of an ML fit (None for REML).
    reml_criterion : float or None
        -2 REML log-likelihood of a REML fit (None for ML).
    n_obs, n_groups, n_iter : int
        Rows, groups (0 without groups) and EM iterations of the fit.
    group_name : str
        The grouping factor's name, as printed: the name of the groups Series or
        of the ``group_column``, else "group".
    n_params : int
        Estimated parameters, fixed effects and variances: lme4's npar.
    singular, converged : bool
        As the estimator's ``singular_`` and ``converged_``.
    residual_quantiles : ndarray of shape (5,) or None
        Min, Q1, median, Q3, max of the scaled conditional residuals; None when
        the fit did not compute them (they need the rows a second time).
    confint : DataFrame or None
        Profile-likelihood intervals (columns ``lower``, ``upper``; rows "Groups"
        and "Residual" as standard deviations, then the fixed effects), as lme4's
        ``confint(method="profile")``: from the ML deviance, for REML fits too.
        Computed lazily, on first access (p + 2 profiles after the ML refit of a
        REML fit: some 20 times a small fit, and not printed), then kept.
    group_variance_test : dict or None
        Likelihood-ratio test of s2u = 0 (is the multilevel model needed?):
        ``statistic``, ``df``, ``p_value`` from the 50:50 mixture of chi2(0) and
        chi2(1), ``log_likelihood_null``.  None for a model fitted without groups.
        Computed with the summary: the printed block shows it.
    group_intercepts : DataFrame or None
        Each group's random intercept (BLUP) with its conditional standard error
        and prediction interval at ``level``, indexed by group; None for a model
        fitted without groups.  Computed lazily, on first access (a table of one
        row per group, not printed), then kept.

    See Also
    --------
    skhlm.RandomInterceptRegressor.summary : Makes it.
    skhlm._slope_summary.SlopeSummary : The summary of a model with random slopes.

    Notes
    -----
    The lazy attributes are computed from the fit result the summary was made from
    (its private ``_result``; None without one, and so are they), at the summary's
    ``level``, as lme4's ``confint`` and ``ranef`` compute them only when asked;
    ``print`` never needs them.  Once computed they are stored on the instance, so a
    copy or a pickle made afterwards carries them, and one made before computes
    them the same way.

    Examples
    --------
    >>> from skhlm import RandomInterceptRegressor
    >>> from skhlm.datasets import make_multilevel_regression
    >>> X, y, g = make_multilevel_regression(n_groups=30, n_level1=1, n_level2=0, random_state=0)
    >>> s = RandomInterceptRegressor().fit(X, y, groups=g).summary()
    >>> print(s)
    Linear mixed model fit by REML. t-tests use Satterthwaite's method
    Formula: y ~ x1 + (1 | group)
    <BLANKLINE>
    REML criterion at convergence: 1585.9
    <BLANKLINE>
    Scaled residuals:
        Min      1Q  Median      3Q     Max
    -3.2738 -0.6867  0.0262  0.6127  3.0895
    <BLANKLINE>
    Random effects:
     Groups   Name        Variance Std.Dev.
     group    (Intercept) 0.2836   0.5325
     Residual             0.7317   0.8554
    Number of obs: 600, groups:  group, 30
    <BLANKLINE>
    Fixed effects:
                Estimate Std. Error      df t value Pr(>|t|)
    (Intercept) -0.00425    0.10331  29.003  -0.041    0.967
    x1           0.54252    0.03526 574.540  15.388  < 2e-16 ***
    ---
    Signif. codes:  0 '***' 0.001 '**' 0.01 '*' 0.05 '.' 0.1 ' ' 1
    <BLANKLINE>
    ICC: 0.2793, 95% profile-likelihood interval [0.1791, 0.4208]
    LRT of s2u = 0: chi2 = 127.9, p < 2e-16 (50:50 mixture of chi2(0) and chi2(1))
    >>> s.confint.round(3)  # profile-likelihood intervals: SDs, then fixed effects
                 lower  upper
    Groups       0.397  0.708
    Residual     0.807  0.907
    (Intercept) -0.210  0.201
    x1           0.473  0.612
    """

    method: str
    ddf: str
    level: float
    formula: str
    fixed_effects: pd.DataFrame
    random_effects: pd.DataFrame
    icc: float
    icc_interval: tuple
    log_likelihood: float
    aic: float
    bic: float
    deviance: float | None
    reml_criterion: float | None
    n_obs: int
    n_groups: int
    group_name: str
    n_params: int
    singular: bool
    converged: bool
    n_iter: int
    residual_quantiles: np.ndarray
    group_variance_test: dict | None = None
    # The fit result the lazy attributes are computed from (None: they are None).
    _result: object = field(default=None, repr=False, compare=False)

    @cached_property
    def confint(self):
        """Profile-likelihood intervals at ``level`` (lme4's ``confint``), computed on
        first access."""
        if self._result is None:
            return None
        with small_matrix_blas(self._result.stats.n_params):
            return profile.profile_intervals(self._result, self.level)

    @cached_property
    def group_intercepts(self):
        """The groups' random intercepts with their intervals at ``level``, computed
        on first access."""
        if self._result is None or not self._result.grouped:
            return None
        return vcov.random_effects_intervals(self._result, self.level)

    def __str__(self):
        return "\n".join(
            _header(self)
            + [""]
            + _criterion(self)
            + [""]
            + _residuals(self.residual_quantiles, self.n_obs)
            + [""]
            + _random_effects(self)
            + [""]
            + _fixed_effects(self.fixed_effects, self.ddf)
            + [""]
            + _icc(self)
        )

    __repr__ = __str__


def summarize(result, *, level=0.95, ddf="satterthwaite"):
    """The lme4-style summary of a fit result.

    Parameters
    ----------
    result : FitResult
    level : float, default=0.95
        Confidence level of the Wald, profile and ICC intervals.
    ddf : {"satterthwaite", "residual", "asymptotic"}, default="satterthwaite"
        Denominator degrees of freedom of the t tests: Satterthwaite's (as
        lmerTest), n - p, or none (z tests).

    Returns
    -------
    Summary
        Its attributes hold the tables and numbers; ``print`` shows lme4's layout.

    Examples
    --------
    >>> import numpy as np
    >>> from skhlm import RandomInterceptRegressor
    >>> from skhlm._summary import summarize
    >>> rng = np.random.default_rng(0)
    >>> g = np.repeat(np.arange(20), 10)
    >>> X = rng.normal(size=(200, 1))
    >>> y = X[:, 0] + rng.normal(size=20)[g] + rng.normal(size=200)
    >>> s = summarize(RandomInterceptRegressor().fit(X, y, groups=g)._result)
    >>> s.fixed_effects[["estimate", "std_error", "df"]].round(3)
                 estimate  std_error       df
    (Intercept)     0.005      0.264   19.001
    x0              0.926      0.079  182.446
    >>> s.random_effects.round(3)
              variance  std_dev
    Groups       1.295    1.138
    Residual     1.039    1.020
    """
    fixed = fixed_effects_table(result, level, ddf)
    s2u, s2e = result.variance_components
    variance = np.array([s2u, s2e], dtype=np.float64)
    random = pd.DataFrame(
        np.column_stack([variance, np.sqrt(variance)]),
        index=_RANDOM_ROWS.copy(),
        columns=_RANDOM_COLUMNS.copy(),
    )
    log_likelihood = result.user_log_likelihood
    criterion = -2.0 * log_likelihood
    quantiles = result.residual_quantiles
    # The test first: its two criteria (at the estimate and at 0) are where the ICC's
    # profile starts, and gls_beta keeps its last answers.
    test = group_variance_lrt(result) if result.grouped else None
    return Summary(
        method=result.method,
        ddf=ddf,
        level=level,
        formula=formula(result),
        fixed_effects=fixed,
        random_effects=random,
        icc=float(s2u / (s2u + s2e) if s2u > 0 else 0.0),
        icc_interval=profile.icc_interval(result, level),
        log_likelihood=float(log_likelihood),
        aic=float(result.aic),
        bic=float(result.bic),
        deviance=criterion if result.method == "ml" else None,
        reml_criterion=criterion if result.method == "reml" else None,
        n_obs=int(result.stats.n_obs),
        n_groups=result.n_groups,
        group_name=result.names.group,
        n_params=int(result.n_parameters),
        singular=bool(result.singular),
        converged=bool(result.converged),
        n_iter=int(result.n_iter),
        residual_quantiles=None if quantiles is None else np.asarray(quantiles),
        group_variance_test=test,
        _result=result,
    )


def fixed_effects_table(result, level=0.95, ddf="satterthwaite"):
    """Estimates, standard errors, df, t tests and Wald intervals of the fixed effects.

    ``ddf="satterthwaite"`` (lmerTest's default), ``"residual"`` (n - p) or
    ``"asymptotic"`` (z tests, df = inf).  Without groups the model is a linear
    regression and Satterthwaite's df is its exact n - p.  The intervals use the
    t quantile at the same df, as lmerTest's ``contest(..., confint=TRUE)``.
    """
    vcov.check_level(level)
    if ddf not in _DDF:
        raise ValueError(f"ddf must be one of {sorted(_DDF)}, got {ddf!r}.")
    stats = result.stats
    _, _, estimated = result.units.coef_map()
    coef, intercept = result.coef_and_intercept()
    estimate = np.concatenate([[intercept], coef]) if result.units.fit_intercept else coef
    se = np.sqrt(np.diag(result.coef_covariance()))
    df = np.full(se.shape, np.nan)
    if ddf == "asymptotic":
        df[estimated] = np.inf
    elif ddf == "satterthwaite" and result.grouped:
        df = vcov.coefficient_df(result)
    else:
        df[estimated] = stats.n_obs - stats.n_params
    return coefficient_table(estimate, se, df, result.coef_names, level)


def coefficient_table(estimate, se, df, names, level):
    """The fixed-effects table: t tests and t intervals at each coefficient's df."""
    with np.errstate(invalid="ignore"):
        t_value = estimate / se
        p_value = 2.0 * vcov.t_sf(np.abs(t_value), df)
        half = vcov.t_quantile(0.5 + level / 2.0, df) * se
    table = [estimate, se, df, t_value, p_value, estimate - half, estimate + half]
    return pd.DataFrame(np.column_stack(table), index=names, columns=_FIXED_COLUMNS.copy())


def formula(result):
    """The model in lme4's notation, with the feature names as terms."""
    names = result.coef_names
    terms = [n for n in names if n != INTERCEPT] if result.units.fit_intercept else ["0"] + names
    terms = terms or ["1"]
    if result.grouped:
        terms.append(f"(1 | {result.names.group})")
    return f"{result.names.response} ~ " + " + ".join(terms)


def _header(s):
    fit = "REML" if s.method == "reml" else "maximum likelihood"
    tests = {
        "satterthwaite": "t-tests use Satterthwaite's method",
        "residual": "t-tests use n - p residual degrees of freedom",
        "asymptotic": "Wald z-tests",
    }[s.ddf]
    kind = "Linear mixed model" if s.n_groups else "Linear model (no groups)"
    if not s.n_groups and s.ddf == "satterthwaite":
        tests = "t-tests use n - p degrees of freedom (no variance parameters)"
    lines = [f"{kind} fit by {fit}. {tests}", f"Formula: {s.formula}"]
    if s.singular:
        lines.append(getattr(s, "singular_message", "Boundary (singular) fit: the group variance is estimated at 0"))
    if not s.converged:
        lines.append(f"Warning: EM did not converge in {s.n_iter} iterations")
    return lines


def _criterion(s):
    if s.method == "reml":
        return [f"REML criterion at convergence: {s.reml_criterion:.1f}"]
    values = [s.aic, s.bic, s.log_likelihood, s.deviance]
    cells = [f"{v:.1f}" for v in values] + [str(s.n_obs - s.n_params)]
    names = ["AIC", "BIC", "logLik", "deviance", "df.resid"]
    width = [max(len(a), len(b)) for a, b in zip(names, cells)]
    return [
        " ".join(n.rjust(w) for n, w in zip(names, width)),
        " ".join(c.rjust(w) for c, w in zip(cells, width)),
    ]


def _residuals(q, n_obs):
    if q is None:
        return [
            "Scaled residuals: not computed (they need the rows; this fit kept only "
            f"the sufficient statistics of its {n_obs} rows)"
        ]
    cells = [f"{v:.4f}" for v in q]
    width = max(len(c) for c in cells)
    names = ["Min", "1Q", "Median", "3Q", "Max"]
    return [
        "Scaled residuals:",
        " ".join(n.rjust(width) for n in names),
        " ".join(c.rjust(width) for c in cells),
    ]


# Beyond this many decimals a column is printed in scientific notation, as R's
# format() does when fixed notation would be the wider one.
_MAX_DECIMALS = 8


def _decimals(values, digits):
    """Decimals for every value of a column to show ``digits`` significant digits,
    or None when that needs scientific notation."""
    finite = np.abs([v for v in values if np.isfinite(v) and v != 0])
    if not finite.size:
        return 0
    decimals = int(max(digits - 1 - np.floor(np.log10(finite.min())), 0))
    return decimals if decimals <= _MAX_DECIMALS else None


def _format_column(values, decimals, digits):
    if decimals is None:
        return [f"{v:.{digits - 1}e}" if np.isfinite(v) else "NA" for v in values]
    return [f"{v:.{decimals}f}" if np.isfinite(v) else "NA" for v in values]


def _common_decimals(values, digits=4):
    """Format a column as R's format(x, digits=4): enough decimals for every value
    to show ``digits`` significant digits, the same number for all (scientific
    notation for very small values)."""
    return _format_column(values, _decimals(values, digits), digits)


def _random_effects(s):
    """lme4's block: the grouping factor and term, the variance and SD (each column
    formatted as one, as R's format()), left-aligned under the headers."""
    re = _columns(s.random_effects)
    var = _common_width(_common_decimals(re["variance"]))
    sd = _common_width(_common_decimals(re["std_dev"]))
    rows = [("Groups", "Name", "Variance", "Std.Dev.")]
    if s.n_groups:
        rows.append((s.group_name, INTERCEPT, var[0], sd[0]))
    rows.append(("Residual", "", var[1], sd[1]))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = ["Random effects:"]
    lines += [" " + " ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
    groups = f", groups:  {s.group_name}, {s.n_groups}" if s.n_groups else ""
    return lines + [f"Number of obs: {s.n_obs}{groups}"]


def _columns(table):
    """A table's columns as lists of Python floats, by name: pandas' access to a row
    or a column (iterrows, ``table[name]``) was most of the cost of a print."""
    return dict(zip(table.columns, table.to_numpy(dtype=np.float64).T.tolist()))


def _common_width(cells):
    width = max(map(len, cells))
    return [c.rjust(width) for c in cells]


def _format_p(p):
    if not np.isfinite(p):
        return "NA"
    return "< 2e-16" if p < _P_FLOOR else f"{p:.3g}"


def _stars(p):
    if not np.isfinite(p):
        return ""
    for cut, mark in ((0.001, "***"), (0.01, "**"), (0.05, "*"), (0.1, ".")):
        if p < cut:
            return mark
    return ""


def _fixed_effects(table, ddf):
    fe = _columns(table)
    # Four significant digits on the smallest standard error, as printCoefmat.
    decimals = _decimals(fe["std_error"], 4) if len(table) else 3
    z_test = ddf == "asymptotic"
    names = ["Estimate", "Std. Error"] + ([] if z_test else ["df"])
    names += ["z value", "Pr(>|z|)"] if z_test else ["t value", "Pr(>|t|)"]
    rows = []
    estimates = _format_column(fe["estimate"], decimals, 4)
    errors = _format_column(fe["std_error"], decimals, 4)
    columns = zip(table.index, estimates, errors, fe["df"], fe["t_value"], fe["p_value"])
    for name, estimate, error, df, t_value, p_value in columns:
        cells = [estimate, error]
        if not z_test:
            cells.append(f"{df:.3f}")
        cells += [f"{t_value:.3f}", _format_p(p_value)]
        rows.append((str(name), [c.replace("nan", "NA") for c in cells], _stars(p_value)))
    label_w = max([len(r[0]) for r in rows] + [0])
    widths = [max(len(n), *(len(r[1][k]) for r in rows)) for k, n in enumerate(names)]
    header = " ".join(n.rjust(w) for n, w in zip(names, widths))
    lines = ["Fixed effects:", " " * label_w + " " + header]
    for label, cells, stars in rows:
        body = " ".join(c.rjust(w) for c, w in zip(cells, widths))
        lines.append(f"{label:<{label_w}} {body} {stars}".rstrip())
    return lines + ["---", _SIGNIF_LEGEND]


def _icc(s):
    if not s.n_groups:
        return ["ICC: 0 (no groups)"]
    lo, hi = s.icc_interval
    pct = f"{100 * s.level:g}%"
    test = s.group_variance_test
    p = _format_p(test["p_value"])
    p = p if p.startswith("<") else f"= {p}"
    return [
        f"ICC: {s.icc:.4f}, {pct} profile-likelihood interval [{lo:.4f}, {hi:.4f}]",
        f"LRT of s2u = 0: chi2 = {test['statistic']:.4g}, p {p} "
        "(50:50 mixture of chi2(0) and chi2(1))",
    ]
