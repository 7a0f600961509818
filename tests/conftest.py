"""Shared test settings.

Hypothesis profiles: "ci" (chosen when the CI environment variable is set) draws the same
examples on every run, so that a CI run is reproducible and cannot fail on a newly explored
example; "dev" (the default elsewhere) explores new random examples on every run, which is
how new counterexamples are found. HYPOTHESIS_PROFILE picks one explicitly.
"""

import os

from hypothesis import HealthCheck, settings

_COMMON = {"deadline": None, "suppress_health_check": [HealthCheck.too_slow]}
settings.register_profile("ci", max_examples=100, derandomize=True, **_COMMON)
settings.register_profile("dev", max_examples=100, **_COMMON)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))
