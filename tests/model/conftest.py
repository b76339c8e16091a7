"""Hypothesis profiles for the model-based test, and the figures it prints at the end.

``ci`` (default): a few derandomised examples per backend pair, so the suite stays within a
few minutes and CI sees the same cases every run. ``long`` (``LAMIN_NB_HYPOTHESIS_PROFILE=long``):
many more random examples with longer runs of steps, for a run before a release.
"""

from __future__ import annotations

import os
from typing import Any

from hypothesis import HealthCheck, settings

from tests.model.model import FIGURES

PROFILE_ENV = "LAMIN_NB_HYPOTHESIS_PROFILE"
_COMMON: dict[str, Any] = {
    "deadline": None,
    "database": None,
    "print_blob": True,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large],
}
settings.register_profile("ci", max_examples=3, stateful_step_count=20, derandomize=True, **_COMMON)
settings.register_profile("long", max_examples=30, stateful_step_count=40, **_COMMON)
PROFILE = os.environ.get(PROFILE_ENV, "ci")
# writers killed per example: each costs a second process
MAX_KILLS = {"ci": 1, "long": 3}.get(PROFILE, 1)


def model_settings() -> settings:
    """The selected profile, passed to the model test only (other tests keep their own)."""
    return settings.get_profile(PROFILE)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not FIGURES:
        return
    terminalreporter.section(f"lamin_nb model-based test figures (profile {PROFILE})")
    for name, value in sorted(FIGURES.items()):
        terminalreporter.write_line(f"{name}: {value}")
