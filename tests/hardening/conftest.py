"""Hardening tests: prints the figures they collected (cases, faults, throughput, losses)."""

from __future__ import annotations

from typing import Any

from tests.support.faults_env import FIGURES, NOTES


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not FIGURES and not NOTES:
        return
    terminalreporter.section("lamin_nb hardening figures")
    for name, value in sorted(FIGURES.items()):
        terminalreporter.write_line(f"{name}: {value}")
    for name, text in sorted(NOTES.items()):
        terminalreporter.write_line(f"{name}: {text}")
