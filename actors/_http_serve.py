"""Internal: serve an ASGI app on a MemorySystem with uvicorn until SIGINT or SIGTERM.

Shared by the MCP server over HTTP (:func:`actors.server.serve_http`) and the
dashboard (:mod:`actors.dashboard`): the port is bound here (so a taken port is
a :class:`ServeError`, not uvicorn's log line and exit 3), and the system is
closed after uvicorn has shut down, whatever signal ended it.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import signal
import socket
import sys
from collections.abc import Callable
from types import FrameType
from typing import Any

import anyio

from actors.system import MemorySystem

__all__ = [
    "STOP_SIGNALS",
    "ServeError",
    "close_quietly",
    "flush_std_streams",
    "install_handlers",
    "line_buffer_stdout",
    "listen",
    "serve_until_signal",
]

logger = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)

_Handler = Callable[[int, FrameType | None], Any] | int | None


class ServeError(Exception):
    """The server could not start serving (e.g. the HTTP port is taken)."""


def serve_until_signal(
    system: MemorySystem,
    host: str,
    port: int,
    make_app: Callable[[int], Any],
    *,
    graceful_shutdown: int,
    on_listening: Callable[[int], None] = lambda port: None,
) -> None:
    """Bind ``host:port``, serve ``make_app(bound_port)``; on SIGINT/SIGTERM shut down, then
    close ``system`` (owned by the caller until now: closed here in every case).

    uvicorn owns the signals while it serves. When it has shut down it
    restores the handlers it found and re-raises the signal it caught; with
    the default SIGTERM disposition that would kill the process before the
    system is closed, so a SIGTERM handler that unwinds is installed first.
    """
    import uvicorn

    previous = install_handlers({signal.SIGTERM: _unwind_on_sigterm})
    sock: socket.socket | None = None
    try:
        sock = listen(host, port)
        port = sock.getsockname()[1]
        uv = _signal_naming_server()(
            uvicorn.Config(
                make_app(port),
                host=host,
                port=port,
                # Our logging config (stderr) applies; uvicorn's own would log access to stdout.
                log_config=None,
                access_log=logger.isEnabledFor(logging.DEBUG),
                timeout_graceful_shutdown=graceful_shutdown,
            )
        )
        on_listening(port)
        anyio.run(functools.partial(uv.serve, sockets=[sock]))
    except BaseException as exc:
        name = _stop_signal_behind(exc)
        if name is None:
            raise
        logger.info("%s; shutting down", name)
    else:
        # uvicorn re-raises the signal it caught once it has shut down, but a
        # SIGINT can then reach asyncio's runner while its main task is ending:
        # the runner only asks the task to cancel, the task returns, and no
        # KeyboardInterrupt comes out (seen in CI under load). uvicorn told us.
        if uv.stopped_by is not None:
            logger.info("%s; shutting down", uv.stopped_by)
    finally:
        # A second SIGTERM must not cut the close short (it is bounded anyway).
        install_handlers({signal.SIGTERM: _ignore_while_closing})
        if sock is not None:
            sock.close()
        close_quietly(system)
        install_handlers(previous)


def install_handlers(handlers: dict[signal.Signals, _Handler]) -> dict[signal.Signals, _Handler]:
    """Install signal handlers; return the previous ones (none off the main thread)."""
    previous: dict[signal.Signals, _Handler] = {}
    for sig, handler in handlers.items():
        if handler is None:  # a handler installed from C cannot be reinstalled from Python
            continue
        try:
            previous[sig] = signal.signal(sig, handler)
        except ValueError:
            # Only the main thread may set handlers; an embedding app that serves from
            # another thread keeps its own and must close the system itself on signals.
            logger.debug("not on the main thread: %s handler left alone", sig.name)
    return previous


def listen(host: str, port: int) -> socket.socket:
    """A TCP socket listening on ``host:port`` (0: a free port), or :class:`ServeError`."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        # As uvicorn does: a restart must not wait out TIME_WAIT on the old socket.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        # Listening now, not when uvicorn starts: a client given the URL at once
        # (the browser, a test) waits in the backlog instead of being refused.
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise ServeError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    return sock


@functools.cache
def _signal_naming_server() -> type[Any]:
    # uvicorn is imported when HTTP is served, not when this module is (stdio).
    import uvicorn

    class SignalNamingServer(uvicorn.Server):
        """A uvicorn server that remembers the first stop signal it was sent."""

        stopped_by: str | None = None

        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            if self.stopped_by is None:
                self.stopped_by = signal.Signals(sig).name
            super().handle_exit(sig, frame)

    return SignalNamingServer


class _Terminated(SystemExit):
    """SIGTERM under uvicorn: a SystemExit so asyncio and anyio unwind it promptly."""


def _stop_signal_behind(exc: BaseException) -> str | None:
    """ "SIGINT" or "SIGTERM" when ``exc`` is, or was caused by, a stop signal; else None.

    A signal can land anywhere, an import included: during anyio's lazy
    imports at startup, Python 3.11 wrapped our ``_Terminated`` raised in a
    class body in ``RuntimeError("Error calling __set_name__ ...")``, and the
    process exited 1 instead of closing cleanly (seen in CI under load).
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, KeyboardInterrupt):
            return "SIGINT"
        if isinstance(current, _Terminated):
            return "SIGTERM"
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def _unwind_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise _Terminated(0)


def _ignore_while_closing(signum: int, frame: FrameType | None) -> None:
    logger.warning("%s during shutdown; still closing", signal.Signals(signum).name)


def close_quietly(system: MemorySystem) -> None:
    """Close ``system``; a failure is logged, not raised (the process is leaving anyway)."""
    try:
        system.close()
    except Exception:
        logger.exception("closing the memory system failed")
    else:
        logger.info("memory system closed")


def line_buffer_stdout() -> None:
    """Line-buffer stdout, so a printed line is out before anything else happens."""
    reconfigure = getattr(sys.stdout, "reconfigure", None)
    if reconfigure is not None:
        reconfigure(line_buffering=True)


def flush_std_streams() -> None:
    """Best effort, right before ``os._exit`` (which skips every flush)."""
    for handler in logging.getLogger().handlers:
        with contextlib.suppress(Exception):
            handler.flush()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
