"""chat_render: the chat page with a 2,000-message conversation renders within 2× the time of a 20-message one.

The real ``pages/chat.py`` runs under ``streamlit.testing.v1.AppTest`` on a scratch SQLite
database with the notes engine, the signed-in user set in session state as app.py does. Each
conversation gets its own AppTest, warmed up, and ``at.run()`` (a rerun, as after any click) is
timed alternately on the two.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import streamlit.logger
from sqlalchemy import insert, update
from streamlit.testing.v1 import AppTest

from bench import data
from bench.context import Context
from bench.report import Figure
from bench.timing import time_pairs
from chatbot import db as database
from chatbot import store
from chatbot.models import Conversation, Feedback, Message

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "pages" / "chat.py"
SHORT, LONG = 20, 2_000
LIMIT = 2.0


def run(ctx: Context) -> list[Figure]:
    streamlit.logger.set_log_level("error")  # AppTest outside a server warns on every widget
    with ctx.scratch("sqlite") as url, _environment(DATABASE_URL=url, NOTES_DIR=str(ROOT / "notes")):
        actor, short, long = _conversations(url)
        pages = {n: _page(actor, conversation) for n, conversation in ((SHORT, short), (LONG, long))}
        for at in pages.values():
            for _ in range(2):  # the first run migrates, indexes the notes and fills the caches
                _run(at)
        short_stats, long_stats = time_pairs(
            lambda: _run(pages[SHORT]), lambda: _run(pages[LONG]), pairs=8 if ctx.quick else 20
        )
    ratio = long_stats.median / short_stats.median
    shown = {n: len(at.chat_message) for n, at in pages.items()}
    ctx.log("chat_render: %d messages %.0f ms, %d messages %.0f ms (%.2f×)", SHORT, short_stats.median * 1000,
            LONG, long_stats.median * 1000, ratio)  # fmt: skip
    return [Figure(
        name="chat_render", value=long_stats.median * 1000, unit="ms",
        target=f"{LONG:,}-message conversation ≤ {LIMIT:g} × the {SHORT}-message one", met=ratio <= LIMIT,
        baseline=short_stats.median * 1000, baseline_label=f"{SHORT}-message conversation",
        details={
            "chat_messages_drawn": {str(n): count for n, count in shown.items()},
            "short_ms": short_stats.summary(), "long_ms": long_stats.summary(),
            "older_messages_button": bool(pages[LONG].button(key="chat_older")),
        },
    )]  # fmt: skip


def _run(at: AppTest) -> None:
    at.run()
    if at.exception:
        raise RuntimeError(f"the chat page failed: {at.exception[0].value}")


def _page(actor: store.Actor, conversation_id: int) -> AppTest:
    at = AppTest.from_file(str(PAGE), default_timeout=120)
    at.session_state["actor"] = actor
    at.session_state["chat_conversation"] = conversation_id
    return at


@contextlib.contextmanager
def _environment(**values: str) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _conversations(url: str) -> tuple[store.Actor, int, int]:
    """A user with a 20-message and a 2,000-message conversation (answers with metadata, some rated)."""
    engine = database.make_engine(url)
    texts = data.sample_texts(LONG, seed=3)
    try:
        with database.session_factory(engine).begin() as session:
            user = store.create_user(session, username="reader", password="x", password_hash=data.PASSWORD_HASH)
            actor = store.Actor.of(user)
            ids = [_conversation(session, actor, texts[:n]) for n in (SHORT, LONG)]
    finally:
        engine.dispose()
    return actor, ids[0], ids[1]


def _conversation(session, actor: store.Actor, texts: list[str]) -> int:
    conversation = store.create_conversation(session, actor, title=texts[0])
    start = datetime.now(UTC) - timedelta(days=1)
    rows = []
    for i, body in enumerate(texts):
        row = {"conversation_id": conversation.id, "content": body, "created_at": start + timedelta(seconds=30 * i)}
        if i % 2 == 0:
            row |= {"role": "user", "status": "complete"}
        else:
            row |= {"role": "assistant", "status": "complete", "engine": "notes", "latency_ms": 900, "ttft_ms": 120}
        rows.append(row)
    ids = session.scalars(insert(Message).returning(Message.id), rows).all()
    answers = ids[1::2]
    session.execute(insert(Feedback), [
        {"message_id": m, "user_id": actor.id, "score": int(k % 3 != 0)} for k, m in enumerate(answers[::5])
    ])  # fmt: skip
    session.execute(update(Conversation).where(Conversation.id == conversation.id).values(
        message_count=len(texts), updated_at=rows[-1]["created_at"], last_status="complete", last_engine="notes",
    ))  # fmt: skip
    return conversation.id
