"""How the owner answers followers: from its actors' replies, never waiting for a follower.

A real owner (a MemorySystem on a real SQLite file, an OwnerService on a real
Unix socket, in this process) and followers on real sockets: an
:class:`~actors.owner_link.OwnerProxy`, and raw sockets that send frames and
read them back (or stop reading) as a broken or stalled follower would.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hub_fixtures import wait_until
from test_aio import StallingConnection, stalling_connect

from actors import Config, MemorySystem, owner_link
from actors.errors import AskTimeout, InvalidMemory, MemoryNotFound, Unavailable
from actors.owner_link import FrameError, FrameReader, OwnerProxy, encode_frame, read_frame
from actors.owner_protocol import VERBS
from actors.owner_service import OwnerService
from actors.ownership import ensure_private_dir
from actors.system import _ONE_REQUEST

#: Content near the 64 KiB limit: a few hundred answers overflow any socket buffer.
_LARGE = "a long note about the billing database " * 1600


@pytest.fixture
def owner(tmp_path: Path) -> Iterator[tuple[MemorySystem, OwnerService]]:
    run = tmp_path / "run"
    ensure_private_dir(run)
    system = MemorySystem.open(tmp_path / "memory.db", config=Config(sharing="direct"))
    service = OwnerService(system, run / "owner.sock")
    yield system, service
    service.close()
    system.close()


def _raw(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(str(path))
    return sock


def _send_gets(sock: socket.socket, memory_id: str, calls: int) -> None:
    sock.sendall(
        b"".join(
            encode_frame({"id": n, "verb": "get", "args": {"memory_id": memory_id}})
            for n in range(1, calls + 1)
        )
    )


def _read_until_the_end(frames: FrameReader) -> int:
    """How many whole frames arrived before the stream ended (cleanly, or cut mid-frame)."""
    received = 0
    try:
        while read_frame(frames, owner_link.MAX_REPLY_BYTES) is not None:
            received += 1
    except (FrameError, ConnectionError):
        pass
    return received


def _within(seconds: float, call: Any) -> Any:
    """``call()``, failing the test if it takes longer than ``seconds``."""
    began = time.monotonic()
    result = call()
    assert time.monotonic() - began < seconds
    return result


def test_a_follower_that_stops_reading_holds_up_no_actor(
    owner: tuple[MemorySystem, OwnerService],
) -> None:
    """Hundreds of large answers pile up unread; the owner and other followers go on."""
    system, service = owner
    memory_id = system.store(_LARGE).id
    stalled = _raw(service.socket_path)
    calls = 300
    _send_gets(stalled, memory_id, calls)
    unread = calls * len(_LARGE)
    buffers = stalled.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) * 2
    assert unread > 4 * buffers  # far more than the kernel holds: the owner must queue

    # Meanwhile the StoreActor answers its own callers and another follower at once.
    other = OwnerProxy(service.socket_path, default_timeout=10)
    try:
        for n in range(20):
            assert _within(5, lambda: system.get(memory_id)).content == _LARGE.strip()
            stored = _within(5, lambda n=n: other.call("store", content=f"note {n}"))
            assert other.call("get", memory_id=stored.id).content == f"note {n}"
    finally:
        other.close()

    # The answers it left unread wait in the owner's queue, sent by the writer thread.
    assert "owner-link-writer" in {thread.name for thread in threading.enumerate()}

    # Then the stalled follower reads every answer, whole.
    frames = FrameReader(stalled)
    answered = set()
    for _ in range(calls):
        message = read_frame(frames, owner_link.MAX_REPLY_BYTES)
        assert message is not None
        assert message["ok"]["content"] == _LARGE.strip()
        answered.add(message["id"])
    assert answered == set(range(1, calls + 1))
    stalled.close()


def test_a_follower_that_leaves_too_much_unread_is_cut_off_alone(
    owner: tuple[MemorySystem, OwnerService], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past the backlog limit its connection is shut; the owner and others are untouched."""
    system, service = owner
    monkeypatch.setattr(owner_link, "MAX_BACKLOG", 1 << 20)
    memory_id = system.store(_LARGE).id
    other = OwnerProxy(service.socket_path, default_timeout=10)
    stalled = _raw(service.socket_path)
    try:
        wait_until(lambda: service.followers == 2, "the acceptor registers both", deadline=10)
        calls = 200  # ~12 MiB of answers against a 1 MiB backlog
        _send_gets(stalled, memory_id, calls)
        # The stalled one is cut off, the other stays, and is never held up meanwhile.
        wait_until(
            lambda: other.call("count").total >= 1 and service.followers == 1,
            "the stalled follower is cut off",
            deadline=10,
        )

        # What the kernel already held still arrives, then the end of the stream.
        stalled.settimeout(10)  # a stream that never ends fails the test
        assert _read_until_the_end(FrameReader(stalled)) < calls
        assert other.call("get", memory_id=memory_id).content == _LARGE.strip()
    finally:
        stalled.close()
        other.close()


def test_many_concurrent_follower_calls_with_large_answers_are_all_answered(
    owner: tuple[MemorySystem, OwnerService],
) -> None:
    """Threads of several followers, large answers and writes interleaved: every answer right."""
    system, service = owner
    ids = [system.store(f"{n} {_LARGE}").id for n in range(8)]
    proxies = [OwnerProxy(service.socket_path, default_timeout=30) for _ in range(3)]
    failures: list[BaseException] = []

    def work(worker: int) -> None:
        proxy = proxies[worker % len(proxies)]
        try:
            for n in range(40):
                memory_id = ids[(worker + n) % len(ids)]
                got = proxy.call("get", memory_id=memory_id)
                assert got.id == memory_id
                assert got.content.startswith(f"{(worker + n) % len(ids)} ")
                proxy.call("store", content=f"worker {worker} note {n}", namespace="w")
        except BaseException as exc:  # reported below, on the test's thread
            failures.append(exc)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    for proxy in proxies:
        proxy.close()
    assert failures == []
    assert system.count(namespace="w").total == 12 * 40


def test_errors_of_calls_answered_by_the_actors_are_the_facades(
    owner: tuple[MemorySystem, OwnerService],
) -> None:
    """Not found, invalid and unknown arguments: the same class and message as the facade's."""
    system, service = owner
    proxy = OwnerProxy(service.socket_path, default_timeout=10)
    try:
        cases: list[tuple[str, dict[str, Any]]] = [
            ("get", {"memory_id": "0190a2c4-0000-7000-8000-000000000000"}),
            ("forget", {"key": "nothing", "namespace": "team"}),
            ("set_tags", {"memory_id": "0190a2c4-0000-7000-8000-000000000000", "tags": ["a"]}),
            ("store", {"content": "x", "metadata": {"a": "b" * 20_000}}),
            ("list", {"before": "not-an-id"}),
            ("session_pop", {"session_id": ""}),
            ("dead_letters", {"limit": 0}),
        ]
        for verb, args in cases:
            with pytest.raises((InvalidMemory, MemoryNotFound)) as across:
                proxy.call(verb, **args)
            with pytest.raises((InvalidMemory, MemoryNotFound)) as local:
                getattr(system, verb)(**args)
            assert (type(across.value), str(across.value)) == (
                type(local.value),
                str(local.value),
            ), verb
        with pytest.raises(InvalidMemory, match=r"get: .*unexpected keyword argument 'colour'"):
            proxy.call("get", memory_id="x", colour="red")
        # Names too long to be remembered are checked all the same.
        with pytest.raises(InvalidMemory, match=r"get: .*unexpected keyword argument 'nnnn"):
            proxy.call("get", memory_id="x", **{"n" * 600: 1})
    finally:
        proxy.close()


def test_one_request_verbs_are_begun_without_waiting_and_the_rest_run_on_workers(
    owner: tuple[MemorySystem, OwnerService],
) -> None:
    """``_begin`` prepares exactly the verbs listed as one request, answered once sent;
    it declines the others."""
    system, _ = owner
    memory_id = system.store("a note").id
    doomed = system.store("a note to forget").id
    args: dict[str, dict[str, Any]] = {
        "store": {"content": "another note"},
        "get": {"memory_id": memory_id},
        "forget": {"memory_id": doomed},
        "set_tags": {"memory_id": memory_id, "tags": ["t"]},
        "list": {},
        "dead_letters": {},
        "retry_dead_letters": {},
        "session_add": {"session_id": "s", "items": ["x"]},
        "session_pop": {"session_id": "s"},
        "session_clear": {"session_id": "s"},
    }
    assert set(args) == _ONE_REQUEST
    for verb, arguments in args.items():
        answered = threading.Event()
        begun = system._begin(verb, arguments, answered.set)
        assert begun is not None, verb
        assert not answered.wait(0.05), verb  # prepared, not sent yet
        begun.send()
        assert answered.wait(10), verb
        assert begun.answer() is not None, verb
        begun.release(answered=True)
    for verb in set(VERBS) - _ONE_REQUEST:
        assert system._begin(verb, {}, lambda: None) is None, verb


def test_answered_calls_leave_the_watch_at_once_and_give_back_their_slots(
    owner: tuple[MemorySystem, OwnerService],
) -> None:
    """A follower's answered calls hold nothing in the owner: the watch keeps only the
    unanswered (each answered call's future and request are freed at once, not at its
    look a quarter second later), and every admission slot is free again."""
    system, service = owner
    proxy = OwnerProxy(service.socket_path, default_timeout=10)
    try:
        memory_id = system.store("a note").id
        for n in range(200):
            assert not proxy.call("store", content=f"note {n}").duplicate
            assert proxy.call("get", memory_id=memory_id).content == "a note"
        # Released just after each answer's frame is written: at most the last one left.
        wait_until(lambda: not service._watch._due, "the watch holds no answered call")
        assert system._gate._free == system.config.max_in_flight
    finally:
        proxy.close()


def test_a_call_its_actor_does_not_answer_in_time_fails_as_the_facades_does(
    tmp_path: Path,
) -> None:
    """The store stalled for real (inside BEGIN): the follower's get times out as the owner's."""
    run = tmp_path / "run"
    ensure_private_dir(run)
    StallingConnection.reset()
    config = Config(sharing="direct", connect=stalling_connect)
    system = MemorySystem.open(tmp_path / "memory.db", config=config)
    service = OwnerService(system, run / "owner.sock")
    proxy = OwnerProxy(service.socket_path, default_timeout=10)
    stuck = threading.Thread(target=system.store, args=("stuck in its transaction",))
    try:
        memory_id = system.store("a note").id
        StallingConnection.armed = True
        stuck.start()
        assert StallingConnection.entered.wait(10)
        with pytest.raises(AskTimeout) as across:
            proxy.call("get", memory_id=memory_id, timeout=0.3)
        with pytest.raises(AskTimeout) as local:
            system.get(memory_id, timeout=0.3)
        assert (
            str(across.value) == str(local.value) == ("no answer from the store actor within 0.3s")
        )
        StallingConnection.release.set()
        stuck.join(10)
        # The admission slot of the call that timed out was given back.
        assert proxy.call("get", memory_id=memory_id).content == "a note"
    finally:
        StallingConnection.release.set()
        proxy.close()
        service.close()
        system.close()
        StallingConnection.reset()


def test_a_request_whose_actor_died_before_its_tell_is_unavailable_and_frees_its_slot(
    tmp_path: Path,
) -> None:
    """The actor gone between the request's preparation and its tell: Unavailable, as a
    blocking caller is told, and the admission slot (the only one here) is given back."""
    config = Config(sharing="direct", max_in_flight=1)
    system = MemorySystem.open(tmp_path / "memory.db", config=config)
    try:
        memory_id = system.store("a note").id
        begun = system._begin("get", {"memory_id": memory_id}, lambda: None)
        assert begun is not None
        assert not system._gate.acquire(0)  # the request holds the one slot
        begun.ref.stop(timeout=10)
        with pytest.raises(Unavailable) as refused:
            begun.send()
        with pytest.raises(Unavailable):
            begun.answer(refused.value)
        assert not system._gate.acquire(0)  # held until the answer is out
        begun.release(answered=False)
        assert system._gate.acquire(0)
        system._gate.release()
    finally:
        system.close()
