"""MemoryActorsSession against the Agents SDK itself: its protocol, its SQLiteSession, its Runner.

Real parts only: a MemorySystem on a file, the SDK's own ``SQLiteSession`` on
another file as the oracle, real OS processes, and the SDK's ``Runner`` with
the offline model the SDK ships for tests (``agents.testing.ScriptedModel``).
"""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import sys
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

agents = pytest.importorskip("agents")

from agents.memory import Session, SessionSettings, SQLiteSession  # noqa: E402

from actors import AsyncMemorySystem, Config, InvalidMemory, MemorySystem  # noqa: E402
from actors.integrations.openai_agents import MemoryActorsSession  # noqa: E402

T = TypeVar("T")

WORKERS = str(Path(__file__).with_name("workers.py"))
#: fsync off: these tests check ordering and atomicity, not durability on power loss.
FAST = Config(synchronous="OFF")
SESSIONS = ("alpha", "beta", "gamma")


def _with_memory(db: Path, body: Callable[[AsyncMemorySystem], Awaitable[T]]) -> T:
    """Run ``body`` on a fresh event loop with an AsyncMemorySystem open on ``db``."""

    async def main() -> T:
        async with AsyncMemorySystem.open(db, config=FAST) as memory:
            return await body(memory)

    return asyncio.run(main())


def _item(rng: random.Random) -> Any:
    """A conversation item as the SDK writes them, with unicode, nesting and odd values."""
    text = "".join(rng.choice('ab é漢🙂\n"\\') for _ in range(rng.randint(0, 12)))
    shape = rng.randrange(4)
    if shape == 0:
        return {"role": rng.choice(["user", "assistant"]), "content": text}
    if shape == 1:
        return {
            "type": "message",
            "role": "assistant",
            "content": [{"type": "output_text", "text": text, "annotations": []}],
            "status": "completed",
        }
    if shape == 2:
        return {"type": "function_call", "call_id": str(rng.random()), "arguments": "{}"}
    return {"nested": [1, 2.5, None, True, {"k": text}], "n": rng.randint(-(10**12), 10**12)}


def _ops(seed: int, count: int) -> Iterator[tuple[str, str, Any]]:
    """A seeded sequence of session operations over a few session ids."""
    rng = random.Random(seed)
    for _ in range(count):
        session_id = rng.choice(SESSIONS)
        kind = rng.choices(["add", "get", "pop", "clear"], weights=[6, 5, 3, 1])[0]
        if kind == "add":
            yield kind, session_id, [_item(rng) for _ in range(rng.randint(1, 3))]
        elif kind == "get":
            yield kind, session_id, rng.choice([None, None, -1, 0, 1, 2, 3, 5, 100])
        else:
            yield kind, session_id, None


async def _apply(session: Any, kind: str, argument: Any) -> Any:
    if kind == "add":
        return await session.add_items(argument)
    if kind == "get":
        return await session.get_items(argument)
    if kind == "pop":
        return await session.pop_item()
    return await session.clear_session()


@pytest.mark.parametrize("seed", [11, 12])
def test_every_result_equals_the_sdks_sqlite_session_over_seeded_random_operations(
    tmp_path: Path, seed: int
) -> None:
    """250 random adds, gets (limit None, -1, 0, 1..100), pops and clears on 3 sessions:
    every answer is the SDK's SQLiteSession's, and so is the final history of each."""

    async def body(memory: AsyncMemorySystem) -> None:
        ours = {sid: MemoryActorsSession(sid, memory) for sid in SESSIONS}
        oracle = {sid: SQLiteSession(sid, tmp_path / "oracle.db") for sid in SESSIONS}
        try:
            for step, (kind, sid, argument) in enumerate(_ops(seed, 250)):
                expected = await _apply(oracle[sid], kind, argument)
                got = await _apply(ours[sid], kind, argument)
                assert got == expected, f"seed {seed} step {step}: {kind} {sid} {argument!r}"
            for sid in SESSIONS:
                assert await ours[sid].get_items() == await oracle[sid].get_items()
        finally:
            for session in oracle.values():
                session.close()

    _with_memory(tmp_path / "memory.db", body)


def test_session_settings_limit_is_the_default_limit_as_in_sqlite_session(tmp_path: Path) -> None:
    """``session_settings.limit`` applies when get_items has no limit; an explicit one wins."""

    async def body(memory: AsyncMemorySystem) -> None:
        settings = SessionSettings(limit=2)
        ours = MemoryActorsSession("s", memory, session_settings=settings)
        oracle = SQLiteSession("s", tmp_path / "oracle.db", session_settings=settings)
        try:
            items = [{"role": "user", "content": str(i)} for i in range(5)]
            await ours.add_items(items)
            await oracle.add_items(items)
            for limit in (None, 1, 4, 0, -1):
                assert await ours.get_items(limit) == await oracle.get_items(limit), limit
            assert await ours.get_items() == items[-2:]
            from_dict = MemoryActorsSession("s", memory, session_settings={"limit": 3})
            assert await from_dict.get_items() == items[-3:]
        finally:
            oracle.close()

    _with_memory(tmp_path / "memory.db", body)


def test_the_session_satisfies_the_sdks_session_protocol(tmp_path: Path) -> None:
    """``isinstance(session, agents.memory.Session)``, with both kinds of system."""
    with MemorySystem.open(tmp_path / "memory.db", config=FAST) as system:
        blocking = MemoryActorsSession("a", system)
        wrapped = MemoryActorsSession("b", AsyncMemorySystem(system))
        assert isinstance(blocking, Session)
        assert isinstance(wrapped, Session)
        assert blocking.session_id == "a"
        assert blocking.session_settings == SessionSettings()
        assert "'a'" in repr(blocking)


def test_a_blocking_memory_system_is_wrapped_and_never_blocks_the_loop(tmp_path: Path) -> None:
    """With a MemorySystem the session awaits the asyncio facade over it; the loop stays free."""
    with MemorySystem.open(tmp_path / "memory.db", config=FAST) as system:
        session = MemoryActorsSession("conv", system)

        async def body() -> list[Any]:
            ticks = 0

            async def ticker() -> None:
                nonlocal ticks
                while True:
                    ticks += 1
                    await asyncio.sleep(0)

            running = asyncio.create_task(ticker())
            await session.add_items([{"role": "user", "content": "hi"}])
            items = await session.get_items()
            running.cancel()
            assert ticks > 0
            return items

        assert asyncio.run(body()) == [{"role": "user", "content": "hi"}]
        assert isinstance(session.memory, AsyncMemorySystem)
        assert session.memory.system is system
        # The session does not own the system: it is still open for its opener.
        assert system.session_items("conv") == [{"role": "user", "content": "hi"}]


def test_sixteen_tasks_appending_at_once_lose_nothing_and_keep_each_tasks_order(
    tmp_path: Path,
) -> None:
    """16 tasks × 20 items (1-2 per call) on one session; then 16 tasks pop it empty:
    every item is there once, in its task's order, and no item is popped twice."""

    async def body(memory: AsyncMemorySystem) -> None:
        session = MemoryActorsSession("shared", memory)

        async def writer(task: int) -> None:
            items = [{"task": task, "i": i} for i in range(20)]
            start = 0
            while start < len(items):
                size = 1 + (start + task) % 2
                await session.add_items(items[start : start + size])
                start += size

        await asyncio.gather(*(writer(task) for task in range(16)))
        stored = await session.get_items()
        assert len(stored) == 16 * 20
        for task in range(16):
            assert [item["i"] for item in stored if item["task"] == task] == list(range(20))

        async def popper() -> list[Any]:
            popped = []
            while (item := await session.pop_item()) is not None:
                popped.append(item)
            return popped

        rounds = await asyncio.gather(*(popper() for _ in range(16)))
        popped = [json.dumps(item, sort_keys=True) for part in rounds for item in part]
        assert len(popped) == len(set(popped)) == 16 * 20
        assert await session.get_items() == []
        for part in rounds:  # each popper saw the log newest first
            assert part == sorted(part, key=stored.index, reverse=True)

    _with_memory(tmp_path / "memory.db", body)


@pytest.mark.slow
def test_four_processes_appending_to_one_session_keep_every_item_once_in_order(
    tmp_path: Path,
) -> None:
    """4 OS processes append 40 items each (1-3 per call) to one session of one file."""
    db = tmp_path / "shared.db"
    with MemorySystem.open(db):
        pass  # migrate once, so the workers start on a ready file
    workers = [
        subprocess.Popen(
            [sys.executable, WORKERS, "session-append", str(db), "shared", f"p{p}", "40"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for p in range(4)
    ]
    for proc in workers:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        assert json.loads(out)["appended"] == 40
    with MemorySystem.open(db) as system:
        stored = system.session_items("shared")
    assert len(stored) == 4 * 40
    keys = [(item["p"], item["i"]) for item in stored]
    assert len(set(keys)) == len(keys)
    for p in range(4):
        assert [i for tag, i in keys if tag == f"p{p}"] == list(range(40))


def test_a_real_runner_keeps_the_conversation_in_the_session(tmp_path: Path) -> None:
    """``Runner.run(..., session=...)`` twice with the SDK's offline ``ScriptedModel``:
    the second turn's model input is the first turn's history, read from the file."""
    testing = pytest.importorskip("agents.testing")
    model = testing.ScriptedModel(
        [
            [testing.assistant_message("Hello Ada", item_id="m1")],
            [testing.assistant_message("You are Ada", item_id="m2")],
        ]
    )
    agent = agents.Agent(name="assistant", instructions="Be brief.", model=model)
    run_config = agents.RunConfig(tracing_disabled=True)  # nothing leaves the machine

    async def body(memory: AsyncMemorySystem) -> list[Any]:
        session = MemoryActorsSession("conversation-1", memory)
        first = await agents.Runner.run(agent, "I am Ada", session=session, run_config=run_config)
        assert first.final_output == "Hello Ada"
        second = await agents.Runner.run(agent, "Who am I?", session=session, run_config=run_config)
        assert second.final_output == "You are Ada"
        assert model.last_call is not None
        sent = model.last_call.input
        assert [item.get("role") for item in sent] == ["user", "assistant", "user"]
        assert sent[0]["content"] == "I am Ada"
        return await session.get_items()

    history = _with_memory(tmp_path / "memory.db", body)
    model.assert_complete()
    assert [item.get("role") for item in history] == ["user", "assistant", "user", "assistant"]
    with MemorySystem.open(tmp_path / "memory.db") as system:  # the history is in the file
        assert system.session_items("conversation-1") == history


def test_bad_items_raise_invalid_memory_and_store_nothing(tmp_path: Path) -> None:
    """A non-JSON item, an oversized item, an empty session id: InvalidMemory, nothing stored."""

    async def body(memory: AsyncMemorySystem) -> None:
        session = MemoryActorsSession("s", memory)
        with pytest.raises(InvalidMemory, match=r"items\[1\] is not JSON-serialisable"):
            await session.add_items([{"ok": 1}, {"bad": object()}])
        with pytest.raises(InvalidMemory, match=r"items\[0\] is \d+ bytes as compact JSON"):
            await session.add_items([{"content": "x" * 70_000}])
        assert await session.get_items() == []
        with pytest.raises(InvalidMemory, match="session_id is empty"):
            MemoryActorsSession("", memory)

    _with_memory(tmp_path / "memory.db", body)


def test_more_than_a_thousand_items_in_one_call_are_appended_in_order(tmp_path: Path) -> None:
    """The facade takes 1000 items a call; the session splits a longer list, keeping order."""

    async def body(memory: AsyncMemorySystem) -> list[Any]:
        session = MemoryActorsSession("long", memory)
        await session.add_items([{"i": i} for i in range(2500)])
        return await session.get_items()

    assert _with_memory(tmp_path / "memory.db", body) == [{"i": i} for i in range(2500)]


def test_without_the_sdk_the_import_error_names_the_extra() -> None:
    """A missing openai-agents gives an ImportError that says which extra to install."""
    code = (
        "import sys; sys.modules['agents'] = None\n"
        "try:\n"
        "    import actors.integrations.openai_agents\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "pip install 'memory-actors[openai-agents]'" in out.stdout


def test_the_core_never_imports_the_sdk() -> None:
    """``import actors`` and ``actors.integrations`` load no ``agents`` module."""
    code = (
        "import actors, actors.integrations, sys\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'agents'))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
