"""Minimizing a smooth criterion of a few parameters from its value and analytic
gradient: Hessians by differences of the gradient, and a quasi-Newton polish.

Pure functions of callables; the vector engine (skhlm.engine.vector) polishes theta
with :func:`quasi_newton`, and the inference for random slopes takes
:func:`gradient_hessian` of lmerTest's deviance.
"""

import numpy as np


def _sym(a):
    return 0.5 * (a + a.T)


def gradient_hessian(gradient, x, rel=1e-6, floor=1e-3, at=None):
    """The Hessian of a function from its gradient, symmetrized: differences with steps
    ``rel * max(|x_k|, floor)``, central, or forward from ``at`` (the gradient at x:
    one evaluation per parameter instead of two)."""
    m = x.shape[0]
    h = rel * np.maximum(np.abs(x), floor)
    hess = np.empty((m, m))
    for k in range(m):
        e = np.zeros(m)
        e[k] = h[k]
        if at is None:
            hess[:, k] = (gradient(x + e) - gradient(x - e)) / (2.0 * h[k])
        else:
            hess[:, k] = (gradient(x + e) - at) / h[k]
    return _sym(hess)


def _positive_definite(hess):
    if not np.isfinite(hess).all():
        return False
    eig = np.linalg.eigvalsh(hess)
    return bool(eig.min() > 1e-10 * max(eig.max(), 1e-300))


def quasi_newton(fun, theta, max_iter, gtol):
    """Minimize ``fun`` from ``theta``: Newton's step on a finite-difference Hessian,
    then BFGS updates of it; a step is halved until the criterion falls (or, at its
    rounding level, until the gradient falls).

    ``fun`` returns the value, the gradient and anything else (such as the evaluation
    behind them), which is returned for the final point: theta, the value, the
    gradient, the iterations and that.
    """
    value, grad, extra = fun(theta)
    hess = gradient_hessian(lambda t: fun(t)[1], theta, at=grad)
    if not _positive_definite(hess):
        hess = np.eye(theta.shape[0]) * max(np.abs(hess).max(), 1.0)
    n_iter = 0
    for n_iter in range(1, max_iter + 1):
        if np.max(np.abs(grad)) <= gtol:
            break
        step = -np.linalg.solve(hess, grad)
        t, accepted = 1.0, False
        while t > 1e-10:
            candidate = theta + t * step
            c_value, c_grad, c_extra = fun(candidate)
            flat = abs(c_value - value) <= 1e-13 * max(abs(value), 1.0)
            if c_value <= value + 1e-4 * t * (grad @ step) or (flat and np.abs(c_grad).max() < np.abs(grad).max()):
                accepted = True
                break
            t *= 0.5
        if not accepted:
            break
        s_k, y_k = candidate - theta, c_grad - grad
        theta, value, grad, extra = candidate, c_value, c_grad, c_extra
        sy = s_k @ y_k
        if sy > 1e-300:
            hs = hess @ s_k
            hess = hess - np.outer(hs, hs) / (s_k @ hs) + np.outer(y_k, y_k) / sy
        if np.max(np.abs(s_k)) <= 1e-10 * max(1.0, np.max(np.abs(theta))):
            break
    return theta, value, grad, n_iter, extra

