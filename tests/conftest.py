"""Hypothesis profiles: "ci" by default (bounded for CI), "long" with --hypothesis-profile=long.

Registered here, before Hypothesis's pytest plugin reads the command line. The numba
backend's disk cache goes to a folder of the test session's own, not the user's
~/.cache (subprocesses the tests start inherit it).
"""

import os
import tempfile

from hypothesis import HealthCheck, settings

os.environ.setdefault("SYMDIFF_CACHE_DIR", tempfile.mkdtemp(prefix="symdiff-tests-"))

settings.register_profile(
    "ci", max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)
settings.register_profile("long", max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("ci")
