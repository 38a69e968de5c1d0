"""Two analysts side by side see only their own conversations; an admin sees both and the usage."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest
from playwright.sync_api import Browser, Page, expect

from tests.e2e.conftest import (
    AppServer,
    ask,
    download,
    login,
    messages,
    new_chat,
    new_context,
    open_history,
    screenshot,
    search_history,
    settle,
    sidebar,
    table_rows,
    table_titles,
)

pytestmark = pytest.mark.e2e

# Each question carries a ticket number that no note and no other test uses, so a search
# for it finds exactly that conversation.
QUESTIONS = {
    "alice": "How do I find sessions idle in transaction? (ticket aq7731)",
    "bob": "How do I restart a deployment in kubernetes? (ticket bq4410)",
}
TICKETS = {"alice": "aq7731", "bob": "bq4410"}


@pytest.fixture(scope="module")
def chats(browser: Browser, app_server: AppServer):
    """alice and bob logged in at the same time, in two browser contexts, one question each."""
    contexts = {user: new_context(browser) for user in QUESTIONS}
    try:
        pages = {user: context.new_page() for user, context in contexts.items()}
        ids = {}
        for user, page in pages.items():
            login(page, user, base_url=app_server.base_url)
            new_chat(page)
        for user, page in pages.items():
            ask(page, QUESTIONS[user])
            ids[user] = int(re.search(r"[?&]c=(\d+)", page.url).group(1))
        yield pages, ids
    finally:
        for context in contexts.values():
            context.close()


def test_each_analyst_sees_only_their_own_conversations_on_chat(chats, browser: Browser, app_server: AppServer):
    pages, ids = chats
    for user, other in (("alice", "bob"), ("bob", "alice")):
        page = pages[user]
        new_chat(page)  # a rerun: the sidebar lists what is in the database now
        expect(sidebar(page).get_by_role("button", name=QUESTIONS[user], exact=True)).to_be_visible()
        expect(sidebar(page).get_by_role("button", name=QUESTIONS[other], exact=True)).to_have_count(0)

    context = new_context(browser)  # bob follows a link to alice's conversation
    try:
        page = context.new_page()
        login(page, "bob", base_url=f"{app_server.base_url}/?c={ids['alice']}")
        expect(page.get_by_role("heading", name="New chat")).to_be_visible()
        expect(messages(page)).to_have_count(0)
        expect(page.get_by_text(TICKETS["alice"])).to_have_count(0)
        expect(page).not_to_have_url(re.compile(rf"[?&]c={ids['alice']}\b"))
    finally:
        context.close()


def test_second_analyst_sees_none_of_the_firsts_conversations_on_history_or_in_exports(chats, tmp_path: Path):
    """Issue #3's check: bob is used by this module only, so everything he sees is his own."""
    pages, _ = chats
    bob = pages["bob"]
    open_history(bob)
    table_titles(bob, [QUESTIONS["bob"]])
    search_history(bob, TICKETS["alice"])
    expect(bob.get_by_text("0 conversations match")).to_be_visible()
    table_titles(bob, [])
    search_history(bob, "")

    rows = pd.read_csv(download(bob, "CSV", tmp_path), encoding="utf-8-sig", dtype=str, keep_default_na=False)
    assert set(rows["username"]) == {"bob"}
    assert list(rows.loc[rows["role"] == "user", "content"]) == [QUESTIONS["bob"]]
    assert not rows["content"].str.contains(TICKETS["alice"]).any()


def test_admin_sees_both_analysts_and_the_usage_charts(chats, page: Page, app_server: AppServer):
    login(page, "root", base_url=app_server.base_url)
    open_history(page)
    for user, ticket in TICKETS.items():
        search_history(page, ticket)
        expect(page.get_by_text("1 conversation matches")).to_be_visible()
        table_titles(page, [QUESTIONS[user]])
        assert [row["Owner"] for row in table_rows(page)] == [user]

    search_history(page, "")
    expect(page.get_by_role("tab", name="Audit log")).to_be_visible()
    page.get_by_role("tab", name="Usage").click()
    settle(page)
    usage = page.get_by_role("tabpanel", name="Usage")
    charts = usage.get_by_test_id("stVegaLiteChart")
    expect(charts.first).to_be_visible()
    expect(charts.first.locator(".marks").first).to_be_visible()  # drawn, not only laid out
    for user in QUESTIONS:
        expect(usage).to_contain_text(user)
    screenshot(page, "dashboard", top=page.get_by_role("tablist"))
