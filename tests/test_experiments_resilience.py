"""The resilience experiments still run and still hold: a quick pass of each script.

``experiments/chaos.py --quick`` must get every trial right (a worker is SIGKILLed in each);
``experiments/out_of_core.py --quick`` must verify its sum of data three times the cluster's
memory limit.  Timings are printed by the scripts but not asserted here.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_quick(script: str) -> str:
    """Run ``experiments/<script> --quick`` and return its standard output."""
    out = subprocess.run([sys.executable, str(ROOT / "experiments" / script), "--quick"],
                         capture_output=True, text=True, timeout=240, cwd=ROOT)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out.stdout


def table_rows(stdout: str) -> list[dict[str, str]]:
    """The rows of the first markdown table in ``stdout``, as {column: cell}."""
    lines = [line.strip().strip("|") for line in stdout.splitlines() if line.startswith("| ")]
    header = [cell.strip() for cell in lines[0].split("|")]
    rows = []
    for line in lines[2:]:
        cells = [cell.strip() for cell in line.split("|")]
        if len(cells) != len(header):  # the next table
            break
        rows.append(dict(zip(header, cells)))
    return rows


def test_chaos_quick_every_trial_correct():
    stdout = run_quick("chaos.py")
    rows = table_rows(stdout)
    assert [row["scenario"] for row in rows] == ["reductions", "map"], stdout
    for row in rows:
        assert row["correct"] == "4/4", stdout


def test_out_of_core_quick_verified():
    stdout = run_quick("out_of_core.py")
    assert table_rows(stdout)[0]["verified"] == "yes", stdout
