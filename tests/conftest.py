"""Hypothesis profiles: "ci" by default (bounded for CI), "long" with --hypothesis-profile=long.

Registered here, before Hypothesis's pytest plugin reads the command line.
"""

from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci", max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)
settings.register_profile("long", max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("ci")
