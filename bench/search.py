"""search: the history table searched for a word over every message, as an admin.

Ours is ``history.list_history`` with ``search=`` (FTS5 on SQLite, the tsvector GIN index on
PostgreSQL). The baseline, timed alternately with it, answers the same question from the same
tables with ``content LIKE '%word%'`` in place of the index, in the app's own query shape: one
statement for the matching conversations' count and the first page's ids (newest activity
first, ``count(*) OVER ()``), one for the page's rows. LIKE is used as written on both
databases (case-insensitive for ASCII on SQLite, case-sensitive on PostgreSQL, and faster there
than ILIKE, so the stricter baseline).

The figure is for one word, ``vacuum``, in about 0.6 % of messages and 11 % of conversations:
full-text search costs grow with the matches, LIKE's with the table. ``details`` repeats the
comparison for two words that must both appear, a narrower search.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from bench import sqlplan
from bench.context import Context
from bench.data import history_window
from bench.history_page import PAGE_SIZE, actors
from bench.report import Figure
from bench.timing import time_pairs
from bench.vocabulary import SEARCH_WORD
from chatbot import db as database
from chatbot import history
from chatbot.models import Conversation, ConversationTag, Message, User

LIMIT_MS = 100.0
SPEEDUP = 20.0
TWO_WORDS = (SEARCH_WORD, "replication")


def run(ctx: Context) -> list[Figure]:
    figures = []
    for backend in ctx.backends:
        engine = database.make_engine(ctx.dataset(backend))
        try:
            figures.append(_measure(ctx, backend, engine))
            figures.append(_measure_syntax(ctx, backend, engine))
        finally:
            engine.dispose()
    return figures


# search.syntax: a prefix, three field filters and an exclusion, as an analyst types them in the box.
EXCLUDED = "replication"


def syntax_query() -> str:
    since, _ = history_window()
    return f"{SEARCH_WORD[:4]}* tag:billing fb:up after:{since} -{EXCLUDED}"


def like_syntax_page(session: Session, filters: history.HistoryFilter) -> tuple[list, int]:
    """``syntax_query`` without the index: LIKE for the prefix and the excluded word (the same field
    filters, in the app's query shape: count and first page in one statement, then the rows)."""
    hits = select(Message.conversation_id).where(Message.content.like(f"%{SEARCH_WORD[:4]}%")).distinct().subquery()
    excluded = select(Message.conversation_id).where(Message.content.like(f"%{EXCLUDED}%"))
    tagged = select(ConversationTag.tag).where(ConversationTag.conversation_id == Conversation.id,
                                               ConversationTag.tag == "billing").exists()
    ranked = session.execute(
        select(Conversation.id, func.count().over()).select_from(hits)
        .join(Conversation, Conversation.id == hits.c.conversation_id)
        .where(Conversation.deleted.is_not(True), tagged, Conversation.thumbs_up > 0,
               Conversation.updated_at >= dt.datetime.combine(filters.since, dt.time(), tzinfo=dt.UTC),
               Conversation.id.not_in(excluded))
        .order_by(Conversation.updated_at.desc(), Conversation.id.desc()).limit(PAGE_SIZE)
    ).all()  # fmt: skip
    return _like_page(session, ranked)


def _measure_syntax(ctx: Context, backend: str, engine: Engine) -> Figure:
    admin = actors(engine)["admin"]
    filters = history.HistoryFilter(search=syntax_query())
    factory = database.readonly_factory(engine)
    shown: dict = {}
    calls: list[sqlplan.Recorder] = []

    def ours() -> None:
        with sqlplan.recording(engine) as recorder, factory() as session:
            frame, total = history.list_history(session, admin, filters, page=0, page_size=PAGE_SIZE)
        calls.append(recorder)
        shown.update(rows=len(frame), conversations_found=total, conversations_found_is_a_lower_bound=total.at_least)

    def like() -> None:
        with factory() as session:
            _, total = like_syntax_page(session, filters)
        shown.update(like_conversations_found=total)

    mine, theirs = time_pairs(ours, like, pairs=5 if ctx.quick else 10)
    value, baseline = mine.median * 1000, theirs.median * 1000
    speedup = baseline / value
    met = value <= LIMIT_MS and speedup >= SPEEDUP
    ctx.log("search.syntax %s: %.1f ms, LIKE %.0f ms (%.1f× faster)", backend, value, baseline, speedup)
    return Figure(
        name=f"search.syntax.{backend}", value=value, unit="ms",
        target=f"median ≤ {LIMIT_MS:g} ms and ≥ {SPEEDUP:g}× faster than LIKE", met=met,
        baseline=baseline, baseline_label="LIKE with the same field filters",
        details={
            "query": syntax_query(), "actor": admin.username, **shown, "speedup": round(speedup, 1),
            "ours_ms": mine.summary(), "like_ms": theirs.summary(),
            "statements": sqlplan.profile(engine, calls[-3:], with_plans=not met),
        },
    )  # fmt: skip


def _like_page(session: Session, ranked: list) -> tuple[list, int]:
    """The table's rows for the ranked ids (as the app reads them), and how many conversations matched."""
    ids = [row[0] for row in ranked]
    page = session.execute(
        select(Conversation.id, Conversation.title, User.username, Conversation.created_at,
               Conversation.updated_at, Conversation.message_count, Conversation.last_status)
        .join(User, User.id == Conversation.owner_id).where(Conversation.id.in_(ids))
        .order_by(Conversation.updated_at.desc(), Conversation.id.desc())
    ).all() if ids else []  # fmt: skip
    return page, ranked[0][1] if ranked else 0


def like_search_page(session: Session, words: list[str]) -> tuple[list, int]:
    """An admin's search without the index: the first page of conversations with a message containing
    every word, and how many there are, in the app's query shape (see the module docstring)."""
    matches = [Message.content.like(f"%{word}%") for word in words]
    hits = select(Message.conversation_id).where(*matches).distinct().subquery()
    ranked = session.execute(
        select(Conversation.id, func.count().over()).select_from(hits)
        .join(Conversation, Conversation.id == hits.c.conversation_id).where(Conversation.deleted.is_not(True))
        .order_by(Conversation.updated_at.desc(), Conversation.id.desc()).limit(PAGE_SIZE)
    ).all()  # fmt: skip
    return _like_page(session, ranked)


def _compare(engine: Engine, admin, words: list[str], *, pairs: int, calls: list | None = None):
    """Ours and the LIKE baseline for ``words``, alternately: their timings and what each found."""
    filters = history.HistoryFilter(search=" ".join(words))
    factory = database.readonly_factory(engine)
    shown: dict = {}

    def ours() -> None:
        with sqlplan.recording(engine) as recorder, factory() as session:
            frame, total = history.list_history(session, admin, filters, page=0, page_size=PAGE_SIZE)
        if calls is not None:
            calls.append(recorder)
        shown.update(rows=len(frame), conversations_found=total, conversations_found_is_a_lower_bound=total.at_least)

    def like() -> None:
        with factory() as session:
            _, total = like_search_page(session, words)
        shown.update(like_conversations_found=total)

    mine, theirs = time_pairs(ours, like, pairs=pairs)
    return mine, theirs, shown


def _measure(ctx: Context, backend: str, engine: Engine) -> Figure:
    admin = actors(engine)["admin"]
    calls: list[sqlplan.Recorder] = []
    mine, theirs, shown = _compare(engine, admin, [SEARCH_WORD], pairs=5 if ctx.quick else 10, calls=calls)
    two, two_like, two_shown = _compare(engine, admin, list(TWO_WORDS), pairs=3 if ctx.quick else 5)
    value, baseline = mine.median * 1000, theirs.median * 1000
    speedup = baseline / value
    met = value <= LIMIT_MS and speedup >= SPEEDUP
    ctx.log("search %s: %.1f ms, LIKE %.0f ms (%.1f× faster); two words %.1f× faster", backend, value, baseline,
            speedup, two_like.median / two.median)  # fmt: skip
    return Figure(
        name=f"search.{backend}", value=value, unit="ms",
        target=f"median ≤ {LIMIT_MS:g} ms and ≥ {SPEEDUP:g}× faster than LIKE", met=met,
        baseline=baseline, baseline_label="LIKE '%word%'",
        details={
            "word": SEARCH_WORD, "actor": admin.username, **shown, "speedup": round(speedup, 1),
            "note": "LIKE also matches inside other words (autovacuum), so it finds more; ours counts the "
                    "conversations of the first hits only when there are many (the page shows N+)",
            "ours_ms": mine.summary(), "like_ms": theirs.summary(),
            "two_words": {"words": " ".join(TWO_WORDS), **two_shown, "ours_ms": two.summary(),
                          "like_ms": two_like.summary(), "speedup": round(two_like.median / two.median, 1)},
            "statements": sqlplan.profile(engine, calls, with_plans=not met),
        },
    )  # fmt: skip
