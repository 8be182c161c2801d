"""MemoryActorsStore: LangGraph's BaseStore on memory-actors, against LangGraph itself.

Real parts only: a MemorySystem on a SQLite file, LangGraph's InMemoryStore as
the reference, a compiled StateGraph, OS processes.
"""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any, TypedDict

import pytest
from langgraph.config import get_store
from langgraph.graph import END, START, StateGraph
from langgraph.store.base import (
    BaseStore,
    GetOp,
    InvalidNamespaceError,
    Item,
    ListNamespacesOp,
    MatchCondition,
    PutOp,
    SearchOp,
)
from langgraph.store.memory import InMemoryStore

from actors import AsyncMemorySystem, Config, InvalidMemory, MemorySystem
from actors.integrations.langgraph import MemoryActorsStore, decode_namespace, encode_namespace

FAST = Config(synchronous="NORMAL")


@pytest.fixture
def store(system: MemorySystem) -> MemoryActorsStore:
    """A store on the test's MemorySystem."""
    return MemoryActorsStore(system)


# -- the namespace escape -------------------------------------------------------------

ESCAPED = [
    (("users", "alice"), "users/alice"),
    (("my notes", "é"), "my.20notes/.c3.a9"),
    (("_drafts",), "0..5fdrafts"),
    (("*", "x"), "0..2a/x"),
    (("a:b", "c-d_e"), "a:b/c-d_e"),
    (("🦜",), "0..f0.9f.a6.9c"),
]


@pytest.mark.parametrize(("namespace", "name"), ESCAPED)
def test_a_namespace_tuple_encodes_to_one_name_and_back(
    namespace: tuple[str, ...], name: str
) -> None:
    """Each label keeps A-Z a-z 0-9 _ : -; other characters become .XX per UTF-8 byte."""
    assert encode_namespace(namespace) == name
    assert decode_namespace(name) == namespace


@pytest.mark.parametrize("name", ["notes.v2", "a.2F", "0.5fx", "a//b", "x/.zz", "0.."])
def test_names_the_escape_does_not_make_are_not_langgraph_namespaces(name: str) -> None:
    """Only canonical encodings decode: other memories' names never look like LangGraph's."""
    assert decode_namespace(name) is None


def test_the_escape_round_trips_any_label_langgraph_allows() -> None:
    """Random labels from all of Unicode (less '.', NUL, surrogates) round-trip."""
    rng = random.Random(5)
    alphabet = [chr(c) for c in range(1, 0x3000) if chr(c) != "." and not 0xD800 <= c < 0xE000]
    for _ in range(2000):
        labels = tuple(
            "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 4)))
            for _ in range(rng.randint(1, 3))
        )
        try:
            name = encode_namespace(labels)
        except InvalidNamespaceError:
            continue  # too long once escaped
        assert decode_namespace(name) == labels
        assert len(name) <= 64


# -- differential against LangGraph's InMemoryStore ---------------------------------

NAMESPACES = [
    ("users", "alice"),
    ("users", "alice", "prefs"),
    ("users", "bob"),
    ("docs",),
    ("my notes", "ü*"),
    ("_drafts", "x"),
]
KEYS = ["k1", "k2", "k 3", "ключ"]
COLORS = ["red", "green", "blue"]


def _random_value(rng: random.Random) -> dict[str, Any]:
    value: dict[str, Any] = {"n": rng.randint(0, 5), "color": rng.choice(COLORS)}
    if rng.random() < 0.4:
        value["meta"] = {"lang": rng.choice(["en", "fr"]), "score": rng.random()}
    if rng.random() < 0.3:
        value["items"] = [rng.randint(0, 3) for _ in range(rng.randint(0, 3))]
    return value


def _random_filter(rng: random.Random) -> dict[str, Any] | None:
    return rng.choice(
        [
            None,
            {"color": rng.choice(COLORS)},
            {"n": {"$gt": rng.randint(0, 5)}},
            {"n": {"$lte": rng.randint(0, 5)}, "color": {"$ne": rng.choice(COLORS)}},
            {"n": {"$gte": 2, "$lt": 4}},
            {"meta": {"lang": "en"}},
            {"color": {"$eq": rng.choice(COLORS)}, "n": rng.randint(0, 5)},
        ]
    )


def _random_condition(rng: random.Random) -> tuple[str, ...]:
    namespace = rng.choice(NAMESPACES)
    path = namespace[: rng.randint(1, len(namespace))]
    return tuple("*" if rng.random() < 0.3 else label for label in path)


def _prune(reference: InMemoryStore) -> None:
    # InMemoryStore keeps a namespace it has only read from, or emptied, in
    # its defaultdict and lists it; stores on a database (Postgres, SQLite)
    # list namespaces that hold items, as we do.
    for namespace in [ns for ns, items in reference._data.items() if not items]:
        del reference._data[namespace]


def _facts(items: list[Any]) -> set[tuple[tuple[str, ...], str, str]]:
    return {(i.namespace, i.key, json.dumps(i.value, sort_keys=True)) for i in items}


def _same_item(ours: Item | None, theirs: Item | None) -> bool:
    if ours is None or theirs is None:
        return ours is theirs
    return (ours.namespace, ours.key, ours.value) == (theirs.namespace, theirs.key, theirs.value)


def _differential(store: BaseStore, seed: int, steps: int) -> None:
    rng = random.Random(seed)
    reference = InMemoryStore()
    for step in range(steps):
        namespace, key = rng.choice(NAMESPACES), rng.choice(KEYS)
        roll = rng.random()
        where = f"seed {seed} step {step}"
        if roll < 0.4:
            value = _random_value(rng)
            store.put(namespace, key, value)
            reference.put(namespace, key, value)
        elif roll < 0.5:
            store.delete(namespace, key)
            reference.delete(namespace, key)
        elif roll < 0.65:
            assert _same_item(store.get(namespace, key), reference.get(namespace, key)), where
        elif roll < 0.85:
            prefix = namespace[: rng.randint(0, len(namespace))]
            conditions = _random_filter(rng)
            ours = store.search(prefix, filter=conditions, limit=1000)
            theirs = reference.search(prefix, filter=conditions, limit=1000)
            assert _facts(ours) == _facts(theirs), where
            # A small limit: which items is unspecified, how many is not.
            limit = rng.randint(1, 3)
            some = store.search(prefix, filter=conditions, limit=limit)
            assert len(some) == min(limit, len(theirs)), where
            assert _facts(some) <= _facts(theirs), where
        else:
            _prune(reference)
            kwargs: dict[str, Any] = {}
            if rng.random() < 0.6:
                kwargs["prefix"] = _random_condition(rng)
            if rng.random() < 0.3:
                kwargs["suffix"] = _random_condition(rng)[-1:]
            if rng.random() < 0.4:
                kwargs["max_depth"] = rng.randint(1, 3)
            # LangGraph sorts namespaces, so limit and offset are comparable.
            kwargs["limit"], kwargs["offset"] = rng.choice([(100, 0), (2, 0), (2, 1), (3, 2)])
            ours_ns = store.list_namespaces(**kwargs)
            assert ours_ns == reference.list_namespaces(**kwargs), f"{where} {kwargs}"
    _prune(reference)
    assert store.list_namespaces(limit=1000) == reference.list_namespaces(limit=1000)
    everything = store.search((), limit=1000)
    assert _facts(everything) == _facts(reference.search((), limit=1000))


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_random_sequence_agrees_with_langgraphs_in_memory_store(
    tmp_path: Path, seed: int
) -> None:
    """300 puts, deletes, gets, filtered searches and namespace listings: LangGraph's answers."""
    with MemorySystem.open(tmp_path / "lg.db", config=FAST) as system:
        _differential(MemoryActorsStore(system), seed, 300)


def test_the_async_methods_agree_with_the_blocking_ones(tmp_path: Path) -> None:
    """aput/aget/asearch/alist_namespaces on an AsyncMemorySystem answer as LangGraph's do."""

    async def main() -> None:
        async with AsyncMemorySystem.open(tmp_path / "lg.db", config=FAST) as memory:
            store, reference = MemoryActorsStore(memory), InMemoryStore()
            rng = random.Random(11)
            for _ in range(60):
                namespace, key = rng.choice(NAMESPACES), rng.choice(KEYS)
                if rng.random() < 0.7:
                    value = _random_value(rng)
                    await store.aput(namespace, key, value)
                    await reference.aput(namespace, key, value)
                else:
                    await store.adelete(namespace, key)
                    await reference.adelete(namespace, key)
                ours = await store.aget(namespace, key)
                assert _same_item(ours, await reference.aget(namespace, key))
            _prune(reference)
            assert await store.alist_namespaces() == await reference.alist_namespaces()
            found = await store.asearch(("users",), filter={"n": {"$gte": 1}}, limit=100)
            wanted = await reference.asearch(("users",), filter={"n": {"$gte": 1}}, limit=100)
            assert _facts(found) == _facts(wanted)
            # The blocking batch of a store built on the async facade reads the same file.
            assert _facts(store.search((), limit=100)) == _facts(
                await reference.asearch((), limit=100)
            )

    asyncio.run(main())


def test_a_batch_answers_in_input_order_with_its_writes_applied_first(
    store: MemoryActorsStore,
) -> None:
    """Results line up with the ops; the last put of a key wins; reads see the batch's writes."""
    ns = ("batch",)
    results = store.batch(
        [
            GetOp(ns, "a"),
            PutOp(ns, "a", {"v": 1}),
            ListNamespacesOp(match_conditions=(MatchCondition("prefix", ns),)),
            PutOp(ns, "a", {"v": 2}),
            SearchOp(ns, filter={"v": 2}),
            PutOp(ns, "b", {"v": 3}),
            PutOp(ns, "b", None),
        ]
    )
    assert len(results) == 7
    first = results[0]
    assert isinstance(first, Item)
    assert (first.key, first.value) == ("a", {"v": 2})
    assert results[1] is None
    assert results[3] is None
    assert results[2] == [ns]
    search = results[4]
    assert isinstance(search, list)
    assert [(i.key, i.value) for i in search] == [("a", {"v": 2})]
    assert store.get(ns, "b") is None


def test_items_carry_timezone_aware_times_and_keep_created_at_on_update(
    store: MemoryActorsStore,
) -> None:
    """created_at stays, updated_at moves, both in UTC."""
    store.put(("t",), "k", {"v": 1})
    first = store.get(("t",), "k")
    store.put(("t",), "k", {"v": 2})
    second = store.get(("t",), "k")
    assert first is not None
    assert second is not None
    assert second.created_at == first.created_at
    assert second.updated_at >= first.updated_at
    assert second.created_at.tzinfo is not None
    assert second.created_at.utcoffset() is not None


# -- query search ---------------------------------------------------------------------


def test_a_query_finds_the_item_sharing_its_words_first_with_a_score(
    store: MemoryActorsStore,
) -> None:
    """Recall ranks the item whose text shares the query's words at the top, with a score."""
    ns = ("users", "alice", "memories")
    store.put(ns, "pets", {"text": "Alice has a cat named Turing who likes tuna"})
    store.put(ns, "food", {"text": "Alice is vegetarian and likes spicy food"})
    store.put(("users", "bob"), "pets", {"text": "Bob has a cat named Turing too"})
    found = store.search(("users", "alice"), query="a cat named Turing")
    assert found
    assert (found[0].namespace, found[0].key) == (ns, "pets")
    assert found[0].value == {"text": "Alice has a cat named Turing who likes tuna"}
    assert all(isinstance(item.score, float) for item in found)
    assert all(item.namespace[:2] == ("users", "alice") for item in found)


def test_index_fields_choose_what_a_query_searches(system: MemorySystem) -> None:
    """IndexConfig fields (or put's index=[...]) make the recall text; other fields are not."""
    store = MemoryActorsStore(system, index={"fields": ["title"]})
    store.put(("docs",), "a", {"title": "quarterly report", "body": "zebra migration"})
    store.put(("docs",), "b", {"title": "holiday plans", "body": "nothing"}, index=["body"])
    assert [i.key for i in store.search(("docs",), query="quarterly")] == ["a"]
    assert store.search(("docs",), query="zebra") == []
    assert [i.key for i in store.search(("docs",), query="nothing")] == ["b"]
    assert store.search(("docs",), query="holiday") == []


def test_without_an_index_a_query_searches_the_whole_value(store: MemoryActorsStore) -> None:
    """No index config: the compact JSON of the value is what recall searches."""
    store.put(("docs",), "a", {"body": {"deep": ["zebra"]}})
    assert [i.key for i in store.search(("docs",), query="zebra")] == ["a"]


def test_a_query_search_applies_the_filter_and_offset(store: MemoryActorsStore) -> None:
    """Filter after recall; offset and limit slice recall's ranking."""
    for n in range(6):
        # Distinct term counts: distinct scores, so the ranking has no ties.
        store.put(("f",), f"k{n}", {"text": "apple " * (n + 1) + f"note {n}", "n": n})
    found = store.search(("f",), query="apple", filter={"n": {"$gte": 3}}, limit=10)
    assert {i.key for i in found} == {"k3", "k4", "k5"}
    everything = store.search(("f",), query="apple", limit=10)
    assert store.search(("f",), query="apple", limit=2, offset=1) == everything[1:3]


# -- the runtime: graphs, processes, tasks ----------------------------------------------


class State(TypedDict):
    """The graph's state: who is talking and what the graph remembered."""

    user: str
    fact: str
    recalled: list[str]


def _compile(store: BaseStore, remember: Any, recall: Any) -> Any:
    """remember → recall, compiled with ``store``."""
    builder = StateGraph(State)
    builder.add_node("remember", remember)
    builder.add_node("recall", recall)
    builder.add_edge(START, "remember")
    builder.add_edge("remember", "recall")
    builder.add_edge("recall", END)
    return builder.compile(store=store)


def _graph(store: BaseStore) -> Any:
    def remember(state: State) -> dict[str, Any]:
        get_store().put(("users", state["user"]), state["fact"][:20], {"fact": state["fact"]})
        return {}

    def recall(state: State, *, store: BaseStore) -> dict[str, Any]:
        items = store.search(("users", state["user"]), limit=100)
        return {"recalled": sorted(item.value["fact"] for item in items)}

    return _compile(store, remember, recall)


def _async_graph(store: BaseStore) -> Any:
    async def remember(state: State) -> dict[str, Any]:
        await get_store().aput(
            ("users", state["user"]), state["fact"][:20], {"fact": state["fact"]}
        )
        return {}

    async def recall(state: State, *, store: BaseStore) -> dict[str, Any]:
        items = await store.asearch(("users", state["user"]), limit=100)
        return {"recalled": sorted(item.value["fact"] for item in items)}

    return _compile(store, remember, recall)


def test_a_compiled_graph_reads_and_writes_through_the_store(store: MemoryActorsStore) -> None:
    """invoke: a node writes with get_store(), the next reads with its store parameter."""
    graph = _graph(store)
    graph.invoke({"user": "alice", "fact": "likes tea", "recalled": []})
    out = graph.invoke({"user": "alice", "fact": "lives in Lyon", "recalled": []})
    assert out["recalled"] == ["likes tea", "lives in Lyon"]
    assert store.list_namespaces() == [("users", "alice")]


def test_a_compiled_graph_runs_with_ainvoke(tmp_path: Path) -> None:
    """ainvoke with async nodes: the store's async methods on the asyncio facade."""

    async def main() -> list[str]:
        async with AsyncMemorySystem.open(tmp_path / "lg.db", config=FAST) as memory:
            graph = _async_graph(MemoryActorsStore(memory))
            await graph.ainvoke({"user": "bob", "fact": "plays chess", "recalled": []})
            out = await graph.ainvoke({"user": "bob", "fact": "owns a boat", "recalled": []})
            recalled: list[str] = out["recalled"]
            # Sync nodes under ainvoke run in LangGraph's threads on the blocking facade.
            sync_out = await _graph(MemoryActorsStore(memory)).ainvoke(
                {"user": "bob", "fact": "drinks coffee", "recalled": []}
            )
            assert sync_out["recalled"] == ["drinks coffee", "owns a boat", "plays chess"]
            return recalled

    assert asyncio.run(main()) == ["owns a boat", "plays chess"]


WORKER = textwrap.dedent(
    """
    import json, sys
    from actors import Config, MemorySystem
    from actors.integrations.langgraph import MemoryActorsStore
    from tests.test_langgraph import _graph

    path, me, other = sys.argv[1:4]
    with MemorySystem.open(path, config=Config(synchronous="NORMAL")) as system:
        store = MemoryActorsStore(system)
        graph = _graph(store)
        graph.invoke({"user": "shared", "fact": f"written by {me}", "recalled": []})
        print("written", flush=True)
        sys.stdin.readline()  # the parent says go once both have written
        out = graph.invoke({"user": "shared", "fact": f"written by {me}", "recalled": []})
        print(json.dumps(out["recalled"]), flush=True)
    """
)


def test_two_graphs_in_two_processes_see_each_others_writes(tmp_path: Path) -> None:
    """Two OS processes on one file: each graph reads what the other wrote."""
    db = str(tmp_path / "shared.db")
    MemorySystem.open(db, config=FAST).close()  # migrate once, before both start
    root = Path(__file__).resolve().parents[1]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, db, me, other],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=root,
        )
        for me, other in (("one", "two"), ("two", "one"))
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            assert line.strip() == "written", proc.stderr.read() if proc.stderr else ""
        outputs = [proc.communicate("go\n", timeout=60)[0] for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    for proc, out in zip(procs, outputs, strict=True):
        assert proc.returncode == 0
        assert json.loads(out.splitlines()[-1]) == ["written by one", "written by two"]


def test_64_tasks_upserting_the_same_keys_leave_exactly_one_item_per_key(tmp_path: Path) -> None:
    """64 asyncio tasks on one loop put the same 8 keys and one each of their own: 72 items."""

    async def main() -> None:
        async with AsyncMemorySystem.open(tmp_path / "lg.db", config=FAST) as memory:
            store = MemoryActorsStore(memory)
            ns = ("team", "shared")

            async def task(n: int) -> None:
                shared = [PutOp(ns, f"k{j}", {"j": j, "round": 0}) for j in range(8)]
                await store.abatch([*shared, PutOp(ns, f"task{n}", {"n": n})])
                # A second round upserts the same keys again: still one item per key.
                await store.abatch([PutOp(ns, f"k{j}", {"j": j, "round": 1}) for j in range(8)])

            await asyncio.gather(*(task(n) for n in range(64)))
            items = await store.asearch(ns, limit=1000)
            got = {item.key: item.value for item in items}
            wanted = {f"k{j}": {"j": j, "round": 1} for j in range(8)}
            wanted.update({f"task{n}": {"n": n} for n in range(64)})
            assert got == wanted
            assert len(items) == 72
            counted = await memory.count(namespace=encode_namespace(ns))
            assert counted.by_namespace == {"team/shared": 72}

    asyncio.run(main())


# -- bad input --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "namespace",
    [(), ("",), ("a.b",), ("langgraph", "x"), ("a", 1), ("nul\x00",)],
)
def test_a_namespace_langgraph_refuses_is_refused_the_same_way(
    store: MemoryActorsStore, namespace: tuple[Any, ...]
) -> None:
    """Empty, empty label, '.', root 'langgraph', not a string, NUL: InvalidNamespaceError."""
    with pytest.raises(InvalidNamespaceError) as ours:
        store.put(namespace, "k", {"v": 1})
    theirs = None
    try:
        InMemoryStore().put(namespace, "k", {"v": 1})
    except InvalidNamespaceError as exc:
        theirs = str(exc)
    # langgraph-checkpoint 2.x accepts a NUL label; we follow the later rule.
    assert theirs == str(ours.value) or (theirs is None and "\x00" in namespace[0])
    # Ops given straight to batch are checked too (BaseStore's methods check, batch need not).
    with pytest.raises(InvalidNamespaceError):
        store.batch([PutOp(namespace, "k", {"v": 1})])


def test_a_namespace_too_long_once_encoded_is_refused_precisely(store: MemoryActorsStore) -> None:
    """LangGraph allows it, we cannot hold it: InvalidNamespaceError naming the limit."""
    with pytest.raises(InvalidNamespaceError, match=r"characters once encoded.*limit of 64"):
        store.put(("é" * 10, "x" * 29), "k", {"v": 1})
    assert store.get(("é" * 10, "x" * 29), "k") is None
    assert store.search(("é" * 10, "x" * 29)) == []
    assert store.list_namespaces() == []


@pytest.mark.parametrize("key", ["", "x" * 513, "tab\there", "nul\x00"])
def test_a_key_we_cannot_hold_is_refused_with_invalid_memory(
    store: MemoryActorsStore, key: str
) -> None:
    """Empty, over 512 characters, a control character: InvalidMemory, nothing stored."""
    with pytest.raises(InvalidMemory):
        store.put(("k",), key, {"v": 1})
    assert store.get(("k",), key) is None
    assert store.list_namespaces() == []


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"when": object()}, "not JSON-serialisable"),
        ({"nan": float("nan")}, "not JSON-serialisable"),
        ({"big": "x" * 17_000}, "limit is 16384 bytes"),
        (["not", "a", "dict"], "must be a JSON object"),
    ],
)
def test_a_value_we_cannot_hold_is_refused_and_the_batch_stores_nothing(
    store: MemoryActorsStore, value: Any, message: str
) -> None:
    """Not JSON, NaN, over 16 KiB, not a mapping: InvalidMemory; the batch's good puts neither."""
    with pytest.raises(InvalidMemory, match=message):
        store.batch([PutOp(("v",), "good", {"ok": True}), PutOp(("v",), "bad", value)])
    assert store.get(("v",), "good") is None


def test_ttl_is_refused_as_not_implemented(store: MemoryActorsStore) -> None:
    """supports_ttl is False: a ttl raises NotImplementedError, as LangGraph's base does."""
    assert store.supports_ttl is False
    with pytest.raises(NotImplementedError):
        store.put(("t",), "k", {"v": 1}, ttl=5)
    with pytest.raises(NotImplementedError):
        store.batch([PutOp(("t",), "k", {"v": 1}, ttl=5.0)])


def test_the_store_sees_only_its_own_memories(system: MemorySystem) -> None:
    """Notes stored by MCP tools in the same namespace are not LangGraph items."""
    system.store("an MCP note about apples", namespace="users/alice")
    store = MemoryActorsStore(system)
    store.put(("users", "alice"), "k", {"text": "apples"})
    assert [i.key for i in store.search(("users",), query="apples")] == ["k"]
    assert [i.key for i in store.search(("users",))] == ["k"]
    assert store.list_namespaces() == [("users", "alice")]
    assert MemoryActorsStore(system, tag="other").list_namespaces() == []


def test_a_store_needs_a_memory_system() -> None:
    """Anything else is a TypeError naming what it wants."""
    with pytest.raises(TypeError, match="MemorySystem or an AsyncMemorySystem"):
        MemoryActorsStore("memory.db")  # type: ignore[arg-type]


def test_without_langgraph_the_import_names_the_extra() -> None:
    """A missing LangGraph is an ImportError that says which extra to install."""
    code = (
        "import sys\n"
        "sys.modules['langgraph'] = None\n"
        "try:\n"
        "    import actors.integrations.langgraph\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "memory-actors[langgraph]" in out.stdout
