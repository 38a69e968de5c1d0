"""search: the history table searched for a word over every message, as an admin.

Ours is ``history.list_history`` with ``search=`` (FTS5 on SQLite, the tsvector GIN index on
PostgreSQL). The baseline, timed alternately with it, asks the same of the same tables with
``content LIKE '%word%'`` instead of the index (ILIKE on PostgreSQL: full-text search ignores
case, and SQLite's LIKE does too): how many conversations have a matching message, and the
first page of them, newest activity first.
"""

from __future__ import annotations

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from bench import sqlplan
from bench.context import Context
from bench.history_page import PAGE_SIZE, actors
from bench.report import Figure
from bench.timing import time_pairs
from bench.vocabulary import SEARCH_WORD
from chatbot import db as database
from chatbot import history
from chatbot.models import Conversation, Message, User

LIMIT_MS = 100.0
SPEEDUP = 20.0


def run(ctx: Context) -> list[Figure]:
    figures = []
    for backend in ctx.backends:
        engine = database.make_engine(ctx.dataset(backend))
        try:
            figures.append(_measure(ctx, backend, engine))
        finally:
            engine.dispose()
    return figures


def like_search_page(session: Session, word: str) -> tuple[list, int]:
    """An admin's search without the index: the count and first page of conversations whose messages match."""
    pattern = f"%{word}%"
    sqlite = session.get_bind().dialect.name == "sqlite"
    matches = Message.content.like(pattern) if sqlite else Message.content.ilike(pattern)
    where = [Conversation.deleted.is_(False), Conversation.id.in_(select(Message.conversation_id).where(matches))]
    total = session.scalar(select(func.count()).select_from(Conversation).where(*where)) or 0
    page = session.execute(
        select(Conversation.id, Conversation.title, User.username, Conversation.created_at,
               Conversation.updated_at, Conversation.message_count, Conversation.last_status)
        .join(User, User.id == Conversation.owner_id).where(*where)
        .order_by(Conversation.updated_at.desc(), Conversation.id.desc()).limit(PAGE_SIZE)
    ).all()  # fmt: skip
    return page, total


def _measure(ctx: Context, backend: str, engine: Engine) -> Figure:
    admin = actors(engine)["admin"]
    filters = history.HistoryFilter(search=SEARCH_WORD)
    factory = database.readonly_factory(engine)
    calls: list[sqlplan.Recorder] = []
    shown: dict = {}

    def ours() -> None:
        with sqlplan.recording(engine) as recorder, factory() as session:
            frame, total = history.list_history(session, admin, filters, page=0, page_size=PAGE_SIZE)
        calls.append(recorder)
        shown.update(rows=len(frame), conversations_found=total)

    def like() -> None:
        with factory() as session:
            _, total = like_search_page(session, SEARCH_WORD)
        shown.update(like_conversations_found=total)

    mine, theirs = time_pairs(ours, like, pairs=5 if ctx.quick else 10)
    value, baseline = mine.median * 1000, theirs.median * 1000
    speedup = baseline / value
    met = value <= LIMIT_MS and speedup >= SPEEDUP
    ctx.log("search %s: %.1f ms, LIKE %.0f ms (%.0f× faster)", backend, value, baseline, speedup)
    return Figure(
        name=f"search.{backend}", value=value, unit="ms",
        target=f"median ≤ {LIMIT_MS:g} ms and ≥ {SPEEDUP:g}× faster than LIKE", met=met,
        baseline=baseline, baseline_label="LIKE '%word%'",
        details={
            "word": SEARCH_WORD, "actor": admin.username, **shown, "speedup": round(speedup, 1),
            "note": "LIKE also matches the word inside others (autovacuum), so it finds more",
            "ours_ms": mine.summary(), "like_ms": theirs.summary(),
            "statements": sqlplan.profile(engine, calls, with_plans=not met),
        },
    )
