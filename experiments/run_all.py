"""Run every benchmark in ``experiments/``, plot the results and refresh the README's tables.

    ./dev experiments                  # everything, full sizes (tens of minutes on 2 cores)
    ./dev experiments --quick          # each benchmark's --quick mode (smoke test)
    ./dev experiments --only bench_glm chaos
    ./dev experiments --plots-only     # no benchmark: plots and README from existing results
    ./dev experiments --quick --no-peers   # distml only where a script allows it (fastest)

Benchmarks are the scripts in :data:`BENCHMARKS` plus any other ``experiments/bench_*.py``;
a listed script that does not exist (yet) is skipped with a message.  Each runs in its own
process with this interpreter and writes ``experiments/results/<name>[_quick].{json,md}``
itself; this runner then draws ``<name>[_quick].png`` (``plots.py``) and rewrites the part of
``README.md`` between the :data:`START` and :data:`END` markers from the full-size ``.md``
tables.  Peers (Dask, dask-ml, ...) are used when installed: ``./dev experiments`` installs the
``bench`` extra first.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import logging
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
README = ROOT / "README.md"
START = "<!-- experiments:results:start (written by experiments/run_all.py) -->"
END = "<!-- experiments:results:end -->"

sys.path.insert(0, str(HERE))
import plots  # noqa: E402

log = logging.getLogger("experiments.run_all")


@dataclass(frozen=True)
class Benchmark:
    """A script ``experiments/<name>.py`` taking ``--quick``.

    ``peers`` are the modules its comparison needs; when one is missing the script runs with
    ``without_peers`` arguments, or is skipped when that is ``None``."""

    name: str
    what: str
    peers: tuple[str, ...] = ()
    without_peers: tuple[str, ...] | None = None

    @property
    def script(self) -> Path:
        return HERE / f"{self.name}.py"


BENCHMARKS = [
    Benchmark("bench_runtime", "tasks/s, latency, transfer, start-up vs Dask distributed",
              ("dask", "distributed"), ("--only", "distml")),
    Benchmark("bench_array", "chunked array operations vs dask.array and numpy",
              ("dask", "distributed")),
    Benchmark("bench_glm", "LogisticRegression vs scikit-learn and dask-ml", (), ()),
    Benchmark("bench_sgd", "SGDClassifier vs scikit-learn and dask-ml Incremental", (), ()),
    Benchmark("bench_joblib", "joblib backend vs joblib's loky and Dask's backend"),
    Benchmark("bench_search", "hyper-parameter searches vs scikit-learn and dask-ml"),
    Benchmark("chaos", "worker SIGKILLs during work: correctness and slowdown"),
    Benchmark("out_of_core", "3x memory through spilling workers: peak memory, time"),
]
PEERS = ("dask", "distributed", "dask_ml", "sklearn", "joblib", "ray")


def discover(benchmarks: list[Benchmark] = BENCHMARKS, folder: Path = HERE) -> list[Benchmark]:
    """The listed benchmarks, then any unlisted ``bench_*.py`` in ``folder`` (run as is)."""
    listed = {b.name for b in benchmarks}
    extra = [Benchmark(p.stem, "(unlisted)") for p in sorted(folder.glob("bench_*.py"))
             if p.stem not in listed]
    return list(benchmarks) + extra


def installed(module: str) -> str | None:
    """The installed version of ``module``'s distribution, or ``None`` when it is missing."""
    if importlib.util.find_spec(module) is None:
        return None
    dist = {"sklearn": "scikit-learn", "dask_ml": "dask-ml"}.get(module, module)
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "installed"


def command_for(bench: Benchmark, quick: bool, peers: bool = True) -> list[str] | None:
    """The command line for ``bench``, or ``None`` when its peers are missing (or not wanted)
    and it cannot run without them."""
    args = [sys.executable, str(bench.script)] + (["--quick"] if quick else [])
    missing = [m for m in bench.peers if not peers or installed(m) is None]
    if not missing:
        return args
    if bench.without_peers is None:
        return None
    return args + list(bench.without_peers)


def run_one(bench: Benchmark, quick: bool, timeout: float, peers: bool = True) -> str:
    """Run one benchmark script; returns 'ok', 'skipped: ...' or 'failed: ...'."""
    if not bench.script.exists():
        return f"skipped: {bench.script.relative_to(ROOT)} does not exist"
    cmd = command_for(bench, quick, peers)
    if cmd is None:
        if not peers:
            return "skipped: it cannot run without its peers (--no-peers)"
        missing = ", ".join(m for m in bench.peers if installed(m) is None)
        return f"skipped: needs {missing} (pip install -e '.[bench]')"
    print(f"\n=== {bench.name}: {' '.join(Path(c).name if i < 2 else c for i, c in enumerate(cmd))}",
          flush=True)
    started = time.monotonic()
    try:
        done = subprocess.run(cmd, cwd=ROOT, timeout=timeout)
    except subprocess.TimeoutExpired:
        return f"failed: still running after {timeout:.0f} s (stopped)"
    took = time.monotonic() - started
    if done.returncode != 0:
        return f"failed: exit code {done.returncode} after {took:.0f} s"
    return f"ok ({took:.0f} s)"


# ---------------------------------------------------------------- README tables


def results_section(benchmarks: list[Benchmark], results: Path = RESULTS,
                    link_prefix: str = "experiments/results/") -> str:
    """Markdown for the README: each benchmark's full-size table, its plot, in registry order."""
    parts = []
    for bench in benchmarks:
        md = results / f"{bench.name}.md"
        if not md.exists():
            continue
        body = []
        for line in md.read_text().strip().splitlines():
            # the tables' own headings become bold lines under this section's heading
            heading = re.match(r"#{1,6} (.*)", line)
            body.append(f"**{heading.group(1).strip()}**" if heading else line)
        parts.append(f"#### `{bench.name}`: {bench.what}\n\n" + "\n".join(body))
        if (results / f"{bench.name}.png").exists():
            parts.append(f"![{bench.name}]({link_prefix}{bench.name}.png)")
    return "\n\n".join(parts)


def update_readme(section: str, readme: Path = README) -> bool:
    """Replace the text between the markers in ``readme``; True when the file changed."""
    text = readme.read_text()
    start, end = text.find(START), text.find(END)
    if start < 0 or end < start:
        raise ValueError(f"{readme}: the markers {START!r} and {END!r} are missing or out of "
                         "order; put them where the results tables belong")
    new = text[:start + len(START)] + "\n\n" + section.strip() + "\n\n" + text[end:]
    if new != text:
        readme.write_text(new)
    return new != text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="each benchmark's --quick mode")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run only these benchmarks")
    parser.add_argument("--plots-only", action="store_true",
                        help="run no benchmark: plot existing results and refresh the README")
    parser.add_argument("--timeout", type=float, default=3600.0,
                        help="seconds one benchmark may take before it is stopped (3600)")
    parser.add_argument("--no-readme", action="store_true", help="leave README.md as it is")
    parser.add_argument("--no-peers", action="store_true",
                        help="distml only where a script can leave its peers out (smoke tests)")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    benchmarks = discover()
    if args.list:
        for b in benchmarks:
            state = "present" if b.script.exists() else "missing"
            print(f"{b.name:15} {state:8} {b.what}")
        return 0
    if args.only:
        unknown = set(args.only) - {b.name for b in benchmarks}
        if unknown:
            parser.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}; see --list")
        selected = [b for b in benchmarks if b.name in args.only]
    else:
        selected = benchmarks

    outcomes: dict[str, str] = {}
    if not args.plots_only:
        peers = {m: installed(m) for m in PEERS}
        print("peers: " + ", ".join(f"{m} {v}" if v else f"{m} (not installed)"
                                    for m, v in peers.items()), flush=True)
        for bench in selected:
            outcomes[bench.name] = run_one(bench, args.quick, args.timeout, not args.no_peers)
            print(f"--- {bench.name}: {outcomes[bench.name]}", flush=True)

    names = [b.name for b in selected]
    plotted = plots.plot_results(RESULTS, args.quick, names)
    if not args.no_readme:
        changed = update_readme(results_section(benchmarks))
        print(f"README.md results section {'updated' if changed else 'unchanged'}")

    print("\nsummary:")
    for bench in selected:
        stem = bench.name + (plots.QUICK_SUFFIX if args.quick else "")
        png = plotted.get(stem)
        shown = (png.relative_to(ROOT) if isinstance(png, Path) else
                 f"no plot ({png})" if png else "no plot (no results file)")
        print(f"  {bench.name:15} {outcomes.get(bench.name, 'not run'):45} {shown}")
    failed = [n for n, o in outcomes.items() if o.startswith("failed")]
    failed += [s for s, p in plotted.items() if isinstance(p, plots.PlotError)]
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
