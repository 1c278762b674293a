"""Naive dense implementations of the random intercept model, for tests only.

Everything here builds each group's full covariance V_j = s2e I + s2u 1 1' (or the
whole n x n V) and uses textbook formulas: slow, obviously right.
"""

import numpy as np
from scipy import stats as st

from skhlm.data.stats import GroupSums, SufficientStats


def naive_stats(X, y, codes):
    """Sufficient statistics of an explicit design (intercept column included)."""
    n_groups = codes.max() + 1
    gx = np.zeros((n_groups, X.shape[1]))
    np.add.at(gx, codes, X)
    gy = np.zeros(n_groups)
    np.add.at(gy, codes, y)
    return SufficientStats(
        xtx=X.T @ X,
        xty=X.T @ y,
        yty=float(y @ y),
        n_obs=X.shape[0],
        groups=GroupSums.of(np.bincount(codes), gx, gy),
    )


def full_cov(codes, s2u, s2e):
    same = codes[:, None] == codes[None, :]
    return s2e * np.eye(codes.size) + s2u * same


def ml_log_likelihood(X, y, codes, beta, s2u, s2e):
    """sum_j log N(y_j; X_j beta, s2e I + s2u 1 1'), group by group."""
    total = 0.0
    for j in np.unique(codes):
        rows = codes == j
        cov = s2e * np.eye(rows.sum()) + s2u
        total += st.multivariate_normal(X[rows] @ beta, cov).logpdf(y[rows])
    return total


def reml_log_likelihood(X, y, codes, s2u, s2e):
    """The REML log-likelihood from the dense V (Harville 1974; lme4's constants)."""
    n, p = X.shape
    v = full_cov(codes, s2u, s2e)
    v_inv = np.linalg.inv(v)
    xvx = X.T @ v_inv @ X
    beta = np.linalg.solve(xvx, X.T @ v_inv @ y)
    r = y - X @ beta
    crit = (
        (n - p) * np.log(2 * np.pi)
        + np.linalg.slogdet(v)[1]
        + np.linalg.slogdet(xvx)[1]
        + r @ v_inv @ r
    )
    return -0.5 * crit


def posterior_u(X, y, codes, beta, s2u, s2e):
    """E[u | y] and diag Var[u | y] at fixed beta: s2u Z'V^-1 (y - X beta), ..."""
    z = (codes[:, None] == np.unique(codes)[None, :]).astype(float)
    v_inv = np.linalg.inv(full_cov(codes, s2u, s2e))
    mean = s2u * z.T @ v_inv @ (y - X @ beta)
    var = s2u - s2u**2 * np.einsum("ij,ik,kj->j", z, v_inv, z)
    return mean, var


def reml_posterior(X, y, codes, s2u, s2e):
    """REML moments with beta integrated out: P = V^-1 - V^-1 X (X'V^-1X)^-1 X'V^-1.

    Returns E[u|y], diag Var[u|y] = s2u - s2u^2 diag(Z'PZ), and
    E[e'e|y] = e_hat'e_hat + n s2e - s2e^2 tr P.
    """
    n = y.size
    z = (codes[:, None] == np.unique(codes)[None, :]).astype(float)
    v_inv = np.linalg.inv(full_cov(codes, s2u, s2e))
    xvx = X.T @ v_inv @ X
    p_mat = v_inv - v_inv @ X @ np.linalg.solve(xvx, X.T @ v_inv)
    u_hat = s2u * z.T @ p_mat @ y
    var = s2u - s2u**2 * np.diag(z.T @ p_mat @ z)
    e_hat = s2e * p_mat @ y
    expected_ee = e_hat @ e_hat + n * s2e - s2e**2 * np.trace(p_mat)
    return u_hat, var, expected_ee
