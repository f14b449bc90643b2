"""The house drawn from its imports: which module imports which, read with ``ast`` (nothing is imported to find out).

Every import statement counts, wherever it stands: at the top, inside a function (a lazy import is still a
dependency) and under ``if TYPE_CHECKING:`` (the old ``sqlite.py ↔ sqlite_live.py`` cycle lived there).
``import_graph`` and ``import_cycles`` know nothing about stores: point them at any set of packages.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from pathlib import Path

import bot.stores
import bot.stores.base
import bot.stores.resilient

ROOT = Path(__file__).resolve().parent.parent
STORE_MODULE_MAX_LINES = 400  # STYLE.md: a module that fits in a head; issue 13 §4 asks for ~400 at most


def module_files(root: Path, package: str) -> dict[str, Path]:
    """Dotted module name → file, for ``package`` (e.g. ``"bot.stores"``) and everything under it."""
    base = root.joinpath(*package.split("."))
    modules: dict[str, Path] = {}
    for path in sorted(base.rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def _imported(node: ast.Import | ast.ImportFrom, module: str, is_package: bool) -> Iterable[str]:
    """The dotted names one import statement asks for, candidates included: ``from a import b`` may mean the
    module ``a.b`` or a name ``b`` inside ``a`` (the caller keeps whichever exists)."""
    if isinstance(node, ast.Import):
        for alias in node.names:
            yield alias.name
        return
    if node.level:  # relative: from the module's own package (a package's __init__ is its own package)
        package = module.split(".") if is_package else module.split(".")[:-1]
        package = package[: len(package) - (node.level - 1)]
        source = ".".join([*package, node.module] if node.module else package)
    else:
        source = node.module or ""
    yield source
    for alias in node.names:
        yield f"{source}.{alias.name}"


def _owner(name: str, modules: dict[str, Path]) -> str | None:
    """The module that ``name`` lives in: itself, or its nearest enclosing module among ``modules``."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def import_graph(root: Path, packages: Iterable[str]) -> dict[str, set[str]]:
    """Module → the modules it imports, among the modules of ``packages`` (imports from elsewhere are left out).

    ``from a import b`` is an arrow to ``a.b`` when that is a module, else to ``a``. Importing a submodule also runs
    its package's ``__init__``; that implicit step is not an arrow (else every package importing its own parts
    would be a cycle)."""
    modules: dict[str, Path] = {}
    for package in packages:
        modules.update(module_files(root, package))
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            if not isinstance(node, ast.Import | ast.ImportFrom):
                continue
            wanted = list(_imported(node, name, is_package))
            if isinstance(node, ast.ImportFrom):
                source, names = wanted[0], wanted[1:]
                targets = {n if n in modules else source for n in names}
            else:
                targets = set(wanted)
            for target in targets:
                owner = _owner(target, modules)
                if owner is not None and owner != name:
                    graph[name].add(owner)
    return graph


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every group of modules that import each other in a circle (Tarjan's strongly connected components of more
    than one module), each group sorted, the groups sorted: [] when the arrows all point one way."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component: list[str] = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(cycles)


def test_the_cycle_finder_sees_the_cycle_the_stores_used_to_have(tmp_path: Path) -> None:
    """The old layout, in miniature: sqlite.py imported sqlite_live.py, which imported sqlite.py back for a type
    (under TYPE_CHECKING); codec.py was imported by both and imports neither."""
    stores = tmp_path / "bot" / "stores"
    stores.mkdir(parents=True)
    (tmp_path / "bot" / "__init__.py").write_text("")
    (stores / "__init__.py").write_text("from bot.stores.base import Store\n")
    (stores / "base.py").write_text("class Store: ...\n")
    (stores / "codec.py").write_text("from bot.stores.base import Store\n")
    (stores / "sqlite.py").write_text("from bot.stores import codec, sqlite_live\nfrom . import base\n")
    (stores / "sqlite_live.py").write_text(
        "from typing import TYPE_CHECKING\nfrom . import codec\nif TYPE_CHECKING:\n    from .sqlite import _Db\n"
    )
    graph = import_graph(tmp_path, ["bot"])
    assert graph["bot.stores.sqlite"] == {"bot.stores.codec", "bot.stores.sqlite_live", "bot.stores.base"}
    assert graph["bot.stores.sqlite_live"] == {"bot.stores.codec", "bot.stores.sqlite"}
    assert graph["bot.stores"] == {"bot.stores.base"}
    assert import_cycles(graph) == [["bot.stores.sqlite", "bot.stores.sqlite_live"]]


def test_stores_have_no_import_cycle() -> None:
    graph = import_graph(ROOT, ["bot.stores"])
    # The walk found the layout it is meant to check, not an empty or misnamed tree.
    assert {"bot.stores.sqlite", "bot.stores.sqlite.db", "bot.stores.redis", "bot.stores.resilient"} <= graph.keys()
    assert "bot.stores.sqlite.db" in graph["bot.stores.sqlite.logs"]
    assert import_cycles(graph) == []


def test_store_engines_import_only_the_contract_and_their_own_parts() -> None:
    """sqlite/, redis/ and resilient/ stand side by side: none imports another; each may use base, codec, memory and its
    own modules. Only bot/stores/__init__.py (open_store) picks one."""
    graph = import_graph(ROOT, ["bot.stores"])
    shared = {"bot.stores.base", "bot.stores.codec", "bot.stores.memory"}
    for engine in ("bot.stores.sqlite", "bot.stores.redis", "bot.stores.resilient"):
        for module, targets in graph.items():
            if module == engine or module.startswith(engine + "."):
                strangers = {t for t in targets if t not in shared and t != engine and not t.startswith(engine + ".")}
                assert strangers == set(), f"{module} imports {sorted(strangers)}"


def test_store_unavailable_is_part_of_the_store_protocols() -> None:
    """Callers catch it from bot.stores.base (or bot.stores), whichever engine raised it: one class, defined once."""
    assert bot.stores.base.StoreUnavailable.__module__ == "bot.stores.base"
    assert bot.stores.StoreUnavailable is bot.stores.base.StoreUnavailable
    assert bot.stores.resilient.StoreUnavailable is bot.stores.base.StoreUnavailable


def test_store_modules_fit_in_a_head() -> None:
    too_long = {
        name: n
        for name, path in module_files(ROOT, "bot.stores").items()
        if (n := len(path.read_text(encoding="utf-8").splitlines())) > STORE_MODULE_MAX_LINES
    }
    assert too_long == {}


# The house: three rooms and the arrows between them (README, "Architecture"). adapters/ speak to platforms and
# hand bot/ neutral requests; bot/ holds the use cases and talks to models only through llm/'s ports; llm/ knows
# neither. The composition root builds the concrete parts and wires them: it alone imports all three rooms.
HOUSE = ["adapters", "bot", "llm"]
COMPOSITION_ROOT = {"bot.cli", "bot.app", "bot.doctor"}
ARROWS = {("adapters", "bot"), ("bot", "llm")}
# Concrete model-server code that bot/ reaches only through llm.ports (the LLM Protocol) outside the composition root.
LLM_CONCRETE = {"llm.router", "llm.openai_provider", "llm.anthropic_provider", "llm.batch"}
MODULE_MAX_LINES = 400  # issue 13: no module over ~400 lines without a reason stated in its docstring
LONG_MODULE_REASON = "Longer than 400 lines because"


def _room(module: str) -> str:
    return module.partition(".")[0]


def test_the_house_has_no_import_cycle() -> None:
    graph = import_graph(ROOT, HOUSE)
    assert {"adapters.console", "bot.assistant", "llm.router"} <= graph.keys()
    assert import_cycles(graph) == []


def test_arrows_point_only_from_adapters_to_bot_to_llm() -> None:
    graph = import_graph(ROOT, HOUSE)
    wrong = sorted(
        f"{module} → {target}"
        for module, targets in graph.items()
        if module not in COMPOSITION_ROOT
        for target in targets
        if _room(module) != _room(target) and (_room(module), _room(target)) not in ARROWS
    )
    assert wrong == []


def test_only_the_composition_root_builds_concrete_model_clients() -> None:
    graph = import_graph(ROOT, HOUSE)
    concrete = sorted(
        f"{module} → {target}"
        for module, targets in graph.items()
        if _room(module) != "llm" and module not in COMPOSITION_ROOT
        for target in targets & LLM_CONCRETE
    )
    assert concrete == []


def test_long_modules_say_why_in_their_docstring() -> None:
    unexplained = []
    for package in HOUSE:
        for name, path in module_files(ROOT, package).items():
            source = path.read_text(encoding="utf-8")
            if len(source.splitlines()) > MODULE_MAX_LINES:
                doc = ast.get_docstring(ast.parse(source)) or ""
                if LONG_MODULE_REASON not in doc:
                    unexplained.append(f"{name} ({len(source.splitlines())} lines)")
    assert unexplained == []
