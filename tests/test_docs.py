"""The docs stay true: examples run, every config field and public name is documented, links
resolve; the experiments runner's plots and README tables are produced from results files."""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import inspect
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
EXPERIMENTS = ROOT / "experiments"


def _load(path: Path, name: str):
    """Import a script that is not in a package (docs/generate.py, experiments/*.py)."""
    sys.path.insert(0, str(path.parent))
    try:
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up while being built
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(path.parent))


# ---------------------------------------------------------------- code examples

FENCE = re.compile(r"(<!-- not run: [^>]*-->\s*\n)?```python\n(.*?)```", re.DOTALL)
EXPECTED = re.compile(r"^\s*print\(.*\)\s+#\s*(.+?)\s*$")


def python_blocks(text: str) -> list[str]:
    """The ```python blocks of a markdown text, less those marked ``<!-- not run: why -->``."""
    return [m.group(2) for m in FENCE.finditer(text) if not m.group(1)]


def readme_use_section() -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index("## Use")
    end = text.index("\n## ", start + 1)
    return text[start:end]


def _run_examples(blocks: list[str], tmp_path: Path) -> str:
    """Run the blocks as one script in a fresh process (they start their own local clusters)
    and check each ``print(...)  # expected`` line's expected text appears in the output."""
    assert blocks, "no ```python examples found"
    script = tmp_path / "examples.py"
    script.write_text("\n\n".join(blocks))
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=110, cwd=tmp_path)
    assert done.returncode == 0, f"examples failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    output = done.stdout
    for block in blocks:
        for line in block.splitlines():
            m = EXPECTED.match(line)
            if m:
                assert m.group(1) in output, f"{line.strip()!r}: {m.group(1)!r} not printed:\n" \
                                             f"{output[-3000:]}"
    return output


def test_readme_use_examples_run(tmp_path):
    blocks = python_blocks(readme_use_section())
    _run_examples(blocks, tmp_path)


#: Every docs page with an example not marked ``<!-- not run: why -->``.
EXAMPLE_PAGES = sorted(p.name for p in DOCS.glob("*.md") if python_blocks(p.read_text()))


@pytest.mark.parametrize("page", EXAMPLE_PAGES)
def test_doc_examples_run(page, tmp_path):
    """Each page's examples run in one fresh process, in order."""
    _run_examples(python_blocks((DOCS / page).read_text()), tmp_path)


def test_guides_have_runnable_examples():
    assert {"quickstart.md", "runtime.md", "arrays.md", "tables.md", "estimators.md",
            "search.md"} <= set(EXAMPLE_PAGES)


# ---------------------------------------------------------------- configuration reference


def test_configuration_page_lists_every_field_and_is_current():
    from distml.config import Config

    gen = _load(DOCS / "generate.py", "docs_generate")
    rows = {r["name"]: r for r in gen.config_fields()}
    for f in dataclasses.fields(Config):
        assert f.name in rows, f"Config.{f.name} is missing from the generated table"
        written = rows[f.name]["default"]
        assert eval(written, {"__builtins__": {}}) == f.default, (f.name, written, f.default)
    page = (DOCS / "configuration.md").read_text()
    assert gen.render_page(page, gen.config_table()) == page, \
        "docs/configuration.md is stale: run .venv/bin/python docs/generate.py"
    for f in dataclasses.fields(Config):
        assert f"`{f.name}`" in page
        if not f.name.startswith(gen.NOT_FROM_ENV):
            assert f"`DISTML_{f.name.upper()}`" in page


def test_documented_environment_variables_are_read(monkeypatch):
    """Each DISTML_<FIELD> the page names really sets that field."""
    from distml.config import Config

    gen = _load(DOCS / "generate.py", "docs_generate")
    monkeypatch.setenv("DISTML_WORKER_TTL", "12.5")
    monkeypatch.setenv("DISTML_ALLOWED_FAILURES", "7")
    config = Config.load()
    assert (config.worker_ttl, config.allowed_failures) == (12.5, 7)
    assert gen.env_name("worker_ttl") == "DISTML_WORKER_TTL"


# ---------------------------------------------------------------- API reference

#: Classes whose public methods and properties must each be mentioned too.
CLASSES = ["distml.Client", "distml.Future", "distml.LocalCluster"]


def public_modules() -> list[str]:
    """The modules docs/generate.py documents (those that exist), plus every public module
    found under distml.estimators, so that a new one cannot be left out."""
    import pkgutil

    import distml.estimators
    gen = _load(DOCS / "generate.py", "docs_generate")
    names = [m for m, path in gen.API_MODULES if (ROOT / path).exists()]
    for info in pkgutil.walk_packages(distml.estimators.__path__, "distml.estimators."):
        if not any(part.startswith("_") for part in info.name.split(".")) \
                and info.name not in names:
            names.append(info.name)
    return names


def api_sections() -> dict[str, str]:
    """docs/api.md split at its ``## `module` `` headings."""
    text = (DOCS / "api.md").read_text()
    parts = re.split(r"^## `([\w.]+)`.*$", text, flags=re.MULTILINE)
    return {parts[i]: parts[i + 1] for i in range(1, len(parts), 2)}


def _mentioned(name: str, text: str) -> bool:
    return re.search(r"`(\w+\.)*" + re.escape(name) + r"\b", text) is not None


@pytest.mark.parametrize("module_name", public_modules())
def test_api_reference_covers_module(module_name):
    module = importlib.import_module(module_name)
    gen = _load(DOCS / "generate.py", "docs_generate")
    sections = api_sections()
    assert module_name in sections, f"docs/api.md has no '## `{module_name}`' section"
    missing = [n for n in gen.public_names(module) if not _mentioned(n, sections[module_name])]
    assert not missing, f"docs/api.md, section {module_name}: not mentioned: {missing}"


@pytest.mark.parametrize("qualname", CLASSES)
def test_api_reference_covers_class_members(qualname):
    module_name, cls_name = qualname.rsplit(".", 1)
    cls = getattr(importlib.import_module(module_name), cls_name)
    text = (DOCS / "api.md").read_text()
    members = [n for n, _ in inspect.getmembers(cls) if not n.startswith("_")]
    missing = [n for n in members if not _mentioned(n, text)]
    assert not missing, f"docs/api.md: members of {qualname} not mentioned: {missing}"


@pytest.mark.parametrize("command", [[], ["scheduler"], ["worker"]])
def test_deploying_page_lists_every_cli_option(command):
    """Each option ``distml ... --help`` shows is explained in docs/deploying.md."""
    done = subprocess.run([sys.executable, "-m", "distml.cli", *command, "--help"],
                          capture_output=True, text=True, timeout=60, check=True)
    options = set(re.findall(r"(?<![\w-])(--[a-z][a-z-]*)", done.stdout)) - {"--help"}
    assert options, done.stdout
    page = (DOCS / "deploying.md").read_text()
    missing = sorted(o for o in options if f"`{o}" not in page)
    assert not missing, f"docs/deploying.md does not explain {missing}"


# ---------------------------------------------------------------- links


@pytest.mark.parametrize("page", sorted(p.name for p in DOCS.glob("*.md")) + ["../README.md"])
def test_relative_links_resolve(page):
    path = (DOCS / page).resolve()
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", path.read_text()):
        if "://" in target or target.startswith("mailto:"):
            continue
        assert (path.parent / target).exists(), f"{path.name}: broken link {target}"


# ---------------------------------------------------------------- experiments runner


@pytest.fixture
def results_copy(tmp_path: Path) -> Path:
    """The committed full-size results (small JSON and markdown files) in a scratch folder."""
    folder = tmp_path / "results"
    folder.mkdir()
    for path in (EXPERIMENTS / "results").glob("*"):
        if path.suffix in (".json", ".md") and not path.stem.endswith("_quick"):
            shutil.copy(path, folder)
    return folder


def _check_png(path: Path) -> None:
    import matplotlib.image

    assert path.exists() and path.stat().st_size > 0, path
    pixels = matplotlib.image.imread(path)
    assert pixels.ndim == 3 and pixels.shape[0] > 100 and pixels.shape[1] > 100, pixels.shape
    assert pixels.std() > 0.01, f"{path.name} is blank"


def test_plots_written_for_every_results_file(results_copy):
    plots = _load(EXPERIMENTS / "plots.py", "experiments_plots")
    stems = sorted(p.stem for p in results_copy.glob("*.json"))
    assert {"bench_runtime", "bench_array", "chaos"} <= set(stems)
    done = plots.plot_results(results_copy)
    assert sorted(done) == stems
    for stem in stems:
        assert isinstance(done[stem], Path), f"{stem}: {done[stem]}"
        _check_png(done[stem])


def test_plot_falls_back_to_the_markdown_table(tmp_path):
    plots = _load(EXPERIMENTS / "plots.py", "experiments_plots")
    (tmp_path / "bench_new.json").write_text(json.dumps({"anything": 1}))
    (tmp_path / "bench_new.md").write_text(
        "# A new benchmark\n\n| case | distml (s) | peer (s) | note |\n|---|---:|---:|---|\n"
        "| small | 0.25 | 1,250.5 | fine |\n| big | 2.5 | n/a | x |\n")
    figure = plots.figure_for(tmp_path / "bench_new.json")
    assert [p.title for p in figure.panels] == ["distml (s)", "peer (s)"]
    assert figure.panels[1].series["peer (s)"] == [1250.5, None]
    done = plots.plot_results(tmp_path)
    _check_png(done["bench_new"])


def test_plot_errors_name_the_file(tmp_path):
    plots = _load(EXPERIMENTS / "plots.py", "experiments_plots")
    (tmp_path / "bench_runtime.json").write_text(json.dumps({"rows": [{"no": "unit"}]}))
    (tmp_path / "bench_other.json").write_text("{}")
    done = plots.plot_results(tmp_path)
    assert isinstance(done["bench_runtime"], plots.PlotError)
    assert "bench_runtime.json" in str(done["bench_runtime"])
    assert "no reader" in str(done["bench_other"])


def test_readme_section_regenerated_between_markers(results_copy, tmp_path):
    run_all = _load(EXPERIMENTS / "run_all.py", "experiments_run_all")
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\nbefore\n\n{run_all.START}\nold table\n{run_all.END}\n\nafter\n")
    section = run_all.results_section(run_all.BENCHMARKS, results_copy)
    assert run_all.update_readme(section, readme)
    text = readme.read_text()
    assert "old table" not in text and text.startswith("# x\n\nbefore") and \
        text.endswith("after\n")
    runtime_md = (results_copy / "bench_runtime.md").read_text()
    table_row = next(line for line in runtime_md.splitlines() if line.startswith("| map"))
    assert table_row in text
    assert not run_all.update_readme(section, readme)  # idempotent
    assert not re.search(r"^#{1,3} ", section, re.MULTILINE), "a table's heading leaked"
    readme.write_text("no markers")
    with pytest.raises(ValueError, match="markers"):
        run_all.update_readme(section, readme)


def test_runner_skips_missing_scripts_and_lists_benchmarks(tmp_path):
    run_all = _load(EXPERIMENTS / "run_all.py", "experiments_run_all")
    absent = run_all.Benchmark("bench_not_written_yet", "nothing")
    assert run_all.run_one(absent, quick=True, timeout=10).startswith("skipped:")
    (tmp_path / "bench_extra.py").write_text("")
    names = [b.name for b in run_all.discover(run_all.BENCHMARKS, tmp_path)]
    assert names[-1] == "bench_extra" and "chaos" in names
    listing = subprocess.run([sys.executable, str(EXPERIMENTS / "run_all.py"), "--list"],
                             capture_output=True, text=True, timeout=60)
    assert listing.returncode == 0 and "bench_runtime" in listing.stdout


def test_runner_drops_missing_peers_or_skips():
    run_all = _load(EXPERIMENTS / "run_all.py", "experiments_run_all")
    script = EXPERIMENTS / "bench_runtime.py"
    degrade = run_all.Benchmark("bench_runtime", "x", ("no_such_peer_module",), ("--only", "distml"))
    assert run_all.command_for(degrade, quick=True) == [sys.executable, str(script), "--quick",
                                                        "--only", "distml"]
    strict = run_all.Benchmark("bench_runtime", "x", ("no_such_peer_module",))
    assert run_all.command_for(strict, quick=False) is None
    assert run_all.run_one(strict, quick=True, timeout=10).startswith("skipped: needs")
    installed_peer = run_all.Benchmark("bench_runtime", "x", ("json",), ("--only", "distml"))
    assert run_all.command_for(installed_peer, quick=False)[-1] == str(script)
    assert run_all.command_for(installed_peer, quick=False, peers=False)[-2:] == \
        ["--only", "distml"]


def test_runner_end_to_end_quick(tmp_path):
    """``run_all.py --quick --no-peers --only bench_runtime``: the benchmark runs (its quick
    files are not committed) and its plot is written; the README is left alone."""
    readme_before = (ROOT / "README.md").read_text()
    done = subprocess.run([sys.executable, str(EXPERIMENTS / "run_all.py"), "--quick",
                           "--no-peers", "--only", "bench_runtime", "--no-readme"],
                          capture_output=True, text=True, timeout=110, cwd=ROOT)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "bench_runtime_quick.png" in done.stdout
    _check_png(EXPERIMENTS / "results" / "bench_runtime_quick.png")
    assert (ROOT / "README.md").read_text() == readme_before


def test_search_benchmark_plot(tmp_path):
    """bench_search's layout (as experiments/bench_search.py writes it), peers missing included."""
    plots = _load(EXPERIMENTS / "plots.py", "experiments_plots")
    run = {"first_use_s": 4.0, "warm_s": 2.0, "best_score": 0.9}
    (tmp_path / "bench_search.json").write_text(json.dumps({
        "grid": {"pca__n_components": [10, 20], "clf__C": [0.1, 1]},
        "results": [{"system": "scikit-learn GridSearchCV(n_jobs=2)", **run},
                    {"system": "distml GridSearchCV (2 workers x 1 thread)", **run},
                    {"system": "dask-ml GridSearchCV (2 workers x 1 thread)", "note": "n/a"}],
        "chunked": {"data_mb": 64.0, "worker_memory_limit": "48MB", "seconds": 3.0,
                    "sklearn_in_memory_seconds": 1.5}}))
    figure = plots.figure_for(tmp_path / "bench_search.json")
    assert figure.panels[0].series["dask-ml GridSearchCV"] == [None, None]
    assert "4 candidates" in figure.panels[0].title
    _check_png(plots.plot_results(tmp_path)["bench_search"])


def test_joblib_benchmark_plot(tmp_path):
    """bench_joblib's layout (as experiments/bench_joblib.py writes it), a backend not run."""
    plots = _load(EXPERIMENTS / "plots.py", "experiments_plots")
    ran = {"calls_per_s": 5_000.0, "forest_s": 2.5}
    (tmp_path / "bench_joblib.json").write_text(json.dumps({
        "sizes": {"calls": 10_000, "trees": 200, "samples": 50_000},
        "results": {"loky": ran, "dask": {"note": "not run (distributed not installed)"},
                    "distml": {"calls_per_s": 20_000.0, "forest_s": 2.0}}}))
    figure = plots.figure_for(tmp_path / "bench_joblib.json")
    assert figure.panels[0].series == {"loky": [5000.0], "dask": [None], "distml": [20000.0]}
    _check_png(plots.plot_results(tmp_path)["bench_joblib"])
