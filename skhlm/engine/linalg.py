"""The few dense kernels of the engine, without per-call overhead.

The engine's matrices are p x p (p fixed effects), and EM calls these kernels a few
dozen times per fit: on small data scipy's input checks and dispatch, not the
arithmetic, were most of the fit.  These call the same LAPACK routines as
``scipy.linalg.cho_factor`` and ``cho_solve`` (``dpotrf`` and ``dpotrs``, upper
triangle), so the numbers are the same to the last bit.  Non-finite input is refused
from LAPACK's own report and the factor's diagonal (NaN fails ``dpotrf``; an infinity
leaves one on the diagonal) instead of by a scan of the input.
"""

import math

import numpy as np
from scipy.linalg import LinAlgError, lapack


def cho_factor(a):
    """The Cholesky factor of a symmetric positive definite float64 matrix, as
    ``scipy.linalg.cho_factor(a)``: ``(c, False)``, the factor in c's upper triangle.

    Raises
    ------
    ValueError
        If a has a NaN or an infinity.
    LinAlgError
        If a is not positive definite.
    """
    a = np.asarray(a, dtype=np.float64)
    if a.shape[0] == 0:
        return np.empty((0, 0)), False
    c, info = lapack.dpotrf(a, lower=False, clean=False)
    if info == 0 and not math.isfinite(c.trace()):
        raise ValueError("array must not contain infs or NaNs")
    if info > 0:
        if not np.isfinite(a).all():
            raise ValueError("array must not contain infs or NaNs")
        raise LinAlgError(f"{info}-th leading minor of the array is not positive definite")
    return c, False


def cho_solve(factor, b):
    """x with A x = b, from :func:`cho_factor`'s ``factor`` of A; b is (p,) or (p, k).
    A NaN or infinity in b gives NaN in x (scipy's cho_solve refuses it)."""
    c, _ = factor
    b = np.asarray(b, dtype=np.float64)
    if b.size == 0:
        return np.empty(b.shape)
    x, _ = lapack.dpotrs(c, b, lower=False)
    return x


def cho_inverse(factor):
    """A^-1 from :func:`cho_factor`'s ``factor`` of A."""
    return cho_solve(factor, np.eye(factor[0].shape[0]))


def class_sum(weights, matrices):
    """sum_k weights[k] * matrices[k], for (K,) weights and (K, p, p) matrices: one
    matrix-vector product (``np.tensordot(weights, matrices, axes=1)``, without its
    reshaping overhead)."""
    k = matrices.shape[0]
    return (weights @ matrices.reshape(k, -1)).reshape(matrices.shape[1:])
