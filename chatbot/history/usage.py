"""Usage of a filtered set: questions per day, latency and time to first token, errors, 👍 / 👎."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
from sqlalchemy import ColumnElement, and_, case, func, select
from sqlalchemy.orm import Session

from chatbot.history.filters import HistoryFilter, conversation_filters, dialect_of, message_filters
from chatbot.models import Conversation, Feedback, Message, User
from chatbot.store import Actor

PER_USER_COLUMNS = [
    "user", "conversations", "questions", "answers", "error_rate",
    "latency_p50_ms", "latency_p95_ms", "thumbs_up", "thumbs_down",
]  # fmt: skip


@dataclass(frozen=True)
class Usage:
    """Usage of a filtered set. Answers are assistant messages; latency and time to first token
    count completed answers; 👍 / 👎 are the owners' ratings; rates are shares of answers."""

    per_day: pd.DataFrame  # day, questions: every day from the first question to the last
    questions: int
    answers: int
    errors: int
    thumbs_up: int
    thumbs_down: int
    latency_p50_ms: int | None
    latency_p95_ms: int | None
    ttft_p50_ms: int | None
    ttft_p95_ms: int | None
    per_user: pd.DataFrame | None  # PER_USER_COLUMNS, admins only

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.answers if self.answers else None

    @property
    def thumbs_up_rate(self) -> float | None:
        return self.thumbs_up / self.answers if self.answers else None

    @property
    def thumbs_down_rate(self) -> float | None:
        return self.thumbs_down / self.answers if self.answers else None


def usage(session: Session, actor: Actor, filters: HistoryFilter) -> Usage:
    """Questions per day, answer latency and time to first token (p50, p95), errors and 👍 / 👎.

    SQL does the heavy lifting, in few passes over the messages: counts per user and day, and
    how often each latency occurs (exact nearest-rank percentiles follow from that). Admins
    also get a per-user breakdown.
    """
    dialect = dialect_of(session)
    where = message_filters(dialect, actor, filters)
    counts = _daily_counts(session, dialect, where)
    totals = counts[_COUNTS].sum()
    latency = _percentiles(_histogram(session, where, Message.latency_ms))
    ttft = _percentiles(_histogram(session, where, Message.ttft_ms))
    return Usage(
        per_day=_per_day(counts), questions=int(totals["questions"]), answers=int(totals["answers"]),
        errors=int(totals["errors"]), thumbs_up=int(totals["thumbs_up"]), thumbs_down=int(totals["thumbs_down"]),
        latency_p50_ms=latency[0], latency_p95_ms=latency[1], ttft_p50_ms=ttft[0], ttft_p95_ms=ttft[1],
        per_user=_per_user(session, dialect, actor, filters, counts) if actor.is_admin else None,
    )


_COUNTS = ["questions", "answers", "errors", "thumbs_up", "thumbs_down"]


def _count_when(condition) -> ColumnElement[int]:
    return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)


def _answers(*columns):
    """Completed answers joined to their conversation (for the WHERE clauses)."""
    return (
        select(*columns).select_from(Message).join(Conversation, Conversation.id == Message.conversation_id)
        .where(Message.role == "assistant", Message.status == "complete")
    )


def _daily_counts(session: Session, dialect: str, where) -> pd.DataFrame:
    """One row per owner and UTC day: owner_id, day and the ``_COUNTS``."""
    day = func.date(Message.created_at if dialect == "sqlite" else func.timezone("UTC", Message.created_at))
    answer = Message.role == "assistant"
    query = (
        select(
            Conversation.owner_id, day, _count_when(Message.role == "user"), _count_when(answer),
            _count_when(and_(answer, Message.status == "error")), _count_when(Feedback.score == 1),
            _count_when(Feedback.score == 0),
        )
        .select_from(Message).join(Conversation, Conversation.id == Message.conversation_id)
        .outerjoin(Feedback, and_(Feedback.message_id == Message.id, Feedback.user_id == Conversation.owner_id))
        .where(*where).group_by(Conversation.owner_id, day)
    )  # fmt: skip
    frame = pd.DataFrame(session.execute(query).all(), columns=["owner_id", "day", *_COUNTS])
    frame["day"] = pd.to_datetime(frame["day"].astype(str))
    return frame.astype({name: "int64" for name in ["owner_id", *_COUNTS]})


def _histogram(session: Session, where, value) -> list[tuple[int, int]]:
    """(value, how many completed answers had it), smallest first."""
    query = _answers(value, func.count()).where(*where, value.is_not(None)).group_by(value).order_by(value)
    return [(v, n) for v, n in session.execute(query)]


def _percentiles(histogram: list[tuple[int, int]], percents=(50, 95)) -> tuple[int | None, ...]:
    """Nearest-rank percentiles: the smallest value with at least p% of the answers at or below it."""
    total = sum(n for _, n in histogram)
    return tuple(_at_rank(histogram, (total * p + 99) // 100) if total else None for p in percents)


def _at_rank(histogram: list[tuple[int, int]], rank: int) -> int:
    seen = 0
    for value, n in histogram:
        seen += n
        if seen >= rank:
            return value
    raise ValueError(f"rank {rank} is past the last value")


def _per_day(counts: pd.DataFrame) -> pd.DataFrame:
    """Questions per UTC day, with the days that had none."""
    daily = counts.groupby("day")["questions"].sum()
    days = pd.date_range(daily.index.min(), daily.index.max(), freq="D") if len(daily) else pd.DatetimeIndex([])
    questions = daily.reindex(days, fill_value=0).astype("int64")
    return pd.DataFrame({"day": days, "questions": questions.to_numpy()})


def _per_user(session: Session, dialect: str, actor: Actor, filters: HistoryFilter, counts: pd.DataFrame) -> pd.DataFrame:
    """PER_USER_COLUMNS, one row per user with messages in the set, by username."""
    totals = counts.groupby("owner_id")[_COUNTS].sum()
    names = dict(session.execute(select(User.id, User.username).where(User.id.in_(totals.index.tolist()))).all())
    started = select(Conversation.owner_id, func.count()).where(*conversation_filters(dialect, actor, filters))
    conversations = dict(session.execute(started.group_by(Conversation.owner_id)).all())
    latency = _user_percentiles(session, message_filters(dialect, actor, filters))
    rows = [
        [names[owner], conversations.get(owner, 0), row.questions, row.answers,
         row.errors / row.answers if row.answers else None, *latency.get(owner, (None, None)),
         row.thumbs_up, row.thumbs_down]
        for owner, row in totals.iterrows()
    ]  # fmt: skip
    return pd.DataFrame(rows, columns=PER_USER_COLUMNS).sort_values("user", ignore_index=True)


def _user_percentiles(session: Session, where) -> dict[int, tuple]:
    """Each owner's nearest-rank p50 and p95 answer latency, by window functions (both databases)."""
    value = Message.latency_ms
    ranked = _answers(
        Conversation.owner_id.label("owner"), value.label("value"),
        func.row_number().over(partition_by=Conversation.owner_id, order_by=value).label("rank"),
        func.count().over(partition_by=Conversation.owner_id).label("n"),
    ).where(*where, value.is_not(None)).subquery()

    def at(percent: int):
        return func.min(case((ranked.c.rank * 100 >= ranked.c.n * percent, ranked.c.value)))

    query = select(ranked.c.owner, at(50), at(95)).group_by(ranked.c.owner)
    return {owner: (p50, p95) for owner, p50, p95 in session.execute(query)}
