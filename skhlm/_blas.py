"""How many threads BLAS gets: one for the small products of the pass and of the
algebra on p x p matrices, where OpenBLAS's threads cost more than they save."""

from contextlib import nullcontext
from functools import cache

# Up to this many columns the pass runs BLAS on one thread: the products of a block are
# too small to gain from a second one, and when the other core is busy, OpenBLAS's
# threads wait on each other (at n = 1e6, p = 10, with a second process busy: 420 ms
# with 2 threads, 32 ms with 1).  Wider designs keep BLAS's own setting.
SERIAL_BLAS_MAX_COLUMNS = 64

# Up to this many parameters the algebra on p x p matrices after the pass (EM,
# inference) runs BLAS on one thread too: each product is small, and OpenBLAS's
# threads cost more than they save (REML EM at p = 100: 120 ms with 2 threads, 15 ms
# with 1; at p = 600: 1.3 s and 0.6 s).
SERIAL_BLAS_MAX_PARAMS = 1000


def blas_threads(n_columns, serial_up_to=SERIAL_BLAS_MAX_COLUMNS):
    """Context for the pass over the rows: serial BLAS unless X is wide."""
    if n_columns > serial_up_to:
        return nullcontext()
    return _blas_controller().limit(limits=1, user_api="blas")


def small_matrix_blas(n_params):
    """Context for the algebra on p x p matrices: serial BLAS unless p is large."""
    return blas_threads(n_params, SERIAL_BLAS_MAX_PARAMS)


@cache
def _blas_controller():
    # Created once: finding the loaded BLAS libraries takes a few ms, a limit ~0.05 ms.
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()
