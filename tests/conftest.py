"""Hypothesis profiles: "ci" by default (bounded for CI), "long" with --hypothesis-profile=long.

Registered here, before Hypothesis's pytest plugin reads the command line. The numba
backend's disk cache goes to a folder of the test session's own, not the user's
~/.cache (subprocesses the tests start inherit it).

BLAS runs one thread per process: the tests' matrices are tiny and pytest-xdist already
runs a process per core, and OpenBLAS's threads spinning beside them made a 3x3 triangular
solve take milliseconds instead of microseconds on a busy 2-core machine. Set before numpy is
imported (pytest-xdist's workers and the tests' subprocesses inherit it); an explicit
setting in the environment wins.
"""

import os
import tempfile

import pytest
from hypothesis import HealthCheck, settings

os.environ.setdefault("SYMDIFF_CACHE_DIR", tempfile.mkdtemp(prefix="symdiff-tests-"))
for _variable in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")

settings.register_profile(
    "ci", max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)
settings.register_profile("long", max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("ci")


# Tests that take tens of seconds on 2 cores (numba's first builds of Hessian code, the
# 100,000-node chain, the widest property sweeps): the README's command skips them, CI runs
# them with --runslow. Matched against pytest's node ids. (tests/test_backends.py marks most
# of its per-case numba and jax runs slow itself.)
SLOW = (
    "[numba]",
    # sweeps over every integer index dtype and every scalar function, each compiled
    "test_every_integer_index_dtype_in_and_out_of_range_matches_numpy",
    "test_the_numba_printer_gives_numpys_value_of_every_function_on_special_values",
    "test_numba_",
    "test_100k_node_chain",
    "test_memory_grows_linearly_with_the_graph",
    "test_example_runs[newton_dask.py]",
    "test_every_backend_refuses_a_none_dimension_bound_inconsistently",
    "test_det_gradient_at_the_issue_matrix_everywhere",
    # every op case as a standalone module in one subprocess (one sweep of all the cases)
    "test_emitted_source_runs_without_symdiff_bit_for_bit",
    # the backends page builds numba and jax code for each of its examples
    "test_code_blocks_run[backends.md]",
    # the long-chain programs of the widest property sweeps; the other deep contracts stay
    "test_reverse_and_forward_mode_agree[deep]",
    # the C backend on the indexing op cases again (tests/test_backends.py runs them on c too)
    "test_c_index.py::test_op_cases",
    # the C kernels built with the sanitizers (each kernel alone, then every kernel in one program)
    "test_kernels_clean_under_sanitizers",
    "test_to_c_of_every_kernel_compiles_strictly_and_runs_clean_under_sanitizers",
    "test_simplify_never_changes_a_finite_value[deep]",
)


def pytest_addoption(parser):
    parser.addoption(
        "--runslow", action="store_true", default=False, help="also run the tests marked slow (CI runs them)"
    )


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: expensive (numba builds, long sweeps): run with --runslow; CI runs them")


@pytest.hookimpl(tryfirst=True)  # before `-m slow` selects by mark
def pytest_collection_modifyitems(config, items):
    for item in items:
        if any(part in item.nodeid for part in SLOW):
            item.add_marker(pytest.mark.slow)
    if config.getoption("--runslow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --runslow (CI runs it)")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
