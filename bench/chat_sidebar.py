"""chat_sidebar: the chat page reruns with 10,000 conversations in the sidebar within 1.2× of 10.

The real ``pages/chat.py`` under AppTest on a scratch SQLite database with the notes engine,
as in bench.chat_render: two users, one with 10 conversations and one with 10,000, each on a
new chat (no transcript), so the rerun is the sidebar and the page around it. The sidebar shows
the newest 30 (``SIDEBAR_PAGE``) grouped by date, from one paged query.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import streamlit.logger
from sqlalchemy import insert
from streamlit.testing.v1 import AppTest

from bench import data
from bench.chat_render import PAGE, ROOT, _environment, _run
from bench.context import Context
from bench.report import Figure
from bench.timing import time_pairs
from chatbot import db as database
from chatbot import store
from chatbot.models import Conversation

FEW, MANY = 10, 10_000
LIMIT = 1.2


def run(ctx: Context) -> list[Figure]:
    streamlit.logger.set_log_level("error")
    with ctx.scratch("sqlite") as url, _environment(DATABASE_URL=url, NOTES_DIR=str(ROOT / "notes")):
        actors = _users(url)
        pages = {n: _page(actor) for n, actor in actors.items()}
        for at in pages.values():
            for _ in range(2):
                _run(at)
        few, many = time_pairs(lambda: _run(pages[FEW]), lambda: _run(pages[MANY]), pairs=8 if ctx.quick else 20)
    ratio = many.median / few.median
    listed = {str(n): sum(1 for b in at.sidebar.button if (b.key or "").startswith("chat_open_")) for n, at in pages.items()}
    ctx.log("chat_sidebar: %d conversations %.0f ms, %d conversations %.0f ms (%.2f×)", FEW, few.median * 1000,
            MANY, many.median * 1000, ratio)  # fmt: skip
    return [Figure(
        name="chat_sidebar", value=many.median * 1000, unit="ms",
        target=f"rerun with {MANY:,} conversations ≤ {LIMIT:g} × with {FEW}", met=ratio <= LIMIT,
        baseline=few.median * 1000, baseline_label=f"{FEW} conversations",
        details={"listed": listed, "few_ms": few.summary(), "many_ms": many.summary()},
    )]  # fmt: skip


def _page(actor: store.Actor) -> AppTest:
    at = AppTest.from_file(str(PAGE), default_timeout=120)
    at.session_state["actor"] = actor
    at.session_state["chat_conversation"] = None
    return at


def _users(url: str) -> dict[int, store.Actor]:
    engine = database.make_engine(url)
    now = datetime.now(UTC)
    try:
        with database.session_factory(engine).begin() as session:
            actors = {}
            for n in (FEW, MANY):
                user = store.create_user(session, username=f"owner{n}", password="x", password_hash=data.PASSWORD_HASH)
                actors[n] = store.Actor.of(user)
                session.execute(insert(Conversation), [
                    {"owner_id": user.id, "title": f"Conversation {k}", "langflow_session_id": f"{n}-{k}",
                     "created_at": now - timedelta(hours=k), "updated_at": now - timedelta(hours=k)}
                    for k in range(n)
                ])  # fmt: skip
    finally:
        engine.dispose()
    return actors
