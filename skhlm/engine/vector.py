"""Vector random effects, lme4's ``(1 + x | g)``: the profiled criterion, its
gradient, the EM update and the fit, batched over groups.

Notation (../shared/MODEL.md, "Vector random effects"): per group j the statistics
S_j = Z_j'Z_j (q x q), F_j = Z_j'X_j (q x p) and c_j = Z_j'y_j (q); Sigma =
s2e Lambda Lambda' with Lambda lower triangular (diagonal for lme4's ``||``) and theta
its lower triangle, column by column, as lme4's.  With M_j = Lambda' S_j Lambda + I and
B_j = Lambda M_j^-1 Lambda':

    A = X'X - sum_j F_j' B_j F_j,   r = X'y - sum_j F_j' B_j c_j,   beta = A^-1 r
    pwrss = y'y - sum_j c_j' B_j c_j - beta' r
    ML:   sum_j log det M_j + n (1 + log(2 pi pwrss / n))
    REML: sum_j log det M_j + log det A + (n - p) (1 + log(2 pi pwrss / (n - p)))

With F~_j = [F_j, c_j] (q x (p + 1)) and K~_j = M_j^-1 Lambda' F~_j, every piece of
the criterion, of its gradient and of the EM step is a small contraction of a few sums
over the groups (skhlm.engine.slope_pass.GroupSums): sum_j F~_j' B_j F~_j holds A, r
and c'Bc, and the gradient's and the E-step's sums over the groups are quadratic forms
in (-beta, 1).  One pass over the groups, in blocks that stay in the cache, forms the
sums at a Lambda; the sums add over any partition of the groups.  No loop over rows,
and no array of size G beyond the statistics and the BLUPs.  The functions are pure;
:func:`fit` is the driver (EM with SQUAREM, then a quasi-Newton polish of theta on the
profiled criterion).
"""

import dataclasses
import functools
import math
from dataclasses import dataclass

import numpy as np

from . import em
from .newton import quasi_newton
from .slope_pass import CRITERION, EM_STEP, GRADIENT, GroupSums, contract, group_sums

_LOG_2PI = math.log(2.0 * math.pi)

# lme4's isSingular: a diagonal entry of Lambda (a relative standard deviation) below
# this is at the boundary.
SINGULAR_TOL = 1e-4


@dataclass(frozen=True, eq=False)
class SlopeStats:
    """The sufficient statistics of the model with random slopes (standardized units).

    ``xtx`` (p, p), ``xty`` (p,), ``yty`` and ``n_obs`` over all rows; per group
    ``ztz`` (G, q, q) and ``ztd`` (G, q, p + 1), Z_j' [X_j, y_j].  Column 0 of X and
    of Z is the intercept.
    """

    xtx: np.ndarray
    xty: np.ndarray
    yty: float
    n_obs: int
    ztz: np.ndarray
    ztd: np.ndarray

    @property
    def n_groups(self):
        return self.ztz.shape[0]

    @property
    def q(self):
        return self.ztz.shape[1]

    @property
    def n_params(self):
        return self.xtx.shape[0]


@functools.lru_cache(maxsize=16)
def _theta_positions(q):
    """Rows and columns of Lambda's lower triangle, column by column (lme4's order)."""
    rows, cols = np.tril_indices(q)
    order = np.lexsort((rows, cols))
    return rows[order], cols[order]


def n_theta(q, diagonal):
    return q if diagonal else q * (q + 1) // 2


def lambda_of(theta, q, diagonal):
    """Lambda from theta (the lower triangle column by column, or the diagonal)."""
    lam = np.zeros((q, q))
    if diagonal:
        lam[np.diag_indices(q)] = theta
    else:
        lam[_theta_positions(q)] = theta
    return lam


def theta_of(lam, diagonal):
    """theta from Lambda, with each column's sign made to give a diagonal >= 0 (the
    criterion depends on Lambda Lambda' only)."""
    lam = lam * np.where(np.diag(lam) < 0, -1.0, 1.0)[None, :]
    q = lam.shape[0]
    if diagonal:
        return np.diag(lam).copy()
    return lam[_theta_positions(q)]


def _sym(a):
    return 0.5 * (a + np.swapaxes(a, -1, -2))


@dataclass(frozen=True, eq=False)
class Evaluation:
    """The criterion's pieces at one Lambda (see the module docstring)."""

    lam: np.ndarray  # (q, q)
    sums: GroupSums
    a_inv: np.ndarray  # (p, p)
    logdet_a: float
    beta: np.ndarray  # (p,)
    pwrss: float
    deviance: float  # the criterion (ML deviance or REML criterion)
    s2e: float

    @property
    def logdet_m(self):
        return self.sums.logdet_m

    @property
    def gamma(self):
        """(-beta, 1): F~_j gamma = c_j - F_j beta, K~_j gamma = the spherical effects."""
        return np.append(-self.beta, 1.0)

    def padded_a_inv(self):
        """A^-1 in the top-left of a (p + 1, p + 1) zero matrix."""
        p = self.beta.shape[0]
        out = np.zeros((p + 1, p + 1))
        out[:p, :p] = self.a_inv
        return out


def evaluate(stats, lam, method, mode=CRITERION):
    """The profiled criterion and its pieces at Lambda, with the sums of ``mode``:
    GRADIENT for :func:`gradient_lambda`, EM_STEP for the EM step."""
    q, p, n = stats.q, stats.n_params, stats.n_obs
    sums = group_sums(stats, lam, mode)
    # sum_j F~_j' B_j F~_j = sum_j F~_j' Lambda K~_j: A, r and sum_j c_j' B_j c_j.
    C = _sym(np.einsum("ac,akcl->kl", lam, sums.fk.reshape(q, p + 1, q, p + 1)))
    A = _sym(stats.xtx - C[:p, :p])
    r = stats.xty - C[:p, p]
    chol_a = np.linalg.cholesky(A)
    logdet_a = 2.0 * float(np.log(np.diag(chol_a)).sum())
    a_inv = _sym(np.linalg.inv(A))
    beta = a_inv @ r
    pwrss = max(float(stats.yty - C[p, p] - beta @ r), 1e-300)
    if method == "ml":
        dof, extra = n, 0.0
    else:
        dof, extra = n - p, logdet_a
    deviance = sums.logdet_m + extra + dof * (1.0 + _LOG_2PI + math.log(pwrss / dof))
    return Evaluation(lam, sums, a_inv, logdet_a, beta, pwrss, deviance, pwrss / dof)


def gradient_lambda(stats, ev, method):
    """d criterion / d Lambda (q, q), at the profiled beta and s2e (their own
    derivatives vanish there); ``ev`` from :func:`evaluate` in mode GRADIENT.

    With u_j = K~_j gamma and w_j = F~_j gamma: 2 sum_j S_j Lambda M_j^-1 + 2 sum_j
    (S_j Lambda u_j - w_j) u_j' / s2e, and for REML the derivative of log det A,
    2 sum_j (S_j Lambda K_j - F_j) A^-1 K_j' (K_j: K~_j without its y column).
    """
    s = ev.sums
    X = np.outer(ev.gamma, ev.gamma) / ev.s2e
    if method == "reml":
        X += ev.padded_a_inv()
    return 2.0 * s.slm + 2.0 * contract(s.pk - s.fk, X, stats.q)


def theta_of_gradient(grad, diagonal):
    """The entries of d/dLambda that theta holds (no sign flip)."""
    q = grad.shape[0]
    if diagonal:
        return np.diag(grad).copy()
    return grad[_theta_positions(q)]


def criterion_and_gradient(stats, theta, method, diagonal):
    """The criterion and its gradient in theta."""
    return _polish_point(stats, theta, method, diagonal)[:2]


def _polish_point(stats, theta, method, diagonal):
    """The criterion, its gradient in theta and the evaluation behind them."""
    ev = evaluate(stats, lambda_of(theta, stats.q, diagonal), method, GRADIENT)
    return ev.deviance, theta_of_gradient(gradient_lambda(stats, ev, method), diagonal), ev


def em_update(stats, sigma, s2e, method, diagonal):
    """One EM update of (Sigma, s2e): the E-step at them (beta at its GLS value), the
    M-step Sigma = mean_j E[b_j b_j'], s2e = E|e|^2 / n (for REML, over beta's
    posterior too: Laird, Lange & Stram 1987)."""
    lam = _relative_factor(sigma, s2e)
    ev = evaluate_at(stats, lam, s2e, method, EM_STEP)
    return _m_step(stats, ev, method, diagonal)


def evaluate_at(stats, lam, s2e, method, mode):
    """:func:`evaluate` with s2e set (not profiled): the E-step's s2e is the current
    one, and lmerTest's deviance takes sigma as a parameter."""
    return dataclasses.replace(evaluate(stats, lam, method, mode), s2e=s2e)


def _m_step(stats, ev, method, diagonal):
    """The M-step from the E-step's sums: E[b_j] = Lambda u_j, Cov[b_j] = s2e Lambda
    (M_j^-1 + Q_j) Lambda' with Q_j = K_j A^-1 K_j' (REML's share of beta), so that
    sum_j E[b_j b_j'] = Lambda (sum u u' + s2e sum (M^-1 + Q)) Lambda'."""
    n, p, G, q = stats.n_obs, stats.n_params, stats.n_groups, stats.q
    s, lam = ev.sums, ev.lam
    uu = contract(s.kk, np.outer(ev.gamma, ev.gamma), q)
    inner = s.m_inv
    # E|y - X beta - Z b|^2 = |y - X beta - Z b_hat|^2 + s2e (G q - sum tr M^-1) (+ REML terms).
    extra = G * q - float(np.trace(s.m_inv))
    if method == "reml":
        Q = contract(s.kk, ev.padded_a_inv(), q)
        inner = inner + Q
        extra += p - float(np.trace(Q))
    sigma = lam @ (uu + ev.s2e * inner) @ lam.T / G
    if diagonal:
        sigma = np.diag(np.diag(sigma))
    s2e = (ev.pwrss - float(np.trace(uu)) + ev.s2e * extra) / n
    return _sym(sigma), s2e


def _relative_factor(sigma, s2e):
    """Lambda with Lambda Lambda' = Sigma / s2e: a Cholesky factor, with zero columns
    where Sigma is singular."""
    rel = sigma / s2e
    q = rel.shape[0]
    lam = np.zeros((q, q))
    for k in range(q):  # q is small: an LDL'-style Cholesky that tolerates zeros
        d = rel[k, k] - lam[k, :k] @ lam[k, :k]
        if d <= 1e-14 * max(rel[k, k], 1e-300):
            continue
        lam[k, k] = math.sqrt(d)
        lam[k + 1 :, k] = (rel[k + 1 :, k] - lam[k + 1 :, :k] @ lam[k, :k]) / lam[k, k]
    return lam


@dataclass(frozen=True, eq=False)
class VectorResult:
    """A fitted model with vector random effects, in standardized units (the random
    effects given the data: :func:`posterior`)."""

    theta: np.ndarray
    lam: np.ndarray
    beta: np.ndarray
    s2e: float
    sigma: np.ndarray  # (q, q) covariance of the random effects
    deviance: float
    coef_cov: np.ndarray  # (p, p) s2e A^-1
    n_iter: int
    converged: bool
    singular: bool
    history: np.ndarray  # the criterion after each EM cycle and the polish


def _sigma_params(sigma, s2e):
    rows, cols = _theta_positions(sigma.shape[0])
    return np.append(sigma[rows, cols], s2e)


def _params_sigma(params, q):
    sigma = np.zeros((q, q))
    rows, cols = _theta_positions(q)
    sigma[rows, cols] = params[:-1]
    sigma[cols, rows] = params[:-1]
    return sigma, params[-1]


def fit(stats, method, *, diagonal=False, limits=em.Limits(), em_iter=1):
    """Fit by EM (SQUAREM-accelerated) from lme4's start, then polish theta on the
    profiled criterion by quasi-Newton steps with the analytic gradient."""
    q = stats.q
    lam = np.eye(q)  # lme4's start
    ev = evaluate(stats, lam, method)
    params = _sigma_params(ev.s2e * lam @ lam.T, ev.s2e)
    history = [ev.deviance]

    def update(x):
        sigma, s2e = _params_sigma(x, q)
        sigma, s2e = em_update(stats, sigma, s2e, method, diagonal)
        return _sigma_params(sigma, s2e)

    def objective(x):  # the log-likelihood to be raised (minus half the criterion)
        sigma, s2e = _params_sigma(x, q)
        return -0.5 * unprofiled_criterion(stats, sigma, s2e, method)

    def feasible(x):
        sigma, s2e = _params_sigma(x, q)
        if not (np.isfinite(x).all() and s2e > 0):
            return False
        return bool(np.linalg.eigvalsh(sigma).min() >= -1e-12 * max(np.trace(sigma), 1e-300))

    current = -0.5 * ev.deviance  # the objective at the start (its s2e is the profiled one)
    n_iter = 0
    for n_iter in range(1, min(em_iter, limits.max_iter) + 1):
        params, current, step, _ = em.squarem_step(update, objective, params, current, feasible=feasible)
        history.append(-2.0 * current)
        if np.max(np.abs(step) / np.maximum(np.abs(params), 1e-8)) < 1e-4:
            break  # close enough for the polish
    sigma, s2e = _params_sigma(params, q)
    theta0 = theta_of(_relative_factor(sigma, s2e), diagonal)

    def fun(theta):
        return _polish_point(stats, theta, method, diagonal)

    scale = max(abs(history[-1]), 1.0)
    # A quasi-Newton polish from a finite-difference Hessian of the analytic
    # gradient at EM's point (BFGS updates after it), with backtracking on the
    # criterion: near the optimum the criterion's changes reach its rounding, where
    # a Wolfe line search thrashes; this one accepts a step that lowers the
    # gradient there.
    # ev: the final point's evaluation.
    theta, value, grad, n_polish, ev = quasi_newton(fun, theta0, limits.max_iter * 10, 1e-10 * scale)
    history.append(value)
    # The columns' signs made positive: Lambda D (D = diag(+-1)) gives the same
    # criterion, beta, s2e and BLUPs.
    theta = theta_of(lambda_of(theta, q, diagonal), diagonal)
    lam = lambda_of(theta, q, diagonal)
    singular = bool(np.min(np.abs(np.diag(lam))) < SINGULAR_TOL)
    converged = bool(np.max(np.abs(grad)) <= 1e-6 * scale or singular)
    return VectorResult(
        theta=theta,
        lam=lam,
        beta=ev.beta,
        s2e=ev.s2e,
        sigma=ev.s2e * lam @ lam.T,
        deviance=ev.deviance,
        coef_cov=ev.s2e * ev.a_inv,
        n_iter=n_iter + n_polish,
        converged=converged,
        singular=singular,
        history=np.asarray(history),
    )


def unprofiled_criterion(stats, sigma, s2e, method):
    """-2 log-likelihood (ML) or the REML criterion at (Sigma, s2e), beta at its GLS
    value: the objective EM raises."""
    ev = evaluate(stats, _relative_factor(sigma, s2e), method)
    n, p = stats.n_obs, stats.n_params
    if method == "ml":
        return ev.logdet_m + n * (_LOG_2PI + math.log(s2e)) + ev.pwrss / s2e
    return ev.logdet_m + ev.logdet_a + (n - p) * (_LOG_2PI + math.log(s2e)) + ev.pwrss / s2e
