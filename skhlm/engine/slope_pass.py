"""The pass over the groups of the vector engine (skhlm.engine.vector): at one Lambda,
the sums over the groups that the criterion, its gradient and the EM step are small
contractions of, and the random effects given the data.

Groups are taken in blocks of :data:`_GROUP_BLOCK`, so a block's products stay in the
cache and nothing of size G is formed but the results.  The sums add over any
partition of the groups.  Notation as in skhlm.engine.vector.
"""

import functools
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np


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

# Threads sharing a pass's blocks, each with at least _BLOCKS_PER_THREAD blocks (fewer
# groups: one thread, whose pass is too short to gain from a second).
_THREADS = min(2, os.cpu_count() or 1)
_BLOCKS_PER_THREAD = 8

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


def _blocks(start, stop):
    for first in range(start, stop, _GROUP_BLOCK):
        yield slice(first, min(first + _GROUP_BLOCK, stop))


# What a pass over the groups sums, besides fk and log det M (see GroupSums).
CRITERION, GRADIENT, EM_STEP = "criterion", "gradient", "em"


@dataclass(frozen=True, eq=False)
class GroupSums:
    """Sums over the groups at one Lambda, with F~_j = [F_j, c_j], K~_j = M_j^-1
    Lambda' F~_j and P~_j = S_j Lambda K~_j (each q x d, d = p + 1); vec is row-major.

    ``fk`` (q d, q d) is sum_j vec(F~_j) vec(K~_j)', which the criterion needs.  The
    gradient also needs ``pk`` (the same with P~_j) and ``slm`` = sum_j S_j Lambda
    M_j^-1; the EM step ``kk`` (K~_j with itself) and ``m_inv`` = sum_j M_j^-1.  A
    pass sums only what its mode needs (the others are None).
    """

    logdet_m: float
    fk: np.ndarray
    pk: np.ndarray | None = None
    slm: np.ndarray | None = None
    kk: np.ndarray | None = None
    m_inv: np.ndarray | None = None


def _kron(lam):
    """Lambda kron Lambda ((q^2, q^2)), without np.kron's general-case overhead."""
    q = lam.shape[0]
    return (lam[:, None, :, None] * lam[None, :, None, :]).reshape(q * q, q * q)


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
    EM_STEP): one pass over the groups, in blocks.  With many groups the blocks are
    shared between threads (numpy, BLAS and scipy's loop release the GIL), and their
    sums added."""
    q = stats.q
    kron = _kron(lam)
    n_blocks = -(-stats.n_groups // _GROUP_BLOCK)
    workers = min(_THREADS, n_blocks // _BLOCKS_PER_THREAD)
    if workers > 1:
        cut = np.linspace(0, n_blocks, workers + 1).round().astype(int) * _GROUP_BLOCK
        with ThreadPoolExecutor(workers) as pool:
            parts = list(pool.map(lambda k: _sums(stats, lam, kron, mode, cut[k], cut[k + 1]), range(workers)))
        logdet, fk, pk, slm, kk, m_inv_sum = (sum(values) for values in zip(*parts))
    else:
        logdet, fk, pk, slm, kk, m_inv_sum = _sums(stats, lam, kron, mode, 0, stats.n_groups)
    if mode == GRADIENT:
        # sum_j S_j Lambda M_j^-1 = sum_j S_j E_j' with E_j = M_j^-1 Lambda'.
        return GroupSums(logdet, fk, pk=pk, slm=np.einsum("acbc->ab", slm.reshape(q, q, q, q)))
    if mode == EM_STEP:
        return GroupSums(logdet, fk, kk=kk, m_inv=m_inv_sum.reshape(q, q))
    return GroupSums(logdet, fk)


def _sums(stats, lam, kron, mode, start, stop):
    """The raw sums of groups start to stop (see :func:`group_sums`)."""
    q = stats.q
    qd = q * (stats.n_params + 1)
    logdet = 0.0
    fk, pk, kk = np.zeros((qd, qd)), np.zeros((qd, qd)), np.zeros((qd, qd))
    slm, m_inv_sum = np.zeros((q * q, q * q)), np.zeros(q * q)
    for block in _blocks(start, min(stop, stats.n_groups)):
        ztz, ztd = stats.ztz[block], stats.ztd[block]
        m_inv, block_logdet, E, K = _group_terms(ztz, ztd, lam, kron)
        logdet += block_logdet
        K2 = K.reshape(-1, qd)
        fk += ztd.reshape(-1, qd).T @ K2
        if mode == GRADIENT:
            pk += _batched(_right(ztz, lam), K).reshape(-1, qd).T @ K2
            # sum_j vec(S_j) vec(E_j)', contracted in group_sums.
            slm += ztz.reshape(-1, q * q).T @ E.reshape(-1, q * q)
        elif mode == EM_STEP:
            kk += K2.T @ K2
            m_inv_sum += np.ones(K.shape[0]) @ m_inv.reshape(-1, q * q)
    return logdet, fk, pk, slm, kk, m_inv_sum


def contract(sums, X, q):
    """sum_j V_j X W_j' (q, q) from sum_j vec(V_j) vec(W_j)' (q d, q d) and X (d, d)."""
    d = X.shape[0]
    return np.einsum("akbl,kl->ab", sums.reshape(q, d, q, d), X)


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
    gamma, kron = np.append(-beta, 1.0), _kron(lam)
    for block in _blocks(0, G):
        m_inv, _, _, K = _group_terms(stats.ztz[block], stats.ztd[block], lam, kron)
        where = block if rows is None else rows[block]
        blup[where] = (K @ gamma) @ outer.T
        cond[where] = s2e * _left(outer, _right(m_inv, outer.T))
    return blup, cond
