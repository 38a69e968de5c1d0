"""What the history page shows: ``HistoryFilter``, its query parameters, and each filter's SQL
clause written beside its human description (as datasette's filters are).

Each filter is a predicate on a conversation: its activity overlaps the date range, one of its
messages matches the search (full-text index) and none has an excluded word, it has the owner's
👍 / 👎 or no feedback, one of its answers failed (or stopped, or was interrupted) or took longer
than the latency, its latest answer came from the engine or flow, one of its answers came from
the flow version, it has every tag. Exports and usage also keep only the messages sent inside
the date range, so monthly exports never overlap.

The search box and the other filters are one state: field filters typed in the search
(``tag:billing``, see ``syntax``) become the filter's fields when it is made, and the search keeps
only its words, in canonical form.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

import pandas as pd
from sqlalchemy import ColumnElement, and_, false, literal, select
from sqlalchemy.orm import Session, aliased

from chatbot import fulltext, store
from chatbot.errors import InputError
from chatbot.fulltext import TextQuery
from chatbot.history.syntax import LAST_DAY, STATUSES, flow_and_version, parse
from chatbot.models import Conversation, ConversationTag, Message, User
from chatbot.store import Actor

FEEDBACK_LABELS = {"any": "Any", "up": "👍", "down": "👎", "none": "No feedback"}
SORT_LABELS = {"updated": "Last activity", "started": "Started", "messages": "Most messages", "title": "Title"}
# HistoryFilter field -> query parameter; the history page uses these as its widget keys.
PARAMS = {
    "since": "history_from", "until": "history_to", "search": "history_search",
    "feedback": "history_feedback", "status": "history_status", "engine": "history_engine",
    "version": "history_version", "tags": "history_tags", "latency_over_ms": "history_latency",
    "user": "history_user", "deleted": "history_deleted", "sort": "history_sort",
}  # fmt: skip
STATUS_LABELS = {"": "Any", "error": "Failed", "stopped": "Stopped", "interrupted": "Interrupted"}
MAX_SEARCH_CHARS = 500
__all__ = ["LAST_DAY", "flow_and_version"]  # kept here too: the filter's callers read them from it
SORTS = {
    "updated": (Conversation.updated_at.desc(), Conversation.id.desc()),
    "started": (Conversation.created_at.desc(), Conversation.id.desc()),
    "messages": (Conversation.message_count.desc(), Conversation.updated_at.desc(), Conversation.id.desc()),
    "title": (Conversation.title, Conversation.id.desc()),
}
# Inlined, not bound, so SQLite can use the partial index on failed answers (migration 0003).
_ERROR = literal("error", literal_execute=True)
# The messages a conversation filter looks into: another name for the table, so that the filter
# correlates to the conversation alone when the query itself reads messages (exports, usage).
Other = aliased(Message, name="other")


@dataclass(frozen=True)
class HistoryFilter:
    """What the history page shows: filters and order. Each field has a query parameter (``PARAMS``)."""

    since: dt.date | None = None
    until: dt.date | None = None
    search: str = ""  # words, "phrases", prefix*, -word, OR (syntax.py); field filters move to the fields
    feedback: str = "any"  # a FEEDBACK_LABELS key
    status: str = ""  # a STATUS_LABELS key: one of its answers failed, was stopped or interrupted
    engine: str = ""  # "" is every engine or flow
    version: str = ""  # a flow and version as store.version_label writes it ("Notes RAG v7"); "" is any
    tags: tuple[str, ...] = ()  # every one of these tags, sorted
    latency_over_ms: int | None = None  # an answer took longer than this
    user: str = ""  # a username; "" is everyone the actor may see
    deleted: bool = False  # admins: deleted conversations only (to purge them)
    sort: str = "updated"  # a SORT_LABELS key
    # What the search left out, as words ("the stray quote"): what the page says it searched.
    ignored: tuple[str, ...] = field(default=(), compare=False)

    def __post_init__(self) -> None:
        if len(self.search) > MAX_SEARCH_CHARS:
            raise InputError(f"The search is too long (at most {MAX_SEARCH_CHARS} characters).")
        self._take_the_search_apart()
        if self.status not in STATUS_LABELS:
            raise InputError(f"Unknown answer status {self.status!r}: use one of {', '.join(STATUSES)}.")
        if self.feedback not in FEEDBACK_LABELS:
            raise InputError(f"Unknown feedback filter {self.feedback!r}: use one of {', '.join(FEEDBACK_LABELS)}.")
        if self.sort not in SORT_LABELS:
            raise InputError(f"Unknown order {self.sort!r}: use one of {', '.join(SORT_LABELS)}.")
        if any(day and day > LAST_DAY for day in (self.since, self.until)):
            raise InputError(f"Dates must be on or before {LAST_DAY}.")
        if self.since and self.until and self.since > self.until:
            raise InputError("The start date is after the end date.")
        if self.version and flow_and_version(self.version) is None:
            raise InputError(f"{self.version!r} is not a flow and its version, such as 'Notes RAG v7'.")

    def _take_the_search_apart(self) -> None:
        """Field filters typed in the search become fields (the box's win over the widgets'); the
        search keeps its words in canonical form; tags are a sorted set."""
        parsed = parse(self.search)
        values = dict(parsed.fields, search=str(parsed.query))
        tags = (" ".join(str(tag).split()).lower()[:60] for tag in (*self.tags, *values.get("tags", ())))
        values["tags"] = tuple(sorted({tag for tag in tags if tag}))  # as tags.clean_tag stores them
        if values.get("since") and self.until and values["since"] > self.until and "until" not in values:
            values["until"] = None  # the box's date wins over the widget's that contradicts it
        if values.get("until") and self.since and self.since > values["until"] and "since" not in values:
            values["since"] = None
        for name, value in values.items():
            object.__setattr__(self, name, value)
        object.__setattr__(self, "ignored", tuple(dict.fromkeys(self.ignored + parsed.ignored)))

    @property
    def query(self):
        """The search as a ``fulltext.TextQuery``."""
        return parse(self.search).query

    @classmethod
    def from_query_params(cls, params: Mapping[str, str | list[str]]) -> HistoryFilter:
        """The filter a shared link describes; a value that does not parse is left at its default."""
        values = {}
        for name, key in PARAMS.items():
            raw = params.get(key)
            if name == "tags":
                tags = [raw] if isinstance(raw, str) else list(raw or [])
                values["tags"] = tuple(tag for tag in tags if isinstance(tag, str) and tag.strip())
                continue
            raw = raw[-1] if isinstance(raw, list) and raw else raw
            if isinstance(raw, str) and raw.strip():
                parsed = _parse_param(name, raw.strip())
                if parsed is not None:
                    values[name] = parsed
        legacy = params.get("history_errors")  # links from before the status filter
        if "status" not in values and isinstance(legacy, str) and legacy.lower() in ("true", "1", "yes"):
            values["status"] = "error"
        values["search"] = values.get("search", "")[:MAX_SEARCH_CHARS]
        if values.get("since") and values.get("until") and values["since"] > values["until"]:
            del values["until"]
        return cls(**values)

    def to_query_params(self) -> dict[str, str | list[str]]:
        """The query parameters of this filter, written as the page's widgets write them (tags a list);
        defaults left out."""
        default = HistoryFilter()
        return {
            key: list(self.tags) if name == "tags" else _format_param(name, getattr(self, name))
            for name, key in PARAMS.items()
            if getattr(self, name) != getattr(default, name)
        }

    def describe(self) -> str:
        """'user=bob, search=churn' (the audit log's record of what an admin exported)."""
        default = HistoryFilter()
        parts = [
            f"{field.name}={_format_param(field.name, getattr(self, field.name))}"
            for field in fields(self)
            if field.name not in ("sort", "ignored") and getattr(self, field.name) != getattr(default, field.name)
        ]
        return ", ".join(parts) or "all conversations"


def _parse_param(name: str, raw: str):
    if name in ("since", "until"):
        try:
            return dt.date.fromisoformat(raw)
        except ValueError:
            return None
    if name == "deleted":
        return raw.lower() in ("true", "1", "yes")
    if name == "latency_over_ms":
        return int(raw) if raw.isdigit() and len(raw) < 10 else None
    if name == "status":
        return raw if raw in STATUS_LABELS else next((code for code, label in STATUS_LABELS.items() if label == raw), None)
    if name in ("feedback", "sort"):
        labels = FEEDBACK_LABELS if name == "feedback" else SORT_LABELS
        return raw if raw in labels else next((code for code, label in labels.items() if label == raw), None)
    if name == "version":
        return raw if flow_and_version(raw) else None
    return raw


def _format_param(name: str, value) -> str:
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return ", ".join(value)
    if name in ("feedback", "sort"):
        return (FEEDBACK_LABELS if name == "feedback" else SORT_LABELS)[value]
    if name == "status":
        return STATUS_LABELS[value]
    return str(value)


# -- each filter: its clause on a conversation and its words ------------------------------


def start_of(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)


def end_of(day: dt.date) -> dt.datetime:
    return start_of(day + dt.timedelta(days=1))


def _owned_by_name(username: str) -> ColumnElement[bool]:
    owner = select(User.id).where(User.username == username.strip().lower()).scalar_subquery()
    return Conversation.owner_id == owner


def _answered_by(label: str) -> ColumnElement[bool]:
    """The conversation has an answer from this flow version: a look-up in ix_messages_flow_version."""
    flow, version = flow_and_version(label)
    answers = select(Other.id).where(
        Other.flow_version == version, Other.conversation_id == Conversation.id, Other.flow_name == flow
    )
    return answers.exists()


def _answered_with(status: str) -> ColumnElement[bool]:
    # Failed answers have a partial index (migration 0003); the rarer stopped and interrupted ones
    # are read through the conversation's messages.
    wanted = _ERROR if status == "error" else literal(status, literal_execute=True)
    return select(Other.id).where(Other.conversation_id == Conversation.id, Other.status == wanted).exists()


def _slower_than(ms: int) -> ColumnElement[bool]:
    return select(Other.id).where(Other.conversation_id == Conversation.id, Other.latency_ms > ms).exists()


def _tagged(tags: tuple[str, ...]) -> ColumnElement[bool]:
    """Every tag: one primary-key look-up per tag."""
    return and_(*(
        select(ConversationTag.tag).where(ConversationTag.conversation_id == Conversation.id,
                                          ConversationTag.tag == tag).exists()
        for tag in tags
    ))  # fmt: skip


def _seconds(ms: int) -> str:
    return f"{ms / 1000:g} s" if ms % 100 == 0 else f"{ms:,} ms"


def _rated(feedback: str) -> ColumnElement[bool]:
    rated = {"up": Conversation.thumbs_up > 0, "down": Conversation.thumbs_down > 0}
    return rated.get(feedback, Conversation.thumbs_up + Conversation.thumbs_down == 0)


@dataclass(frozen=True)
class Filter:
    """One filter: the ``HistoryFilter`` field it reads, its WHERE clause on Conversation for a
    value, and the words that say what it kept ("with 👎")."""

    name: str
    clause: Callable[[Any], ColumnElement[bool]]
    words: Callable[[Any], str]


FILTERS = (
    Filter("user", _owned_by_name, lambda user: f"of {user}"),
    Filter("since", lambda day: Conversation.updated_at >= start_of(day), lambda day: f"active from {day}"),
    Filter("until", lambda day: Conversation.created_at < end_of(day), lambda day: f"started by {day}"),
    Filter("engine", lambda engine: Conversation.last_engine == engine, lambda engine: f"last answered by {engine}"),
    Filter("version", _answered_by, lambda label: f"answered by {label}"),
    Filter("status", _answered_with, lambda status: {"error": "with a failed answer", "stopped": "with a stopped answer",
                                                     "interrupted": "with an interrupted answer"}[status]),
    Filter("feedback", _rated, lambda feedback: "without feedback" if feedback == "none"
           else f"with {FEEDBACK_LABELS[feedback]}"),
    Filter("tags", _tagged, lambda tags: "tagged " + " and ".join(tags)),
    Filter("latency_over_ms", _slower_than, lambda ms: f"with an answer slower than {_seconds(ms)}"),
)  # fmt: skip
_DEFAULT = HistoryFilter()


def _chosen(filters: HistoryFilter):
    """The filters set away from their defaults, with their values."""
    for spec in FILTERS:
        value = getattr(filters, spec.name)
        if value != getattr(_DEFAULT, spec.name):
            yield spec, value


def described(filters: HistoryFilter) -> list[str]:
    """The words of each filter set: ['of bob', 'with 👎']."""
    return [spec.words(value) for spec, value in _chosen(filters)]


def searched(filters: HistoryFilter) -> str:
    """What the page says it searched: 'Searched for vacuum; ignored the stray quote', or '' when
    there is nothing to say (no search, nothing ignored)."""
    said = f"Searched for {filters.search}" if filters.search else "Searched for every conversation"
    if filters.ignored:
        return f"{said}; ignored {', '.join(filters.ignored)}"
    return said if filters.search else ""


def no_match(filters: HistoryFilter) -> str:
    """'No conversations match vac*, -vacuum, tagged billing' (what the page says when nothing matches)."""
    parts = [str(TextQuery(filters.query.groups))] if filters.query.groups else []
    parts += [f"-{term}" for term in filters.query.excluded] + described(filters)
    said = f"No conversations match {', '.join(parts)}" if parts else "No conversations match"
    return said + (f" (ignored {', '.join(filters.ignored)})" if filters.ignored else "")


def conversation_filters(
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
    clauses.append(store.visible_to(actor))
    if filters.deleted and not actor.is_admin:
        clauses.append(false())
    clauses += [spec.clause(value) for spec, value in _chosen(filters)]
    query = filters.query
    if (left_out := fulltext.excluded(dialect, query)) is not None:
        clauses.append(left_out)
    if query.groups and search:
        clauses.append(Conversation.id.in_(fulltext.found_conversations(dialect, query)))
    return clauses


def message_filters(
    dialect: str, actor: Actor, filters: HistoryFilter, *, deleted_index: bool = True
) -> list[ColumnElement[bool]]:
    """WHERE clauses on Message joined to Conversation: the conversations, then the date range."""
    return conversation_filters(dialect, actor, filters, deleted_index=deleted_index) + date_filters(filters)


def date_filters(filters: HistoryFilter) -> list[ColumnElement[bool]]:
    """WHERE clauses on Message: written inside the filter's date range."""
    clauses = []
    if filters.since:
        clauses.append(Message.created_at >= start_of(filters.since))
    if filters.until:
        clauses.append(Message.created_at < end_of(filters.until))
    return clauses


def dialect_of(session: Session) -> str:
    return session.get_bind().dialect.name


def utc(times: pd.Series | list) -> pd.Series | pd.DatetimeIndex:
    """Times (datetimes or text) as UTC; SQLite's have no zone and are UTC already."""
    return pd.to_datetime(times, utc=True)
