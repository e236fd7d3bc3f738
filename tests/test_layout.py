"""The layout holds: imports point down (read from the source, no import-linter needed), and
every module path the docs name exists."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "streamer"
# Libraries that do I/O (network, files, processes, clocks of the event loop): never in core/.
IO_LIBRARIES = {
    "aiohttp", "aiokafka", "asyncio", "chdb", "clickhouse_connect", "faust", "httpx", "kafka",
    "mode", "os", "redis", "requests", "signal", "socket", "subprocess", "threading", "urllib",
}

ENTRY_AREAS = ("streamer.modes", "streamer.demo")
ENTRY_CALLERS = {("streamer.cli", "streamer.modes"), ("streamer.modes", "streamer.demo")}


def module_name(path: Path) -> str:
    """`streamer/stream/ingest.py` -> `streamer.stream.ingest` (a package is its __init__)."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@cache
def modules() -> dict[str, Path]:
    """Every module of the package by dotted name."""
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imported(path: Path) -> Iterator[str]:
    """Every module name an import statement of the file names (at any depth, lazy ones too)."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names
                        if f"{node.module}.{alias.name}" in modules())


def area(module: str) -> str:
    """The layer a module belongs to: its sub-package, or the top-level module itself."""
    parts = module.split(".")
    return ".".join(parts[:2])


@cache
def edges() -> frozenset[tuple[str, str]]:
    """(importer, imported) between our own modules."""
    ours = modules()
    return frozenset((name, target) for name, path in ours.items() for target in imported(path)
                     if target in ours and target != name)


def violations(rule: str, found: frozenset[tuple[str, str]]) -> list[str]:
    """Edges breaking one named rule, as `importer -> imported`."""
    out = []
    for src, dst in sorted(found):
        a, b = area(src), area(dst)
        if a == b or b == "streamer":
            continue
        if rule == "entry points" and b in ENTRY_AREAS and (a, b) not in ENTRY_CALLERS:
            out.append(f"{src} -> {dst}")
        if rule == "stream" and a == "streamer.stream" and b in ("streamer.trending",
                                                                  "streamer.jobs"):
            out.append(f"{src} -> {dst}")
        if rule == "jobs" and a == "streamer.jobs" and b in ("streamer.stream",
                                                              "streamer.trending"):
            out.append(f"{src} -> {dst}")
        if rule == "core" and a == "streamer.core" and b != "streamer.errors":
            out.append(f"{src} -> {dst}")
    return out


@pytest.mark.parametrize("rule", ["entry points", "stream", "jobs", "core"])
def test_imports_point_down(rule: str) -> None:
    """Nothing imports modes/ or demo/ (but cli -> modes, modes -> demo); stream/ never imports
    trending/ or jobs/; jobs/ never imports stream/ or trending/; core/ imports only core/ and
    errors."""
    assert violations(rule, edges()) == []


def test_core_does_no_io() -> None:
    """core/ is pure: no library that talks to the network, the disk or processes."""
    found = sorted(
        f"{name} imports {lib}"
        for name, path in modules().items() if name.startswith("streamer.core")
        for lib in imported(path) if lib.split(".")[0] in IO_LIBRARIES
    )
    assert found == []


def cycles(found: frozenset[tuple[str, str]]) -> list[str]:
    """Cycles in the graph of areas (sub-packages and top-level modules)."""
    graph: dict[str, set[str]] = {}
    for src, dst in found:
        a, b = area(src), area(dst)
        if a != b and b != "streamer":
            graph.setdefault(a, set()).add(b)
    out: list[str] = []
    state: dict[str, int] = {}  # 1 on the current path, 2 done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                out.append(" -> ".join([*path[path.index(nxt):], nxt]))
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    return out


def test_no_cycles_between_areas() -> None:
    """No area imports, directly or not, an area that imports it back."""
    assert cycles(edges()) == []


@pytest.mark.parametrize(("edge", "rule"), [
    (("streamer.trending.merger", "streamer.modes.worker"), "entry points"),
    (("streamer.jobs.runner", "streamer.demo.traffic"), "entry points"),
    (("streamer.stream.ingest", "streamer.trending.write"), "stream"),
    (("streamer.stream.app", "streamer.jobs.runner"), "stream"),
    (("streamer.jobs.reconcile", "streamer.stream.exchange"), "jobs"),
    (("streamer.core.events", "streamer.settings.model"), "core"),
])
def test_a_planted_edge_is_caught(edge: tuple[str, str], rule: str) -> None:
    """Each rule fails on an edge that breaks it (the checks can fail)."""
    assert violations(rule, edges() | {edge}) == [f"{edge[0]} -> {edge[1]}"]


def test_a_planted_cycle_is_caught() -> None:
    """A back edge (settings -> kafka, while kafka imports settings) is a cycle."""
    assert ("streamer.kafka.client", "streamer.settings.model") in edges()
    planted = edges() | {("streamer.settings.model", "streamer.kafka.client")}
    assert "streamer.settings -> streamer.kafka -> streamer.settings" in cycles(planted)


def test_imports_are_read(tmp_path: Path) -> None:
    """Lazy imports inside functions count too."""
    path = tmp_path / "m.py"
    path.write_text("def f() -> None:\n    import redis\n    from streamer.core import window\n")
    assert set(imported(path)) >= {"redis", "streamer.core", "streamer.core.window"}


# Where module paths are named for readers.
DOCS = [ROOT / "README.md", ROOT / "CONTRIBUTING.md", *sorted((ROOT / "docs").glob("*.md"))]
PATH = re.compile(r"(?<![\w/.-])((?:streamer|tests|benchmarks|scripts|k8s)/[\w./*-]*[\w*]/?)")
DOTTED = re.compile(r"(?<![\w./-])(streamer(?:\.\w+)+)")
AREAS = "core|stream|jobs|trending|kafka|settings|cache|clickhouse|modes|ops|demo"
# Short names in backticks: `jobs.reconcile`, `core.reconcile.StreamSnapshot`; short paths
# (`stream/exchange.py`) in docstrings.
SHORT = re.compile(rf"`((?:{AREAS})\.\w+(?:\.\w+)*)")
SHORT_PATH = re.compile(rf"(?<![\w/.-])((?:{AREAS})/\w+\.py)")
FILE_SUFFIXES = {"log", "conf", "yaml", "yml", "json", "txt", "toml", "md"}  # file names, not modules


@cache
def top_level_names(module: str) -> frozenset[str]:
    """Names a module defines or imports at top level (what `module.name` may refer to)."""
    tree = ast.parse(modules()[module].read_text())
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(t.id for t in targets if isinstance(t, ast.Name))
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
    return frozenset(names)


def resolves(dotted: str) -> bool:
    """`streamer.a.b[.Name[.attr]]` names a module, or a top-level name of one."""
    parts = dotted.rstrip(".").split(".")
    for cut in range(len(parts), 0, -1):
        module = ".".join(parts[:cut])
        if module in modules():
            return cut == len(parts) or parts[cut] in top_level_names(module)
    return False


def named_paths(text: str) -> set[str]:
    """Repository paths and dotted module names a text names."""
    found = {m.group(1).rstrip(".") for m in PATH.finditer(text)}
    found |= {f"streamer/{m.group(1)}" for m in SHORT_PATH.finditer(text)}
    found |= {m.group(1) for m in DOTTED.finditer(text)
              if m.group(1).rsplit(".", 1)[-1] not in FILE_SUFFIXES}
    found |= {f"streamer.{m.group(1)}" for m in SHORT.finditer(text)
              if m.group(1).rsplit(".", 1)[-1] not in FILE_SUFFIXES}
    return found


def path_exists(name: str) -> bool:
    """A file or folder, a glob that matches one, or `path/module.attr` of an existing module."""
    if "*" in name:
        return any(ROOT.glob(name))
    if (ROOT / name).exists():
        return True
    head, _, attr = name.rpartition(".")
    return bool(head) and (ROOT / f"{head}.py").exists() and attr.isidentifier()


def missing(names: set[str]) -> list[str]:
    """The names that point at nothing."""
    out = []
    for name in sorted(names):
        if "/" in name:
            if not path_exists(name):
                out.append(name)
        elif not resolves(name):
            out.append(name)
    return out


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_docs_name_real_modules(doc: Path) -> None:
    """Every `streamer/...`, `tests/...` path and `streamer.x.y` name in the docs exists."""
    assert missing(named_paths(doc.read_text())) == []


def test_docstrings_name_real_modules() -> None:
    """Package and module docstrings name modules (and their names) that exist."""
    found = {}
    for name, path in modules().items():
        doc = ast.get_docstring(ast.parse(path.read_text())) or ""
        bad = missing(named_paths(doc))
        if bad:
            found[name] = bad
    assert found == {}


def test_a_wrong_path_is_caught() -> None:
    """The doc check fails on a moved module, a missing name and a missing file (the old names
    are assembled, so that a rename script run over the tree leaves them old)."""
    gone_path, gone_module = "/".join(["streamer", "stream", "worker.py"]), ".".join(["jobs", "standby"])
    text = f"see `{gone_path}`, streamer.core.scoring.Nope and `{gone_module}`"
    assert missing(named_paths(text)) == [
        "streamer.core.scoring.Nope", f"streamer.{gone_module}", gone_path]
    assert missing(named_paths("`streamer/modes/worker.py` and `trending.merger.Publisher`")) == []


MODULE_LINE = re.compile(r"^  (\w+)\s{2,}\S", re.M)


@pytest.mark.parametrize("package", sorted(p.parent.name for p in PACKAGE.glob("*/__init__.py")))
def test_package_docstring_lists_its_modules(package: str) -> None:
    """Each package's docstring has a `Modules:` map naming exactly its modules."""
    doc = ast.get_docstring(ast.parse((PACKAGE / package / "__init__.py").read_text())) or ""
    listed = MODULE_LINE.findall(doc.partition("Modules:")[2].partition("\n\n")[0])
    actual = sorted(p.stem for p in (PACKAGE / package).glob("*.py") if p.stem != "__init__")
    assert sorted(listed) == actual


def layout_section() -> str:
    """CONTRIBUTING's `## Layout` section."""
    text = (ROOT / "CONTRIBUTING.md").read_text()
    return text.partition("## Layout")[2].partition("\n## ")[0]


def test_contributing_layout_maps_every_area() -> None:
    """The layout map names every package and top-level module of streamer/, and nothing else."""
    section = layout_section()
    named = set(re.findall(r"^(streamer/\w+(?:/|\.py))", section, re.M))
    actual = {f"streamer/{p.parent.name}/" for p in PACKAGE.glob("*/__init__.py")}
    actual |= {f"streamer/{p.name}" for p in PACKAGE.glob("*.py") if p.stem != "__init__"}
    assert named == actual


MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 40  # non-blank lines from `def` to its end (blank lines are the formatter's)


def oversized(name: str, source: str) -> list[str]:
    """A module over MAX_MODULE_LINES lines, and its functions over MAX_FUNCTION_LINES."""
    lines = source.splitlines()
    out = [f"{name}: {len(lines)} lines"] if len(lines) > MAX_MODULE_LINES else []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno:
            body = [ln for ln in lines[node.lineno - 1:node.end_lineno] if ln.strip()]
            if len(body) > MAX_FUNCTION_LINES:
                out.append(f"{name}.{node.name}: {len(body)} lines")
    return out


def test_modules_and_functions_stay_small() -> None:
    """Modules up to 400 lines, functions up to 40 (CONTRIBUTING, "Style")."""
    assert [bad for name, path in modules().items()
            for bad in oversized(name, path.read_text())] == []


def test_an_oversized_function_and_module_are_caught() -> None:
    """The size check fails on a 41-line function and a 401-line module."""
    long_function = "def f() -> None:\n" + "    x = 1\n" * 40
    assert oversized("m", long_function) == ["m.f: 41 lines"]
    assert oversized("m", "def f() -> None:\n" + "\n    x = 1\n" * 39) == []
    assert oversized("m", "x = 1\n" * 401) == ["m: 401 lines"]
