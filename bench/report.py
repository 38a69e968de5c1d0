"""Figures and their targets: results.json, and the Markdown table rendered from it."""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import sqlite3
import subprocess
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results.json"


@dataclass
class Figure:
    """One measured figure, the rule it must meet, and the baseline measured in the same run.

    ``ratio`` is value / baseline, or the median of per-pair ratios when the two ran in pairs
    (``paired_ratio``). ``met`` is None when the rule could not be checked
    (say, PostgreSQL was unreachable); ``details`` holds spreads, counts and notes.
    """

    name: str
    value: float
    unit: str
    target: str
    met: bool | None
    baseline: float | None = None
    baseline_label: str = ""
    details: dict = field(default_factory=dict)
    paired_ratio: float | None = None  # median of per-pair ratios, when A and B ran in pairs

    @property
    def ratio(self) -> float | None:
        if self.paired_ratio is not None:
            return self.paired_ratio
        if self.baseline in (None, 0) or math.isnan(self.value):
            return None
        return self.value / self.baseline

    def as_json(self) -> dict:
        ratio = self.ratio
        return {
            "value": None if math.isnan(self.value) else _round(self.value), "unit": self.unit, "target": self.target,
            "baseline": None if self.baseline is None else _round(self.baseline),
            "ratio": None if ratio is None else _round(ratio, 4), "met": self.met,
            "baseline_is": self.baseline_label, "details": self.details,
        } | ({"ratio_is": "median of the per-pair ratios"} if self.paired_ratio is not None else {})  # fmt: skip


def _round(value: float, digits: int = 3) -> float:
    return float(f"{value:.{digits}g}") if abs(value) < 1 else round(value, digits)


def machine() -> str:
    """CPU, cores, memory, OS, Python and database versions, on one line."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = ""
    try:
        total_kb = int(Path("/proc/meminfo").read_text().split()[1])
        memory = f", {total_kb / 1024**2:.0f} GB RAM"
    except (OSError, ValueError, IndexError):
        pass
    return (
        f"{cpu}, {os.cpu_count()} cores{memory}; {platform.system()} {platform.release()}; "
        f"Python {platform.python_version()}; SQLite {sqlite3.sqlite_version}"
    )


SOURCES = ("chatbot/**/*.py", "pages/*.py", "ui.py", "app.py", "migrations/versions/*.py", "bench/*.py")


def code_state(root: Path = RESULTS.parent.parent) -> dict:
    """The commit checked out and a hash of the sources measured (uncommitted edits included)."""
    digest = hashlib.sha256()
    for pattern in SOURCES:
        for path in sorted(root.glob(pattern)):
            digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True,
                              text=True, check=True).stdout.strip()  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        head = "unknown"
    return {"commit": head, "sources_sha256": digest.hexdigest()[:16]}


def write_results(path: Path, figures: list[Figure], meta: dict) -> dict:
    results = {
        "machine": machine(),
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        **meta,
        "targets": {f.name: f.as_json() for f in figures},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    return results


def _number(value: float | None, unit: str = "") -> str:
    if value is None:
        return "–"
    text = f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}" if abs(value) < 1 else f"{value:.1f}"
    return f"{text} {unit}".strip()


def _met(met: bool | None) -> str:
    return {True: "✅", False: "❌", None: "–"}[met]


def markdown_table(results: dict) -> str:
    """The Performance table: one row per figure, from a results.json dict."""
    lines = [
        f"Measured {results.get('when', '?')} on {results.get('machine', '?')}"
        + (f"; PostgreSQL {results['postgresql']}" if "postgresql" in results else "") + "; "
        f"scale: {results.get('scale', '?')}; command: `{results.get('command', 'python -m bench')}`"
        + (f"; {results['duration_s']:.0f} s in all" if "duration_s" in results else "")
        + (f"; load average {load['start']} at the start, {load['end']} at the end" if (load := results.get("load_average_1min")) else "")
        + (f"; commit {code['commit']}, sources {code['sources_sha256']}." if (code := results.get("code")) else "."),
        *(["", "**The sources changed during this run: its figures mix two versions.**"]
          if results.get("code", {}).get("changed_during_run") else []),
        "",
        "| Figure | Value | Baseline (same run) | Ratio | Target | Met |",
        "|---|---:|---:|---:|---|:-:|",
    ]
    for name, t in results["targets"].items():
        baseline = _number(t.get("baseline"), t["unit"])
        if t.get("baseline_is") and t.get("baseline") is not None:
            baseline += f" ({t['baseline_is']})"
        ratio = "–" if t.get("ratio") is None else f"{t['ratio']:.3g}"
        lines.append(
            f"| `{name}` | {_number(t['value'], t['unit'])} | {baseline} | {ratio} | {t['target']} | {_met(t['met'])} |"
        )
    return "\n".join(lines)


def table_from_file(path: Path = RESULTS) -> str:
    return markdown_table(json.loads(path.read_text()))
