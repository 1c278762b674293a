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

Everything is numpy over a leading group axis: no loop over groups or rows.  The
functions are pure; :func:`fit` is the driver (EM with SQUAREM, then a quasi-Newton
polish of theta on the profiled criterion).
"""

import functools
import math
from dataclasses import dataclass

import numpy as np

from . import em

_LOG_2PI = math.log(2.0 * math.pi)

# lme4's isSingular: a diagonal entry of Lambda (a relative standard deviation) below
# this is at the boundary.
SINGULAR_TOL = 1e-4


@dataclass(frozen=True, eq=False)
class SlopeStats:
    """The sufficient statistics of the model with random slopes (standardized units).

    ``xtx`` (p, p), ``xty`` (p,), ``yty`` and ``n_obs`` over all rows; per group
    ``ztz`` (G, q, q), ``ztx`` (G, q, p) and ``zty`` (G, q).  Column 0 of X and of Z is
    the intercept.
    """

    xtx: np.ndarray
    xty: np.ndarray
    yty: float
    n_obs: int
    ztz: np.ndarray
    ztx: np.ndarray
    zty: np.ndarray

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
    m_inv: np.ndarray  # (G, q, q) M_j^-1
    logdet_m: float  # sum_j log det M_j
    A: np.ndarray  # (p, p)
    a_inv: np.ndarray  # (p, p)
    logdet_a: float
    beta: np.ndarray  # (p,)
    pwrss: float
    u: np.ndarray  # (G, q) spherical random effects M_j^-1 Lambda' (c_j - F_j beta)
    w: np.ndarray  # (G, q) c_j - F_j beta
    deviance: float  # the criterion (ML deviance or REML criterion)
    s2e: float
    W: np.ndarray | None = None  # (G, q, q) F_j A^-1 F_j' (REML: beta's share of each group)


def _left(mat, stack):
    """mat @ stack[g] for every g: one matrix product (BLAS) instead of G small ones."""
    G, a, b = stack.shape
    return np.matmul(mat, stack.transpose(1, 0, 2).reshape(a, G * b)).reshape(-1, G, b).transpose(1, 0, 2)


def _right(stack, mat):
    """stack[g] @ mat for every g, as one matrix product."""
    G, a, b = stack.shape
    return (stack.reshape(G * a, b) @ mat).reshape(G, a, mat.shape[1])


def _inverse_and_logdet(M):
    """M_g^-1 and sum_g log det M_g of a stack of small SPD matrices (M = Lambda'S
    Lambda + I has eigenvalues >= 1, so the determinant is well conditioned): closed
    forms for q <= 3 (numpy's batched LAPACK calls cost ~0.5 us a matrix), else
    Cholesky and inverse."""
    q = M.shape[1]
    if q == 1:
        return 1.0 / M, float(np.log(M[:, 0, 0]).sum())
    if q == 2:
        a, b, d = M[:, 0, 0], M[:, 0, 1], M[:, 1, 1]
        det = a * d - b * b
        inv = np.empty_like(M)
        inv[:, 0, 0] = d / det
        inv[:, 1, 1] = a / det
        inv[:, 0, 1] = inv[:, 1, 0] = -b / det
        return inv, float(np.log(det).sum())
    if q == 3:
        # The adjugate over the determinant.
        a, b, c = M[:, 0, 0], M[:, 0, 1], M[:, 0, 2]
        d, e, f = M[:, 1, 1], M[:, 1, 2], M[:, 2, 2]
        c00, c01, c02 = d * f - e * e, c * e - b * f, b * e - c * d
        det = a * c00 + b * c01 + c * c02
        inv = np.empty_like(M)
        inv[:, 0, 0], inv[:, 1, 1], inv[:, 2, 2] = c00 / det, (a * f - c * c) / det, (a * d - b * b) / det
        inv[:, 0, 1] = inv[:, 1, 0] = c01 / det
        inv[:, 0, 2] = inv[:, 2, 0] = c02 / det
        inv[:, 1, 2] = inv[:, 2, 1] = (b * c - a * e) / det
        return inv, float(np.log(det).sum())
    chol = np.linalg.cholesky(M)
    logdet = 2.0 * float(np.log(chol[:, np.arange(q), np.arange(q)]).sum())
    return _sym(np.linalg.inv(M)), logdet


# The (G, q, p) products are formed this many groups at a time: their temporaries
# then stay in the cache (at 1e5 groups whole-array products ran 4-10x slower per
# element) and the memory they take is bounded.
_GROUP_BLOCK = 4096


def _blocks(n_groups):
    for start in range(0, n_groups, _GROUP_BLOCK):
        yield slice(start, min(start + _GROUP_BLOCK, n_groups))


def _batched_vector(stack, vectors):
    """stack[g] @ vectors[g] for every g: (G, a)."""
    return np.einsum("gab,gb->ga", stack, vectors) if stack.shape[1] > 3 else (stack * vectors[:, None, :]).sum(-1)


def evaluate(stats, lam, method):
    """The profiled criterion and its pieces at Lambda."""
    q, p, n = stats.q, stats.n_params, stats.n_obs
    lt = lam.T
    M = _left(lt, _right(stats.ztz, lam))
    M[:, np.arange(q), np.arange(q)] += 1.0
    m_inv, logdet_m = _inverse_and_logdet(M)
    B = _left(lam, _right(m_inv, lt))  # (G, q, q)
    F2 = stats.ztx.reshape(-1, p)
    # sum_g F_g' B_g F_g = sum_g (B_g F_g)' F_g: a product over the stacked rows.
    A = stats.xtx.copy()
    for block in _blocks(B.shape[0]):
        F = stats.ztx[block]
        A -= (B[block] @ F).reshape(-1, p).T @ F.reshape(-1, p)
    A = _sym(A)
    Bc = _batched_vector(B, stats.zty)
    r = stats.xty - F2.T @ Bc.reshape(-1)
    chol_a = np.linalg.cholesky(A)
    logdet_a = 2.0 * float(np.log(np.diag(chol_a)).sum())
    a_inv = _sym(np.linalg.inv(A))
    beta = a_inv @ r
    pwrss = float(stats.yty - np.vdot(stats.zty, Bc) - beta @ r)
    w = stats.zty - F2.dot(beta).reshape(-1, q)
    u = _batched_vector(m_inv, w @ lam)  # M^-1 Lambda' w
    if method == "ml":
        dof, extra = n, 0.0
    else:
        dof, extra = n - p, logdet_a
    pwrss = max(pwrss, 1e-300)
    deviance = logdet_m + extra + dof * (1.0 + _LOG_2PI + math.log(pwrss / dof))
    W = _beta_share(stats.ztx, a_inv) if method == "reml" else None
    return Evaluation(lam, m_inv, logdet_m, A, a_inv, logdet_a, beta, pwrss, u, w, deviance, pwrss / dof, W)


def _beta_share(ztx, a_inv):
    """W_j = F_j A^-1 F_j' (G, q, q), in blocks of groups: the REML terms of the
    gradient, the posterior and the EM step are small products of it."""
    G, q, p = ztx.shape
    W = np.empty((G, q, q))
    for block in _blocks(G):
        F = ztx[block]
        FA = (F.reshape(-1, p) @ a_inv).reshape(F.shape)
        W[block] = np.einsum("gap,gbp->gab", FA, F)
    return W


def gradient_lambda(stats, ev, method):
    """d criterion / d Lambda (q, q), at the profiled beta and s2e (their own
    derivatives vanish there)."""
    lam, m_inv, u, w = ev.lam, ev.m_inv, ev.u, ev.w
    q = stats.q
    S_lam = _right(stats.ztz, lam)  # (G, q, q)
    # sum_g S_g Lambda M_g^-1, and the penalized residual sum of squares over s2e.
    grad = 2.0 * S_lam.transpose(1, 0, 2).reshape(q, -1) @ m_inv.reshape(-1, q)
    prss = -2.0 * w.T @ u + 2.0 * _batched_vector(S_lam, u).T @ u
    grad += prss / ev.s2e
    if method == "reml":
        # d log det A: -2 sum_j F_j A^-1 H_j' + 2 sum_j S_j Lambda Q_j, with H_j =
        # M_j^-1 Lambda' F_j and Q_j = H_j A^-1 H_j' = M_j^-1 Lambda' W_j Lambda M_j^-1.
        W_lam_m = _right(ev.W, lam) @ m_inv  # W_j Lambda M_j^-1
        Q = m_inv @ _left(lam.T, W_lam_m)
        grad -= 2.0 * W_lam_m.sum(axis=0)
        grad += 2.0 * S_lam.transpose(1, 0, 2).reshape(q, -1) @ Q.reshape(-1, q)
    return grad


def theta_of_gradient(grad, diagonal):
    """The entries of d/dLambda that theta holds (no sign flip)."""
    q = grad.shape[0]
    if diagonal:
        return np.diag(grad).copy()
    return grad[_theta_positions(q)]


def criterion_and_gradient(stats, theta, method, diagonal):
    lam = lambda_of(theta, stats.q, diagonal)
    ev = evaluate(stats, lam, method)
    return ev.deviance, theta_of_gradient(gradient_lambda(stats, ev, method), diagonal)


def posterior(stats, ev, method):
    """Each group's random effects given the data: the BLUPs b_j (G, q) and their
    covariance (G, q, q), conditional on beta (lme4's condVar) and, for REML, also
    over beta's uncertainty (what the REML EM step needs)."""
    lam = ev.lam
    blup = ev.u @ lam.T
    cond = ev.s2e * _left(lam, _right(ev.m_inv, lam.T))
    if method == "ml":
        return blup, cond, cond
    # K_j A^-1 K_j' with K_j = B_j F_j (d b_j / d(-beta)), B_j = Lambda M_j^-1 Lambda'.
    B = _left(lam, _right(ev.m_inv, lam.T))
    full = cond + ev.s2e * (B @ ev.W @ B)
    return blup, cond, full


def em_update(stats, sigma, s2e, method, diagonal):
    """One EM update of (Sigma, s2e): the E-step at them (beta at its GLS value), the
    M-step Sigma = mean_j E[b_j b_j'], s2e = E|e|^2 / n (for REML, over beta's
    posterior too: Laird, Lange & Stram 1987)."""
    lam = _relative_factor(sigma, s2e)
    ev = evaluate_at(stats, lam, s2e, method)
    return _m_step(stats, ev, method, diagonal)


def evaluate_at(stats, lam, s2e, method):
    """:func:`evaluate` with s2e set (not profiled): the E-step's s2e is the current
    one."""
    ev = evaluate(stats, lam, method)
    return Evaluation(**{**ev.__dict__, "s2e": s2e})


def _m_step(stats, ev, method, diagonal):
    n, p, G, q = stats.n_obs, stats.n_params, stats.n_groups, stats.q
    blup, _, full = posterior(stats, ev, method)
    sigma = (blup.T @ blup + full.sum(axis=0)) / G
    if diagonal:
        sigma = np.diag(np.diag(sigma))
    # E|y - X beta - Z b|^2 = |y - X beta - Z b_hat|^2 + trace terms.
    resid2 = ev.pwrss - float(np.vdot(ev.u, ev.u))
    trace_m = float(np.trace(ev.m_inv, axis1=1, axis2=2).sum())
    extra = G * q - trace_m
    if method == "reml":
        # sum_j tr(H_j A^-1 H_j') = sum_j tr(M_j^-2 Lambda' W_j Lambda).
        inner = _left(ev.lam.T, _right(ev.W, ev.lam))
        extra += p - float(np.einsum("gab,gbc,gca->", ev.m_inv, ev.m_inv, inner))
    s2e = (resid2 + ev.s2e * extra) / n
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
    """A fitted model with vector random effects, in standardized units."""

    theta: np.ndarray
    lam: np.ndarray
    beta: np.ndarray
    s2e: float
    sigma: np.ndarray  # (q, q) covariance of the random effects
    deviance: float
    blup: np.ndarray  # (G, q)
    cond_var: np.ndarray  # (G, q, q)
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

    current = objective(params)
    n_iter = 0
    for n_iter in range(1, min(em_iter, limits.max_iter) + 1):
        params, current, step, _ = em.squarem_step(update, objective, params, current, feasible=feasible)
        history.append(-2.0 * current)
        if np.max(np.abs(step) / np.maximum(np.abs(params), 1e-8)) < 1e-4:
            break  # close enough for the polish
    sigma, s2e = _params_sigma(params, q)
    theta0 = theta_of(_relative_factor(sigma, s2e), diagonal)

    def fun(theta):
        return criterion_and_gradient(stats, theta, method, diagonal)

    scale = max(abs(history[-1]), 1.0)
    # A quasi-Newton polish from a finite-difference Hessian of the analytic
    # gradient at EM's point (BFGS updates after it), with backtracking on the
    # criterion: near the optimum the criterion's changes reach its rounding, where
    # a Wolfe line search thrashes; this one accepts a step that lowers the
    # gradient there.
    theta, value, grad, n_polish = _quasi_newton(fun, theta0, limits.max_iter * 10, 1e-10 * scale)
    history.append(value)
    lam = lambda_of(theta, q, diagonal)
    theta = theta_of(lam, diagonal)
    lam = lambda_of(theta, q, diagonal)
    ev = evaluate(stats, lam, method)
    blup, cond, _ = posterior(stats, ev, method)
    singular = bool(np.min(np.abs(np.diag(lam))) < SINGULAR_TOL)
    converged = bool(np.max(np.abs(grad)) <= 1e-6 * scale or singular)
    return VectorResult(
        theta=theta,
        lam=lam,
        beta=ev.beta,
        s2e=ev.s2e,
        sigma=ev.s2e * lam @ lam.T,
        deviance=ev.deviance,
        blup=blup,
        cond_var=cond,
        coef_cov=ev.s2e * ev.a_inv,
        n_iter=n_iter + n_polish,
        converged=converged,
        singular=singular,
        history=np.asarray(history),
    )


def central_hessian(gradient, x, rel=1e-6, floor=1e-3):
    """The Hessian of a function from its gradient: central differences with steps
    ``rel * max(|x_k|, floor)``, symmetrized."""
    m = x.shape[0]
    h = rel * np.maximum(np.abs(x), floor)
    hess = np.empty((m, m))
    for k in range(m):
        e = np.zeros(m)
        e[k] = h[k]
        hess[:, k] = (gradient(x + e) - gradient(x - e)) / (2.0 * h[k])
    return _sym(hess)


def _hessian(fun, theta, grad):
    """The criterion's Hessian in theta, for the quasi-Newton start: forward
    differences of its gradient (``grad``, at theta; ``fun`` gives the value and
    gradient), one evaluation per parameter."""
    m = theta.shape[0]
    h = 1e-6 * np.maximum(np.abs(theta), 1e-3)
    hess = np.empty((m, m))
    for k in range(m):
        e = np.zeros(m)
        e[k] = h[k]
        hess[:, k] = (fun(theta + e)[1] - grad) / h[k]
    return _sym(hess)


def _quasi_newton(fun, theta, max_iter, gtol):
    """Minimize ``fun`` (value and gradient) from ``theta``: Newton's step on a
    finite-difference Hessian, then BFGS updates of it; a step is halved until the
    criterion falls (or, at its rounding level, until the gradient falls).  Returns
    theta, the value, the gradient and the iterations."""
    value, grad = fun(theta)
    hess = _hessian(fun, theta, grad)
    eig = np.linalg.eigvalsh(hess)
    if not eig.min() > 1e-10 * max(eig.max(), 1e-300):
        hess = np.eye(theta.shape[0]) * max(eig.max(), 1.0)
    n_iter = 0
    for n_iter in range(1, max_iter + 1):
        if np.max(np.abs(grad)) <= gtol:
            break
        step = -np.linalg.solve(hess, grad)
        t, accepted = 1.0, False
        while t > 1e-10:
            candidate = theta + t * step
            c_value, c_grad = fun(candidate)
            flat = abs(c_value - value) <= 1e-13 * max(abs(value), 1.0)
            if c_value <= value + 1e-4 * t * (grad @ step) or (flat and np.abs(c_grad).max() < np.abs(grad).max()):
                accepted = True
                break
            t *= 0.5
        if not accepted:
            break
        s_k, y_k = candidate - theta, c_grad - grad
        theta, value, grad = candidate, c_value, c_grad
        sy = s_k @ y_k
        if sy > 1e-300:
            hs = hess @ s_k
            hess = hess - np.outer(hs, hs) / (s_k @ hs) + np.outer(y_k, y_k) / sy
        if np.max(np.abs(s_k)) <= 1e-10 * max(1.0, np.max(np.abs(theta))):
            break
    return theta, value, grad, n_iter


def unprofiled_criterion(stats, sigma, s2e, method):
    """-2 log-likelihood (ML) or the REML criterion at (Sigma, s2e), beta at its GLS
    value: the objective EM raises."""
    ev = evaluate(stats, _relative_factor(sigma, s2e), method)
    n, p = stats.n_obs, stats.n_params
    if method == "ml":
        return ev.logdet_m + n * (_LOG_2PI + math.log(s2e)) + ev.pwrss / s2e
    return ev.logdet_m + ev.logdet_a + (n - p) * (_LOG_2PI + math.log(s2e)) + ev.pwrss / s2e
