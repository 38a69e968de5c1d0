"""Two replicas behind nginx on one PostgreSQL: routing, shared conversations, failover, startup, logs."""

from __future__ import annotations

import dataclasses
import re
import time

import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import create_engine, text

from chatbot.db import MIGRATION_LOCK_ID
from tests.deploy.conftest import (
    PASSWORD,
    SLOW,
    Cluster,
    Visit,
    answer_for,
    answer_to,
    json_lines,
    running_cluster,
)
from tests.replay_server import Received, Reply

pytestmark = pytest.mark.deploy

QUESTION_BOX = "Ask a question"
# Streamlit reconnects without reloading the page, so this watcher outlives the failover.
WATCH_FOR_LOGIN_FORM = """() => {
  window.__sawLoginForm = false;
  new MutationObserver(() => {
    if (document.querySelector('input[aria-label="Username"]')) window.__sawLoginForm = true;
  }).observe(document.body, { subtree: true, childList: true });
}"""


# -- what a user does ----------------------------------------------------------------------


def login(visit: Visit, cluster: Cluster, username: str = "alice", password: str = PASSWORD) -> None:
    """Open the app and log in; wait until the login cookie is set (a component iframe writes it)."""
    page = visit.page
    page.goto(cluster.url)
    for _ in range(3):
        settle(page, quiet=1.0)
        if submit_login(page, username, password):
            break
    expect(page.get_by_placeholder(QUESTION_BOX)).to_be_visible()
    deadline = time.monotonic() + 20
    while not any(c["name"] == "chatbot_auth" for c in page.context.cookies()):
        assert time.monotonic() < deadline, "the login cookie was never set"
        page.wait_for_timeout(100)
    settle(page, quiet=1.0)  # the cookie component's reruns; a question sent now would be cut off


def submit_login(page: Page, username: str, password: str) -> bool:
    """Send the login form: True once the chat shows, False when the form comes back empty.

    The first session a replica serves loses its first login that way (element ids change
    once the process has run st.navigation; see the deploy report). A person types again;
    so does this test.
    """
    # .last: a form that came back leaves the old one on the page for a moment.
    page.get_by_label("Username").last.fill(username)
    page.get_by_label("Password", exact=True).last.fill(password)
    page.get_by_role("button", name="Login").last.click()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if page.get_by_placeholder(QUESTION_BOX).is_visible():
            return True
        if page.evaluate("() => document.querySelector('input[aria-label=\"Username\"]')?.value === ''"):
            return False
        page.wait_for_timeout(100)
    raise AssertionError("the login form neither let the user in nor came back")


APP_STATE = """() => {
  const app = document.querySelector('[data-testid="stApp"]');
  return [app && app.dataset.testScriptState, app && app.dataset.testConnectionState,
          document.querySelectorAll('[data-testid="stChatMessage"]').length, location.search];
}"""


def settle(page: Page, quiet: float = 0.5, timeout: float = 30) -> None:
    """Wait until the app is connected, not running, and unchanged for ``quiet`` seconds.

    A session's first runs come in bursts (the cookie component reports, the app reruns),
    so "not running" for a moment is not the end of it.
    """
    deadline = time.monotonic() + timeout
    state, since = None, time.monotonic()
    while True:
        now_state = page.evaluate(APP_STATE)
        if now_state != state:
            state, since = now_state, time.monotonic()
        elif state[:2] == ["notRunning", "CONNECTED"] and time.monotonic() - since >= quiet:
            return
        assert time.monotonic() < deadline, f"the app never settled; last state {state}"
        page.wait_for_timeout(50)


def ask(page: Page, question: str) -> None:
    """Send a question and wait until its answer is saved and shown (the feedback widget comes last)."""
    before = messages(page).count()
    box = page.get_by_placeholder(QUESTION_BOX)
    box.fill(question)
    box.press("Enter")
    expect(messages(page)).to_have_count(before + 2)
    expect(messages(page).nth(before + 1).get_by_role("radio", name="Thumbs up")).to_be_visible()
    settle(page)


def messages(page: Page):
    return page.get_by_test_id("stChatMessage")


def transcript(page: Page) -> list[str]:
    """The first line of every chat message on the page, in order, once the page has stopped
    changing: under load a rerun's stale elements can still be on the page for a moment."""
    contents = page.get_by_test_id("stChatMessageContent")
    expect(contents).to_have_count(messages(page).count())
    expect(page.locator('[data-testid="stChatMessage"] [data-stale="true"]')).to_have_count(0)
    return [text.strip().splitlines()[0] for text in contents.all_inner_texts()]


def conversation_id(page: Page) -> int:
    match = re.search(r"[?&]c=(\d+)", page.url)
    assert match, f"no ?c= in {page.url}"
    return int(match.group(1))


def turns(*questions: str) -> list[str]:
    return [line for q in questions for line in (q, answer_for(q))]


def stored(database_url: str, conversation: int) -> list[tuple[str, str, str]]:
    """(role, content, status) of the conversation's messages, straight from PostgreSQL."""
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                text("SELECT role, content, status FROM messages WHERE conversation_id = :c ORDER BY id"),
                {"c": conversation},
            )
            return [tuple(row) for row in rows]
    finally:
        engine.dispose()


def served_only_by(visit: Visit, port: int, since: int = 0) -> bool:
    """Every response nginx gave this browser (from index ``since`` on) came from ``port``."""
    return bool(visit.served_by[since:]) and set(visit.served_by[since:]) == {port}


# -- the tests -----------------------------------------------------------------------------


def test_a_second_browser_on_another_replica_sees_the_same_conversation(shared_cluster, open_browser):
    first_port, second_port = shared_cluster.ports
    first = open_browser(shared_cluster, first_port)
    login(first, shared_cluster)
    ask(first.page, "What does VACUUM do?")
    ask(first.page, "And ANALYZE?")
    conversation = conversation_id(first.page)

    second = open_browser(shared_cluster, second_port)
    login(second, shared_cluster)
    sidebar = second.page.get_by_test_id("stSidebar")
    sidebar.get_by_role("button", name="What does VACUUM do?").click()
    settle(second.page)  # the new chat's bubbles may linger as stale elements until the rerun ends

    expect(messages(second.page)).to_have_count(4)
    assert transcript(second.page) == turns("What does VACUUM do?", "And ANALYZE?")
    assert conversation_id(second.page) == conversation
    assert served_only_by(first, first_port) and served_only_by(second, second_port)


def test_replicas_log_json_lines_on_stdout(shared_cluster, open_browser):
    visit = open_browser(shared_cluster, shared_cluster.ports[0])
    # A login cookie that does not decode: streamlit-authenticator used to print why on stdout.
    visit.page.context.add_cookies([{"name": "chatbot_auth", "value": "not-a-token", "url": shared_cluster.url}])
    login(visit, shared_cluster)

    entries = json_lines(shared_cluster.stdout_lines(shared_cluster.ports[0]))
    assert {"time", "level", "logger", "message"} <= set(entries[0])
    logged = [entry["message"] for entry in entries]
    assert "user 'alice' logged in" in logged
    assert "ignored a login cookie that does not decode: Not enough segments" in logged


def test_conversation_continues_on_a_survivor_after_its_replica_is_killed(cluster, open_browser, database_url):
    doomed, survivor = cluster.ports
    visit = open_browser(cluster, doomed)
    login(visit, cluster)
    ask(visit.page, "What does VACUUM do?")
    ask(visit.page, "And ANALYZE?")
    conversation = conversation_id(visit.page)
    # A newer conversation, so that "the most recent one" is not the one left open.
    visit.page.get_by_role("button", name="New chat").click()
    expect(messages(visit.page)).to_have_count(0)
    ask(visit.page, "Something else entirely")
    visit.page.get_by_test_id("stSidebar").get_by_role("button", name="What does VACUUM do?").click()
    expect(messages(visit.page)).to_have_count(4)
    settle(visit.page)
    assert conversation_id(visit.page) == conversation
    answered_by_doomed = len(visit.served_by)
    visit.page.evaluate(WATCH_FOR_LOGIN_FORM)

    cluster.kill(doomed)
    # The user does nothing: Streamlit reconnects by itself, nginx sends it to the survivor,
    # where the login cookie logs the user in again and ?c= reopens the conversation.
    wait_for_log(cluster, survivor, "user 'alice' logged in")
    settle(visit.page, quiet=1.5)
    assert transcript(visit.page) == turns("What does VACUUM do?", "And ANALYZE?")
    assert conversation_id(visit.page) == conversation
    assert not visit.page.evaluate("() => window.__sawLoginForm"), "the user was asked to log in again"

    ask(visit.page, "Does it lock the table?")

    everything = turns("What does VACUUM do?", "And ANALYZE?", "Does it lock the table?")
    assert transcript(visit.page) == everything
    assert [content for _, content, _ in stored(database_url, conversation)] == everything
    assert served_only_by(visit, survivor, since=answered_by_doomed)


def test_a_question_interrupted_by_a_replica_kill_is_kept_and_can_be_retried(
    cluster, open_browser, database_url, langflow
):
    doomed, survivor = cluster.ports
    visit = open_browser(cluster, doomed)
    login(visit, cluster)
    question = f"Explain VACUUM {SLOW} please"
    box = visit.page.get_by_placeholder(QUESTION_BOX)
    box.fill(question)
    box.press("Enter")
    # Two seconds into the answer: more than one of the chat's once-a-second saves has happened.
    expect(messages(visit.page).nth(1)).to_contain_text("please and more more")
    conversation = conversation_id_when_set(visit.page)

    langflow.disconnected.clear()
    cluster.kill(doomed)
    assert langflow.disconnected.wait(10), "the answer's Langflow request was not cancelled"
    answer = answer_for(question)
    (_, partial, status), = [row for row in stored(database_url, conversation) if row[0] == "assistant"]
    assert status == "interrupted"
    assert partial.startswith(f"Answer to: {question}") and answer.startswith(partial)  # at most ~1 s lost

    # On the survivor: the question and what had arrived of the answer, marked interrupted, with Retry.
    wait_for_log(cluster, survivor, "user 'alice' logged in")
    settle(visit.page, quiet=1.5)
    expect(messages(visit.page).nth(1)).to_contain_text("interrupted")
    retry = visit.page.get_by_role("button", name="Retry")
    expect(retry).to_be_visible()
    assert [line.strip() for line in transcript(visit.page)[:2]] == [question, partial.strip()]
    langflow.answer(answer_fast)
    retry.click()

    expect(messages(visit.page).last).to_contain_text(answer)
    expect(messages(visit.page).last.get_by_role("radio", name="Thumbs up")).to_be_visible()
    expect(retry).to_have_count(0)
    settle(visit.page)
    shown, kept = transcript(visit.page), stored(database_url, conversation)
    assert (shown[0], shown[-1]) == (question, answer)
    assert kept == [("user", question, "complete"), ("assistant", partial, "interrupted"),
                    ("assistant", answer, "complete")]


def test_replicas_starting_together_on_an_empty_database_take_turns_to_migrate(
    database_url, langflow, open_browser, tmp_path
):
    engine = create_engine(database_url)
    with engine.connect() as holder:
        # Hold the migration lock, so both replicas are seen waiting for it at the same time.
        holder.execute(text("SELECT pg_advisory_lock(:id)"), {"id": MIGRATION_LOCK_ID})
        holder.commit()
        with running_cluster(database_url, langflow.url, tmp_path / "run", users=False) as cluster:
            visits = [open_browser(cluster, port) for port in cluster.ports]
            for visit in visits:  # each replica migrates on its first session
                visit.page.goto(cluster.url, wait_until="commit")
            waiting = wait_for_advisory_waiters(engine, len(cluster.ports))
            assert waiting == {f"chatbot-{port}" for port in cluster.ports}
            holder.execute(text("SELECT pg_advisory_unlock(:id)"), {"id": MIGRATION_LOCK_ID})
            holder.commit()

            for visit in visits:
                expect(visit.page.get_by_text("Create the admin account")).to_be_visible()
            versions = holder.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
            assert len(versions) == 1
    engine.dispose()


# -- waiting for the servers -----------------------------------------------------------------


def wait_for_log(cluster: Cluster, port: int, message: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while message not in [entry["message"] for entry in json_lines(cluster.stdout_lines(port))]:
        assert time.monotonic() < deadline, f"replica {port} never logged {message!r}\n{cluster.diagnostics()}"
        time.sleep(0.1)


def wait_for_advisory_waiters(engine, count: int, timeout: float = 45) -> set[str]:
    """The application names of sessions waiting for an advisory lock, once there are ``count``."""
    query = text(
        "SELECT application_name FROM pg_stat_activity "
        "WHERE datname = current_database() AND wait_event_type = 'Lock' AND wait_event = 'advisory'"
    )
    deadline = time.monotonic() + timeout
    while True:
        with engine.connect() as connection:
            names = set(connection.execute(query).scalars())
        if len(names) >= count or time.monotonic() > deadline:
            return names
        time.sleep(0.1)


def conversation_id_when_set(page: Page) -> int:
    page.wait_for_url(re.compile(r"[?&]c=\d+"))
    return conversation_id(page)


def answer_fast(request: Received) -> Reply:
    return dataclasses.replace(answer_to(request), delay=0.0)
