"""Take docs/dashboard.png: the dashboard on a small, realistic store, in Chromium.

    python tests/dashboard_screenshot.py docs/dashboard.png

Needs /usr/bin/chromium and playwright (the dev extra), as the browser tests do.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from dashboard_fixtures import Dashboard, launch_chromium
from playwright.sync_api import sync_playwright

from actors import MemorySystem

MEMORIES = [
    ("The staging database is at db-staging:5432 (read replica on :5433)", "infra", ["db"]),
    ("Deploys happen on Tuesdays after the 10:00 stand-up", "team", ["ops", "release"]),
    ("Alice prefers dark mode and compact tables", "users/alice/prefs", ["ui"]),
    ("Bob reviews every change to the billing service", "team", ["billing", "review"]),
    ("API keys rotate on the first of each month; the runbook is in ops/keys.md", "infra", []),
    ("The mobile app's minimum iOS version is 16", "projects/mobile", ["ios"]),
    ("Use UTC in every log line and every stored timestamp", "team", ["conventions"]),
    ("The CI cache is keyed on the lock file's hash", "projects/ci", ["ci", "cache"]),
    ("Alice's timezone is Europe/Lisbon", "users/alice/prefs", ["profile"]),
]


def main(target: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "memory.db"
        with MemorySystem.open(db) as memory:
            for content, namespace, tags in MEMORIES:
                memory.store(content, namespace=namespace, tags=tags)
            memory.forget(memory.store("An outdated note", namespace="team").id)
        ui = Dashboard(db)
        try:
            with sync_playwright() as playwright:
                browser = launch_chromium(playwright)
                page = browser.new_page(viewport={"width": 1200, "height": 900})
                page.goto(ui.url)
                page.wait_for_selector("body[data-ready=true]")
                page.screenshot(path=target, full_page=True)
                browser.close()
        finally:
            ui.stop()


if __name__ == "__main__":
    main(sys.argv[1])
