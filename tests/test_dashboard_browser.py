"""The dashboard in a real browser: Debian's Chromium driven by playwright.

Memories are stored through the library, ``memory-actors ui`` runs as a real
process on that file, and the page is used as a person would: search, open a
memory, edit its tags, forget it (confirming), all by label and role (what a
screen reader sees). The store is then checked through the library.

Without /usr/bin/chromium this skips with that reason; CI installs it and sets
MEMORY_ACTORS_REQUIRE_BROWSER=1, which turns the skip into a failure.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dashboard_fixtures import Dashboard, launch_chromium, mark_dead_letter, require_chromium

from actors import MemoryNotFound, MemorySystem

pytestmark = [pytest.mark.browser, pytest.mark.slow]

#: Playwright's waits, in ms: a loaded 2-core machine runs Chromium slowly.
WAIT_MS = 30_000


@pytest.fixture
def page(db_path: Path) -> Iterator[tuple[Any, Dashboard, dict[str, str]]]:
    """A Chromium page on a dashboard over a small store."""
    require_chromium()
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=WAIT_MS)

    with MemorySystem.open(db_path) as memory:
        ids = {
            "staging": memory.store(
                "The staging database is at db-staging:5432", tags=["infra"]
            ).id,
            "deploy": memory.store("Deploys happen on Tuesdays", tags=["ops"]).id,
            "theme": memory.store("Alice prefers dark mode", namespace="users/alice").id,
        }
    ui = Dashboard(db_path)
    try:
        with sync_playwright() as playwright:
            browser = launch_chromium(playwright)
            try:
                tab = browser.new_page()
                tab.set_default_timeout(WAIT_MS)
                tab.goto(ui.url)
                tab.wait_for_selector("body[data-ready=true]")
                yield tab, ui, ids
            finally:
                browser.close()
        assert ui.stop() == 0
    finally:
        ui.kill()


def test_search_then_forget_in_the_page_reaches_the_store(
    page: tuple[Any, Dashboard, dict[str, str]], db_path: Path
) -> None:
    """Search, open, retag and forget (confirming) in Chromium; the library sees each change."""
    from playwright.sync_api import expect

    tab, _, ids = page
    status = tab.locator("#result-status")
    expect(status).to_have_text("Page 1: 3 memories, newest first")
    expect(tab.locator("#count-total")).to_have_text("3")

    tab.get_by_label("Search", exact=True).fill("staging database")
    tab.get_by_label("Search", exact=True).press("Enter")
    expect(status).to_contain_text("1 match for “staging database” (status local")
    rows = tab.locator("#results tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("db-staging:5432")
    expect(rows.first.locator("mark")).to_have_text(["staging", "database", "staging"])

    tab.get_by_role("button", name=f"Open memory {ids['staging']}").click()
    detail = tab.get_by_role("dialog", name="Memory")
    expect(detail).to_be_visible()
    expect(detail).to_contain_text("The staging database is at db-staging:5432")
    detail.get_by_label("Tags (comma-separated)").fill("infra, Prod")
    detail.get_by_role("button", name="Save tags").click()
    expect(detail.get_by_role("status")).to_have_text("Saved: infra, prod")

    detail.get_by_role("button", name="Forget…").click()
    confirm = tab.get_by_role("alertdialog", name="Forget this memory?")
    expect(confirm).to_be_visible()
    # Cancel first: nothing is forgotten without the confirmation.
    confirm.get_by_role("button", name="Cancel").click()
    expect(confirm).to_be_hidden()
    with MemorySystem.open(db_path) as memory:
        assert memory.get(ids["staging"]).tags == ("infra", "prod")
    detail.get_by_role("button", name="Forget…").click()
    confirm.get_by_role("button", name="Forget", exact=True).click()
    expect(detail).to_be_hidden()
    expect(status).to_contain_text(f"Forgot {ids['staging']}")
    expect(rows).to_have_count(0)
    expect(tab.locator("#count-total")).to_have_text("2")
    expect(tab.locator("#count-forgotten")).to_have_text("1")

    with MemorySystem.open(db_path) as memory:
        with pytest.raises(MemoryNotFound, match="forgotten"):
            memory.get(ids["staging"])
        assert memory.count().total == 2
        assert memory.get(ids["deploy"]).tags == ("ops",)


def test_filters_and_paging_by_keyboard(page: tuple[Any, Dashboard, dict[str, str]]) -> None:
    """The namespace filter and the buttons work from the keyboard alone."""
    from playwright.sync_api import expect

    tab, _, ids = page
    tab.get_by_label("Namespace").select_option("users/alice")
    tab.get_by_role("button", name="Search", exact=True).focus()
    tab.keyboard.press("Enter")
    rows = tab.locator("#results tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("Alice prefers dark mode")
    open_button = tab.get_by_role("button", name=f"Open memory {ids['theme']}")
    open_button.focus()
    tab.keyboard.press("Enter")
    detail = tab.get_by_role("dialog", name="Memory")
    expect(detail).to_be_visible()
    tab.keyboard.press("Escape")
    expect(detail).to_be_hidden()
    tab.get_by_role("button", name="Show all").click()
    expect(rows).to_have_count(3)


def test_dead_letters_show_and_retry_from_the_page(
    page: tuple[Any, Dashboard, dict[str, str]], db_path: Path
) -> None:
    """A dead letter is listed with its error; the retry button requeues it."""
    from playwright.sync_api import expect

    tab, _, ids = page
    expect(tab.get_by_role("button", name="Retry dead letters")).to_be_disabled()
    mark_dead_letter(db_path, ids["deploy"], "HubRejected: 422")
    tab.reload()
    tab.wait_for_selector("body[data-ready=true]")
    dead = tab.get_by_role("table", name="Dead letters: writes the hub kept refusing")
    expect(dead).to_be_visible()
    expect(dead.locator("tbody tr")).to_have_count(1)
    expect(dead).to_contain_text("HubRejected: 422")
    expect(tab.locator("#count-dead")).to_have_text("1")
    tab.get_by_role("button", name="Retry dead letters").click()
    expect(tab.locator("#retry-status")).to_have_text("Requeued 1 memory for the next push.")
    expect(dead).to_be_hidden()
    with MemorySystem.open(db_path) as memory:
        assert memory.count().dead_letters == 0
