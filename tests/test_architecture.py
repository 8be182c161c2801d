"""The architecture's rules, checked on the source so that a regression fails CI."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import actors

PACKAGE = Path(actors.__file__).parent
#: The project checkout (tests/..), not the package's parent: in the wheel run the
#: package lives in site-packages, where mcp/ is the SDK itself.
ROOT = Path(__file__).resolve().parents[1]

#: Modules that own a foreign resource, or are not actor code at all.
RUNTIME_MODULES = {"runtime.py"}
HARNESS_MODULES = {"cli.py", "server.py"}
#: The owner link's socket threads and lock poll: OS plumbing outside every actor.
HARNESS_MODULES |= {
    "ownership.py",
    "owner_link.py",
    "owner_service.py",
    "sharing.py",
    "sharing_host.py",
}
#: Packages that are harnesses as a whole: the simulation, the benchmarks.
HARNESS_PACKAGES = ("sim/", "bench/")


def _exempt(name: str) -> bool:
    """The runtimes themselves (threaded and simulated) and harnesses that are not actors."""
    return name in RUNTIME_MODULES | HARNESS_MODULES or name.startswith(HARNESS_PACKAGES)


def _sources() -> dict[str, str]:
    return {
        str(path.relative_to(PACKAGE)): path.read_text(encoding="utf-8")
        for path in sorted(PACKAGE.rglob("*.py"))
    }


def _imports(source: str) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_actor_code_reads_time_randomness_ids_and_threads_only_through_the_runtime() -> None:
    """Only the runtime (and harnesses that are not actors) import time, random, uuid, threading."""
    offenders = {
        name: sorted(_imports(src) & {"time", "random", "threading"})
        for name, src in _sources().items()
        if not _exempt(name)
    }
    assert {k: v for k, v in offenders.items() if v} == {}
    # uuid is allowed in model.py only to *format* ids from numbers the runtime supplies.
    uuid_users = {n for n, src in _sources().items() if "uuid" in _imports(src)}
    assert uuid_users <= {"model.py"}
    assert "uuid4" not in _sources()["model.py"]
    assert "uuid1" not in _sources()["model.py"]


def test_handlers_never_sleep_and_every_future_wait_has_a_timeout() -> None:
    """No sleep in actor code, and no ``.get()`` on a future without a timeout."""
    for name, src in _sources().items():
        if _exempt(name):
            continue
        # The asyncio facade's admission wait pauses its own caller's task on the
        # loop (``await asyncio.sleep``); no thread and no actor ever sleeps.
        allowed = src.replace("await asyncio.sleep(", "") if name == "aio.py" else src
        assert "sleep(" not in allowed, name
        # The inbox's get() is only called after empty() said it holds an envelope.
        assert not re.search(r"(?<!actor_inbox)\.get\(\)", src), (
            f"{name}: a future .get() without timeout"
        )


def test_only_the_store_and_migrations_open_sqlite_connections() -> None:
    """Connections are opened in one place (``_sqlite.connect``, used by the owners of a
    file: the StoreActor, the hub's store, the benchmark); migrations also read a
    file's version read-only and write backups."""
    openers = {n for n, src in _sources().items() if "sqlite3.connect(" in src}
    allowed = {"_sqlite.py", "migrations.py"}
    assert {n for n in openers if not n.startswith("sim/")} <= allowed


def test_only_the_hubs_sqlite_engine_sees_sqlite3() -> None:
    """Of the hub, only the SQLite engine (database.py) and its schema import sqlite3."""
    hub = {n: src for n, src in _sources().items() if n.startswith("hub/")}
    users = {n for n, src in hub.items() if "sqlite3" in _imports(src)}
    assert users == {"hub/database.py", "hub/schema.py"}


def test_only_the_hubs_postgresql_engine_sees_psycopg() -> None:
    """psycopg (and its pool) are imported by the PostgreSQL engine and its schema only."""
    users = {
        n
        for n, src in _sources().items()
        if any(m.split(".")[0] in ("psycopg", "psycopg_pool") for m in _imports(src))
    }
    assert users == {"hub/postgres.py", "hub/pg_schema.py"}


def test_only_remote_speaks_http_to_the_hub() -> None:
    """httpx is used only in the hub client module (when it exists)."""
    users = {n for n, src in _sources().items() if "httpx" in _imports(src)}
    # The hub's own modules and the simulation's in-process hub transport are not clients.
    assert users <= {"remote.py"} | {n for n in users if n.startswith(("hub/", "sim/"))}


def test_only_the_langgraph_adapter_imports_langgraph() -> None:
    """LangGraph is an optional extra: one module imports it, and ``import actors`` does not."""
    users = {n for n, src in _sources().items() if "langgraph" in _imports(src)}
    assert users == {"integrations/langgraph.py"}
    loaded = _loaded_after("import actors, actors.integrations")
    assert {m for m in loaded if m.split(".")[0] == "langgraph"} == set()


def test_the_mcp_folder_is_data_only() -> None:
    """An __init__.py in mcp/ would shadow the MCP SDK."""
    assert not (ROOT / "mcp" / "__init__.py").exists()


def _message_classes() -> list[type]:
    """Every message class the protocol modules export: the client's and the hub's."""
    from actors import messages
    from actors.hub import messages as hub_messages

    return [getattr(module, name) for module in (messages, hub_messages) for name in module.__all__]


def test_messages_are_frozen_attrs_classes_with_docstrings() -> None:
    """The protocol is two modules (client, hub) of immutable, documented messages."""
    import attrs

    classes = _message_classes()
    assert {c.__name__ for c in classes} >= {"StoreMemory", "HubPush", "HubFlush", "TellBack"}
    for cls in classes:
        name = cls.__qualname__
        assert attrs.has(cls), name
        assert cls.__doc__, name
        assert getattr(cls, "__attrs_attrs__", None) is not None
        params = getattr(cls, "__attrs_props__", None)
        if params is not None:
            assert params.is_frozen, name


def test_every_request_names_the_type_of_its_answer() -> None:
    """A request subclasses ``Request[T]`` with a concrete T, so asking it returns a T."""
    import typing

    from actors.messages import Request, WriteRequest

    requests = [c for c in _message_classes() if issubclass(c, Request)]
    concrete = [c for c in requests if c not in (Request, WriteRequest)]
    assert {c.__name__ for c in concrete} >= {"GetMemory", "Ping", "HubLookupKey", "HubRecall"}
    for cls in concrete:
        # Only the class's own bases: a bare subclass would inherit its parent's.
        bases = vars(cls).get("__orig_bases__", ())
        answers = [
            typing.get_args(base)
            for base in bases
            if isinstance(typing.get_origin(base), type)
            and issubclass(typing.get_origin(base), Request)
        ]
        assert len(answers) == 1, cls.__qualname__
        assert not any(isinstance(arg, typing.TypeVar) for arg in answers[0]), cls.__qualname__


def test_the_public_api_list_is_complete_and_sorted() -> None:
    """``actors.__all__`` names every public re-export, sorted."""
    exported = [n for n in vars(actors) if not n.startswith("_") and n[0].isupper()]
    assert sorted(set(exported) - set(actors.__all__)) == []
    assert actors.__all__ == sorted(actors.__all__)


def test_importing_actors_does_not_load_the_testing_tools() -> None:
    """``import actors`` stays light: the simulation and the server load only on demand."""
    import subprocess
    import sys

    code = "import actors, sys; print(sorted(m for m in sys.modules if m.startswith('actors')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = out.stdout
    for heavy in ("actors.sim", "actors.server", "actors.cli", "actors.bench"):
        assert f"'{heavy}'" not in loaded


def _loaded_after(code: str) -> set[str]:
    """The modules a fresh interpreter holds after running ``code`` (then printing them)."""
    import json
    import subprocess
    import sys

    report = "import json, sys; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", f"{code}\n{report}"], capture_output=True, text=True, check=True
    )
    return set(json.loads(out.stdout.splitlines()[-1]))


#: What runs the semantic model: the hub always needs it; the client only for local
#: semantic recall, once the model is installed (``memory-actors install-model``).
MODEL_STACK = ("numpy", "tokenizers", "safetensors")
HUB_ONLY = MODEL_STACK  # the name the hub's rules below use

#: The client modules that hold the model and the vector index: they import the
#: model's stack at module level, and the client imports them only lazily.
MODEL_MODULES = {"embedders.py", "vectors.py"}
#: The one client module that imports them: inside functions, when its actor starts.
MODEL_OWNER = "embedding.py"


def _imported_modules(nodes: list[ast.stmt] | ast.Module) -> set[str]:
    """Full names of the modules imported by ``nodes`` (a whole module: everywhere)."""
    walked = ast.walk(nodes) if isinstance(nodes, ast.Module) else iter(nodes)
    names: set[str] = set()
    for node in walked:
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_only_the_embedding_modules_touch_the_model_stack_and_the_client_imports_them_lazily() -> (
    None
):
    """NumPy, tokenizers, safetensors: in embedders.py and vectors.py (and the hub); the
    client reaches those two only from embedding.py, inside its functions."""
    model_modules = {f"actors.{name.removesuffix('.py')}" for name in MODEL_MODULES}
    for name, source in _sources().items():
        if name.startswith(("hub/", "bench/", "sim/")) or name in MODEL_MODULES:
            continue  # the hub, the harnesses, the model's own modules
        tree = ast.parse(source)
        stack = _imports(source) & set(MODEL_STACK)
        assert stack == set(), f"{name} imports {stack}"
        reached = _imported_modules(tree) & model_modules
        if name == MODEL_OWNER:
            at_top = _imported_modules(tree.body) & model_modules
            assert at_top == set(), f"{name} imports {at_top} at module level: import lazily"
        else:
            assert reached == set(), f"{name} imports {reached}: only {MODEL_OWNER} may, lazily"


def test_a_system_loads_the_model_stack_only_with_semantic_recall_on() -> None:
    """Keyword-only (off, or the model not installed): none of it; on: NumPy, in the actor."""
    off = _loaded_after(
        "import tempfile, os\n"
        "from actors import MemorySystem\n"
        "from actors.system import Config\n"
        "d = tempfile.mkdtemp()\n"
        "with MemorySystem.open(os.path.join(d, 'm.db'), config=Config(semantic=False)) as m:\n"
        "    m.store('x'); m.recall('x'); m.status()\n"
    )
    assert {m for m in off if m.split(".")[0] in MODEL_STACK} == set()
    on = _loaded_after(
        "import tempfile, os\n"
        "from actors import MemorySystem\n"
        "from actors.embedders import HashingEmbedder\n"
        "from actors.system import Config\n"
        "d = tempfile.mkdtemp()\n"
        "config = Config(embedder=HashingEmbedder)\n"
        "with MemorySystem.open(os.path.join(d, 'm.db'), config=config) as m:\n"
        "    m.store('x'); m.recall('x')\n"
    )
    assert "numpy" in on
    assert {m for m in on if m.startswith(("actors.hub", "actors.bench"))} == set()


def test_the_client_side_never_imports_numpy() -> None:
    """The library, the MCP server, the CLI, sync and recall load nothing of the model's stack."""
    loaded = _loaded_after("import actors, actors.server, actors.cli, actors.sync, actors.recall")
    assert {m for m in loaded if m.split(".")[0] in HUB_ONLY} == set()
    assert {m for m in loaded if m.startswith(("actors.hub", "actors.bench"))} == set()


def test_the_commands_list_loads_neither_the_benchmarks_nor_the_hub() -> None:
    """``memory-actors --help`` names bench, bench-sync and hub without importing them."""
    code = (
        "from actors.cli import cli\n"
        "assert cli.main(['--help'], prog_name='memory-actors', standalone_mode=False) == 0"
    )
    loaded = _loaded_after(code)
    assert {m for m in loaded if m.startswith(("actors.hub", "actors.bench"))} == set()
    assert {m for m in loaded if m.split(".")[0] in HUB_ONLY} == set()
