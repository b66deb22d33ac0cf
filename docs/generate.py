"""The generated parts of the docs: the configuration table and the API reference.

    .venv/bin/python docs/generate.py          # rewrite both
    .venv/bin/python docs/generate.py --check  # exit 1 when the configuration table is stale

The configuration table (in ``docs/configuration.md``) is built from the ``Config`` dataclass
itself (field names, types, defaults) and the ``#:`` comments above each field in
``distml/config.py``, so a new setting cannot be missing from the page: ``tests/test_docs.py``
fails until the page is regenerated.  ``docs/api.md`` is built from the public modules' names,
signatures and docstrings (:data:`API_MODULES`); the tests check that it mentions every public
name, so a new one fails them until this script is run again.
"""

from __future__ import annotations

import argparse
import ast
import inspect
import re
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a checkout without installing
CONFIG_SOURCE = ROOT / "distml" / "config.py"
CONFIG_PAGE = ROOT / "docs" / "configuration.md"
START = "<!-- config:start (written by docs/generate.py from distml/config.py) -->"
END = "<!-- config:end -->"
NOT_FROM_ENV = ("ssl_",)  # Config.load skips these: objects, not text


def config_fields(source: Path = CONFIG_SOURCE) -> list[dict[str, str]]:
    """Each field of ``class Config``: name, type, default (as written) and its comment.

    A field without a comment of its own refers to the last one above it that has one (the
    memory fractions, the TLS files share a comment)."""
    text = source.read_text()
    lines = text.splitlines()
    tree = ast.parse(text)
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Config")
    rows: list[dict[str, str]] = []
    leader = ""  # the last field with a comment of its own
    for node in cls.body:
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            continue
        name = node.target.id
        comment = []
        i = node.lineno - 2
        while i >= 0 and lines[i].strip().startswith("#:"):
            comment.insert(0, lines[i].strip()[2:].strip())
            i -= 1
        if comment:
            leader, meaning = name, " ".join(comment)
        elif leader:
            meaning = f"See `{leader}`."
        else:
            raise ValueError(f"{source}: Config.{name} has no #: comment saying what it is")
        default = ast.get_source_segment(text, node.value) if node.value else ""
        if isinstance(node.value, ast.Call):  # field(default=..., repr=False)
            kw = {k.arg: k.value for k in node.value.keywords}
            default = ast.get_source_segment(text, kw["default"]) if "default" in kw else ""
        rows.append({"name": name, "type": ast.get_source_segment(text, node.annotation) or "",
                     "default": default or "(required)", "meaning": meaning})
    return rows


def env_name(field_name: str) -> str:
    return "DISTML_" + field_name.upper()


def config_table(source: Path = CONFIG_SOURCE) -> str:
    out = ["| field | environment variable | type | default | meaning |",
           "| --- | --- | --- | --- | --- |"]
    for row in config_fields(source):
        env = ("(not read from the environment)" if row["name"].startswith(NOT_FROM_ENV)
               else f"`{env_name(row['name'])}`")
        cells = [f"`{row['name']}`", env, f"`{row['type']}`", f"`{row['default']}`",
                 row["meaning"]]
        out.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(out)


def render_page(page: str, table: str) -> str:
    start, end = page.find(START), page.find(END)
    if start < 0 or end < start:
        raise ValueError(f"{CONFIG_PAGE}: markers {START!r} / {END!r} missing or out of order")
    return page[:start + len(START)] + "\n\n" + table + "\n\n" + page[end:]


API_PAGE = ROOT / "docs" / "api.md"
#: Public modules, in the order of the page; those whose file does not exist are left out.
API_MODULES = [
    ("distml", "distml/__init__.py"),
    ("distml.array", "distml/array"), ("distml.array.random", "distml/array/random.py"),
    ("distml.dataframe", "distml/dataframe"),
    ("distml.estimators", "estimators/__init__.py"),
    ("distml.estimators.linear_model", "estimators/linear_model"),
    ("distml.estimators.preprocessing", "estimators/preprocessing.py"),
    ("distml.estimators.metrics", "estimators/metrics.py"),
    ("distml.estimators.model_selection", "estimators/model_selection"),
    ("distml.estimators.wrappers", "estimators/wrappers.py"),
    ("distml.parallel", "distml/parallel"),
    ("distml.diagnostics", "distml/diagnostics"), ("distml.dashboard", "distml/dashboard"),
    ("distml.config", "distml/config.py"), ("distml.errors", "distml/errors.py"),
    ("distml.cli", "distml/cli.py"),
]
#: Classes whose public methods and properties are listed one by one.
API_CLASSES = {"Client", "Future", "LocalCluster", "Array", "DataFrame", "Series", "Config"}


def public_names(module: Any) -> list[str]:
    """``__all__``, or else the classes and functions the module defines without a ``_``."""
    if hasattr(module, "__all__"):
        return list(module.__all__)
    return sorted(n for n, v in vars(module).items() if not n.startswith("_")
                  and (inspect.isclass(v) or inspect.isfunction(v))
                  and getattr(v, "__module__", None) == module.__name__)


def _summary(obj: Any) -> str:
    """The first sentence-paragraph of a docstring, on one line."""
    doc = inspect.getdoc(obj) or ""
    return " ".join(doc.split("\n\n")[0].split())


#: Summaries for public members whose docstring is empty.
FALLBACK_SUMMARIES = {
    "Client.nthreads": "Threads of each worker, by address.",
    "Client.scheduler_info": "The scheduler's view: address, clients, task counts by state, "
                             "and per worker its threads, memory limit, resident memory, bytes "
                             "held and spilled, tasks processing, paused.",
    "Client.wait_for_workers": "Block until at least ``n_workers`` workers have joined.",
    "Client.who_has": "Worker addresses holding each future's result (all held keys when "
                      "``futures`` is None).",
    "Future.cancel": "Stop computing this future (``Client.cancel`` for one future).",
    "Future.done": "Whether the future finished (value, error or cancelled).",
    "Future.exception": "The task's exception (waiting for it to finish), or None.",
    "Future.retry": "Run a failed future again (``Client.retry`` for one future).",
    "Future.status": "``pending``, ``finished``, ``error``, ``cancelled`` or ``lost``.",
    "Future.key": "The task's key.",
    "Future.client": "The client this future belongs to.",
    "LocalCluster.scheduler_address": "The scheduler's address (``tcp://127.0.0.1:port``).",
    "LocalCluster.wait_for_workers": "Block until at least ``n`` workers have joined.",
    "LocalCluster.workers": "Addresses of the workers that have joined.",
    "Config.replace": "A copy with some fields changed.",
    "Array.T": "The transpose (axes reversed).",
    "Array.chunksize": "The largest block length along each axis.",
    "Array.nbytes": "Bytes of the whole array (itemsize times size).",
    "Array.ndim": "Number of axes.",
    "Array.npartitions": "Number of blocks.",
    "Array.numblocks": "Number of blocks along each axis.",
    "Array.shape": "Length of each axis (``nan`` where block lengths are unknown).",
    "Array.size": "Number of elements.",
    "Array.chunks": "Block lengths along each axis, a tuple of tuples.",
    "Array.dtype": "The numpy dtype of the elements.",
    "default_secret_file": "Where the CLI keeps the secret: ``$DISTML_SECRET_FILE`` or "
                           "``~/.config/distml/secret``.",
    "read_secret_file": "The secret stored in ``path`` (``ValueError`` if the file is empty).",
    "main": "Entry point of the ``distml`` command: ``distml scheduler``, ``distml worker``.",
    "Config.secret_bytes": "The secret as bytes; ``ValueError`` when none is set.",
}
#: Classes whose constructor's signature is left out (documented on their own page).
NO_SIGNATURE = {"Config": "every field is listed in [configuration.md](configuration.md)"}


def _signature(obj: Any) -> str:
    try:
        try:
            sig = inspect.signature(obj, eval_str=True)
        except (NameError, TypeError, AttributeError):
            sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return ""
    text = str(sig)
    # string annotations that could not be evaluated keep their quotes: drop them
    text = re.sub(r"(?<=: |> )'([^']+)'", r"\1", text)
    text = re.sub(r"ForwardRef\('(\w+)'\)", r"\1", text)
    text = re.sub(r"\b(?:collections\.abc|typing|pathlib|pandas|numpy|sklearn\.base)\.", "", text)
    return re.sub(r"\bdistml(?:\.\w+)*\.(\w+)", r"\1", text)  # distml.array.core.Array -> Array


def _member_summary(qualname: str, value: Any, module: Any = None) -> str:
    """The member's docstring; else a fallback above; else the docstring of the module-level
    function of the same name (``Array.sum`` is ``distml.array.sum``)."""
    summary = _summary(value) or FALLBACK_SUMMARIES.get(qualname, "")
    name = qualname.rsplit(".", 1)[-1]
    twin = getattr(module, name, None) if module is not None else None
    if not summary and callable(twin) and _summary(twin):
        summary = f"As `{module.__name__}.{name}`: {_summary(twin)}"
    return summary


def _entry(name: str, obj: Any, module: Any = None) -> list[str]:
    if inspect.ismodule(obj):
        return [f"- `{name}`: module; {_summary(obj)}"]
    if inspect.isclass(obj):
        kind = "exception" if issubclass(obj, BaseException) else "class"
        sig = _signature(obj) if kind == "class" and name not in NO_SIGNATURE else ""
        extra = f" ({NO_SIGNATURE[name]})" if name in NO_SIGNATURE else ""
        lines = [f"- `{name}{sig}`: {kind}. {_summary(obj)}{extra}"]
        if name in API_CLASSES:
            for member, value in inspect.getmembers(obj):
                if member.startswith("_"):
                    continue
                qualname = f"{name}.{member}"
                if isinstance(value, property) or inspect.isdatadescriptor(value):
                    lines.append(f"  - `{qualname}` (attribute): "
                                 f"{_member_summary(qualname, value, module)}")
                elif callable(value):
                    lines.append(f"  - `{qualname}{_signature(value)}`: "
                                 f"{_member_summary(qualname, value, module)}")
        return lines
    if callable(obj):
        return [f"- `{name}{_signature(obj)}`: {_summary(obj) or FALLBACK_SUMMARIES.get(name, '')}"]
    return [f"- `{name}` = `{obj!r}`"]


def api_page() -> str:
    import importlib

    out = [_api_header()]
    for module_name, path in API_MODULES:
        if not (ROOT / path).exists():
            continue
        module = importlib.import_module(module_name)
        out += ["", f"## `{module_name}`", "", _summary(module), ""]
        for name in public_names(module):
            out += _entry(name, getattr(module, name), module)
    return "\n".join(out) + "\n"


GUIDES = ["quickstart", "runtime", "arrays", "tables", "estimators", "search", "joblib",
          "dashboard", "deploying", "security", "configuration", "architecture"]


def _api_header() -> str:
    guides = ", ".join(f"[{g}]({g}.md)" for g in GUIDES if (ROOT / "docs" / f"{g}.md").exists())
    return ("# API reference\n\nEvery public module and name, with its signature and the first "
            "paragraph of its docstring\n(`help(name)` has the rest). Generated by "
            "`docs/generate.py`; `tests/test_docs.py` checks that\nevery public name is here. "
            f"Guides: {guides}.")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report whether it is stale")
    args = parser.parse_args(argv)
    page = CONFIG_PAGE.read_text()
    new = render_page(page, config_table())
    if args.check:
        if new != page:
            print(f"{CONFIG_PAGE} is stale: run .venv/bin/python docs/generate.py",
                  file=sys.stderr)
            return 1
        return 0
    if new != page:
        CONFIG_PAGE.write_text(new)
        print(f"wrote {CONFIG_PAGE}")
    api = api_page()
    if not API_PAGE.exists() or API_PAGE.read_text() != api:
        API_PAGE.write_text(api)
        print(f"wrote {API_PAGE}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
