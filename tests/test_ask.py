"""The one way callers outside the actors ask and stop them (``actors._ask``), on both runtimes."""

from __future__ import annotations

import logging
import threading
from typing import Any

import attrs
import pykka
import pytest

from actors._ask import ask, send, stop
from actors._base import DEFERRED, ReplyingActor
from actors.errors import AskTimeout, Unavailable
from actors.messages import Ping, Request
from actors.runtime import Runtime, ThreadedRuntime


@attrs.frozen(eq=False)
class Hold(Request[str]):
    """Test → Keeper: answered a minute later (or when the keeper stops)."""


@attrs.frozen(eq=False)
class Refuse(Request[str]):
    """Test → Keeper: answered with a LookupError."""


class Keeper(ReplyingActor):
    """Answers Ping with its state, Hold a minute later, and refuses Refuse."""

    def __init__(self, runtime: Runtime) -> None:
        super().__init__(runtime, name="keeper")
        self.held: list[pykka.Future[str]] = []

    def handle(self, message: Any) -> Any:
        match message:
            case Ping():
                return self.state
            case Hold():
                # A timer, not "never": the simulation reports a wait that nothing
                # can end as a deadlock instead of letting the timeout run out.
                self.held.append(message.reply)
                self.runtime.call_later(60, self.actor_ref, "release")
                return DEFERRED
            case "release":
                self.settle_on_stop()
                return None
            case Refuse():
                raise LookupError("refused")
        return super().handle(message)

    def settle_on_stop(self) -> None:
        for reply in self.held:
            reply.set("released")
        self.held.clear()


def test_ask_returns_the_answer_of_the_request(runtime: Runtime) -> None:
    """The answer the actor settles is what ask returns."""
    ref = runtime.spawn(Keeper, runtime)
    assert ask(runtime, ref, Ping, 5, "the keeper") == "READY"


def test_an_error_answered_by_the_actor_is_raised_to_the_caller(runtime: Runtime) -> None:
    """The handler's exception reaches the caller as is; the actor lives on."""
    ref = runtime.spawn(Keeper, runtime)
    with pytest.raises(LookupError, match="refused"):
        ask(runtime, ref, Refuse, 5, "the keeper")
    assert ask(runtime, ref, Ping, 5, "the keeper") == "READY"


def test_no_answer_in_time_is_an_ask_timeout_naming_the_actor(runtime: Runtime) -> None:
    """A request kept unanswered ends the wait with AskTimeout after the timeout."""
    ref = runtime.spawn(Keeper, runtime)
    with pytest.raises(AskTimeout, match=r"^no answer from the keeper within 0.5s$"):
        ask(runtime, ref, Hold, 0.5, "the keeper")


def test_asking_a_dead_actor_is_unavailable_with_the_callers_message(runtime: Runtime) -> None:
    """A dead actor: Unavailable, worded by the caller or by default from ``what``."""
    ref = runtime.spawn(Keeper, runtime)
    stop(ref, 5)
    with pytest.raises(Unavailable, match=r"^the keeper is not running$"):
        ask(runtime, ref, Ping, 5, "the keeper")
    with pytest.raises(Unavailable, match=r"^the keeper is restarting; retry shortly$"):
        ask(runtime, ref, Ping, 5, "the keeper", if_dead="the keeper is restarting; retry shortly")


def test_stop_settles_held_requests_and_a_second_stop_is_quiet(runtime: Runtime) -> None:
    """stop waits for on_stop (held replies settled); stopping a dead actor does nothing."""
    ref = runtime.spawn(Keeper, runtime)
    held = send(runtime, ref, Hold, if_dead="the keeper is not running")
    assert ask(runtime, ref, Ping, 5, "the keeper") == "READY"  # Hold was handled before
    stop(ref, 5)
    assert held.get(timeout=0) == "released"
    assert not ref.is_alive()
    stop(ref, 5)


def test_a_stop_that_times_out_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    """Shutdown goes on past an actor that does not stop in time; the log says which."""
    runtime = ThreadedRuntime()
    released = threading.Event()

    class Slow(pykka.Actor):
        def on_stop(self) -> None:
            released.wait(5)

    ref = runtime.spawn(Slow)
    try:
        with caplog.at_level(logging.ERROR, logger="actors._ask"):
            stop(ref, 0.05)
        assert any("did not stop within 0.05s" in r.getMessage() for r in caplog.records)
    finally:
        released.set()
        stop(ref, 5)
        runtime.close()
