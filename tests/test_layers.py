"""The library's layers, read from the source: each module of ``cncwear`` imports only from its own
layer or the layers below it, no two modules import each other (directly or round a loop), the
library imports no service and the services do not import each other.

Every ``import`` statement counts, at module level or inside a function: a function-level import
still ties the modules together, it only hides the tie until the function runs.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LIBRARY = ROOT / "libs" / "cncwear" / "src"
SERVICES = {
    "cncwear_api": ROOT / "services" / "api" / "src",
    "cncwear_trainer": ROOT / "services" / "trainer" / "src",
    "cncwear_bridge": ROOT / "services" / "bridge" / "src",
}

LEGACY_NAMES = {"cncwear.features": "data"}
"""Modules kept under a name from before the layout (registered models name their classes by it)."""
LAYERS = ("core", "data", "registry", "jobs", "serving", "monitoring", "explain", "training", "cli")
# The layers each layer may import from, besides its own (the layer rule of the layout).
ALLOWED: Mapping[str, frozenset[str]] = {
    "core": frozenset(),
    "data": frozenset({"core"}),
    "registry": frozenset({"core", "data"}),
    "jobs": frozenset({"core", "data", "registry"}),
    "serving": frozenset({"core", "data", "registry"}),
    "monitoring": frozenset({"core", "data", "registry", "jobs", "serving"}),
    "explain": frozenset({"core", "data", "serving"}),
    "training": frozenset({"core", "data", "registry", "serving", "jobs"}),
    "cli": frozenset(LAYERS),
}


@dataclass(frozen=True)
class Import:
    module: str  # the importing module, dotted
    path: Path
    line: int
    target: str  # the imported module, dotted

    def __str__(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line} imports {self.target}"


def modules(source: Path, package: str) -> dict[str, Path]:
    """Dotted name -> file of every module of ``package`` under the ``source`` folder."""
    found = {}
    for path in sorted((source / package).rglob("*.py")):
        parts = path.relative_to(source).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def imports(source: Path, package: str) -> Iterator[Import]:
    """Every import statement of the package's modules, resolved to the module it loads: ``from a
    import b`` is module ``a.b`` when ``a/b.py`` exists, else ``a``."""
    known = modules(source, package)
    for name, path in known.items():
        is_package = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: resolved against the importing module's package
                    anchor = name.split(".")[: len(name.split(".")) - node.level + is_package]
                    base = ".".join([*anchor, base] if base else anchor)
                submodules = [f"{base}.{alias.name}" for alias in node.names]
                targets = [m for m in submodules if m in known] or [base]
            else:
                continue
            for target in targets:
                yield Import(name, path, node.lineno, target)


def layer(module: str) -> str:
    """``cncwear.<layer>.…``, and ``cncwear.cli``; the package itself (an empty ``__init__``) is
    core."""
    if module in LEGACY_NAMES:
        return LEGACY_NAMES[module]
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "core"


def upward_imports(found: list[Import]) -> list[Import]:
    return [
        i
        for i in found
        if i.target.split(".")[0] == "cncwear"
        and layer(i.target) != layer(i.module)
        and layer(i.target) not in ALLOWED[layer(i.module)]
    ]


def cycles(found: list[Import]) -> list[list[Import]]:
    """The import loops between the modules, each as the imports that close it: a depth-first walk
    of the module graph, each back edge to a module still on the walk's path closing one loop."""
    graph: dict[str, list[Import]] = {}
    for i in found:
        if i.target != i.module and i.target.split(".")[0] == i.module.split(".")[0]:
            graph.setdefault(i.module, []).append(i)
    loops: list[list[Import]] = []
    done: set[str] = set()

    def walk(module: str, path: list[Import], on_path: list[str]) -> None:
        for edge in graph.get(module, []):
            if edge.target in on_path:
                start = on_path.index(edge.target)
                loops.append([*path[start:], edge])
            elif edge.target not in done:
                walk(edge.target, [*path, edge], [*on_path, edge.target])
        done.add(module)

    for module in sorted(graph):
        if module not in done:
            walk(module, [], [module])
    return loops


def describe(loop: list[Import]) -> str:
    return " -> ".join([loop[0].module, *(i.target for i in loop)]) + "".join(
        f"\n    {i}" for i in loop
    )


def library_imports() -> list[Import]:
    return list(imports(LIBRARY, "cncwear"))


def test_each_layer_imports_only_from_itself_and_the_layers_below() -> None:
    upward = upward_imports(library_imports())
    assert not upward, "imports against the layer rule:\n" + "\n".join(
        f"  {i} ({layer(i.module)} -> {layer(i.target)})" for i in upward
    )


def test_no_two_library_modules_import_each_other() -> None:
    loops = cycles(library_imports())
    assert not loops, "import cycles:\n" + "\n".join(f"  {describe(loop)}" for loop in loops)


def test_the_library_imports_no_service() -> None:
    into_services = [i for i in library_imports() if i.target.split(".")[0] in SERVICES]
    assert not into_services, "\n".join(map(str, into_services))


def test_the_services_do_not_import_each_other() -> None:
    crossing = [
        i
        for service, source in SERVICES.items()
        for i in imports(source, service)
        if i.target.split(".")[0] in set(SERVICES) - {service}
    ]
    assert not crossing, "\n".join(map(str, crossing))


def test_the_checks_see_an_upward_import_and_a_loop_inside_a_function(tmp_path: Path) -> None:
    """The walk itself, on a two-module library: core/a.py imports jobs/b.py inside a function,
    and jobs/b.py imports core/a.py at the top."""
    package = tmp_path / "cncwear"
    for folder in ("core", "jobs"):
        (package / folder).mkdir(parents=True)
        (package / folder / "__init__.py").write_text("")
    (package / "__init__.py").write_text("")
    (package / "core" / "a.py").write_text("def f():\n    from cncwear.jobs import b\n")
    (package / "jobs" / "b.py").write_text("from . import c\nfrom cncwear.core.a import f\n")
    (package / "jobs" / "c.py").write_text("")
    found = list(imports(tmp_path, "cncwear"))
    assert {(i.module, i.line, i.target) for i in found} == {
        ("cncwear.core.a", 2, "cncwear.jobs.b"),
        ("cncwear.jobs.b", 1, "cncwear.jobs.c"),
        ("cncwear.jobs.b", 2, "cncwear.core.a"),
    }
    assert [(i.module, i.target) for i in upward_imports(found)] == [
        ("cncwear.core.a", "cncwear.jobs.b")
    ]
    (loop,) = cycles(found)
    assert {(i.module, i.target) for i in loop} == {
        ("cncwear.core.a", "cncwear.jobs.b"),
        ("cncwear.jobs.b", "cncwear.core.a"),
    }
