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


def run_quick(script: str) -> list[list[str]]:
    """Run ``experiments/<script> --quick``; returns the cells of the markdown table rows."""
    out = subprocess.run([sys.executable, str(ROOT / "experiments" / script), "--quick"],
                         capture_output=True, text=True, timeout=240, cwd=ROOT)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return [[cell.strip() for cell in line.strip().strip("|").split("|")]
            for line in out.stdout.splitlines()
            if line.startswith("| ") and not line.startswith("| ---")]


def test_chaos_quick_every_trial_correct():
    rows = run_quick("chaos.py")
    header, body = rows[0], rows[1:]
    assert {row[0] for row in body} == {"reductions", "map"}
    correct = header.index("correct")
    for row in body:
        assert row[correct] == "4/4", row


def test_out_of_core_quick_verified():
    rows = run_quick("out_of_core.py")
    header, summary = rows[0], rows[1]
    assert summary[header.index("verified")] == "yes", summary
