"""Benchmark results: per-run figures against a lower bound measured in the same run."""

from __future__ import annotations

import json
import os
import statistics
from dataclasses import dataclass, field
from typing import Any


def load() -> float:
    try:
        return os.getloadavg()[0]
    except OSError:  # not available on every platform
        return float("nan")


@dataclass
class Result:
    """One scenario: ``values[i]`` and ``bound[i]`` were measured in run i, in ``unit``."""

    scenario: str
    unit: str
    bound_label: str
    values: list[float] = field(default_factory=list)
    bound: list[float] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    target: str = ""
    status: str = "ok"  # or "n/a: why" or "error: what"
    loads: list[float] = field(default_factory=list)

    def add(self, value: float, bound: float | None) -> None:
        self.values.append(value)
        if bound is not None:
            self.bound.append(bound)
        self.loads.append(load())

    @property
    def ok(self) -> bool:
        return self.status == "ok" and bool(self.values)

    @property
    def ratios(self) -> list[float]:
        return [v / b for v, b in zip(self.values, self.bound, strict=True) if b > 0]

    @property
    def ratio(self) -> float | None:
        return statistics.median(self.ratios) if self.ratios else None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "scenario": self.scenario,
            "status": self.status,
            "unit": self.unit,
            "runs": len(self.values),
        }
        if self.values:
            data.update(
                median=statistics.median(self.values),
                min=min(self.values),
                max=max(self.values),
                values=self.values,
            )
        if self.bound:
            data.update(
                bound=self.bound_label,
                bound_median=statistics.median(self.bound),
                bound_values=self.bound,
                ratio=self.ratio,
            )
        data.update(self.extra)
        data.update(target=self.target, load_avg=self.loads)
        return data


def fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return "-"
    digits = 0 if abs(value) >= 100 else 1 if abs(value) >= 10 else 2 if abs(value) >= 1 else 3
    return f"{value:.{digits}f}{(' ' + unit) if unit else ''}"


HEADER = ("scenario", "lamin_nb median (min-max)", "lower bound (median)", "ratio", "notes")
# ratio: the median over runs of (lamin_nb / bound) measured back to back in the same run


def row(result: Result) -> tuple[str, ...]:
    if not result.ok:
        return (result.scenario, result.status, "", "", result.target)
    values = result.values
    spread = (
        f"{fmt(statistics.median(values), result.unit)} ({fmt(min(values))}-{fmt(max(values))})"
    )
    bound = (
        f"{result.bound_label}: {fmt(statistics.median(result.bound), result.unit)}"
        if result.bound
        else result.bound_label
    )
    ratio = f"{result.ratio:.2f}x" if result.ratio is not None else "-"
    notes = [str(v) for k, v in result.extra.items() if k.startswith("note")]
    if result.target:
        notes.append(f"target {result.target}")
    return (result.scenario, spread, bound, ratio, "; ".join(notes))


def table(results: list[Result]) -> str:
    """A Markdown table, so the output can go into the README as it is."""
    rows = [HEADER] + [row(r) for r in results]
    widths = [max(len(r[i]) for r in rows) for i in range(len(HEADER))]
    lines = [
        "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in rows
    ]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def json_lines(results: list[Result], header: dict[str, Any]) -> str:
    lines = [json.dumps({"kind": "environment", **header}, default=str)]
    lines += [json.dumps({"kind": "scenario", **r.to_dict()}, default=str) for r in results]
    return "\n".join(lines)
