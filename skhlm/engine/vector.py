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
over the groups (:class:`GroupSums`): sum_j F~_j' B_j F~_j holds A, r and c'Bc, and the
gradient's and the E-step's sums over the groups are quadratic forms in (-beta, 1).
One pass over the groups, in blocks that stay in the cache, forms the sums at a
Lambda; the sums add over any partition of the groups.  No loop over rows, and no
array of size G beyond the statistics and the BLUPs.  The functions are pure;
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

_LOG_2PI = math.log(2.0 * math.pi)

# lme4's isSingular: a diagonal entry of Lambda (a relative standard deviation) below
# this is at the boundary.
SINGULAR_TOL = 1e-4


@dataclass(frozen=True, eq=False)
class SlopeStats:
    """The sufficient statistics of the model with random slopes (standardized units).

    ``xtx`` (p, p), ``xty`` (p,), ``yty`` and ``n_obs`` over all rows; per group
    ``ztz`` (G, q, q) and ``ztd`` (G, q, p + 1), Z_j' [X_j, y_j]: ``ztx`` and ``zty``
    are its views.  Column 0 of X and of Z is the intercept.
    """

    xtx: np.ndarray
    xty: np.ndarray
    yty: float
    n_obs: int
    ztz: np.ndarray
    ztd: np.ndarray

    @property
    def ztx(self):
        return self.ztd[:, :, :-1]

    @property
    def zty(self):
        return self.ztd[:, :, -1]

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


# Groups per block of the pass over the groups: a block's (b, q, p + 1) products and
# (q (p + 1))^2 sums then stay in the cache, and the extra memory is bounded.
_GROUP_BLOCK = 4096

try:
    # scipy.sparse's loop for a block-sparse matrix times dense columns: with one
    # (q, q) block per group on the diagonal it is the batched product E_j F_j, 2x
    # faster than np.matmul on a stack of (3, 3) @ (3, 12) (0.43 ms and 0.83 ms for
    # 4096 groups).
    from scipy.sparse._sparsetools import bsr_matvecs as _bsr_matvecs
except ImportError:  # pragma: no cover - a private module of scipy; the fallback is tested
    _bsr_matvecs = None


@functools.lru_cache(maxsize=4)
def _diagonal_blocks(n_blocks):
    return np.arange(n_blocks + 1, dtype=np.int32), np.arange(n_blocks, dtype=np.int32)


def _batched(E, F):
    """E[g] @ F[g] for a stack of square E (b, q, q) and F (b, q, d)."""
    if _bsr_matvecs is None or E.shape[0] == 0:
        return np.matmul(E, F)
    b, q, d = F.shape
    indptr, indices = _diagonal_blocks(b)
    out = np.zeros((b, q, d))
    _bsr_matvecs(
        b, b, d, q, q, indptr, indices, np.ascontiguousarray(E).reshape(-1), np.ascontiguousarray(F).reshape(-1),
        out.reshape(-1),
    )
    return out


def _blocks(n_groups):
    for start in range(0, n_groups, _GROUP_BLOCK):
        yield slice(start, min(start + _GROUP_BLOCK, n_groups))


# What a pass over the groups sums, besides fk and log det M (see GroupSums).
CRITERION, GRADIENT, EM_STEP = "criterion", "gradient", "em"


@dataclass(frozen=True, eq=False)
class GroupSums:
    """Sums over the groups at one Lambda, with F~_j = [F_j, c_j], K~_j = M_j^-1
    Lambda' F~_j and P~_j = S_j Lambda K~_j (each q x d, d = p + 1); vec is row-major.

    ``fk`` (q d, q d) is sum_j vec(F~_j) vec(K~_j)', which the criterion needs.  The
    gradient also needs ``pk`` (the same with P~_j) and ``slm`` = sum_j S_j Lambda
    M_j^-1; the EM step ``kk`` (K~_j with itself) and ``m_inv`` = sum_j M_j^-1.  A
    pass sums only what its ``mode`` needs (the others are None).
    """

    mode: str
    logdet_m: float
    fk: np.ndarray
    pk: np.ndarray | None = None
    slm: np.ndarray | None = None
    kk: np.ndarray | None = None
    m_inv: np.ndarray | None = None


def _group_terms(ztz, ztd, lam, kron):
    """A block's M_j^-1, sum_j log det M_j, E_j = M_j^-1 Lambda' and K~_j = E_j F~_j
    (``kron``: Lambda kron Lambda)."""
    b, q, _ = ztz.shape
    # vec(Lambda' S_j Lambda) = vec(S_j) (Lambda kron Lambda): one product, no copies.
    M = (ztz.reshape(b, q * q) @ kron).reshape(b, q, q)
    M[:, np.arange(q), np.arange(q)] += 1.0
    m_inv, logdet = _inverse_and_logdet(M)
    E = _right(m_inv, lam.T)
    return m_inv, logdet, E, _batched(E, ztd)


def group_sums(stats, lam, mode):
    """The :class:`GroupSums` at Lambda for ``mode`` (CRITERION, GRADIENT or
    EM_STEP): one pass over the groups, in blocks."""
    q = stats.q
    qd = q * (stats.n_params + 1)
    kron = np.kron(lam, lam)
    logdet = 0.0
    fk, pk, kk = np.zeros((qd, qd)), np.zeros((qd, qd)), np.zeros((qd, qd))
    slm, m_inv_sum = np.zeros((q * q, q * q)), np.zeros(q * q)
    for block in _blocks(stats.n_groups):
        ztz, ztd = stats.ztz[block], stats.ztd[block]
        m_inv, block_logdet, E, K = _group_terms(ztz, ztd, lam, kron)
        logdet += block_logdet
        K2 = K.reshape(-1, qd)
        fk += ztd.reshape(-1, qd).T @ K2
        if mode == GRADIENT:
            pk += _batched(_right(ztz, lam), K).reshape(-1, qd).T @ K2
            # sum_j vec(S_j) vec(E_j)', contracted below.
            slm += ztz.reshape(-1, q * q).T @ E.reshape(-1, q * q)
        elif mode == EM_STEP:
            kk += K2.T @ K2
            m_inv_sum += np.ones(K.shape[0]) @ m_inv.reshape(-1, q * q)
    if mode == GRADIENT:
        # sum_j S_j Lambda M_j^-1 = sum_j S_j E_j' with E_j = M_j^-1 Lambda'.
        return GroupSums(mode, logdet, fk, pk=pk, slm=np.einsum("acbc->ab", slm.reshape(q, q, q, q)))
    if mode == EM_STEP:
        return GroupSums(mode, logdet, fk, kk=kk, m_inv=m_inv_sum.reshape(q, q))
    return GroupSums(mode, logdet, fk)


def _contract(sums, X, q):
    """sum_j V_j X W_j' (q, q) from sum_j vec(V_j) vec(W_j)' (q d, q d) and X (d, d)."""
    d = X.shape[0]
    return np.einsum("akbl,kl->ab", sums.reshape(q, d, q, d), X)


@dataclass(frozen=True, eq=False)
class Evaluation:
    """The criterion's pieces at one Lambda (see the module docstring)."""

    lam: np.ndarray  # (q, q)
    sums: GroupSums
    A: np.ndarray  # (p, p)
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
    return Evaluation(lam, sums, A, a_inv, logdet_a, beta, pwrss, deviance, pwrss / dof)


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
    return 2.0 * s.slm + 2.0 * _contract(s.pk - s.fk, X, stats.q)


def theta_of_gradient(grad, diagonal):
    """The entries of d/dLambda that theta holds (no sign flip)."""
    q = grad.shape[0]
    if diagonal:
        return np.diag(grad).copy()
    return grad[_theta_positions(q)]


def criterion_and_gradient(stats, theta, method, diagonal):
    lam = lambda_of(theta, stats.q, diagonal)
    ev = evaluate(stats, lam, method, GRADIENT)
    return ev.deviance, theta_of_gradient(gradient_lambda(stats, ev, method), diagonal)


def posterior(stats, lam, beta, s2e, outer=None, rows=None):
    """Each group's random effects given the data: the BLUPs b_j = Lambda u_j (G, q)
    and their covariance given beta, s2e Lambda M_j^-1 Lambda' (lme4's condVar,
    (G, q, q)), in one more pass over the groups.

    ``outer`` (default Lambda) replaces the Lambda outside u_j and M_j^-1, to give
    them in other units (L = c T Lambda for b in units c T b); group j is written to
    row ``rows[j]`` (default j).  Nothing of size G is formed besides the results.
    """
    G = stats.n_groups
    outer = lam if outer is None else outer
    blup, cond = np.empty((G, outer.shape[0])), np.empty((G, outer.shape[0], outer.shape[0]))
    gamma, kron = np.append(-beta, 1.0), np.kron(lam, lam)
    for block in _blocks(G):
        m_inv, _, _, K = _group_terms(stats.ztz[block], stats.ztd[block], lam, kron)
        where = block if rows is None else rows[block]
        blup[where] = (K @ gamma) @ outer.T
        cond[where] = s2e * _left(outer, _right(m_inv, outer.T))
    return blup, cond


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
    uu = _contract(s.kk, np.outer(ev.gamma, ev.gamma), q)
    inner = s.m_inv
    # E|y - X beta - Z b|^2 = |y - X beta - Z b_hat|^2 + s2e (G q - sum tr M^-1) (+ REML terms).
    extra = G * q - float(np.trace(s.m_inv))
    if method == "reml":
        Q = _contract(s.kk, ev.padded_a_inv(), q)
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

    current = objective(params)
    n_iter = 0
    for n_iter in range(1, min(em_iter, limits.max_iter) + 1):
        params, current, step, _ = em.squarem_step(update, objective, params, current, feasible=feasible)
        history.append(-2.0 * current)
        if np.max(np.abs(step) / np.maximum(np.abs(params), 1e-8)) < 1e-4:
            break  # close enough for the polish
    sigma, s2e = _params_sigma(params, q)
    theta0 = theta_of(_relative_factor(sigma, s2e), diagonal)

    last = {}

    def fun(theta):
        lam = lambda_of(theta, q, diagonal)
        ev = evaluate(stats, lam, method, GRADIENT)
        last[theta.tobytes()] = ev
        if len(last) > 8:  # the polish returns one of its latest points
            del last[next(iter(last))]
        return ev.deviance, theta_of_gradient(gradient_lambda(stats, ev, method), diagonal)

    scale = max(abs(history[-1]), 1.0)
    # A quasi-Newton polish from a finite-difference Hessian of the analytic
    # gradient at EM's point (BFGS updates after it), with backtracking on the
    # criterion: near the optimum the criterion's changes reach its rounding, where
    # a Wolfe line search thrashes; this one accepts a step that lowers the
    # gradient there.
    theta, value, grad, n_polish = quasi_newton(fun, theta0, limits.max_iter * 10, 1e-10 * scale)
    history.append(value)
    ev = last.get(theta.tobytes()) or evaluate(stats, lambda_of(theta, q, diagonal), method)
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
