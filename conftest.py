"""Hypothesis profiles shared by tests/ and fuzz/.

``ci``: quick, part of the README's test command. ``deep``: long runs by hand
(see README, "Fuzzing"); ``fuzz/deep.py`` drives it for a set time per harness.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile("ci", max_examples=400, deadline=None, print_blob=True)
settings.register_profile(
    "deep",
    max_examples=20_000,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
