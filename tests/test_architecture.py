"""Guards for the architecture (docs/architecture.md) and the house rules (DEVELOPERS.md).

The package is laid out in rooms by the process that runs them (config/, master/, workers/,
http/, wsgi/, asgi/, observe/, ipc/), and some rooms must never import others: those "nevers" are
checked here, one test per never, over every import in the source (module level, inside
functions, under TYPE_CHECKING, and constant ``import_module`` strings). Each never is also
run against an injected offending module, so a guard that silently stopped finding anything
fails too. Import cycles between modules are refused the same way.

Each rule is checked over the source tree with ``ast`` (no imports needed), except the
inheritance rule, which needs the real classes: that check imports every module in a fresh
interpreter, so this test process is never monkey-patched or otherwise changed by it. The
AST checkers are themselves tested on small snippets.

Known violations are listed in ``KNOWN_*`` with the reason; the main guard ignores them (so
new offenders still fail) and a strict xfail test fails as soon as one is fixed, so the entry
gets removed.
"""

from __future__ import annotations

import ast
import functools
import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src"
PACKAGE = SRC / "greenhorn"
HTTP = PACKAGE / "http"

FORBIDDEN_IN_HTTP = frozenset(
    ("socket", "select", "selectors", "os", "threading", "ssl", "asyncio", "subprocess", "signal")
)
MUTABLE_CALLS = frozenset(
    ("list", "dict", "set", "deque", "defaultdict", "Counter", "OrderedDict", "bytearray")
)
MUTABLE_NODES = (ast.List, ast.Dict, ast.Set, ast.ListComp, ast.DictComp, ast.SetComp)
OPTIONAL_EXTRAS = {"greenhorn.workers.ggevent": "gevent", "greenhorn.workers.geventlet": "eventlet"}

# The rooms, and the rooms each must never import (DEVELOPERS.md, "Nevers"). A room may
# import itself, http/ (sans-IO, imports nothing) and the others not listed.
ROOMS = ("config", "master", "workers", "http", "wsgi", "asgi", "observe", "ipc", "app")
NEVERS: dict[str, tuple[str, ...]] = {
    "http": (*(r for r in ROOMS if r != "http"), "<flat>", "<root>"),  # nothing outside http/
    "ipc": (*(r for r in ROOMS if r != "ipc"), "<flat>", "<root>"),  # nothing outside ipc/
    "workers": ("master", "app"),
    "observe": ("master", "workers", "app"),
    "config": ("master", "workers", "app"),
    "wsgi": ("workers", "master", "app"),
    "asgi": ("workers", "master", "app"),
    "master": ("app",),  # the Python API (app/) sits on top of the master, as the CLI does
}
# At most six modules sit flat in src/greenhorn; everything else lives in a room.
FLAT_MODULES = frozenset(("__init__.py", "__main__.py", "cli.py", "ctl.py"))
# frozenset of the modules in a cycle -> why it is tolerated for now
KNOWN_CYCLES: dict[frozenset[str], str] = {}


def modules(root: Path = PACKAGE) -> list[Path]:
    return sorted(p for p in root.rglob("*.py") if "__pycache__" not in p.parts)


def rel(path: Path) -> str:
    return path.relative_to(PACKAGE).as_posix()


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@functools.cache
def parse(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


# -- checkers (pure functions over source, tested below) ----------------------------------


def imported_names(tree: ast.Module, module: str, is_package: bool = False) -> set[str]:
    """Every absolute module name ``tree`` imports, anywhere (functions, TYPE_CHECKING...).

    Relative imports are resolved against ``module``; ``from pkg import name`` yields both
    ``pkg`` and ``pkg.name`` (the name may be a submodule); a constant string passed to
    ``__import__`` or ``import_module`` counts too.
    """
    package = module if is_package else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = parts[: len(parts) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Call) and node.args:
            func = node.func
            name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
            arg = node.args[0]
            dynamic = name in ("__import__", "import_module") and isinstance(arg, ast.Constant)
            if dynamic and isinstance(arg.value, str):
                found.add(arg.value)
    return found


def forbidden_for_http(names: set[str]) -> set[str]:
    """The forbidden roots among ``names``: an IO module, or ``greenhorn.config``."""
    bad = set()
    for name in names:
        root = name.split(".")[0]
        if root in FORBIDDEN_IN_HTTP:
            bad.add(root)
        elif name == "greenhorn.config" or name.startswith("greenhorn.config."):
            bad.add("greenhorn.config")
    return bad


def mutable_class_attributes(tree: ast.Module) -> list[str]:
    """``Class.attr`` for each class-body assignment whose value is a mutable container."""
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.ClassDef):
            continue
        for stmt in node.body:
            if isinstance(stmt, ast.Assign):
                targets, value = stmt.targets, stmt.value
            elif isinstance(stmt, ast.AnnAssign) and stmt.value is not None:
                targets, value = [stmt.target], stmt.value
            else:
                continue
            mutable = isinstance(value, MUTABLE_NODES)
            if isinstance(value, ast.Call):
                func = value.func
                called = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
                mutable = called in MUTABLE_CALLS
            if mutable:
                names = ", ".join(ast.unparse(t) for t in targets)
                found.append(f"{node.name}.{names} (line {stmt.lineno})")
    return found


# -- the checkers catch what they should --------------------------------------------------


@pytest.mark.parametrize(
    "source, module, expected",
    [
        ("import socket", "greenhorn.http.x", {"socket"}),
        ("import os.path", "greenhorn.http.x", {"os"}),
        ("from os import path", "greenhorn.http.x", {"os"}),
        ("from select import poll", "greenhorn.http.x", {"select"}),
        ("def f():\n    import threading", "greenhorn.http.x", {"threading"}),
        ("from greenhorn import config", "greenhorn.http.x", {"greenhorn.config"}),
        ("from greenhorn.config import Config", "greenhorn.http.x", {"greenhorn.config"}),
        ("import greenhorn.config.converters", "greenhorn.http.x", {"greenhorn.config"}),
        ("from .. import config", "greenhorn.http.x", {"greenhorn.config"}),
        ("from ..config.types import Setting", "greenhorn.http.x", {"greenhorn.config"}),
        ("import importlib\nimportlib.import_module('ssl')", "greenhorn.http.x", {"ssl"}),
        ("__import__('asyncio')", "greenhorn.http.x", {"asyncio"}),
        ("import re\nfrom . import errors\nfrom greenhorn.http import fields", "x.y", set()),
        ("from .errors import HTTPError\nimport dataclasses", "greenhorn.http.x", set()),
        ("import socketserver_like_name_is_fine", "greenhorn.http.x", set()),
    ],
)
def test_import_checker(source, module, expected):
    assert forbidden_for_http(imported_names(ast.parse(source), module)) == expected


def test_relative_import_in_a_package_init():
    names = imported_names(ast.parse("from . import body\nfrom .. import config"), "a.b", True)
    assert {"a.b.body", "a.config"} <= names


@pytest.mark.parametrize(
    "source, count",
    [
        ("class A:\n    x = []", 1),
        ("class A:\n    x: dict = {}", 1),
        ("class A:\n    x = {1, 2}", 1),
        ("class A:\n    x = [i for i in range(3)]", 1),
        ("class A:\n    x = list()", 1),
        ("class A:\n    x = collections.deque()", 1),
        ("class A:\n    x = defaultdict(list)", 1),
        ("class A:\n    x = Counter()", 1),
        ("class A:\n    class B:\n        y = set()", 1),
        ("class A:\n    a = b = []", 1),
        ("class A:\n    x = ()\n    y = frozenset()\n    z = 'a'\n    n: int", 0),
        ("class A:\n    __slots__ = ('a',)\n    T = MappingProxyType({})", 0),
        ("class A:\n    def __init__(self):\n        self.x = []", 0),
        ("x = []\nclass A:\n    pass", 0),
    ],
)
def test_mutable_attribute_checker(source, count):
    assert len(mutable_class_attributes(ast.parse(source))) == count


# -- (a) the nevers: one test per rule --------------------------------------------------


def room_of(module: str) -> str:
    """``greenhorn.workers.base`` -> ``workers``; ``greenhorn`` itself -> ``<root>``; a flat
    module (cli, ctl) -> ``<flat>``."""
    if module == "greenhorn":
        return "<root>"
    parts = module.split(".")
    return parts[1] if len(parts) >= 2 and parts[1] in ROOMS else "<flat>"


def room_imports(room: str, extra: dict[str, str] | None = None) -> dict[str, set[str]]:
    """Every greenhorn module each module of ``room`` imports (``extra``: module name ->
    source, added as if it were a file of the room)."""
    found: dict[str, set[str]] = {}
    for path in modules(PACKAGE / room):
        name = module_name(path)
        found[name] = imported_names(parse(path), name, path.name == "__init__.py")
    for name, source in (extra or {}).items():
        found[name] = imported_names(ast.parse(source), name)
    return {m: {n for n in names if n.split(".")[0] == "greenhorn"} for m, names in found.items()}


def violations(room: str, extra: dict[str, str] | None = None) -> dict[str, list[str]]:
    """The imports of ``room`` that its never forbids, by module."""
    forbidden = NEVERS[room]
    out = {}
    for module, names in room_imports(room, extra).items():
        bad = sorted(n for n in names if room_of(n) in forbidden)
        if bad:
            out[module] = bad
    return out


@pytest.mark.parametrize("room", sorted(NEVERS))
def test_never(room: str) -> None:
    assert modules(PACKAGE / room), f"no modules found under src/greenhorn/{room}"
    found = violations(room)
    assert not found, f"{room}/ must never import {', '.join(NEVERS[room])}: {found}"


# One offending import per never, as a new module of the room would write it.
INJECTED = {
    "http": "from greenhorn.config import Config",
    "ipc": "from greenhorn.observe.logger import Logger",
    "workers": "from greenhorn.master import arbiter",
    "observe": "def f():\n    from greenhorn.workers.base import Worker",
    "config": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from greenhorn.master import policy",
    "wsgi": "import importlib\nimportlib.import_module('greenhorn.workers.handler')",
    "asgi": "from greenhorn.workers.asgi.shared import Shared",
    "master": "from greenhorn.app.base import BaseApplication",
}


@pytest.mark.parametrize("room", sorted(NEVERS))
def test_never_fails_on_an_injected_import(room: str) -> None:
    name = f"greenhorn.{room}.injected"
    found = violations(room, {name: INJECTED[room]})
    assert name in found, f"the {room}/ guard missed {INJECTED[room]!r}"


def test_flat_http_import_is_caught() -> None:
    found = violations("http", {"greenhorn.http.injected": "from greenhorn import SERVER_SOFTWARE"})
    assert "greenhorn" in found["greenhorn.http.injected"]


def test_http_package_imports_no_io_and_no_config():
    """sans-IO: http/ also imports no socket, select, os, threading... module."""
    offenders = {}
    for path in modules(HTTP):
        names = imported_names(parse(path), module_name(path), path.name == "__init__.py")
        bad = forbidden_for_http(names)
        if bad:
            offenders[rel(path)] = sorted(bad)
    assert not offenders, f"http/ must stay sans-IO and config-free: {offenders}"


# -- (b) layout: rooms, few flat modules, no import cycles ---------------------------------


def test_at_most_six_flat_modules() -> None:
    flat = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(flat) <= 6 and set(flat) <= FLAT_MODULES, (
        f"modules flat in src/greenhorn: {flat}; put new ones in a room ({', '.join(ROOMS)})"
    )


def test_every_package_is_a_room() -> None:
    packages = sorted(p.parent.name for p in PACKAGE.glob("*/__init__.py"))
    assert set(packages) == set(ROOMS), packages


def imported_modules(tree: ast.Module, module: str, is_package: bool, known: set[str]) -> set[str]:
    """The modules of ``known`` that ``tree`` imports: ``from pkg import mod`` points at the
    module ``pkg.mod``, ``from pkg import name`` at ``pkg``; anywhere in the file."""
    package = module if is_package else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join([*parts[: len(parts) - (node.level - 1)], node.module or ""])
                base = base.rstrip(".")
            else:
                base = node.module or ""
            targets = [
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base
                for alias in node.names
            ]
        else:
            continue
        for target in targets:
            while target and target not in known:  # import a.b.c where only a.b is ours
                target = target.rpartition(".")[0]
            if target and target != module:
                found.add(target)
    return found


def import_graph(extra: dict[str, str] | None = None) -> dict[str, set[str]]:
    """Module -> the greenhorn modules it imports. Every import counts, also inside
    functions and under TYPE_CHECKING: a cycle hidden there is still a cycle of design."""
    sources = {module_name(p): (parse(p), p.name == "__init__.py") for p in modules()}
    for name, source in (extra or {}).items():
        sources[name] = (ast.parse(source), False)
    known = set(sources)
    return {
        name: imported_modules(tree, name, is_package, known)
        for name, (tree, is_package) in sources.items()
    }


def room_graph(extra: dict[str, str] | None = None) -> dict[str, set[str]]:
    """Room -> the rooms it imports (``<flat>``: cli.py, ctl.py; ``<root>``: the package)."""
    graph: dict[str, set[str]] = {}
    for module, targets in import_graph(extra).items():
        edges = graph.setdefault(room_of(module), set())
        edges.update(room_of(t) for t in targets if room_of(t) != room_of(module))
    return graph


def cycles(graph: dict[str, set[str]]) -> list[frozenset[str]]:
    """Strongly connected components with more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[frozenset[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = set()
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.add(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(frozenset(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycles() -> None:
    found = [sorted(c) for c in cycles(import_graph()) if c not in KNOWN_CYCLES]
    assert not found, f"import cycles (give the shared part a module of its own): {found}"


def test_no_cycles_between_rooms() -> None:
    """Importing ``greenhorn.x.y`` runs ``greenhorn/x/__init__.py`` first, so two rooms that
    import each other can fail at import time even without a module cycle: the rooms form
    layers (ipc, http < config < wsgi < observe < workers < master < the commands)."""
    graph = room_graph()
    found = [sorted(c) for c in cycles(graph)]
    assert not found, f"rooms that import each other: {found} (graph: {graph})"


def test_room_cycle_check_fails_on_an_injected_import() -> None:
    injected = {"greenhorn.config.injected": "from greenhorn.wsgi.app import load_app\n"}
    assert any({"config", "wsgi"} <= c for c in cycles(room_graph(injected)))


def test_known_cycles_still_exist() -> None:
    """Fails once a known cycle is gone, so its entry gets removed."""
    found = cycles(import_graph())
    fixed = [sorted(c) for c in KNOWN_CYCLES if c not in found]
    assert not fixed, f"fixed: remove {fixed} from KNOWN_CYCLES"


def test_cycle_check_fails_on_an_injected_cycle() -> None:
    handler = (PACKAGE / "workers" / "handler.py").read_text(encoding="utf-8")
    injected = {
        "greenhorn.workers.handler": handler + "\nfrom greenhorn.workers import injected\n",
        "greenhorn.workers.injected": "from greenhorn.workers.handler import Handler\n",
    }
    found = cycles(import_graph(injected))
    assert any(set(injected) <= c for c in found), found


# -- (c) module docstrings ----------------------------------------------------------------


def test_every_module_has_a_docstring():
    missing = []
    for path in modules():
        if path.name == "__init__.py" and not path.read_text(encoding="utf-8").strip():
            continue  # an empty package marker has nothing to explain
        if ast.get_docstring(parse(path)) is None:
            missing.append(rel(path))
    assert not missing, f"modules without a docstring saying why they exist: {missing}"


# -- (d) no grab-bag modules --------------------------------------------------------------


def test_no_util_modules():
    found = [
        p.relative_to(ROOT).as_posix()
        for base in (SRC, ROOT / "tests")
        for p in base.rglob("*.py")
        if p.name in ("util.py", "utils.py")
    ]
    assert not found, f"name modules after their job, not util: {found}"


# -- (e) no mutable class state -----------------------------------------------------------


def test_no_mutable_class_attributes():
    offenders = {}
    for path in modules():
        found = mutable_class_attributes(parse(path))
        if found:
            offenders[rel(path)] = found
    assert not offenders, f"mutable values on classes (move them to __init__): {offenders}"


# -- (f) inheritance depth, and optional workers do not monkey-patch on import ------------

PROBE = r"""
import importlib, inspect, json, sys, warnings
warnings.simplefilter("ignore")
names, extras = json.loads(sys.argv[1]), json.loads(sys.argv[2])
out = {"deep": [], "skipped": [], "patched": {}}

def available(module):
    try:
        importlib.import_module(module)
        return True
    except ImportError:
        return False

def check_patches(library):
    import socket, threading, time
    patched = []
    if library == "gevent":
        import gevent.monkey
        if gevent.monkey.is_anything_patched():
            patched.append("gevent.monkey.is_anything_patched()")
    else:
        import eventlet.patcher
        for name in ("socket", "select", "thread", "time", "os"):
            if eventlet.patcher.is_monkey_patched(name):
                patched.append(name)
    if socket.socket.__module__ != "socket":
        patched.append("socket.socket from " + socket.socket.__module__)
    if threading.Lock.__module__ not in ("_thread", "threading"):
        patched.append("threading.Lock from " + threading.Lock.__module__)
    if time.sleep.__module__ not in (None, "time"):
        patched.append("time.sleep from " + time.sleep.__module__)
    return patched

# optional workers first, so nothing else can have patched anything before them
for name in sorted(extras):
    library = extras[name]
    if not available(library):
        out["skipped"].append(name)
        continue
    importlib.import_module(name)
    out["patched"][name] = check_patches(library)

for name in names:
    if name in out["skipped"]:
        continue
    module = importlib.import_module(name)
    for obj in vars(module).values():
        if inspect.isclass(obj) and obj.__module__ == name:
            own = [c for c in obj.__mro__ if c.__module__.split(".")[0] == "greenhorn"]
            if len(own) > 2:
                out["deep"].append(" -> ".join(c.__module__ + "." + c.__qualname__ for c in own))
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def probe() -> dict:
    names = [module_name(p) for p in modules() if p.name != "__main__.py"]
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(names), json.dumps(OPTIONAL_EXTRAS)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=str(ROOT),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_inheritance_at_most_two_deep(probe):
    assert not probe["deep"], f"greenhorn classes more than two deep: {probe['deep']}"


@pytest.mark.parametrize("module", sorted(OPTIONAL_EXTRAS))
def test_importing_a_green_worker_does_not_monkey_patch(probe, module):
    if importlib.util.find_spec(OPTIONAL_EXTRAS[module]) is None:
        pytest.skip(f"{OPTIONAL_EXTRAS[module]} is not installed")
    assert module not in probe["skipped"]
    assert probe["patched"][module] == [], f"importing {module} patched the stdlib"


# -- (g) generated docs are current -------------------------------------------------------


def test_settings_reference_is_current():
    proc = subprocess.run(
        [sys.executable, "-m", "greenhorn.config.docgen", "--check"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=str(ROOT),
    )
    assert proc.returncode == 0, (
        "docs/reference/settings.md is stale: run `python -m greenhorn.config.docgen`\n"
        + proc.stdout
        + proc.stderr
    )


# -- (h) lint and format ------------------------------------------------------------------


def ruff() -> list[str]:
    exe = shutil.which("ruff")
    if exe is not None:
        return [exe]
    if importlib.util.find_spec("ruff") is not None:
        return [sys.executable, "-m", "ruff"]
    pytest.skip("ruff is not installed")


@pytest.mark.parametrize(
    "args", [["check", "src", "tests"], ["format", "--check", "src", "tests"]], ids=str
)
def test_ruff(args):
    proc = subprocess.run(
        [*ruff(), *args], capture_output=True, text=True, timeout=120, cwd=str(ROOT)
    )
    assert proc.returncode == 0, f"ruff {' '.join(args)}:\n{proc.stdout}{proc.stderr}"
