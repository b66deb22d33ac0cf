"""The benchmark scripts still run (a quick pass on distml only; no timing is asserted)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_runtime_benchmark_quick_pass():
    out = subprocess.run([sys.executable, str(ROOT / "experiments" / "bench_runtime.py"),
                          "--quick", "--only", "distml"], capture_output=True, text=True,
                         timeout=240, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    rows = [line for line in out.stdout.splitlines() if line.startswith("| ")][1:]
    assert len(rows) == 6
    for row in rows:
        distml_cell = row.split("|")[3].strip()
        float(distml_cell.replace(",", ""))  # a number, not "error" or "timeout"
