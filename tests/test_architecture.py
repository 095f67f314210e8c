"""The layering the code promises (docs/architecture.md), checked over the source tree.

Plain Python over the files' syntax trees, every import counted (top-level and inside functions):

- ``webhook_engine`` imports no app, no ``common``, no project wiring and nothing of Django's
  database or settings: it takes plain values.
- ``common`` imports no app and no project wiring.
- The apps depend one way: ``audit`` <- ``schools`` <- ``events`` <- ``subscriptions`` <-
  ``deliveries`` (``audit`` is the trail every app's services write to; it imports no app).
  Their core (models, services, selectors, tasks, ...) imports only apps below; ``events`` and
  ``schools`` never import an app above them at all. The outer layer of an app (admin, API views
  and serializers, forms, URLs, management commands) may call the core of any app, as the Send
  Test page calls a deliveries service.
- No app imports ``webhooks_project``: it is wiring, at the top.
- No import cycle between packages: the graph of (package, layer) is acyclic.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ENGINE = "webhook_engine"
COMMON = "common"
WIRING = "webhooks_project"
APPS = [
    "audit",
    "schools",
    "events",
    "subscriptions",
    "deliveries",
]  # each may use the ones before it
PACKAGES = [ENGINE, COMMON, *APPS, WIRING]
OUTER = {"admin", "admin_site", "views", "urls", "serializers", "forms", "filters", "management"}
ENGINE_FORBIDDEN = ("django.db", "django.conf", "django.contrib", "django.apps")

Import = tuple[str, str, int]  # (importing module, imported module, line)


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports() -> list[Import]:
    found: list[Import] = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            module = _module_name(path)
            is_package = path.name == "__init__.py"
            for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
                if isinstance(node, ast.Import):
                    found += [(module, alias.name, node.lineno) for alias in node.names]
                elif isinstance(node, ast.ImportFrom):
                    target = _resolve(module, is_package, node.module, node.level)
                    found.append((module, target, node.lineno))
                    # "from package import module" imports the module too.
                    found += [
                        (module, f"{target}.{alias.name}", node.lineno)
                        for alias in node.names
                        if (ROOT / Path(*f"{target}.{alias.name}".split(".")))
                        .with_suffix(".py")
                        .exists()
                    ]
    return found


def _resolve(module: str, is_package: bool, name: str | None, level: int) -> str:
    if level == 0:
        return name or ""
    base = module.split(".")
    if not is_package:
        base = base[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join([*base, name] if name else base)


def _package(module: str) -> str | None:
    top = module.split(".")[0]
    return top if top in PACKAGES else None


def _layer(module: str) -> str:
    """``outer`` for an app's admin, views, serializers, forms, URLs and commands; else ``core``."""
    parts = module.split(".")
    return "outer" if len(parts) > 1 and parts[1] in OUTER else "core"


IMPORTS = _imports()


def _violations(rule) -> list[str]:
    return [
        f"{source}:{line} imports {target}"
        for source, target, line in IMPORTS
        if rule(source, target)
    ]


def test_the_tree_was_read():
    # A guard for the guard: the walk sees the modules and imports it is about.
    pairs = {(source, target) for source, target, _line in IMPORTS}
    assert ("deliveries.services.fan_out", "events.models") in pairs
    assert ("webhook_engine.transport", "webhook_engine.destinations") in pairs  # relative
    assert ("deliveries.apps", "events.services") in pairs  # inside a function


def test_the_engine_imports_no_app_and_nothing_of_djangos_database_or_settings():
    def rule(source: str, target: str) -> bool:
        if _package(source) != ENGINE:
            return False
        other = _package(target)
        return (other is not None and other != ENGINE) or target.startswith(ENGINE_FORBIDDEN)

    assert _violations(rule) == []


def test_common_imports_no_app_and_no_wiring():
    def rule(source: str, target: str) -> bool:
        return _package(source) == COMMON and _package(target) in {*APPS, WIRING}

    assert _violations(rule) == []


def test_no_app_imports_the_project_wiring():
    def rule(source: str, target: str) -> bool:
        return _package(source) in {ENGINE, COMMON, *APPS} and _package(target) == WIRING

    assert _violations(rule) == []


@pytest.mark.parametrize("app", ["schools", "events"])
def test_events_and_schools_never_import_an_app_above_them(app):
    above = set(APPS[APPS.index(app) + 1 :])

    def rule(source: str, target: str) -> bool:
        return _package(source) == app and _package(target) in above

    assert _violations(rule) == []


def test_the_core_of_each_app_imports_only_the_apps_below_it():
    def rule(source: str, target: str) -> bool:
        mine, theirs = _package(source), _package(target)
        if mine not in APPS or theirs not in APPS or _layer(source) != "core":
            return False
        return APPS.index(theirs) > APPS.index(mine)

    assert _violations(rule) == []


def test_there_is_no_import_cycle_between_packages():
    graph: dict[tuple[str, str], set[tuple[str, str]]] = defaultdict(set)
    for source, target, _line in IMPORTS:
        mine, theirs = _package(source), _package(target)
        if mine is None or theirs is None:
            continue
        a, b = (mine, _layer(source)), (theirs, _layer(target))
        if a != b:
            graph[a].add(b)

    cycle = _find_cycle(graph)

    assert cycle is None, " -> ".join(f"{package}.{layer}" for package, layer in cycle or [])


def _find_cycle(graph: dict) -> list | None:
    visiting: list = []
    done: set = set()

    def visit(node) -> list | None:
        if node in visiting:
            return [*visiting[visiting.index(node) :], node]
        if node in done:
            return None
        visiting.append(node)
        for following in sorted(graph.get(node, ())):
            cycle = visit(following)
            if cycle:
                return cycle
        visiting.pop()
        done.add(node)
        return None

    for node in sorted(graph):
        cycle = visit(node)
        if cycle:
            return cycle
    return None


def test_the_cycle_finder_finds_a_cycle():
    graph = {("a", "core"): {("b", "core")}, ("b", "core"): {("a", "core")}}

    assert _find_cycle(graph) == [("a", "core"), ("b", "core"), ("a", "core")]
