"""How many threads BLAS gets: one for the small products of the pass and of the
algebra on p x p matrices, where OpenBLAS's threads cost more than they save."""

import threading
from contextlib import contextmanager, nullcontext
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

_state = threading.local()


def blas_threads(n_columns, serial_up_to=SERIAL_BLAS_MAX_COLUMNS):
    """Context for the pass over the rows: serial BLAS unless X is wide."""
    if n_columns > serial_up_to or getattr(_state, "serial", False):
        return nullcontext()  # wide, or already serial: nothing to change
    return _serial_blas()


def small_matrix_blas(n_params):
    """Context for the algebra on p x p matrices: serial BLAS unless p is large."""
    return blas_threads(n_params, SERIAL_BLAS_MAX_PARAMS)


@contextmanager
def _serial_blas():
    # threadpoolctl's limit() costs ~30 us per use (it re-reads every library's
    # state); a fit on small data enters this context up to three times, so the
    # BLAS libraries' own getters and setters are called directly (~2 us each).
    libraries = _blas_libraries()
    before = [lib.get_num_threads() for lib in libraries]
    for lib in libraries:
        lib.set_num_threads(1)
    _state.serial = True
    try:
        yield
    finally:
        _state.serial = False
        for lib, n_threads in zip(libraries, before):
            lib.set_num_threads(n_threads)


@cache
def _blas_libraries():
    # Found once: finding the loaded BLAS libraries takes a few ms.
    from threadpoolctl import ThreadpoolController

    return tuple(ThreadpoolController().select(user_api="blas").lib_controllers)
