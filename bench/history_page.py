"""history_page: the first page (50 rows) of the history table with a date filter, for one user and for an admin.

Ours is ``history.list_history`` (count plus one page, in SQL). The baseline, timed alternately
with it, is the shape the house style warns against: load every conversation the actor may see
and filter, sort and page them in pandas.
"""

from __future__ import annotations

import pandas as pd
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from bench import data, sqlplan
from bench.context import Context
from bench.report import Figure
from bench.timing import Stats, time_pairs
from chatbot import db as database
from chatbot import history, store
from chatbot.models import Conversation, User

PAGE_SIZE = 50
LIMITS_MS = {"user": 50.0, "admin": 100.0}


def run(ctx: Context) -> list[Figure]:
    figures = []
    for backend in ctx.backends:
        engine = database.make_engine(ctx.dataset(backend))
        try:
            figures += [_measure(ctx, backend, engine, who) for who in ("user", "admin")]
        finally:
            engine.dispose()
    return figures


def actors(engine: Engine) -> dict[str, store.Actor]:
    """The analyst the single-user figures use, and the admin."""
    with database.readonly_factory(engine)() as session:
        return {
            "user": store.Actor.of(store.require_user(session, data.analyst_username(1))),
            "admin": store.Actor.of(store.require_user(session, data.admin_username())),
        }


def _measure(ctx: Context, backend: str, engine: Engine, who: str) -> Figure:
    actor = actors(engine)[who]
    since, until = data.history_window()
    filters = history.HistoryFilter(since=since, until=until)
    factory = database.readonly_factory(engine)
    pairs = 10 if ctx.quick else 20
    calls: list[sqlplan.Recorder] = []
    shown: dict = {}

    def ours() -> None:
        with sqlplan.recording(engine) as recorder, factory() as session:
            frame, total = history.list_history(session, actor, filters, page=0, page_size=PAGE_SIZE)
        calls.append(recorder)
        shown.update(rows=len(frame), total=total)

    def baseline() -> None:
        with factory() as session:
            frame, total = load_all_then_page(session, actor, filters)
        shown.update(baseline_rows=len(frame), baseline_total=total)

    mine, theirs = time_pairs(ours, baseline, pairs=pairs)
    limit = LIMITS_MS[who]
    value = mine.median * 1000
    met = value <= limit
    ctx.log("history_page %s %s: %.1f ms (load-all %.1f ms)", who, backend, value, theirs.median * 1000)
    return Figure(
        name=f"history_page.{who}.{backend}", value=value, unit="ms",
        target=f"median ≤ {limit:g} ms", met=met, baseline=theirs.median * 1000,
        baseline_label="load all, page in pandas",
        details=_details(engine, actor, filters, mine, theirs, shown, calls, with_plans=not met),
    )


def _details(engine, actor, filters, mine: Stats, theirs: Stats, shown: dict, calls, *, with_plans: bool) -> dict:
    return {
        "actor": actor.username, "filter": filters.describe(), **shown,
        "ours_ms": mine.summary(), "baseline_ms": theirs.summary(),
        "statements": sqlplan.profile(engine, calls, with_plans=with_plans),
    }  # fmt: skip


def load_all_then_page(session: Session, actor: store.Actor, filters: history.HistoryFilter) -> tuple[pd.DataFrame, int]:
    """The anti-pattern: every visible conversation into a DataFrame, then filter, sort and page it."""
    query = (
        select(Conversation.id, Conversation.title, User.username, Conversation.created_at,
               Conversation.updated_at, Conversation.message_count, Conversation.last_status,
               Conversation.last_engine)
        .join(User, User.id == Conversation.owner_id)
        .where(Conversation.deleted.is_(False))
    )  # fmt: skip
    if not actor.is_admin:
        query = query.where(Conversation.owner_id == actor.id)
    names = ["id", "title", "owner", "started", "last_activity", "messages", "last_status", "engine"]
    frame = pd.DataFrame(session.execute(query).all(), columns=names)
    started, last = pd.to_datetime(frame["started"], utc=True), pd.to_datetime(frame["last_activity"], utc=True)
    since = pd.Timestamp(filters.since, tz="UTC")
    until = pd.Timestamp(filters.until, tz="UTC") + pd.Timedelta(days=1)
    kept = frame[(last >= since) & (started < until)]
    page = kept.sort_values(["last_activity", "id"], ascending=False).head(PAGE_SIZE)
    return page, len(kept)
