"""``memory-actors ui`` as a real process, for the dashboard's HTTP and browser tests."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from test_mcp_http import console_script

STARTUP_DEADLINE = 30.0
EXIT_DEADLINE = 15.0


class Dashboard:
    """``memory-actors --db DB ui --no-browser [args]``; its URL read from its stdout."""

    def __init__(self, db: Path, *args: str) -> None:
        self.db = db
        self.out = db.with_name(f"{db.stem}-ui.out")
        self.err = db.with_name(f"{db.stem}-ui.err")
        env = {key: value for key, value in os.environ.items() if key != "MEMORY_ACTORS_DB"}
        with self.out.open("w") as out, self.err.open("w") as err:
            self.proc = subprocess.Popen(
                [console_script(), "-v", "--db", str(db), "ui", "--no-browser", *args],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                env=env,
            )
        self.url = self._wait_for_url()
        parts = urlsplit(self.url)
        self.base = f"{parts.scheme}://{parts.netloc}"
        self.port = parts.port
        self.token = parse_qs(parts.query)["token"][0]

    def __repr__(self) -> str:
        return f"<Dashboard pid={self.proc.pid} {self.base}>"

    def _wait_for_url(self) -> str:
        deadline = time.monotonic() + STARTUP_DEADLINE
        while time.monotonic() < deadline:
            for line in self.out.read_text().splitlines():
                if line.startswith("http://"):
                    return line.strip()
            if self.proc.poll() is not None:
                pytest.fail(f"ui exited with {self.proc.returncode}:\n{self.logs()}")
            time.sleep(0.05)  # polls a file another process writes; the deadline bounds it
        pytest.fail(f"ui printed no URL within {STARTUP_DEADLINE}s:\n{self.logs()}")

    def logs(self) -> str:
        return f"stdout:\n{self.out.read_text()}\nstderr:\n{self.err.read_text()}"

    def headers(self) -> dict[str, str]:
        """What the page's script sends: the token header."""
        return {"X-Dashboard-Token": self.token}

    def stop(self) -> int:
        """SIGTERM, as Ctrl-C would; the exit status."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=EXIT_DEADLINE)
        except subprocess.TimeoutExpired:
            pytest.fail(f"ui did not exit within {EXIT_DEADLINE}s of SIGTERM:\n{self.logs()}")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=EXIT_DEADLINE)


#: Debian's Chromium; playwright never downloads a browser here.
CHROMIUM = Path("/usr/bin/chromium")
#: What makes CI fail, instead of skip, when the browser is missing (.ci/run sets it).
REQUIRE_BROWSER_ENV = "MEMORY_ACTORS_REQUIRE_BROWSER"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def require_chromium() -> None:
    """Skip without /usr/bin/chromium, unless $MEMORY_ACTORS_REQUIRE_BROWSER=1 (then fail)."""
    if CHROMIUM.exists():
        return
    reason = f"{CHROMIUM} is missing (apt-get install -y chromium; .ci/run installs it)"
    if os.environ.get(REQUIRE_BROWSER_ENV) == "1":
        pytest.fail(f"{reason}, and {REQUIRE_BROWSER_ENV}=1 requires the browser tests")
    pytest.skip(reason)


def launch_chromium(playwright: Any) -> Any:
    """Chromium from the system, headless, with nothing that reaches the network by itself."""
    return playwright.chromium.launch(
        executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
    )


def mark_dead_letter(db: Path, memory_id: str, error: str) -> None:
    """Make the memory's outbox rows a dead letter, as a hub that kept refusing leaves them.

    A shortcut for the dashboard's tests, whose subject is showing and retrying;
    test_sync_faults makes real dead letters through a failing hub.
    """
    conn = sqlite3.connect(db)
    try:
        with conn:
            conn.execute(
                "UPDATE outbox SET dead = 1, attempts = 5, last_error = ? WHERE memory_id = ?",
                (error, memory_id),
            )
    finally:
        conn.close()
