"""The sufficient statistics of the random intercept model, as the fit reads them.

Everything the fit needs (notation: skhlm.engine.criterion): the cross-products X'X,
X'y, y'y and, per group, the count, the column sums and the response sum, of the
standardized problem (skhlm.data.units).  :mod:`skhlm.data.accumulator` builds them
from the rows; after that nothing in the fit touches the rows again.  The (G, k)
group sums are never rescaled or copied: they are read through a linear map
(:class:`GroupSums`), and summed once per distinct group size
(:class:`SizeClasses`).
"""

from dataclasses import dataclass, field, replace

import numpy as np
from scipy.linalg import lapack

from ..engine import linalg as la

@dataclass(frozen=True)
class SizeClasses:
    """Sums over the groups of each distinct size.

    Every quantity of the likelihood and of an EM update is a sum over groups of a
    function of n_j times s_j s_j', s_j t_j, t_j^2, s_j or t_j (for instance
    A = X'X - sum_j c(n_j) s_j s_j').  Summed once per size class, they make each
    update cost O(K p^2) for K distinct sizes, whatever the number of groups
    (K <= sqrt(2 n)).
    """

    size: np.ndarray  # (K,) the distinct n_j
    count: np.ndarray  # (K,) groups of that size
    ss: np.ndarray  # (K, p, p) sum of s_j s_j'
    st: np.ndarray  # (K, p) sum of s_j t_j
    tt: np.ndarray  # (K,) sum of t_j^2
    s: np.ndarray  # (K, p) sum of s_j
    t: np.ndarray  # (K,) sum of t_j

    def residual_squares(self, beta):
        """sum over the groups of each class of r_j^2, r_j = t_j - s_j' beta."""
        ss_beta = self.ss @ beta
        return self.tt - 2.0 * self.st @ beta + ss_beta @ beta

    def cross_residuals(self, beta_a, beta_b):
        """sum over the groups of each class of r_j(beta_a) r_j(beta_b)."""
        return self.tt - self.st @ (beta_a + beta_b) + (self.ss @ beta_a) @ beta_b

    def gram(self, weights):
        """sum_k weights_k sum_{j in k} s_j s_j' (p, p)."""
        return la.class_sum(weights, self.ss)

    def weighted_sr(self, weights, beta=None):
        """sum_k weights_k sum_{j in k} s_j r_j(beta) (p,); r_j = t_j when beta is None."""
        if beta is None:
            return weights @ self.st
        return weights @ (self.st - self.ss @ beta)

    def traces(self, matrix):
        """tr(matrix sum_{j in k} s_j s_j') for each class k, for a symmetric matrix."""
        return self.ss.reshape(self.size.shape[0], -1) @ matrix.reshape(-1)

    def constrained(self, right, both, shift):
        """The sums of s_j -> N's_j and t_j -> t_j - s_j' shift, with ``right(m)`` =
        m N and ``both(m)`` = N' m N (a profile's constraint on beta)."""
        ss_shift = self.ss @ shift
        return replace(
            self,
            ss=np.ascontiguousarray(both(self.ss)),
            st=right(self.st - ss_shift),
            tt=self.tt - 2.0 * self.st @ shift + ss_shift @ shift,
            s=right(self.s),
            t=self.t - self.s @ shift,
        )


# Groups per block of PerGroup.gram: 16384 x 11 float64 (1.4 MiB) was fastest at 1e5
# groups (4096: +20%, all at once: +100%).
_GRAM_BLOCK = 1 << 14


@dataclass(frozen=True)
class PerGroup:
    """The same sums as :class:`SizeClasses`, one "class" per group: for weighted
    fits, whose group sizes (the sums of the weights) are rarely equal.

    Holds s_j (G, p) and t_j (G,); each sum over groups is a product with them, so an
    update costs O(G p^2), and nothing of size G p^2 is formed.
    """

    size: np.ndarray  # (G,) n_j: the group's sum of weights
    s: np.ndarray  # (G, p)
    t: np.ndarray  # (G,)

    @property
    def count(self):
        return np.ones(self.size.shape[0])

    def residuals(self, beta):
        return self.t - self.s @ beta

    def residual_squares(self, beta):
        return self.residuals(beta) ** 2

    def cross_residuals(self, beta_a, beta_b):
        return self.residuals(beta_a) * self.residuals(beta_b)

    def gram(self, weights):
        # B'B with B = sqrt(|weights|) s, a symmetric rank-k update (BLAS syrk, half
        # the work of a general product), in blocks of groups that stay in the cache:
        # 2x faster than (s' * weights) @ s at 1e5 groups.
        if (weights >= 0).all():
            sign = 1.0
        elif (weights <= 0).all():
            sign = -1.0
        else:
            return (self.s.T * weights) @ self.s
        root = np.sqrt(sign * weights)
        n_groups, p = self.s.shape
        out = np.zeros((p, p))
        block = np.empty((min(n_groups, _GRAM_BLOCK), p))
        for start in range(0, n_groups, _GRAM_BLOCK):
            stop = min(start + _GRAM_BLOCK, n_groups)
            scaled = block[: stop - start]
            np.multiply(self.s[start:stop], root[start:stop, None], out=scaled)
            out += scaled.T @ scaled
        return sign * out

    def weighted_sr(self, weights, beta=None):
        r = self.t if beta is None else self.residuals(beta)
        return (weights * r) @ self.s

    def traces(self, matrix):
        # s_j' matrix s_j, in the gram's blocks of groups (1.5x faster than at once).
        n_groups = self.s.shape[0]
        out = np.empty(n_groups)
        for start in range(0, n_groups, _GRAM_BLOCK):
            block = self.s[start : start + _GRAM_BLOCK]
            np.einsum("ij,ij->i", block @ matrix, block, out=out[start : start + _GRAM_BLOCK])
        return out

    def constrained(self, right, both, shift):
        return replace(self, s=right(self.s), t=self.t - self.s @ shift)


@dataclass(frozen=True)
class _RawClassSums:
    size: np.ndarray  # (K,)
    count: np.ndarray  # (K,)
    products: np.ndarray  # (K, q, q)
    sums: np.ndarray  # (K, q)


def _raw_class_sums(sizes, x, y):
    """Per size class, the cross-products and sums of the rows D_j = [n_j, x_j', t_j].

    ``sizes`` is ascending, so each class is a contiguous slice of the groups: one
    product per class, no gather.  Returns the distinct sizes, the classes' counts,
    P (K, q, q) = sum_j D_j D_j' and S (K, q) = sum_j D_j over each class (q = k + 2).
    The n_j column is constant within a class, so its products come from the sums.
    """
    n_groups, k = x.shape
    starts = np.flatnonzero(np.diff(sizes, prepend=-1.0))
    stops = np.append(starts[1:], n_groups)
    products = np.empty((starts.shape[0], k + 2, k + 2))
    sums = np.empty((starts.shape[0], k + 2))
    # Column sums as products with ones (BLAS): 4x faster than x.sum(axis=0).
    ones = np.ones(int((stops - starts).max(initial=0)))
    for c, (start, stop) in enumerate(zip(starts, stops)):
        xc, yc = x[start:stop], y[start:stop]
        products[c, 1:-1, 1:-1] = xc.T @ xc
        products[c, 1:-1, -1] = products[c, -1, 1:-1] = yc @ xc
        products[c, -1, -1] = yc @ yc
        sums[c, 1:-1] = ones[: stop - start] @ xc
        sums[c, -1] = yc.sum()
    size = sizes[starts]
    count = (stops - starts).astype(np.float64)
    sums[:, 0] = count * size
    products[:, 0, :] = size[:, None] * sums
    products[:, :, 0] = products[:, 0, :]
    return _RawClassSums(size, count, products, sums)


def _mapped_classes(raw, x_map, y_map):
    """:class:`SizeClasses` of s_j = x_map' D_j and t_j = y_map' D_j, from the raw
    class sums (O(K k^2 p))."""
    p_x = raw.products @ x_map  # (K, q, p)
    p_y = raw.products @ y_map  # (K, q)
    return SizeClasses(
        size=raw.size,
        count=raw.count,
        ss=x_map.T @ p_x,
        st=p_y @ x_map,
        tt=p_y @ y_map,
        s=raw.sums @ x_map,
        t=raw.sums @ y_map,
    )


@dataclass(frozen=True)
class GroupSums:
    """Per-group sums, as the pass built them, and the linear map to the model's.

    Row j holds D_j = [n_j, x_j', t_j]: the group's size and its sums of the centered
    columns and response.  The model's sums are s_j = x_map' D_j and t_j = y_map' D_j:
    standardizing, dropping redundant columns and reparametrizing (the profile's
    constraints) change the small maps, never the (G, k) array.

    Rows are the groups in order of size (:class:`skhlm.data.groups.GroupCoding`); the
    per-group results are returned in the order of the labels (``level``).
    """

    sizes: np.ndarray  # (G,) float64, ascending
    x: np.ndarray  # (G, k)
    y: np.ndarray  # (G,)
    level: np.ndarray  # (G,) row j holds the sums of label number level[j]
    x_map: np.ndarray  # (k + 2, p)
    y_map: np.ndarray  # (k + 2,)
    # With random slopes, (G, s, k + 1): each slope's products with [x, y], centered
    # as x and y are (skhlm.data.row_pass); mapped by skhlm.data.slopes.
    z: np.ndarray = None

    @classmethod
    def of(cls, sizes, xsum, ysum):
        """From the model's s_j and t_j, given in any order of the groups."""
        sizes = np.asarray(sizes, dtype=np.float64)
        level = np.argsort(sizes, kind="stable")
        p = xsum.shape[1]
        x_map = np.vstack([np.zeros((1, p)), np.eye(p), np.zeros((1, p))])
        y_map = np.zeros(p + 2)
        y_map[-1] = 1.0
        return cls(sizes[level], xsum[level], ysum[level], level, x_map, y_map)

    @property
    def n_groups(self):
        return self.sizes.shape[0]

    def mapped(self, x_map, y_map):
        return replace(self, x_map=x_map, y_map=y_map)

    def per_group(self):
        """:class:`PerGroup` of s_j = x_map' D_j and t_j = y_map' D_j: O(G k p)."""
        return PerGroup(self.sizes, self._design_times(self.x_map), self._design_times(self.y_map))

    def size_classes(self):
        """:class:`SizeClasses` of s_j = x_map' D_j and t_j = y_map' D_j: O(G k^2)."""
        return _mapped_classes(_raw_class_sums(self.sizes, self.x, self.y), self.x_map, self.y_map)

    def residual_sums(self, beta, by_level=True):
        """r_j(beta) = t_j - s_j' beta, by label (or in size order): one product
        with the (G, k) sums."""
        r = self._design_times(self.y_map - self.x_map @ beta)
        return self.by_level(r) if by_level else r

    def group_sizes(self):
        return self.by_level(self.sizes)

    def xsum(self):
        return self.by_level(self._design_times(self.x_map))

    def ysum(self):
        return self.by_level(self._design_times(self.y_map))

    def _design_times(self, coef):
        """D @ coef for a (k + 2,) or (k + 2, m) coef, without forming D."""
        out = self.x @ coef[1:-1]
        out += np.multiply.outer(self.sizes, coef[0])
        out += np.multiply.outer(self.y, coef[-1])
        return out

    def by_level(self, values):
        """Per-group values in size order, rearranged by label."""
        out = np.empty_like(values)
        out[self.level] = values
        return out


@dataclass(frozen=True)
class SufficientStats:
    """Cross-products of the standardized design, in the model's parametrization.

    Column 0 of the design is the intercept when the model has one.  ``groups`` holds
    the per-group sums s_j = X_j'1 and t_j = 1'y_j; ``classes`` their sums by group
    size, computed from them (O(G k^2)) unless given.
    """

    xtx: np.ndarray  # (p, p)
    xty: np.ndarray  # (p,)
    yty: float
    n_obs: int
    groups: GroupSums
    classes: SizeClasses = None
    # The sum of the rows' weights (n_obs without weights): the intercept's X'X entry.
    weight: float = None
    # skhlm.engine.criterion.gls_beta's recent answers (fresh for every instance,
    # replace() included).
    memo: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self):
        if self.classes is None:
            object.__setattr__(self, "classes", self.groups.size_classes())
        if self.weight is None:
            object.__setattr__(self, "weight", float(self.n_obs))

    @property
    def n_groups(self):
        return self.groups.n_groups

    @property
    def n_params(self):
        return self.xtx.shape[0]

    # Per group, by label (materialized on each call: for tests and reports).
    @property
    def group_sizes(self):
        return self.groups.group_sizes()

    @property
    def group_xsum(self):
        return self.groups.xsum()

    @property
    def group_ysum(self):
        return self.groups.ysum()


def kept_columns(xtx, tol=1e-7):
    """Columns of a Gram matrix that are not linear combinations of earlier ones.

    A sequential (unpivoted) Cholesky: column k is dropped when the part of it not
    explained by the kept earlier columns has squared norm below ``tol`` times its
    own.  Earlier columns win, as in R's lm() and lme4.  O(p^3) on the p x p matrix.
    """
    p = xtx.shape[0]
    kept = np.zeros(p, dtype=bool)
    chol = np.zeros((p, p))
    for k in range(p):
        idx = np.flatnonzero(kept)
        # Solve L_kk' z = xtx[kept, k]; the residual norm is xtx[k, k] - z'z.
        z = _forward(chol[idx][:, idx], xtx[idx, k]) if idx.size else np.zeros(0)
        resid = xtx[k, k] - z @ z
        if xtx[k, k] > 0 and resid > tol * xtx[k, k]:
            kept[k] = True
            chol[idx, k] = z
            chol[k, k] = np.sqrt(resid)
    return kept


def _forward(upper, rhs):
    """z with upper' z = rhs: LAPACK's dtrtrs, as scipy's solve_triangular(trans="T"),
    without its per-call checks (upper is a finite Cholesky factor)."""
    return lapack.dtrtrs(upper, rhs, lower=0, trans=1)[0]
