"""Simulated two-level data sets for the random intercept model and, with
:func:`make_longitudinal`, for random slopes.

``y_ij = intercept + x_ij' beta + u_j + e_ij`` with ``u_j ~ N(0, s2u)`` and
``e_ij ~ N(0, s2e)``; rows i are nested in groups j.
"""

import math
from numbers import Integral, Real

import numpy as np
import pandas as pd
from sklearn.utils._param_validation import Interval, validate_params

__all__ = ["make_longitudinal", "make_multilevel_regression", "make_pisa_like"]

# scikit-learn's "random_state" constraint, with a numpy Generator too and no upper
# bound on an int seed (numpy's default_rng takes any non-negative int).
_RANDOM_STATE = [None, Interval(Integral, 0, None, closed="left"), np.random.RandomState, np.random.Generator]
_FRACTION = [Interval(Real, 0, 1, closed="left")]


def _rng(random_state):
    """The numpy Generator the data are drawn from.

    An int or None seeds a new Generator, and a Generator is used as it is, as
    ``np.random.default_rng`` does.  scikit-learn's ``check_random_state`` is not
    used: it makes a RandomState of an int or None, whose draws are not these.
    """
    if isinstance(random_state, np.random.RandomState):
        # Seeding from the RandomState (not sharing its private bit generator)
        # works on every numpy and still advances it, as scikit-learn does.
        return np.random.default_rng(random_state.randint(0, 2**31 - 1, size=4))
    return np.random.default_rng(random_state)


def _group_sizes(group_size, n_groups, rng):
    """Sizes of the groups: an int, a (low, high) tuple drawn uniformly, or one per group.

    ``validate_params`` has checked that an int is >= 1; the tuple and the array are
    checked here, against each other's form and ``n_groups``.
    """
    if isinstance(group_size, Integral):
        return np.full(n_groups, int(group_size))
    if isinstance(group_size, tuple):
        if len(group_size) != 2 or not all(
            isinstance(v, Integral) and not isinstance(v, bool) for v in group_size
        ):
            raise ValueError(
                f"group_size as a tuple must be (low, high), two integers; got {group_size!r}. "
                "Pass a list or array to give each group's size."
            )
        low, high = group_size
        if not 1 <= low <= high:
            raise ValueError(f"group_size=(low, high) needs 1 <= low <= high; got {group_size!r}.")
        return rng.integers(low, high, endpoint=True, size=n_groups)
    sizes = np.asarray(group_size)
    if sizes.shape != (n_groups,) or not np.issubdtype(sizes.dtype, np.integer):
        raise ValueError(
            f"group_size must be an int, a (low, high) tuple, or {n_groups} integers (one "
            f"per group); got an array of dtype {sizes.dtype} and shape {sizes.shape}."
        )
    if sizes.min() < 1:
        raise ValueError(f"every group size must be >= 1; got a minimum of {sizes.min()}.")
    return sizes.astype(np.int64)


def _level1(rng, codes, n_groups, n_features, feature_icc):
    """Standard normal columns with a share ``feature_icc`` of variance between groups."""
    between = rng.standard_normal((n_groups, n_features))[codes]
    within = rng.standard_normal((codes.shape[0], n_features))
    return math.sqrt(feature_icc) * between + math.sqrt(1.0 - feature_icc) * within


def _level2(rng, codes, n_groups, n_features):
    """Standard normal columns, one value per group."""
    return rng.standard_normal((n_groups, n_features))[codes]


def _response(rng, fixed, codes, n_groups, s2u, s2e):
    """The response ``fixed + u_j + e_ij`` and the random intercepts u."""
    u = math.sqrt(s2u) * rng.standard_normal(n_groups)
    return fixed + u[codes] + math.sqrt(s2e) * rng.standard_normal(codes.shape[0]), u


def _params(intercept, coef, s2u, s2e, u):
    return {
        "intercept": float(intercept),
        "coef": coef,
        "variance_components": {"group": float(s2u), "residual": float(s2e)},
        "random_effects": u,
    }


@validate_params(
    {
        "n_groups": [Interval(Integral, 1, None, closed="left")],
        "group_size": [Interval(Integral, 1, None, closed="left"), tuple, "array-like"],
        "n_level1": [Interval(Integral, 0, None, closed="left")],
        "n_level2": [Interval(Integral, 0, None, closed="left")],
        "icc": _FRACTION,
        "coef": ["array-like", None],
        "intercept": [Interval(Real, None, None, closed="neither")],
        "total_variance": [Interval(Real, 0, None, closed="neither")],
        "feature_icc": _FRACTION,
        "shuffle": ["boolean"],
        "return_params": ["boolean"],
        "random_state": _RANDOM_STATE,
    },
    prefer_skip_nested_validation=True,
)
def make_multilevel_regression(
    n_groups=100,
    group_size=20,
    n_level1=2,
    n_level2=1,
    icc=0.2,
    *,
    coef=None,
    intercept=0.0,
    total_variance=1.0,
    feature_icc=0.0,
    shuffle=False,
    return_params=False,
    random_state=None,
):
    """Generate a random intercept regression problem with grouped rows.

    Parameters
    ----------
    n_groups : int, default=100
        Number of groups (level-2 units).
    group_size : int, tuple (low, high) or array-like of shape (n_groups,), default=20
        Rows per group: the same for all groups (balanced design), drawn uniformly
        from the integers ``low, ..., high`` (both included), or given per group.
        A tuple always means ``(low, high)``; pass a list or an array for sizes.
    n_level1 : int, default=2
        Number of level-1 predictors ``x1, ...``: standard normal, varying within
        groups.
    n_level2 : int, default=1
        Number of level-2 predictors ``z1, ...``: standard normal, one value per
        group.
    icc : float in [0, 1), default=0.2
        Share of the variance of y given X that lies between groups:
        ``s2u = icc * total_variance`` and ``s2e = (1 - icc) * total_variance``.
    coef : array-like of shape (n_level1 + n_level2,), default=None
        Coefficients of the columns of X.  None draws each uniformly from [-2, 2].
    intercept : float, default=0.0
        The fixed intercept.
    total_variance : float, default=1.0
        ``s2u + s2e``, the variance of y given the predictors.
    feature_icc : float in [0, 1), default=0.0
        Share of each level-1 predictor's variance between groups:
        ``x_ij = sqrt(feature_icc) a_j + sqrt(1 - feature_icc) e_ij``.
    shuffle : bool, default=False
        Shuffle the rows; otherwise they are ordered by group.
    return_params : bool, default=False
        Also return the true parameters.
    random_state : None, int, numpy Generator or RandomState, default=None
        Seed for reproducible output.

    Returns
    -------
    X : DataFrame of shape (n_samples, n_level1 + n_level2)
        Columns ``x1, ..., z1, ...``: the level-1 columns, then the level-2 ones.
    y : Series of shape (n_samples,)
        The response, named "y".
    groups : Series of shape (n_samples,)
        Group of each row, integers ``0, ..., n_groups - 1``, named "group".
    params : dict
        Only with ``return_params=True``: ``"intercept"``, ``"coef"`` (a Series
        indexed by column), ``"variance_components"`` (``{"group": s2u,
        "residual": s2e}``) and ``"random_effects"`` (the u_j, shape (n_groups,)).

    See Also
    --------
    make_longitudinal : Repeated measures with random slopes.
    make_pisa_like : Students in schools, like the PISA analysis of lme4's fits.

    Notes
    -----
    The same ``random_state`` gives the same data.  The predictors are independent
    of one another and of the random effects, so fitting the true model recovers
    ``coef``, ``intercept`` and the variance components without bias.

    Examples
    --------
    >>> from skhlm.datasets import make_multilevel_regression
    >>> X, y, groups = make_multilevel_regression(
    ...     n_groups=30, group_size=(5, 15), coef=[1.0, -0.5, 2.0], random_state=0)
    >>> list(X.columns)
    ['x1', 'x2', 'z1']
    >>> X.shape[0] == y.shape[0] == groups.shape[0]
    True
    >>> bool((X.groupby(groups)["z1"].nunique() == 1).all())
    True
    >>> *_, params = make_multilevel_regression(icc=0.3, return_params=True, random_state=0)
    >>> params["variance_components"]
    {'group': 0.3, 'residual': 0.7}
    """
    n_groups, n_level1, n_level2 = int(n_groups), int(n_level1), int(n_level2)
    icc, feature_icc = float(icc), float(feature_icc)
    rng = _rng(random_state)

    sizes = _group_sizes(group_size, n_groups, rng)
    codes = np.repeat(np.arange(n_groups), sizes)
    columns = [f"x{k + 1}" for k in range(n_level1)] + [f"z{k + 1}" for k in range(n_level2)]
    if coef is None:
        coef = rng.uniform(-2.0, 2.0, size=len(columns))
    coef = np.asarray(coef, dtype=np.float64)
    if coef.shape != (len(columns),) or not np.isfinite(coef).all():
        raise ValueError(
            f"coef must hold {len(columns)} finite numbers (n_level1 + n_level2), one per "
            f"column of X; got shape {coef.shape}. Pass coef=None to draw them."
        )
    X = np.hstack(
        [_level1(rng, codes, n_groups, n_level1, feature_icc), _level2(rng, codes, n_groups, n_level2)]
    )
    s2u, s2e = icc * total_variance, (1.0 - icc) * total_variance
    y, u = _response(rng, intercept + X @ coef, codes, n_groups, s2u, s2e)

    order = rng.permutation(codes.shape[0]) if shuffle else slice(None)
    X = pd.DataFrame(X[order], columns=columns)
    y = pd.Series(y[order], name="y")
    groups = pd.Series(codes[order], name="group")
    if not return_params:
        return X, y, groups
    coef = pd.Series(coef, index=columns, name="coef")
    return X, y, groups, _params(intercept, coef, s2u, s2e, u)


# make_pisa_like: the seed's lme4 fits on PISA 2018 USA math, and our own choices.
_PISA_MEAN = 477.14  # RIM0 intercept
_PISA_MARGINAL = {"group": 1524.0, "residual": 6608.0}  # RIM0 variance components
_PISA_COEF = {"desk": 8.77, "escs": 25.0, "stratio": 0.55}  # escs: our choice
_PISA_SCHOOL_SIZE = (5, 54)  # mean 29.5: about 4,800 students in 164 schools, as the seed
_DESK_RATE = 0.85
_ESCS_ICC = 0.25
_STRATIO_MEAN, _STRATIO_SD, _STRATIO_CLIP = 15.0, 4.0, 2.5  # clipped at 5 and 25


def _clipped_normal_variance(c):
    """Var(clip(Z, -c, c)) for Z standard normal."""
    tail = 0.5 * math.erfc(c / math.sqrt(2.0))
    density = math.exp(-0.5 * c * c) / math.sqrt(2.0 * math.pi)
    return (1.0 - 2.0 * tail) - 2.0 * c * density + 2.0 * c * c * tail


def _pisa_population():
    """Conditional intercept and variance components that give the seed's RIM0.

    Every predictor is independent of the others and of u and e, so each adds its
    variance to RIM0's: school-level parts to s2u, student-level parts to s2e.
    """
    b = _PISA_COEF
    stratio_var = _STRATIO_SD**2 * _clipped_normal_variance(_STRATIO_CLIP)
    between = b["escs"] ** 2 * _ESCS_ICC + b["stratio"] ** 2 * stratio_var
    within = b["escs"] ** 2 * (1.0 - _ESCS_ICC) + b["desk"] ** 2 * _DESK_RATE * (1.0 - _DESK_RATE)
    s2u, s2e = _PISA_MARGINAL["group"] - between, _PISA_MARGINAL["residual"] - within
    intercept = _PISA_MEAN - b["desk"] * _DESK_RATE - b["stratio"] * _STRATIO_MEAN
    return intercept, s2u, s2e


@validate_params(
    {
        "n_schools": [Interval(Integral, 1, None, closed="left")],
        "random_state": _RANDOM_STATE,
        "return_params": ["boolean"],
    },
    prefer_skip_nested_validation=True,
)
def make_pisa_like(n_schools=164, *, random_state=2018, return_params=False):
    """Simulate students in schools shaped like PISA 2018 USA math achievement.

    The data are simulated, not real PISA data.  The population values are chosen
    so that lme4's three random intercept models of the seed analysis (fitted there
    to the real PISA 2018 USA file) come out about the same here:

    - RIM0 ``math ~ 1 + (1|school)``: intercept 477.14, s2u 1524, s2e 6608 (ICC 0.19);
    - RIM1 adds ``desk + escs``: the coefficient of desk is 8.77;
    - RIM2 adds ``stratio``: its coefficient is 0.55.

    Parameters
    ----------
    n_schools : int, default=164
        Number of schools.  School sizes are drawn uniformly from 5 to 54 students
        (mean 29.5, about 4,800 students in 164 schools as in the seed); the default
        gives 4,978 students.
    random_state : None, int, numpy Generator or RandomState, default=2018
        Seed; the default makes the data set the same on every call.
    return_params : bool, default=False
        Also return the true parameters.

    Returns
    -------
    frame : DataFrame of shape (n_students, 5)
        One row per student with columns ``school`` (labels "S001", ...),
        ``math`` (score), ``desk`` (1 if the student has a desk to study at home,
        else 0), ``escs`` (economic, social and cultural status) and ``stratio``
        (the school's student-teacher ratio, constant within a school).
    params : dict
        Only with ``return_params=True``: the conditional ``"intercept"``,
        ``"coef"`` (Series for desk, escs, stratio), ``"variance_components"``
        and ``"random_effects"`` of the full model, and the RIM0 variance
        components they imply, ``"marginal_variance_components"``.

    See Also
    --------
    make_multilevel_regression : Grouped rows of any design, for any ICC.
    skhlm.lmer : Fits the seed's models, e.g. ``"math ~ desk + escs + (1 | school)"``.

    Notes
    -----
    The model is ``math = b0 + b1 desk + b2 escs + b3 stratio + u_j + e_ij``.  The
    coefficient of escs, 25, is our choice (the seed does not report it), as are
    the predictors' distributions: desk is 1 with probability 0.85; escs is
    standard normal with a quarter of its variance between schools; stratio is
    ``15 + 4 z`` with z standard normal clipped to [-2.5, 2.5].  The predictors
    are independent, so the RIM0 variance components are the conditional ones plus
    the predictors' contributions between schools (``b2^2 / 4 + b3^2 Var(stratio)``)
    and within them (``3 b2^2 / 4 + b1^2 0.85 * 0.15``); s2u and s2e are chosen to
    make those sums 1524 and 6608, and ``b0`` to make the mean of math 477.14.

    Examples
    --------
    >>> from skhlm.datasets import make_pisa_like
    >>> frame = make_pisa_like()
    >>> list(frame.columns)
    ['school', 'math', 'desk', 'escs', 'stratio']
    >>> frame["school"].nunique(), len(frame)
    (164, 4978)
    >>> frame, params = make_pisa_like(return_params=True)
    >>> params["marginal_variance_components"]
    {'group': 1524.0, 'residual': 6608.0}
    >>> {k: round(v, 1) for k, v in params["variance_components"].items()}
    {'group': 1363.0, 'residual': 6129.4}
    """
    n_schools = int(n_schools)
    rng = _rng(random_state)
    codes = np.repeat(np.arange(n_schools), _group_sizes(_PISA_SCHOOL_SIZE, n_schools, rng))
    desk = (rng.random(codes.shape[0]) < _DESK_RATE).astype(np.int64)
    escs = _level1(rng, codes, n_schools, 1, _ESCS_ICC)[:, 0]
    z = np.clip(_level2(rng, codes, n_schools, 1)[:, 0], -_STRATIO_CLIP, _STRATIO_CLIP)
    stratio = _STRATIO_MEAN + _STRATIO_SD * z

    intercept, s2u, s2e = _pisa_population()
    coef = pd.Series(_PISA_COEF, name="coef")
    fixed = intercept + np.column_stack([desk, escs, stratio]) @ coef.to_numpy()
    math_score, u = _response(rng, fixed, codes, n_schools, s2u, s2e)

    width = max(3, len(str(n_schools)))
    labels = np.array([f"S{j + 1:0{width}d}" for j in range(n_schools)])
    frame = pd.DataFrame(
        {"school": labels[codes], "math": math_score, "desk": desk, "escs": escs, "stratio": stratio}
    )
    if not return_params:
        return frame
    params = _params(intercept, coef, s2u, s2e, u)
    params["marginal_variance_components"] = dict(_PISA_MARGINAL)
    return frame, params


@validate_params(
    {
        "n_subjects": [Interval(Integral, 1, None, closed="left")],
        "n_times": [Interval(Integral, 2, None, closed="left")],
        "intercept": [Real],
        "slope": [Real],
        "covariance": ["array-like"],
        "residual_variance": [Interval(Real, 0, None, closed="neither")],
        "missing": _FRACTION,
        "return_params": ["boolean"],
        "random_state": _RANDOM_STATE,
    },
    prefer_skip_nested_validation=True,
)
def make_longitudinal(
    n_subjects=18,
    n_times=10,
    *,
    intercept=251.4,
    slope=10.5,
    covariance=((612.1, 9.6), (9.6, 35.1)),
    residual_variance=654.9,
    missing=0.0,
    return_params=False,
    random_state=None,
):
    """Generate repeated measures with a random intercept and a random slope per
    subject: lme4's ``sleepstudy`` design, ``y ~ time + (1 + time | subject)``.

    Each subject j is measured at times 0, 1, ..., n_times - 1:
    ``y_tj = intercept + slope t + b0_j + b1_j t + e_tj`` with ``(b0_j, b1_j) ~
    N(0, covariance)`` and ``e_tj ~ N(0, residual_variance)``.  The defaults are
    lme4's REML estimates on sleepstudy (18 subjects, days 0 to 9).

    Parameters
    ----------
    n_subjects : int, default=18
        Number of subjects (groups).
    n_times : int, default=10
        Measurements per subject (before ``missing``), at times 0 to n_times - 1.
    intercept, slope : float
        The fixed intercept and slope of time.
    covariance : array-like of shape (2, 2)
        The covariance of each subject's (intercept, slope) deviations; symmetric
        positive semi-definite.
    residual_variance : float
        The variance of e_tj.
    missing : float in [0, 1), default=0.0
        Probability that a measurement at time 2 or later is dropped, at random (an
        unbalanced design); times 0 and 1 are always kept.
    return_params : bool, default=False
        Also return the true parameters.
    random_state : None, int, numpy Generator or RandomState, default=None
        Seed for reproducible output.

    Returns
    -------
    X : DataFrame of shape (n_samples, 1)
        One column, "time".
    y : Series of shape (n_samples,)
        The response, named "y".
    groups : Series of shape (n_samples,)
        The subject of each row, integers 0, ..., n_subjects - 1, named "subject".
    params : dict
        Only with ``return_params=True``: ``"intercept"``, ``"slope"``,
        ``"covariance"`` (2, 2), ``"residual_variance"`` and ``"random_effects"``
        (n_subjects, 2).

    See Also
    --------
    skhlm.LinearMixedRegressor : Fits ``y ~ time + (1 + time | subject)``.
    make_multilevel_regression : Random intercepts only.

    Examples
    --------
    >>> from skhlm.datasets import make_longitudinal
    >>> X, y, subject = make_longitudinal(random_state=0)
    >>> X.shape, int(subject.nunique())
    ((180, 1), 18)
    >>> X, y, subject = make_longitudinal(n_subjects=50, missing=0.3, random_state=0)
    >>> bool(subject.value_counts().min() >= 2)
    True
    """
    covariance = np.asarray(covariance, dtype=np.float64)
    if covariance.shape != (2, 2) or not np.allclose(covariance, covariance.T):
        raise ValueError(f"covariance must be a symmetric 2 x 2 matrix; got shape {covariance.shape}.")
    if np.linalg.eigvalsh(covariance).min() < -1e-12 * max(np.abs(covariance).max(), 1.0):
        raise ValueError("covariance must be positive semi-definite (its eigenvalues >= 0).")
    rng = _rng(random_state)
    effects = rng.multivariate_normal(np.zeros(2), covariance, size=n_subjects, method="eigh")
    subject = np.repeat(np.arange(n_subjects), n_times)
    time = np.tile(np.arange(n_times, dtype=np.float64), n_subjects)
    keep = np.ones(subject.size, dtype=bool)
    if missing > 0:
        keep = rng.random(subject.size) >= missing
        # Every subject keeps its first two kept draws at least: times 0 and 1.
        keep[np.flatnonzero(time < 2)] = True
    subject, time = subject[keep], time[keep]
    noise = rng.normal(0.0, math.sqrt(residual_variance), subject.size)
    y = intercept + slope * time + effects[subject, 0] + effects[subject, 1] * time + noise
    X = pd.DataFrame({"time": time})
    out = (X, pd.Series(y, name="y"), pd.Series(subject, name="subject"))
    if not return_params:
        return out
    params = {
        "intercept": float(intercept),
        "slope": float(slope),
        "covariance": covariance,
        "residual_variance": float(residual_variance),
        "random_effects": effects,
    }
    return (*out, params)
