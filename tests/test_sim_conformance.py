"""A conformance battery that every runtime must pass: threaded (Pykka) and simulated.

If a Pykka upgrade changes the semantics the simulated runtime mirrors
(``actors/sim/runtime.py``), these tests fail on one runtime and not the other.
"""

from __future__ import annotations

from typing import Any

import attrs
import pykka
import pytest

from actors._base import DEFERRED, ReplyingActor
from actors.errors import Unavailable
from actors.messages import Ping, Request
from actors.runtime import Runtime
from actors.sim import BlockingCallInHandler, Deadlock, FaultPlan, SimRuntime


class Echo(pykka.Actor):
    """Plain Pykka actor: answers asks, fails on demand."""

    def __init__(self, log: list[str]) -> None:
        super().__init__()
        self.log = log

    def on_receive(self, message: Any) -> Any:
        if message == "boom":
            raise ValueError("boom")
        return f"echo:{message}"

    def on_failure(self, *exc_info: Any) -> None:
        self.log.append(f"failure:{exc_info[1]}")

    def on_stop(self) -> None:
        self.log.append("stopped")

    def shout(self, word: str) -> str:
        return word.upper()


class FailsToStart(pykka.Actor):
    def on_start(self) -> None:
        raise RuntimeError("no start")


def test_ask_errors_reach_the_caller_and_the_actor_lives(runtime: Runtime) -> None:
    """An exception while answering an ask goes to the caller only."""
    ref = runtime.spawn(Echo, [])
    with pytest.raises(ValueError, match="boom"):
        ref.ask("boom", timeout=5)
    assert ref.ask("again", timeout=5) == "echo:again"


def test_tell_errors_kill_the_actor_and_call_on_failure(runtime: Runtime) -> None:
    """An exception in a tell handler stops the actor after on_failure."""
    log: list[str] = []
    ref = runtime.spawn(Echo, log)
    ref.tell("boom")
    with pytest.raises(pykka.ActorDeadError):
        ref.ask("after", timeout=5)
    assert log == ["failure:boom"]
    assert not ref.is_alive()


def test_stop_answers_queued_asks_with_actor_dead(runtime: Runtime) -> None:
    """Asks queued behind a stop get ActorDeadError, and on_stop runs once."""
    log: list[str] = []
    ref = runtime.spawn(Echo, log)
    first = ref.ask("one", block=False)
    stopped = ref.stop(block=False)
    late = ref.ask("two", block=False) if ref.is_alive() else None
    assert first.get(timeout=5) == "echo:one"
    assert stopped.get(timeout=5) is True
    if late is not None:
        with pytest.raises(pykka.ActorDeadError):
            late.get(timeout=5)
    assert log == ["stopped"]


def test_an_on_start_failure_leaves_a_dead_actor(runtime: Runtime) -> None:
    """If on_start raises, asks fail with ActorDeadError instead of hanging."""
    ref = runtime.spawn(FailsToStart)
    with pytest.raises(pykka.ActorDeadError):
        ref.ask("anything", timeout=5)


def test_proxies_call_methods_through_the_mailbox(runtime: Runtime) -> None:
    """A proxy method call is an ask under the hood, on either runtime."""
    ref = runtime.spawn(Echo, [])
    assert ref.proxy().shout("hi").get(timeout=5) == "HI"


class Holder(ReplyingActor):
    """Keeps reply futures and answers them when a timer fires (or on stop)."""

    def __init__(self, runtime: Runtime, delay: float) -> None:
        super().__init__(runtime, name="holder")
        self.delay = delay
        self.held: list[pykka.Future[Any]] = []

    def handle(self, message: Any) -> Any:
        if isinstance(message, Ping):
            self.held.append(message.reply)
            self.runtime.call_later(self.delay, self.actor_ref, "release")
            return DEFERRED
        if message == "release":
            for fut in self.held:
                fut.set("released")
            self.held.clear()
            return None
        if isinstance(message, Request):
            raise LookupError("unknown request")
        return super().handle(message)

    def settle_on_stop(self) -> None:
        for fut in self.held:
            fut.set("settled on stop")
        self.held.clear()


def test_timers_deliver_messages_after_their_delay(runtime: Runtime) -> None:
    """call_later delivers a message; the reply comes after the delay, not before."""
    ref = runtime.spawn(Holder, runtime, 0.2)
    reply = runtime.new_future()
    start = runtime.monotonic()
    ref.tell(Ping(reply))
    assert reply.get(timeout=5) == "released"
    assert runtime.monotonic() - start >= 0.2


def test_a_wait_shorter_than_the_answer_times_out(runtime: Runtime) -> None:
    """A future answered later than the caller's timeout raises pykka.Timeout."""
    ref = runtime.spawn(Holder, runtime, 10.0)
    reply = runtime.new_future()
    ref.tell(Ping(reply))
    with pytest.raises(pykka.Timeout):
        reply.get(timeout=0.1)


def test_held_replies_are_settled_on_stop_and_queued_requests_fail(runtime: Runtime) -> None:
    """ReplyingActor answers what it holds on stop and fails requests queued behind the stop."""
    ref = runtime.spawn(Holder, runtime, 100.0)
    held = runtime.new_future()
    ref.tell(Ping(held))
    stopped = ref.stop(block=False)
    queued = runtime.new_future()
    try:
        ref.tell(Ping(queued))
    except pykka.ActorDeadError:
        queued.set_exception(exc_info=(Unavailable, Unavailable("already dead"), None))
    assert stopped.get(timeout=5) is True
    assert held.get(timeout=5) == "settled on stop"
    with pytest.raises(Unavailable):
        queued.get(timeout=5)


@attrs.frozen(eq=False)
class Bogus(Request):
    """Test-only request that Holder does not know."""


def test_request_errors_reach_the_caller_and_the_actor_lives(runtime: Runtime) -> None:
    """A ReplyingActor request handler that raises answers with the error; the actor lives."""
    ref = runtime.spawn(Holder, runtime, 0.0)
    reply = runtime.new_future()
    ref.tell(Bogus(reply))
    with pytest.raises(LookupError, match="unknown request"):
        reply.get(timeout=5)
    assert ref.is_alive()


def test_the_simulation_names_a_handler_that_blocks() -> None:
    """A handler waiting on another actor's future is a finding, not a hang."""
    sim = SimRuntime(1, faults=FaultPlan.none())

    class Blocker(pykka.Actor):
        def on_receive(self, message: Any) -> Any:
            return message.get(timeout=1)

    ref = sim.spawn(Blocker)
    with pytest.raises(BlockingCallInHandler, match="must never block"):
        ref.ask(sim.new_future(), timeout=5)


def test_the_simulation_detects_a_future_nobody_can_answer() -> None:
    """Waiting on a future that no task can ever answer raises Deadlock at once."""
    sim = SimRuntime(1, faults=FaultPlan.none())
    with pytest.raises(Deadlock, match="nothing left can answer"):
        sim.new_future().get(timeout=3600)
    assert sim.now == 0.0
