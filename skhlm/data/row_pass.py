"""The one pass over a chunk's rows: its centered cross-products and group sums.

Pure functions of the rows, in blocks that stay in the cache, for
skhlm.data.accumulator: :func:`centered_cross_products` and the refusal of values
too large or too small for float64.
"""

import numpy as np

# Rows per block of the single pass: at most 2**15 rows and 4 MiB of float64, so that
# the centered block stays in the cache and bounds the extra memory.  At n = 1e6, 2**15
# rows (2.5 MiB) were fastest for p = 10 (2**16: +15%), and 4096 rows for p = 100, 25%
# faster than 2**15 rows (26 MiB).
_BLOCK_ROWS = 1 << 15
_BLOCK_BYTES = 1 << 22

# Rows in the sample whose mean centers a chunk's columns (all rows below this many).
_CENTER_SAMPLE_ROWS = 4096

try:
    # The loop of scipy.sparse's CSC-matrix-times-dense-matrix product, which adds into
    # its output.  Applied to the indicator of a block's groups, it adds each row to its
    # group's sums in place: 5-10 ms per 1e6 x 10 rows for 100 to 1e5 groups, where
    # np.bincount column by column takes 20-45 ms and the public sparse product,
    # which allocates a fresh (G, p) result per block, up to 190 ms at G = 5e5.
    from scipy.sparse._sparsetools import csc_matvec as _csc_matvec
    from scipy.sparse._sparsetools import csc_matvecs as _csc_matvecs
except ImportError:  # pragma: no cover - a private module of scipy; the fallback is tested
    _csc_matvec = _csc_matvecs = None


class NonFiniteStatistics(ValueError):
    """The cross-products are not finite: NaN or inf in the data, or overflow."""


# A column (or y) whose centered values have a root mean square below this is too
# small for float64: its squares, ~1e-300, are close to the subnormal range (below
# 2.2e-308), where products lose digits and then vanish.
_TINY_RMS = 1e-150


class TinyValues(ValueError):
    """Columns of X or y that vary by amounts too small to square in float64."""

    def __init__(self, spreads, response_spread):
        # spreads: {column index: largest |value - mean|}; response_spread: y's or None.
        self.spreads, self.response_spread = spreads, response_spread
        super().__init__(f"variation too small for float64: X columns {spreads}, y {response_spread}")


class _GroupAdder:
    """Adds rows of a block to their groups' sums in place: ``out[codes[i]] += values[i]``.

    Holds the index and data arrays of the block's (G x m) indicator matrix, the same
    for every block, so each call allocates nothing of size G.  ``out`` and ``values``
    are C-contiguous float64; the codes must lie in range(G), which the caller
    checks once (the sparse loop does not).
    """

    def __init__(self, max_rows, codes_dtype):
        index_dtype = codes_dtype if codes_dtype in (np.int32, np.int64) else np.intp
        self.indptr = np.arange(max_rows + 1, dtype=index_dtype)
        self.ones = np.ones(max_rows)

    def __call__(self, out, codes, values, scale=None):
        """``out[codes[i]] += values[i]``, or ``scale[i] * values[i]`` with a scale."""
        n_rows = codes.shape[0]
        codes = np.ascontiguousarray(codes, dtype=self.indptr.dtype)
        indptr = self.indptr[: n_rows + 1]
        ones = self.ones[:n_rows] if scale is None else np.ascontiguousarray(scale, dtype=np.float64)
        n_groups = out.shape[0]
        if _csc_matvecs is None:  # scipy without its private loop: tested
            from scipy import sparse

            indicator = sparse.csc_array((ones, codes, indptr), shape=(n_groups, n_rows))
            out += indicator @ values
        elif values.ndim == 1:
            _csc_matvec(n_groups, n_rows, indptr, codes, ones, values, out)
        else:
            n_cols = values.shape[1]
            _csc_matvecs(n_groups, n_rows, n_cols, indptr, codes, ones, values.reshape(-1), out.reshape(-1))



def _centered_cross_products(X, y, codes, n_groups, x_offset, y_offset, weights=None, slopes=()):
    """X'X, X'y, y'y and the group sums of the centered data, in one pass over the rows.

    Each block of rows is centered into a reused float64 buffer (the input is never
    copied whole) and enters X'X by one matrix product.  With precision weights w
    the sums are X'WX, X'Wy, y'Wy and the groups' sums of w x and w y: the block is
    multiplied by sqrt(w) in place, so that X'WX is still the block's own product
    (BLAS syrk), and the groups' sums add sqrt(w) times its rows.

    With random ``slopes`` (positions in X) it also sums, per group, the products of
    each slope's centered column with every centered column and y,
    ``gz[j, a] = sum_i w_i (x_ia - r_a) [x_i - r, y_i - r_y]`` (G, len(slopes), k + 1):
    the random slopes' statistics (skhlm.data.slopes), in the same pass.
    """
    n, k = X.shape
    n_block = min(n, _BLOCK_ROWS, max(256, _BLOCK_BYTES // (8 * max(k, 1))))
    xtx, xty, yty = np.zeros((k, k)), np.zeros(k), 0.0
    gx, gy = np.zeros((n_groups, k)), np.zeros(n_groups)
    xc_buffer, yc_buffer = np.empty((n_block, k)), np.empty(n_block)
    slopes = np.asarray(slopes, dtype=np.intp)
    gz = np.zeros((n_groups, slopes.size * (k + 1))) if slopes.size else None
    if gz is not None:
        dy_buffer = np.empty((n_block, k + 1))
    if weights is not None:
        root_buffer = np.empty(n_block)
    add_to_groups = _GroupAdder(n_block, codes.dtype)
    # A C-ordered block is centered as one flat vector against the tiled offset: a
    # contiguous subtraction, 2x faster than broadcasting over rows of k elements.
    flat = X.flags.c_contiguous
    tiled_offset = np.tile(x_offset, n_block) if flat else None
    for start in range(0, n, n_block):
        stop = min(start + n_block, n)
        m = stop - start
        xc, yc = xc_buffer[:m], yc_buffer[:m]
        if flat:
            np.subtract(X[start:stop].reshape(-1), tiled_offset[: m * k], out=xc.reshape(-1))
        else:
            np.subtract(X[start:stop], x_offset, out=xc)
        np.subtract(y[start:stop], y_offset, out=yc)
        block_codes = codes[start:stop]
        root = None
        if weights is not None:
            root = np.sqrt(weights[start:stop], out=root_buffer[:m])
            xc *= root[:, None]
            yc *= root
        xtx += xc.T @ xc
        xty += yc @ xc
        yty += yc @ yc
        add_to_groups(gx, block_codes, xc, root)
        add_to_groups(gy, block_codes, yc, root)
        if gz is not None:  # (already weighted: both factors carry sqrt(w))
            dy = dy_buffer[:m]
            dy[:, :k] = xc
            dy[:, k] = yc
            products = xc[:, slopes, None] * dy[:, None, :]
            add_to_groups(gz, block_codes, products.reshape(m, -1))
    if gz is not None:
        gz = gz.reshape(n_groups, slopes.size, k + 1)
    return xtx, xty, float(yty), gx, gy, gz


def _refuse_tiny_values(X, y, x_scale, y_scale, x_offset, y_offset):
    """Raise :class:`TinyValues` for a column or y that varies, but by amounts too
    small for float64.  One that is constant up to rounding is left to the rank check
    (columns) or to the identifiability check (y)."""

    def spread(values, offset):
        # Only on this rare path: a read of the suspect column.
        deviation = float(np.max(np.abs(values - offset)))
        return deviation if deviation > 1e-12 * float(np.max(np.abs(values))) else None

    spreads = {int(j): spread(X[:, j], x_offset[j]) for j in np.flatnonzero(x_scale < _TINY_RMS)}
    spreads = {j: s for j, s in spreads.items() if s is not None}
    response = spread(y, y_offset) if y.shape[0] and y_scale < _TINY_RMS else None
    if spreads or response is not None:
        raise TinyValues(spreads, response)
