"""PNG plots of the benchmark results in ``experiments/results/``.

Each benchmark's JSON is turned into one figure (``<name>.png`` beside it): panels of grouped
bars, one bar per system (distml and its peers) for each measurement, on a log scale so that
a 20x gap and a 1.1x gap are both readable.  Benchmarks with a dedicated reader below get
labelled panels; any other ``<name>.json`` with a ``<name>.md`` table falls back to plotting
the table's numeric columns.

    .venv/bin/python experiments/plots.py                 # plot every full result
    .venv/bin/python experiments/plots.py --quick         # plot the *_quick results
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import re
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

RESULTS = Path(__file__).resolve().parent / "results"
QUICK_SUFFIX = "_quick"
log = logging.getLogger("experiments.plots")

Value = float | None


@dataclass
class Panel:
    """One chart: ``series[system][i]`` is the system's value for ``groups[i]``."""

    title: str
    ylabel: str
    groups: list[str]
    series: dict[str, list[Value]]
    note: str = ""  # "lower is better", ...
    reference: tuple[float, str] | None = None  # a horizontal line (value, label)
    log: bool = True


@dataclass
class Figure:
    title: str
    panels: list[Panel] = field(default_factory=list)


class PlotError(ValueError):
    """A results file cannot be plotted (unknown layout, no numbers)."""


# ---------------------------------------------------------------- readers, one per benchmark


def _runtime(data: dict[str, Any]) -> Figure:
    systems = {"distml": "distml", "dask": "dask", "dask_noqueue": "dask (no queuing)"}
    by_unit: dict[str, list[dict[str, Any]]] = {}
    for row in data["rows"]:
        by_unit.setdefault(row["unit"], []).append(row)
    titles = {"tasks/s": "throughput", "ms/step": "latency per step", "GB/s": "bandwidth",
              "s": "start-up time"}
    panels = []
    for unit, rows in by_unit.items():
        lower = unit in ("s", "ms/step")
        panels.append(Panel(
            title=titles.get(unit, unit), ylabel=unit, groups=[r["measurement"] for r in rows],
            series={label: [r.get(key) for r in rows] for key, label in systems.items()},
            note="lower is better" if lower else "higher is better"))
    return Figure("Runtime: distml vs Dask distributed (2 workers x 1 thread)", panels)


def _array(data: dict[str, Any]) -> Figure:
    seconds = data["seconds"]
    ops = list(next(iter(seconds.values())))
    return Figure("distml.array vs dask.array and numpy", [Panel(
        title=f"sizes: {data.get('sizes', {})}", ylabel="seconds (best of "
        f"{data.get('repeat', '?')})", groups=ops,
        series={system: [times.get(op) for op in ops] for system, times in seconds.items()},
        note="lower is better")])


def _short_system(name: str) -> str:
    """'distml (2 workers x 1 thread)' -> 'distml'; the set-up goes in the panel title."""
    return re.sub(r"\s*\((\d+ workers? x \d+ threads?|1 process)\)", "", name)


def _glm(data: dict[str, Any]) -> Figure:
    rows = data["results"]
    return Figure(
        f"LogisticRegression fit: {data['n_samples']:,} x {data['n_features']}, "
        f"{data['chunk_rows']:,}-row chunks",
        [Panel(title="fit time (cluster systems: 2 workers x 1 thread)", ylabel="seconds",
               groups=["fit"], series={_short_system(r["system"]): [r.get("seconds")]
                                       for r in rows}, note="lower is better")])


def _sgd(data: dict[str, Any]) -> Figure:
    rows = data["results"]
    epochs = sorted({r["epochs"] for r in rows})
    series: dict[str, list[Value]] = {}
    for r in rows:
        values = series.setdefault(_short_system(r["system"]), [None] * len(epochs))
        values[epochs.index(r["epochs"])] = r.get("seconds_per_epoch")
    return Figure(
        f"SGDClassifier: {data['n_train']:,} x {data['n_features']} rows, "
        f"{data['block_rows']:,}-row blocks",
        [Panel(title="time per epoch (cluster systems: 2 workers x 1 thread)",
               ylabel="seconds / epoch", groups=[f"{e} epoch{'s' if e > 1 else ''}"
                                                 for e in epochs],
               series=series, note="lower is better")])


def _chaos(data: dict[str, Any]) -> Figure:
    names = list(data["scenarios"])
    scenarios = [data["scenarios"][n] for n in names]

    def trial_stat(s: dict[str, Any], fn: Callable[[list[float]], float]) -> Value:
        times = [t["seconds"] for t in s["trials"] if t.get("seconds") is not None]
        return fn(times) if times else None

    return Figure(
        f"Chaos: one worker SIGKILLed per trial, {data['trials']} trials per scenario",
        [Panel(title="run time: undisturbed vs with a kill", ylabel="seconds", groups=names,
               series={"undisturbed (median)": [s.get("median_undisturbed_seconds")
                                                for s in scenarios],
                       "with a kill (median)": [trial_stat(s, _median) for s in scenarios],
                       "with a kill (max)": [trial_stat(s, max) for s in scenarios]},
               note="lower is better"),
         Panel(title="correct results", ylabel="trials", groups=names,
               series={"correct": [sum(bool(t.get("correct")) for t in s["trials"])
                                   for s in scenarios],
                       "trials": [len(s["trials"]) for s in scenarios]},
               log=False)])


def _out_of_core(data: dict[str, Any]) -> Figure:
    mib = 2**20
    limit = data["sizes"]["memory_limit_mib"]
    workers = data["workers"]
    total = data["sizes"]["blocks"] * data["sizes"]["block_mib"]
    return Figure(
        f"Out of core: {total} MiB summed through {data['n_workers']} x {limit} MiB workers",
        [Panel(title="peak resident memory per worker", ylabel="MiB",
               groups=[w["name"] for w in workers],
               series={"peak (last process)": [w["peak_rss"] / mib for w in workers],
                       "sampled peak (all processes)": [w["sampled_peak_rss"] / mib
                                                        for w in workers]},
               reference=(float(limit), f"limit {limit} MiB"), log=False),
         Panel(title="phases", ylabel="seconds", groups=["create", "reduce"],
               series={"distml": [data.get("create_seconds"), data.get("reduce_seconds")]},
               note="lower is better")])


def _search(data: dict[str, Any]) -> Figure:
    runs = data["results"]
    candidates = 1
    for values in data["grid"].values():
        candidates *= len(values)
    panels = [Panel(
        title=f"GridSearchCV, {candidates} candidates x 3 folds (cluster systems: 2 workers x 1 "
              "thread)", ylabel="seconds", groups=["first use", "warm"],
        series={_short_system(r["system"]): [r.get("first_use_s"), r.get("warm_s")]
                for r in runs}, note="lower is better")]
    chunked = data.get("chunked")
    if chunked:
        panels.append(Panel(
            title=f"k-fold search over {chunked['data_mb']:.0f} MB "
                  f"(workers limited to {chunked['worker_memory_limit']} each)",
            ylabel="seconds", groups=["search"],
            series={"distml (blocks on the workers)": [chunked.get("seconds")],
                    "scikit-learn (all in memory)": [chunked.get("sklearn_in_memory_seconds")]},
            note="lower is better"))
    return Figure("Hyper-parameter search", panels)


def _joblib(data: dict[str, Any]) -> Figure:
    results, sizes = data["results"], data["sizes"]
    backends = list(results)

    def values(field: str) -> dict[str, list[Value]]:
        return {name: [results[name].get(field)] for name in backends}

    return Figure("joblib backends (clusters: 2 workers x 1 thread)", [
        Panel(title=f"{sizes['calls']:,} trivial calls, automatic batching",
              ylabel="calls/s", groups=["calls"], series=values("calls_per_s"),
              note="higher is better"),
        Panel(title=f"RandomForestClassifier({sizes['trees']}) on {sizes['samples']:,} rows",
              ylabel="seconds", groups=["fit"], series=values("forest_s"),
              note="lower is better")])


READERS: dict[str, Callable[[dict[str, Any]], Figure]] = {
    "bench_joblib": _joblib,
    "bench_runtime": _runtime, "bench_array": _array, "bench_glm": _glm, "bench_sgd": _sgd,
    "bench_search": _search, "chaos": _chaos, "out_of_core": _out_of_core,
}


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


# ---------------------------------------------------------------- fallback: the markdown table

_NUMBER = re.compile(r"^[+-]?(\d[\d,]*)?(\.\d+)?(e[+-]?\d+)?x?$", re.IGNORECASE)


def _number(cell: str) -> Value:
    text = cell.strip().strip("`*")
    if text.lower() in ("n/a", "", "-"):
        return None
    if not _NUMBER.match(text) or not any(c.isdigit() for c in text):
        raise ValueError(text)
    return float(text.rstrip("xX").replace(",", ""))


def table_figure(name: str, markdown: str) -> Figure:
    """A figure from the first markdown table: one panel per all-numeric column."""
    lines = [line.strip() for line in markdown.splitlines()]
    start = next((i for i, line in enumerate(lines) if line.startswith("|")), None)
    if start is None:
        raise PlotError(f"{name}: no markdown table to plot")
    table = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        table.append([c.strip() for c in line.strip("|").split("|")])
    header, rows = table[0], [r for r in table[2:] if len(r) == len(table[0])]
    groups = [r[0].strip("`") for r in rows]
    panels = []
    for col in range(1, len(header)):
        try:
            values = [_number(r[col]) for r in rows]
        except ValueError:
            continue
        present = [v for v in values if v is not None]
        if present:
            panels.append(Panel(title=header[col], ylabel=header[col], groups=groups,
                                series={header[col]: values}, log=min(present) > 0))
    if not panels:
        raise PlotError(f"{name}: the table has no numeric column")
    return Figure(name, panels)


# ---------------------------------------------------------------- drawing


def _fmt(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def render(figure: Figure, path: Path) -> Path:
    """Draw ``figure`` into the PNG ``path``."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(figure.panels)
    cols = min(n, 2)
    rows = math.ceil(n / cols)
    widths = [max(6.5, 1.6 * len(p.groups) * max(1, len(p.series)) ** 0.5 + 2)
              for p in figure.panels]
    fig, axes = plt.subplots(rows, cols, figsize=(max(widths) * cols, 4.6 * rows),
                             squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    for ax, panel in zip(axes.flat, figure.panels):
        _draw_panel(ax, panel, colors)
    fig.suptitle(figure.title, fontsize=12)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _draw_panel(ax: Any, panel: Panel, colors: list[str]) -> None:
    # distml first, so that it has the same colour (the first) in every plot
    names = sorted(panel.series, key=lambda n: not n.lower().startswith("distml"))
    width = 0.8 / max(1, len(names))
    values = [v for vs in panel.series.values() for v in vs if v is not None]
    positive = [v for v in values if v > 0]
    use_log = panel.log and bool(positive) and len(positive) == len(values)
    for i, name in enumerate(names):
        xs = [g + (i - (len(names) - 1) / 2) * width for g in range(len(panel.groups))]
        heights = [v if v is not None else 0.0 for v in panel.series[name]]
        bars = ax.bar(xs, heights, width, label=name, color=colors[i % len(colors)])
        for bar, v in zip(bars, panel.series[name]):
            label = "n/a" if v is None else _fmt(v)
            y = bar.get_height() if v else (min(positive) if use_log and positive else 0)
            ax.annotate(label, (bar.get_x() + bar.get_width() / 2, y), ha="center",
                        va="bottom", fontsize=7, xytext=(0, 2), textcoords="offset points")
    if use_log:
        from matplotlib.ticker import FuncFormatter, NullFormatter
        ax.set_yscale("log")
        ax.set_ylim(min(positive) / 3, max(positive) * 4)
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: _fmt(v)))
        ax.yaxis.set_minor_formatter(NullFormatter())
    elif values:
        top = max(values + ([panel.reference[0]] if panel.reference else []))
        ax.set_ylim(0, top * 1.2 if top > 0 else 1)
    if panel.reference:
        ax.axhline(panel.reference[0], color="black", linestyle="--", linewidth=1,
                   label=panel.reference[1])
    ax.set_xticks(range(len(panel.groups)))
    ax.set_xticklabels([textwrap.fill(g, 22) for g in panel.groups], fontsize=8)
    ax.set_ylabel(panel.ylabel + (" (log scale)" if use_log else ""))
    title = panel.title + (f" ({panel.note})" if panel.note else "")
    ax.set_title(textwrap.fill(title, 60), fontsize=10)
    ax.legend(fontsize=7)
    ax.grid(axis="y", alpha=0.3, which="both" if use_log else "major")


# ---------------------------------------------------------------- files


def figure_for(json_path: Path) -> Figure:
    """The figure for one results file, by its benchmark name (``_quick`` ignored)."""
    name = json_path.stem.removesuffix(QUICK_SUFFIX)
    reader = READERS.get(name)
    if reader is not None:
        try:
            data = json.loads(json_path.read_text())
            return reader(data)
        except (KeyError, TypeError, ValueError, StopIteration) as exc:
            raise PlotError(f"{json_path}: unexpected layout for {name} ({exc!r})") from exc
    md = json_path.with_suffix(".md")
    if not md.exists():
        raise PlotError(f"{json_path}: no reader for {name!r} and no {md.name} table")
    return table_figure(json_path.stem, md.read_text())


def plot_results(results: Path = RESULTS, quick: bool = False,
                 names: list[str] | None = None) -> dict[str, Path | PlotError]:
    """Plot every ``results/*.json`` (the ``_quick`` ones with ``quick``) into ``<stem>.png``.

    Returns, per results stem, the PNG written or the error that stopped it (one bad file does
    not stop the others)."""
    done: dict[str, Path | PlotError] = {}
    for path in sorted(results.glob("*.json")):
        is_quick = path.stem.endswith(QUICK_SUFFIX)
        name = path.stem.removesuffix(QUICK_SUFFIX)
        if is_quick != quick or (names is not None and name not in names):
            continue
        try:
            done[path.stem] = render(figure_for(path), path.with_suffix(".png"))
        except PlotError as exc:
            log.warning("%s", exc)
            done[path.stem] = exc
    return done


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="plot the *_quick results")
    parser.add_argument("--results", type=Path, default=RESULTS, help="results folder")
    parser.add_argument("names", nargs="*", help="benchmarks to plot (default: all)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    done = plot_results(args.results, args.quick, args.names or None)
    for stem, outcome in done.items():
        print(f"{stem}: {outcome}")
    return 1 if any(isinstance(o, PlotError) for o in done.values()) or not done else 0


if __name__ == "__main__":
    raise SystemExit(main())
