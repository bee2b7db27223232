"""Hypothesis profiles: "ci" by default (bounded for CI), "long" with --hypothesis-profile=long.

Registered here, before Hypothesis's pytest plugin reads the command line. The numba
backend's disk cache goes to a folder of the test session's own, not the user's
~/.cache (subprocesses the tests start inherit it).
"""

import os
import tempfile

import pytest
from hypothesis import HealthCheck, settings

os.environ.setdefault("SYMDIFF_CACHE_DIR", tempfile.mkdtemp(prefix="symdiff-tests-"))

settings.register_profile(
    "ci", max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)
settings.register_profile("long", max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("ci")


# Tests that take tens of seconds on 2 cores (numba's first builds of Hessian code, the
# 100,000-node chain, the widest property sweeps): the README's command skips them, CI runs
# them with --runslow. Matched against pytest's node ids.
SLOW = (
    "[numba]",
    "test_numba_",
    "test_100k_node_chain",
    "test_memory_grows_linearly_with_the_graph",
    "test_example_runs[newton_dask.py]",
    "test_every_backend_refuses_a_none_dimension_bound_inconsistently",
    "test_det_gradient_at_the_issue_matrix_everywhere",
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
