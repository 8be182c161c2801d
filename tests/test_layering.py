"""The package's layering, checked on the source: what may import what.

``docs/architecture.md`` draws the same layers. Every import counts: at module
level, inside a function (a lazy import is still a dependency) and under
``TYPE_CHECKING`` (a circle the type checker sees is a circle a reader sees).
The package itself (``actors/__init__.py``, the public facade) is not a node:
importing any submodule runs it, so it sits on top and nothing below may
name it.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import actors

PACKAGE = Path(actors.__file__).parent

#: Bottom to top. A module may import modules of its own layer or below, never
#: above. The three wings above the client (the hub, the simulation, the
#: benchmarks) count as one unit each; their insides are held to "no circle".
LAYERS: tuple[frozenset[str], ...] = tuple(
    frozenset(layer.split())
    for layer in (
        "errors _sqlite",  # the exception tree; how SQLite is opened
        "model model_package",  # records, validation, ids, the hybrid clock; is the model installed
        "_shapes runtime ownership",  # JSON field readers; the runtime seam; the owner lock
        "wire",  # the shapes client and hub share
        "sync_model remote ranking portable",  # sync records; hub client; recall merge; export
        "messages owner_protocol",  # the client's protocol; calls across processes
        "_base _ask owner_link",  # the reply-future invariant; asking from outside (or the owner)
        # ...; SQL; the model (NumPy: imported by the client only lazily), the vector index;
        # a backup's checks
        "_batch migrations supervisor local_db session_log keyword_search bm25 embedders vectors "
        "backup",
        # the client's actors; serving followers, following the owner
        "store sync recall embedding owner_service sharing_host sharing",
        "system",  # MemorySystem
        "aio _http_serve",  # AsyncMemorySystem; serving an ASGI app on a MemorySystem
        # the MCP server; the dashboard; the reference hub; framework adapters
        "server dashboard hub integrations",
        "sim bench",  # the deterministic runtime; the benchmarks
        "_cli_base install_model",  # exit codes, logging, the global options; install-model
        "cli",  # the command line
    )
)

#: The client: everything a user of MemorySystem or the MCP server runs.
CLIENT = frozenset().union(*LAYERS[:11]) | {"server", "integrations"}


def _unit(module: str) -> str | None:
    """``actors.hub.core`` → ``hub``; ``actors.store`` → ``store``; the package → None."""
    parts = module.split(".")
    if parts[0] != "actors" or len(parts) == 1:
        return None
    return parts[1]


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def _imports(path: Path, known: set[str]) -> Iterator[str]:
    """Every ``actors`` module that ``path`` imports, wherever the import statement is."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names if alias.name.startswith("actors"))
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if not node.module.startswith("actors"):
                continue
            # ``from actors.bench import _stats`` depends on the module actors.bench._stats;
            # the package's __init__ runs first, as it does for any import of a submodule.
            submodules = [f"{node.module}.{alias.name}" for alias in node.names]
            if all(name in known for name in submodules):
                yield from submodules
            else:
                yield node.module


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    return {
        name: {dep for dep in _imports(path, known) if dep != name and dep != "actors"}
        for name, path in modules.items()
    }


def _rank(unit: str) -> int:
    for index, layer in enumerate(LAYERS):
        if unit in layer:
            return index
    raise AssertionError(f"actors.{unit} is in no layer of LAYERS: place it (and in the docs)")


def test_every_module_has_a_layer() -> None:
    for name in _graph():
        unit = _unit(name)
        if unit is not None:
            _rank(unit)


def test_no_module_imports_a_module_above_it() -> None:
    upward = sorted(
        f"{name} -> {dep}"
        for name, deps in _graph().items()
        for dep in deps
        if (unit := _unit(name)) is not None
        and (target := _unit(dep)) is not None
        and _rank(target) > _rank(unit)
    )
    assert upward == []


def test_the_client_never_imports_the_hub() -> None:
    """The hub is optional (its own extra): the client never imports it (the hub imports the
    shared modules: wire, and for semantic recall embedders and vectors)."""
    leaks = sorted(
        f"{name} -> {dep}"
        for name, deps in _graph().items()
        for dep in deps
        if _unit(name) in CLIENT and _unit(dep) == "hub"
    )
    assert leaks == []


def test_the_import_graph_has_no_circle() -> None:
    graph = _graph()
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                circle = [*path[path.index(dep) :], dep]
                raise AssertionError("import circle: " + " -> ".join(circle))
            if dep in graph and dep not in state:
                visit(dep)
        path.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)


def test_every_public_name_is_documented() -> None:
    """Each name in a module's ``__all__`` that is a class or function has a docstring."""
    import importlib
    import inspect

    undocumented = []
    for name in _modules():
        if name.startswith(("actors.sim.__main__", "actors.hub.__main__")):
            continue
        module = importlib.import_module(name)
        if not (module.__doc__ or "").strip():
            undocumented.append(name)
        for public in getattr(module, "__all__", ()):
            value = getattr(module, public)
            ours = getattr(value, "__module__", "").startswith("actors")
            documented = bool((value.__doc__ or "").strip())
            if (inspect.isclass(value) or inspect.isfunction(value)) and ours and not documented:
                undocumented.append(f"{name}.{public}")
    assert undocumented == []
