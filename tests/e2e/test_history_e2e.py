"""The history page in a real browser: feedback, search, transcripts, and what each download holds."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import openpyxl
import pandas as pd
import pyarrow.parquet as pq
import pytest
from playwright.sync_api import Browser, Page, expect

from tests.e2e.conftest import (
    PAYLOAD_WORD,
    QUESTION_BOX,
    AppServer,
    ask,
    assert_inert,
    download,
    history_table,
    logged_in,
    login,
    messages,
    new_chat,
    new_context,
    open_chat,
    open_history,
    screenshot,
    search_history,
    select_row,
    settle,
    sidebar,
    start_app,
    table_rows,
    table_titles,
    wait_for_login_cookie,
)

pytestmark = pytest.mark.e2e

QUESTION = "How do I compute a running total with window functions?"
ANSWER_SOURCE = "sql-window-functions.md"
# Starts with "=": a spreadsheet would run it. It matches the churn meeting note.
FORMULA = '=HYPERLINK("http://example.com/x","churn") paused accounts'
FORMATS = ("CSV", "Excel", "JSON", "Markdown", "Parquet")
# Its answer quotes the payload note; its title (the question) carries a payload of its own.
PAYLOAD_TICKET = "xq5150"
PAYLOAD_QUESTION = f"{PAYLOAD_WORD} incident ({PAYLOAD_TICKET}) <img src=x onerror=\"window.__pwned='title'\">"


@pytest.fixture(scope="module")
def alice(browser: Browser, app_server: AppServer) -> Iterator[Page]:
    """Alice, logged in, with three conversations: a plain question, one that looks like a
    formula, and one whose answer and title carry script payloads."""
    with logged_in(browser, app_server, "alice") as page:
        for question in (QUESTION, FORMULA, PAYLOAD_QUESTION):
            new_chat(page)
            ask(page, question)
        yield page


def test_thumbs_down_with_a_comment_is_shown_on_history(alice: Page):
    page = alice
    open_chat(page)
    question = "What is CUPED and how much did it narrow our intervals?"
    answer = ask(page, question)
    answer.get_by_role("radio", name="Thumbs down").click()
    expect(page.get_by_text("Thanks, feedback saved.")).to_be_visible()
    comment = "Quoted the whole reading list instead of the CUPED paper."
    box = answer.get_by_label("Comment (optional)")
    box.fill(comment)
    box.press("Enter")
    expect(box).to_have_value(comment)

    open_history(page)
    search_history(page, "CUPED")
    expect(page.get_by_text("1 conversation matches")).to_be_visible()
    table_titles(page, [question])
    row = table_rows(page)[0]
    assert (row["👍"], row["👎"]) == ("0", "1"), row
    select_row(page, 0)
    transcript = page.get_by_test_id("stMainBlockContainer")
    expect(transcript).to_contain_text("Deng et al.")  # the answer, so the transcript is open
    expect(transcript.get_by_test_id("stCaptionContainer").filter(has_text=comment)).to_contain_text("👎")


def test_search_opens_a_transcript_and_every_download_holds_the_conversation(alice: Page, tmp_path: Path):
    page = alice
    open_history(page)
    search_history(page, "")
    titles = table_titles(page)
    assert QUESTION in titles and FORMULA in titles, titles  # issue #3: chatted, so listed

    search_history(page, "running total")
    expect(page.get_by_text("1 conversation matches")).to_be_visible()
    table_titles(page, [QUESTION])
    select_row(page, 0)
    expect(page.get_by_test_id("stMainBlockContainer")).to_contain_text(ANSWER_SOURCE)
    screenshot(page, "history", top=page.get_by_text("1 conversation matches"))
    markdown = download(page, "Transcript (Markdown)", tmp_path).read_text()
    assert QUESTION in markdown and ANSWER_SOURCE in markdown
    transcript = json.loads(download(page, "Transcript (JSON)", tmp_path).read_text())
    assert [m["role"] for m in transcript] == ["user", "assistant"]
    assert transcript[0]["content"] == QUESTION

    search_history(page, "")
    files = {label: download(page, label, tmp_path) for label in FORMATS}
    check_csv(files["CSV"])
    check_excel(files["Excel"])
    check_rows(pd.DataFrame(json.loads(files["JSON"].read_text())), neutralized=False)
    check_rows(pq.read_table(files["Parquet"]).to_pandas(), neutralized=False)
    text = files["Markdown"].read_text()
    assert QUESTION in text and ANSWER_SOURCE in text and "paused accounts" in text


def test_admin_reading_a_transcript_with_payloads_runs_nothing(page: Page, app_server: AppServer, alice: Page):
    """Issue #5 on /history: an admin opens an analyst's conversation whose answer is hostile."""
    login(page, "root", base_url=app_server.base_url)
    open_history(page)
    search_history(page, PAYLOAD_TICKET)
    table_titles(page, [PAYLOAD_QUESTION])
    select_row(page, 0)
    expect(messages(page).nth(1)).to_contain_text('<script>window.__pwned = "script"</script>')
    expect(page.get_by_role("heading", name=PAYLOAD_QUESTION)).to_be_visible()  # the title, as text
    assert_inert(page)


def check_rows(rows: pd.DataFrame, *, neutralized: bool) -> None:
    """Alice's rows only; the question and its answer; the formula question as text."""
    assert set(rows["username"]) == {"alice"}
    asked = rows[(rows["role"] == "user") & (rows["content"] == QUESTION)]
    assert len(asked) == 1
    answers = rows[(rows["conversation_id"] == asked["conversation_id"].iloc[0]) & (rows["role"] == "assistant")]
    assert len(answers) == 1 and ANSWER_SOURCE in answers["content"].iloc[0]
    formula = ("'" + FORMULA) if neutralized else FORMULA
    assert formula in set(rows["content"]) and formula in set(rows["conversation_title"])
    if neutralized:
        text = rows[["content", "conversation_title", "feedback_comment"]].to_numpy().ravel()
        assert [value for value in text if str(value).startswith(("=", "+", "-", "@"))] == []


def check_csv(path: Path) -> None:
    rows = pd.read_csv(path, encoding="utf-8-sig", dtype=str, keep_default_na=False)
    check_rows(rows, neutralized=True)


def check_excel(path: Path) -> None:
    sheet = openpyxl.load_workbook(path).worksheets[0]
    cells = [cell for row in sheet.iter_rows() for cell in row]
    assert [cell.coordinate for cell in cells if cell.data_type == "f"] == []  # no formula anywhere
    header, *body = [[cell.value for cell in row] for row in sheet.iter_rows()]
    rows = pd.DataFrame(body, columns=header)
    check_rows(rows, neutralized=True)


def test_history_opens_by_its_url_before_and_after_login(page: Page, app_server: AppServer):
    """A bookmark of /history, with its filter, shows the history page once logged in, and a reload keeps it.

    Regression: Streamlit resolved a first load of /history to its legacy pages/ hash, which
    st.navigation does not know, so the chat page opened instead.
    """
    bookmark = f"{app_server.base_url}/history?history_search=window"
    login(page, "alice", base_url=bookmark)
    chat_box = page.get_by_placeholder(QUESTION_BOX)
    expect(history_table(page).or_(chat_box)).to_be_visible()  # whichever page it settles on
    expect(chat_box).to_have_count(0, timeout=2_000)
    expect(page.get_by_label("Search messages")).to_have_value("window")
    expect(page).to_have_url(bookmark)

    wait_for_login_cookie(page)
    page.reload()  # logged in by the cookie this time
    expect(history_table(page).or_(chat_box)).to_be_visible()
    expect(chat_box).to_have_count(0, timeout=2_000)
    expect(page.get_by_label("Search messages")).to_have_value("window")
    expect(page).to_have_url(bookmark)


def test_a_bookmark_of_history_opens_it_as_a_fresh_servers_first_page(browser: Browser, tmp_path):
    """Regression: on a server that has not yet run st.navigation, Streamlit serves pages/history.py
    itself; it sends the visitor to app.py to log in, and the bookmark was forgotten on the way."""
    server = start_app(tmp_path / "app", users=("alice",))
    context = new_context(browser)
    try:
        page = context.new_page()
        bookmark = f"{server.base_url}/history?history_search=window"
        login(page, "alice", base_url=bookmark)
        expect(page.get_by_label("Search messages")).to_have_value("window")
        expect(page.get_by_placeholder(QUESTION_BOX)).to_have_count(0)
        expect(page).to_have_url(bookmark)
    finally:
        context.close()
        server.stop()


# -- issue #16: the analyst's workbench, as "Checked by" says ---------------------------------

KEPT = "How do I vacuum a bloated billing table?"  # tagged billing, 👎, noted: the evaluation set
REFUND = "Does vacuum slow the refund report?"  # tagged billing, but it mentions refund
PRIVATE_TAG = "vip-escalation"  # alice's, on a conversation bob cannot see
NOTE = "Skip VACUUM FULL by day: it locks the table."
CORRECTED = "Run plain VACUUM (or let autovacuum do it); VACUUM FULL only in a maintenance window."
VIEW = "Billing vacuum"


def tag_open_conversation(page: Page, *tags: str) -> None:
    """Type tags into the open transcript's Tags box, Enter after each (a new tag is accepted)."""
    box = page.locator("[class*='st-key-history_chat_tags_'] input").first
    for tag in tags:
        box.click()
        box.fill(tag)
        box.press("Enter")
        settle(page)
    page.keyboard.press("Escape")
    for tag in tags:
        expect(page.locator("[class*='st-key-history_chat_tags_']").first).to_contain_text(tag)


def select_title(page: Page, title: str) -> None:
    search_history(page, f'"{title}"')
    table_titles(page, [title])
    select_row(page, 0)
    expect(page.get_by_role("heading", name=title)).to_be_visible()


def test_checked_by_tag_annotate_search_save_reopen_and_export_the_evaluation_set(
    browser: Browser, app_server: AppServer, tmp_path: Path
):
    with logged_in(browser, app_server, "alice") as page:
        for question in (REFUND, KEPT):
            new_chat(page)
            answer = ask(page, question)
        answer.get_by_role("radio", name="Thumbs down").click()  # on the kept one's answer
        expect(page.get_by_text("Thanks, feedback saved.")).to_be_visible()

        open_history(page)
        select_title(page, KEPT)
        tag_open_conversation(page, "billing")
        page.get_by_role("button", name="Add a note").first.click()
        page.get_by_label("Note", exact=True).fill(NOTE)
        page.get_by_label("Corrected answer (what it should have said)").fill(CORRECTED)
        page.get_by_role("button", name="Save note").click()
        settle(page)
        expect(page.get_by_text(f"Should have said: {CORRECTED}")).to_be_visible()
        select_title(page, REFUND)
        tag_open_conversation(page, "billing", PRIVATE_TAG)

        search_history(page, "tag:billing -refund vac*")
        expect(page.get_by_label("Search messages")).to_have_value("vac* -refund")  # the tag moved to its filter
        table_titles(page, [KEPT])
        page.get_by_role("button", name="Save this view").click()
        page.get_by_label("Name").fill(VIEW)
        page.get_by_test_id("stPopoverBody").get_by_text("Share with everyone").click()
        expect(page.get_by_role("checkbox", name="Share with everyone")).to_be_checked()
        page.get_by_role("button", name="Save", exact=True).click()
        settle(page)
        expect(page).to_have_url(re.compile(r"[?&]view=\d+"))
        view_url = page.url

    second = new_context(browser)  # a second browser: nothing shared but the link
    try:
        page = second.new_page()
        login(page, "alice", base_url=view_url)
        table_titles(page, [KEPT])
        expect(page.get_by_label("Search messages")).to_have_value("vac* -refund")
        records = [json.loads(line) for line in download(page, "Evaluation JSONL", tmp_path).read_text().splitlines()]
        assert [(r["question"], r["note"], r["corrected_answer"], r["feedback_score"], r["tags"]) for r in records] == [
            (KEPT, NOTE, CORRECTED, 0, ["billing"])]
        assert "postgres-vacuum" in records[0]["answer"] or records[0]["answer"]
    finally:
        second.close()

    with logged_in(browser, app_server, "bob") as page:
        open_history(page)
        shared = sidebar(page).get_by_role("button", name=f"{VIEW} (shared by alice)")
        expect(shared).to_be_visible()
        page.get_by_text("Filters").first.click()  # bob's tag suggestions: only his own conversations'
        page.locator(".st-key-history_tags input").click()
        expect(page.get_by_role("option", name=PRIVATE_TAG)).to_have_count(0)
        page.keyboard.press("Escape")
        shared.click()
        settle(page)
        expect(page.get_by_text("0 conversations match")).to_be_visible()
        assert PRIVATE_TAG not in page.inner_text("body")
        assert KEPT not in page.inner_text("body") and REFUND not in page.inner_text("body")


def test_on_a_phone_the_filters_fold_and_the_downloads_are_one_menu(browser: Browser, app_server: AppServer,
                                                                     alice: Page):
    """390 px wide: the search and the table come first; the filters are one folded expander and the
    seven downloads one button."""
    context = browser.new_context(viewport={"width": 390, "height": 844}, accept_downloads=True)
    try:
        page = context.new_page()
        login(page, "alice", base_url=f"{app_server.base_url}/history")
        expect(page.get_by_label("Search messages")).to_be_visible()
        expect(page.get_by_text("Filters", exact=True)).to_be_visible()
        expect(page.get_by_label("From (UTC)", exact=True)).to_be_hidden()
        expect(page.get_by_role("button", name=re.compile(r"Download [\d,]+ messages"))).to_be_visible()
        for label in FORMATS:
            expect(page.get_by_role("button", name=label, exact=True)).to_be_hidden()
        page.get_by_text("Filters", exact=True).click()
        expect(page.get_by_label("From (UTC)", exact=True)).to_be_visible()
    finally:
        context.close()
