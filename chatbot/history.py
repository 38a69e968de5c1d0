"""Past conversations as data: filters, the paged table, transcripts, streamed exports and usage.

Every function takes ``session`` and the acting ``Actor`` and never commits. Analysts see only
their own conversations, admins everyone's; deleted conversations are hidden from analysts and
shown to admins only when they ask for them (to purge). Each filter is a predicate on a
conversation: its activity overlaps the date range, one of its messages matches the search
(full-text index), it has the owner's 👍 / 👎 or no feedback, one of its answers failed, its
latest answer came from the engine or flow, one of its answers came from the flow version.
Exports and usage also keep only the messages sent inside the date range, so monthly exports
never overlap.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, fields
from typing import NamedTuple

import numpy as np
import pandas as pd
from sqlalchemy import (
    ColumnElement,
    String,
    Text,
    and_,
    case,
    cast,
    false,
    func,
    literal,
    select,
    type_coerce,
)
from sqlalchemy.orm import Session, aliased

from chatbot import export, fulltext, store
from chatbot.errors import InputError, NotFoundError
from chatbot.models import Conversation, Feedback, Message, User
from chatbot.store import Actor

FEEDBACK_LABELS = {"any": "Any", "up": "👍", "down": "👎", "none": "No feedback"}
SORT_LABELS = {"updated": "Last activity", "started": "Started", "messages": "Most messages", "title": "Title"}
# HistoryFilter field -> query parameter; the history page uses these as its widget keys.
PARAMS = {
    "since": "history_from", "until": "history_to", "search": "history_search",
    "feedback": "history_feedback", "errors_only": "history_errors", "engine": "history_engine",
    "version": "history_version", "user": "history_user", "deleted": "history_deleted", "sort": "history_sort",
}  # fmt: skip
TABLE_COLUMNS = [
    "id", "title", "owner", "started", "last_activity", "messages",
    "thumbs_up", "thumbs_down", "last_status", "engine", "flow_version",
]  # fmt: skip
PER_USER_COLUMNS = [
    "user", "conversations", "questions", "answers", "error_rate",
    "latency_p50_ms", "latency_p95_ms", "thumbs_up", "thumbs_down",
]  # fmt: skip
MAX_SEARCH_CHARS = 500
LAST_DAY = dt.date.max - dt.timedelta(days=1)  # a range ends at the next midnight, which must exist
_FETCH_ROWS = 5_000  # rows turned into Python objects at a time while exporting
# A search counts the conversations of its first hits only, and shows "N+" when there were more.
# Each hit read costs a row and a look at its conversation; 300 say "many" as well as 1,000 did
# ("276+" against "922+" for a word in 11% of conversations) in a third of the time.
_COUNTED_HITS = 300
_WALK = 2_000  # newest conversations a page of a common word's search looks through for hits
_SORTS = {
    "updated": (Conversation.updated_at.desc(), Conversation.id.desc()),
    "started": (Conversation.created_at.desc(), Conversation.id.desc()),
    "messages": (Conversation.message_count.desc(), Conversation.updated_at.desc(), Conversation.id.desc()),
    "title": (Conversation.title, Conversation.id.desc()),
}
# Inlined, not bound, so SQLite can use the partial index on failed answers (migration 0003).
_ERROR = literal("error", literal_execute=True)
# The messages a conversation filter looks into: another name for the table, so that the filter
# correlates to the conversation alone when the query itself reads messages (exports, usage).
_Other = aliased(Message, name="other")


@dataclass(frozen=True)
class HistoryFilter:
    """What the history page shows: filters and order. Each field has a query parameter (``PARAMS``)."""

    since: dt.date | None = None
    until: dt.date | None = None
    search: str = ""
    feedback: str = "any"  # a FEEDBACK_LABELS key
    errors_only: bool = False
    engine: str = ""  # "" is every engine or flow
    version: str = ""  # a flow and version as store.version_label writes it ("Notes RAG v7"); "" is any
    user: str = ""  # a username; "" is everyone the actor may see
    deleted: bool = False  # admins: deleted conversations only (to purge them)
    sort: str = "updated"  # a SORT_LABELS key

    def __post_init__(self) -> None:
        if self.feedback not in FEEDBACK_LABELS:
            raise InputError(f"Unknown feedback filter {self.feedback!r}: use one of {', '.join(FEEDBACK_LABELS)}.")
        if self.sort not in SORT_LABELS:
            raise InputError(f"Unknown order {self.sort!r}: use one of {', '.join(SORT_LABELS)}.")
        if any(day and day > LAST_DAY for day in (self.since, self.until)):
            raise InputError(f"Dates must be on or before {LAST_DAY}.")
        if self.since and self.until and self.since > self.until:
            raise InputError("The start date is after the end date.")
        if len(self.search) > MAX_SEARCH_CHARS:
            raise InputError(f"The search is too long (at most {MAX_SEARCH_CHARS} characters).")
        if self.version and flow_and_version(self.version) is None:
            raise InputError(f"{self.version!r} is not a flow and its version, such as 'Notes RAG v7'.")

    @classmethod
    def from_query_params(cls, params: Mapping[str, str | list[str]]) -> HistoryFilter:
        """The filter a shared link describes; a value that does not parse is left at its default."""
        values = {}
        for name, key in PARAMS.items():
            raw = params.get(key)
            raw = raw[-1] if isinstance(raw, list) and raw else raw
            if isinstance(raw, str) and raw.strip():
                parsed = _parse_param(name, raw.strip())
                if parsed is not None:
                    values[name] = parsed
        return cls(**values)

    def to_query_params(self) -> dict[str, str]:
        """The query parameters of this filter, written as the page's widgets write them; defaults left out."""
        default = HistoryFilter()
        return {
            key: _format_param(name, getattr(self, name))
            for name, key in PARAMS.items()
            if getattr(self, name) != getattr(default, name)
        }

    def describe(self) -> str:
        """'user=bob, search=churn' (the audit log's record of what an admin exported)."""
        default = HistoryFilter()
        parts = [
            f"{field.name}={_format_param(field.name, getattr(self, field.name))}"
            for field in fields(self)
            if field.name != "sort" and getattr(self, field.name) != getattr(default, field.name)
        ]
        return ", ".join(parts) or "all conversations"


def _parse_param(name: str, raw: str):
    if name in ("since", "until"):
        try:
            return dt.date.fromisoformat(raw)
        except ValueError:
            return None
    if name in ("errors_only", "deleted"):
        return raw.lower() in ("true", "1", "yes")
    if name in ("feedback", "sort"):
        labels = FEEDBACK_LABELS if name == "feedback" else SORT_LABELS
        return raw if raw in labels else next((code for code, label in labels.items() if label == raw), None)
    if name == "version":
        return raw if flow_and_version(raw) else None
    return raw


def flow_and_version(label: str) -> tuple[str, str] | None:
    """('Notes RAG', 'v7') from 'Notes RAG v7' (``store.version_label``'s text); None when it has
    no version. A version is one word ("v7", "v7+"); a flow's name may have spaces."""
    flow, _, version = label.rpartition(" ")
    return (flow, version) if flow.strip() and version else None


def _format_param(name: str, value) -> str:
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, bool):
        return "true" if value else "false"
    if name in ("feedback", "sort"):
        return (FEEDBACK_LABELS if name == "feedback" else SORT_LABELS)[value]
    return str(value)


# -- which conversations -----------------------------------------------------------------


def _start(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)


def _end(day: dt.date) -> dt.datetime:
    return _start(day + dt.timedelta(days=1))


def _conversation_filters(
    dialect: str, actor: Actor, filters: HistoryFilter, *, search: bool = True, deleted_index: bool = True
) -> list[ColumnElement[bool]]:
    """WHERE clauses on Conversation: the actor's scope, then each filter (the search unless told not to).

    Without ``deleted_index`` the deleted test takes a form no index serves. SQLite has no
    statistics here and takes ``deleted = 0`` for a selective index: it would walk every
    conversation by it (and sort a whole export) instead of starting from the search hits
    or reading messages in the export's order.
    """
    deleted = filters.deleted and actor.is_admin  # deleted conversations are gone for their owner
    clauses = [Conversation.deleted.is_(deleted) if deleted_index else Conversation.deleted.is_not(not deleted)]
    if not actor.is_admin:
        clauses += [Conversation.owner_id == actor.id] + ([false()] if filters.deleted else [])
    if filters.user:
        owner = select(User.id).where(User.username == filters.user.strip().lower()).scalar_subquery()
        clauses.append(Conversation.owner_id == owner)
    if filters.since:
        clauses.append(Conversation.updated_at >= _start(filters.since))
    if filters.until:
        clauses.append(Conversation.created_at < _end(filters.until))
    if filters.engine:
        clauses.append(Conversation.last_engine == filters.engine)
    if filters.version:
        clauses.append(_answered_by(*flow_and_version(filters.version)))
    if filters.errors_only:
        failed = select(_Other.id).where(_Other.conversation_id == Conversation.id, _Other.status == _ERROR)
        clauses.append(failed.exists())
    if filters.feedback != "any":
        rated = {"up": Conversation.thumbs_up > 0, "down": Conversation.thumbs_down > 0}
        clauses.append(rated.get(filters.feedback, Conversation.thumbs_up + Conversation.thumbs_down == 0))
    if filters.search.strip() and search:
        found = fulltext.found_conversations(dialect, filters.search)
        clauses.append(false() if found is None else Conversation.id.in_(found))
    return clauses


def _answered_by(flow: str, version: str) -> ColumnElement[bool]:
    """The conversation has an answer from this flow version: a look-up in ix_messages_flow_version."""
    answers = select(_Other.id).where(
        _Other.flow_version == version, _Other.conversation_id == Conversation.id, _Other.flow_name == flow
    )
    return answers.exists()


def _message_filters(
    dialect: str, actor: Actor, filters: HistoryFilter, *, deleted_index: bool = True
) -> list[ColumnElement[bool]]:
    """WHERE clauses on Message joined to Conversation: the conversations, then the date range."""
    clauses = _conversation_filters(dialect, actor, filters, deleted_index=deleted_index)
    if filters.since:
        clauses.append(Message.created_at >= _start(filters.since))
    if filters.until:
        clauses.append(Message.created_at < _end(filters.until))
    return clauses


def _dialect(session: Session) -> str:
    return session.get_bind().dialect.name


def _utc(times: pd.Series | list) -> pd.Series | pd.DatetimeIndex:
    """Times (datetimes or text) as UTC; SQLite's have no zone and are UTC already."""
    return pd.to_datetime(times, utc=True)


# -- the table ---------------------------------------------------------------------------


class MatchCount(int):
    """How many conversations match. ``at_least`` when counting stopped early: this many match,
    and perhaps more (a search for a common word counts only as far as it must)."""

    at_least: bool

    def __new__(cls, count: int, *, at_least: bool = False) -> MatchCount:
        made = super().__new__(cls, count)
        made.at_least = at_least
        return made

    def label(self) -> str:
        """'1,234', or '1,234+' when there may be more."""
        return f"{self:,}+" if self.at_least else f"{self:,}"


_ROW = (
    Conversation.id, Conversation.title, User.username, Conversation.created_at, Conversation.updated_at,
    Conversation.message_count, Conversation.thumbs_up, Conversation.thumbs_down, Conversation.last_status,
    Conversation.last_engine, Conversation.last_version,
)  # TABLE_COLUMNS, in order


def list_history(
    session: Session, actor: Actor, filters: HistoryFilter, *, page: int, page_size: int = 50
) -> tuple[pd.DataFrame, MatchCount]:
    """One page (0-based) of matching conversations with ``TABLE_COLUMNS``, and how many match.

    The count is exact, except for a search with many hits: then it is a lower bound
    (``MatchCount.at_least``) that always reaches past this page when another page follows.
    """
    dialect, offset = _dialect(session), max(page, 0) * page_size
    if filters.search.strip():
        rows, total = _searched_page(session, dialect, actor, filters, offset=offset, limit=page_size)
    else:
        where = _conversation_filters(dialect, actor, filters)
        total = MatchCount(session.scalar(select(func.count()).select_from(Conversation).where(*where)) or 0)
        query = _with_owner(select(*_ROW)).where(*where).order_by(*_SORTS[filters.sort])
        rows = session.execute(query.limit(page_size).offset(offset)).all()
    return _table(rows), total


def _with_owner(query):
    """``query`` (of ``_ROW``) with the owner's name joined in."""
    return query.join(User, User.id == Conversation.owner_id)


def _searched_page(
    session: Session, dialect: str, actor: Actor, filters: HistoryFilter, *, offset: int, limit: int
) -> tuple[list, MatchCount]:
    """The page's rows and the count, starting from the full-text hits.

    Counting reads the first hits only (``_COUNTED_HITS``, or more for a deep page): if they
    were all the hits, the count is exact; if not, the conversations they found are a lower
    bound. A common word then leaves most of its hits unread, and its page is found by
    looking through the newest conversations for one with a hit (``_Search.walk``).
    """
    search = _search(dialect, actor, filters, offset, limit, _tuning())
    if search.hits is None:
        return [], MatchCount(0)
    read, found = session.execute(search.count).one()
    if read < search.scan:  # every hit was read: the count is exact
        return session.execute(search.hits_page).all(), MatchCount(found)
    if found < search.needed:  # many hits in few conversations (or few of them visible): count every one
        rows = session.execute(search.counted_page).all()
        if rows or not offset:
            return [row[:-1] for row in rows], MatchCount(rows[0][-1] if rows else 0)
        return [], MatchCount(session.scalar(search.found_count) or 0)  # a page past the end
    rows = session.execute(search.walk).all() if search.walk is not None else []
    if len(rows) < limit:  # the newest conversations did not fill the page
        rows = session.execute(search.hits_page).all()
    return rows, MatchCount(found, at_least=True)


class _Tuning(NamedTuple):
    """The constants a search's statements are built from (part of their cache key)."""

    counted_hits: int
    walk: int
    recent_messages: int


def _tuning() -> _Tuning:
    return _Tuning(_COUNTED_HITS, _WALK, fulltext.RECENT_MESSAGES)


@functools.lru_cache(maxsize=256)
def _search(dialect: str, actor: Actor, filters: HistoryFilter, offset: int, limit: int, tuning: _Tuning) -> _Search:
    """The statements of a search's page, kept: a history page reruns its search on every click, and
    building them takes longer than running the cheap ones."""
    return _Search(dialect, actor, filters, offset, limit, tuning)


class _Search:
    """The statements that find one page of a search, each built when first needed."""

    def __init__(
        self, dialect: str, actor: Actor, filters: HistoryFilter, offset: int, limit: int, tuning: _Tuning
    ) -> None:
        self.dialect, self.actor, self.filters, self.offset, self.limit = dialect, actor, filters, offset, limit
        self.tuning = tuning
        self.needed = offset + limit + 1  # a count this high shows whether another page follows
        self.scan = max(tuning.counted_hits, 2 * self.needed)
        self.hits = fulltext.hits(dialect, filters.search)
        self.where = _conversation_filters(dialect, actor, filters, search=False, deleted_index=False)

    @functools.cached_property
    def count(self):
        """(how many of the first ``scan`` hits there are, how many conversations they are that ``where`` keeps)."""
        first = self.hits.limit(self.scan).cte("first_hits")
        read = select(func.count()).select_from(first).scalar_subquery()
        found = select(func.count()).select_from(Conversation)
        found = found.where(*self.where, Conversation.id.in_(select(first.c.conversation_id)))
        return select(read, found.scalar_subquery())

    @functools.cached_property
    def hits_page(self):
        """The page's rows from every hit: their conversations, filtered and sorted."""
        return self._page(_with_owner(self._found(*_ROW)))

    @functools.cached_property
    def counted_page(self):
        """The page's rows, each with the exact count, in one statement over every hit."""
        return self._page(_with_owner(self._found(*_ROW, func.count().over())))

    @functools.cached_property
    def found_count(self):
        """How many conversations every hit found."""
        return self._found(func.count())

    @functools.cached_property
    def walk(self):
        """The page's rows found by looking through the newest ``tuning.walk`` conversations, newest first,
        for a hit in each; None when the sort is not by last activity.

        Only last activity has an index to walk in order, and the walk stops at the page's end.
        """
        if self.filters.sort != "updated":
            return None
        shown = _conversation_filters(self.dialect, self.actor, self.filters, search=False)  # the form the index serves
        # The walk's end: ordered by time alone, the index gives it without sorting ties by id.
        newest = select(Conversation.updated_at).where(*shown).order_by(Conversation.updated_at.desc())
        oldest = select(func.min(Conversation.updated_at)).where(*shown)  # fewer than the walk's: walk them all
        since = func.coalesce(newest.offset(self.tuning.walk - 1).limit(1).scalar_subquery(), oldest.scalar_subquery())
        found = fulltext.has_hit(self.dialect, self.filters.search, recent_messages=self.tuning.recent_messages)
        query = select(*_ROW).where(*shown, Conversation.updated_at >= since, found)
        return self._page(_with_owner(query))

    def _found(self, *columns):
        """A select of ``columns`` from the conversations the hits found that ``where`` keeps."""
        found = self.hits.distinct().subquery()
        query = select(*columns).select_from(found).join(Conversation, Conversation.id == found.c.conversation_id)
        return query.where(*self.where)

    def _page(self, query):
        return query.order_by(*_SORTS[self.filters.sort]).limit(self.limit).offset(self.offset)


def _table(rows: list) -> pd.DataFrame:
    """The history table of these rows of ``_ROW``, times in UTC."""
    columns = dict(zip(TABLE_COLUMNS, map(list, zip(*rows)))) if rows else dict.fromkeys(TABLE_COLUMNS, [])
    for name in ("started", "last_activity"):  # a list converts at once, a column of objects one by one
        columns[name] = _utc(columns[name])
    return pd.DataFrame(columns)


def engines(session: Session, actor: Actor) -> list[str]:
    """The engines and flows that answered in the actor's conversations (the filter's options)."""
    query = select(Conversation.last_engine).distinct().where(Conversation.last_engine.is_not(None))
    if not actor.is_admin:
        query = query.where(Conversation.owner_id == actor.id, Conversation.deleted.is_(False))
    return sorted(session.scalars(query))


def flow_versions(session: Session, actor: Actor) -> list[str]:
    """The flow versions that answered in the actor's conversations, as 'Notes RAG v7' (the
    version filter's options), by flow, then version. An admin's read every answer that has a
    version (0.2-0.3 s at a million messages): the index holds no flow names."""
    query = select(Message.flow_name, Message.flow_version).distinct()
    query = query.where(Message.flow_version.is_not(None), Message.flow_name.is_not(None))
    if not actor.is_admin:
        owned = select(Conversation.id).where(Conversation.owner_id == actor.id, Conversation.deleted.is_(False))
        query = query.where(Message.conversation_id.in_(owned))
    return [store.version_label(flow, version) for flow, version in sorted(session.execute(query).all())]


# -- one conversation ----------------------------------------------------------------------


@dataclass(frozen=True)
class TranscriptMessage:
    """One message with its owner's feedback; attribute names as on ``models.Message``."""

    id: int
    role: str
    version: int
    current: bool
    content: str
    created_at: dt.datetime
    status: str
    error: str | None
    engine: str | None
    flow_id: str | None
    latency_ms: int | None
    ttft_ms: int | None
    input_tokens: int | None
    output_tokens: int | None
    total_tokens: int | None
    flow_name: str | None
    flow_version: str | None
    model: str | None
    run_id: str | None
    tweaks: dict | None
    steps: list | None  # an answer's tool calls, as ui.agent_steps shows them
    files: list | None  # a question's attached files, as ui.attached_files shows them
    feedback_score: int | None
    feedback_comment: str | None


@dataclass(frozen=True)
class Transcript:
    """A whole conversation as the transcript view shows and exports it."""

    id: int
    title: str
    owner: str
    created_at: dt.datetime
    updated_at: dt.datetime
    deleted: bool
    messages: tuple[TranscriptMessage, ...]

    def rows(self) -> list[dict]:
        """The messages as export rows (keys as in ``export.EXPORT_COLUMNS``)."""
        common = {"conversation_id": str(self.id), "conversation_title": self.title, "username": self.owner}
        rows = []
        for m in self.messages:
            row = common | asdict(m) | {"message_id": m.id}
            row |= {name: export.json_text(row[name]) for name in export.JSON_COLUMNS}
            rows.append({name: row[name] for name in export.EXPORT_COLUMNS})
        return rows

    def markdown(self) -> str:
        return export.conversation_markdown(self.title, self.rows())

    def json(self) -> str:
        return export.conversation_json(self.title, self.rows())


def _aware(value: dt.datetime) -> dt.datetime:
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def transcript(session: Session, actor: Actor, conversation_id: int) -> Transcript:
    """A conversation with every message and its owner's feedback.

    Admins may read anyone's, deleted ones included; reading another user's is audited ("view").
    """
    query = select(Conversation, User.username).join(User, User.id == Conversation.owner_id)
    query = query.where(Conversation.id == conversation_id)
    if not actor.is_admin:
        query = query.where(Conversation.owner_id == actor.id, Conversation.deleted.is_(False))
    found = session.execute(query).one_or_none()
    if found is None:
        raise NotFoundError("This conversation does not exist or was deleted.")
    conversation, owner = found
    if conversation.owner_id != actor.id:
        store.audit(session, actor, "view", f"conversation {conversation_id}")
    return Transcript(
        id=conversation.id, title=conversation.title, owner=owner,
        created_at=_aware(conversation.created_at), updated_at=_aware(conversation.updated_at),
        deleted=conversation.deleted, messages=tuple(_transcript_messages(session, conversation)),
    )


def _transcript_messages(session: Session, conversation: Conversation) -> Iterator[TranscriptMessage]:
    query = (
        select(Message, Feedback.score, Feedback.comment)
        .outerjoin(Feedback, and_(Feedback.message_id == Message.id, Feedback.user_id == conversation.owner_id))
        .where(Message.conversation_id == conversation.id).order_by(Message.id)
    )
    names = [f.name for f in fields(TranscriptMessage)][:-2]
    for message, score, comment in session.execute(query):
        values = {name: getattr(message, name) for name in names}
        values["created_at"] = _aware(message.created_at)
        yield TranscriptMessage(**values, feedback_score=score, feedback_comment=comment)


# -- export ------------------------------------------------------------------------------


def _export_query(dialect: str, actor: Actor, filters: HistoryFilter):
    # Times travel as UTC text: pandas parses a chunk of text far faster than it converts
    # datetime objects one by one (SQLite stores the text already).
    if dialect == "sqlite":
        created_at = type_coerce(Message.created_at, String)
    else:
        created_at = func.to_char(func.timezone("UTC", Message.created_at), "YYYY-MM-DD HH24:MI:SS.US")
    return (
        select(
            Conversation.id, Conversation.title, User.username, Message.id, Message.role,
            Message.version, Message.current, Message.content, created_at, Message.status, Message.error,
            Message.latency_ms, Message.ttft_ms, Message.engine, Message.flow_id, Message.flow_name,
            Message.flow_version, Message.model, Message.run_id, Message.input_tokens, Message.output_tokens,
            Feedback.score, Feedback.comment,
            # As stored: their JSON is parsed only where there is some (most rows have none).
            *(cast(getattr(Message, name), Text) for name in export.JSON_COLUMNS),
        )  # export.EXPORT_COLUMNS, in order
        .select_from(Conversation)
        .join(User, User.id == Conversation.owner_id)
        .join(Message, Message.conversation_id == Conversation.id)
        .outerjoin(Feedback, and_(Feedback.message_id == Message.id, Feedback.user_id == Conversation.owner_id))
        .where(*_message_filters(dialect, actor, filters, deleted_index=False))
        .order_by(Message.conversation_id, Message.id)
    )


def iter_export_frames(
    session: Session, actor: Actor, filters: HistoryFilter, *, chunk_size: int = 50_000
) -> Iterator[pd.DataFrame]:
    """The matching messages, one row each with exactly ``export.EXPORT_COLUMNS``, in chunks of at
    most ``chunk_size`` rows, ordered by conversation, then message.

    Rows stream from the database (a server-side cursor on PostgreSQL) a few thousand at a time
    and become compact columns at once, so memory follows the chunk's text, not Python's per-row
    objects. Use a read-only session for long exports, and call ``record_export`` first in a
    write transaction.
    """
    query = _export_query(_dialect(session), actor, filters)
    fetch = min(chunk_size, _FETCH_ROWS)
    # Core rows, not ORM ones: a third less work per row, and nothing here needs the ORM.
    result = session.connection().execute(query.execution_options(stream_results=True, yield_per=fetch))
    pending, size = [], 0
    for rows in result.partitions():
        if pending and size + len(rows) > chunk_size:
            chunk, pending, size = _joined_frames(pending), [], 0
            yield chunk  # the pieces it was joined from are let go first: a chunk is not held twice
        pending.append(_export_frame(rows))
        size += len(rows)
    if pending:
        chunk, pending = _joined_frames(pending), []
        yield chunk


def _export_frame(rows) -> pd.DataFrame:
    frame = pd.DataFrame.from_records(map(tuple, rows), columns=export.EXPORT_COLUMNS, coerce_float=False)
    frame["conversation_id"] = frame["conversation_id"].astype(str)
    frame["created_at"] = _utc(frame["created_at"])
    for name in export.JSON_COLUMNS:
        stored = frame[name].to_numpy(dtype=object, na_value=None)
        present = np.flatnonzero(frame[name].notna().to_numpy())
        if len(present):
            stored[present] = [export.json_text(json.loads(text)) for text in stored[present]]
            frame[name] = stored
    return frame


def _joined_frames(frames: list[pd.DataFrame]) -> pd.DataFrame:
    return frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)


def count_export_rows(session: Session, actor: Actor, filters: HistoryFilter) -> int:
    """How many messages an export of ``filters`` writes (the conversations' counters, when no dates)."""
    dialect = _dialect(session)
    if filters.since is None and filters.until is None:
        where = _conversation_filters(dialect, actor, filters)
        return session.scalar(select(func.coalesce(func.sum(Conversation.message_count), 0)).where(*where)) or 0
    query = select(func.count()).select_from(Message).join(Conversation, Conversation.id == Message.conversation_id)
    return session.scalar(query.where(*_message_filters(dialect, actor, filters))) or 0


def record_export(session: Session, actor: Actor, filters: HistoryFilter) -> bool:
    """Audit an admin's export that may hold other users' messages; True when it was recorded."""
    if not actor.is_admin or filters.user.strip().lower() == actor.username:
        return False
    store.audit(session, actor, "export", filters.describe())
    return True


def write_export(session: Session, actor: Actor, filters: HistoryFilter, label: str, out) -> int:
    """Stream the matching messages into ``out`` in the format ``label`` (an ``export.FORMATS`` key)."""
    try:
        writer = export.FORMATS[label].writer
    except KeyError:
        raise InputError(f"Unknown export format {label!r}: use one of {', '.join(export.FORMATS)}.") from None
    return writer(iter_export_frames(session, actor, filters), out)


# -- usage -----------------------------------------------------------------------------


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
    dialect = _dialect(session)
    where = _message_filters(dialect, actor, filters)
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
    started = select(Conversation.owner_id, func.count()).where(*_conversation_filters(dialect, actor, filters))
    conversations = dict(session.execute(started.group_by(Conversation.owner_id)).all())
    latency = _user_percentiles(session, _message_filters(dialect, actor, filters))
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
