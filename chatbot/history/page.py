"""The history table: one page of matching conversations, found from the full-text hits when searched."""

from __future__ import annotations

import functools
from typing import NamedTuple

import pandas as pd
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from chatbot import fulltext, store
from chatbot.history.filters import SORTS, HistoryFilter, conversation_filters, dialect_of, utc
from chatbot.history.tags import tags_of
from chatbot.models import Conversation, Message, User
from chatbot.store import Actor

TABLE_COLUMNS = [
    "id", "title", "owner", "started", "last_activity", "messages",
    "thumbs_up", "thumbs_down", "last_status", "engine", "flow_version", "tags",
]  # fmt: skip
# A search counts the conversations of its first hits only, and shows "N+" when there were more.
# Each hit read costs a row and a look at its conversation; 300 say "many" as well as 1,000 did
# ("276+" against "922+" for a word in 11% of conversations) in a third of the time.
_COUNTED_HITS = 300
_WALK = 2_000  # newest conversations a page of a common word's search looks through for hits


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
)  # TABLE_COLUMNS, in order, but the tags (read for the page's rows after)


def list_history(
    session: Session, actor: Actor, filters: HistoryFilter, *, page: int, page_size: int = 50
) -> tuple[pd.DataFrame, MatchCount]:
    """One page (0-based) of matching conversations with ``TABLE_COLUMNS``, and how many match.

    The count is exact, except for a search with many hits: then it is a lower bound
    (``MatchCount.at_least``) that always reaches past this page when another page follows.
    """
    dialect, offset = dialect_of(session), max(page, 0) * page_size
    if filters.query.groups:
        rows, total = _searched_page(session, dialect, actor, filters, offset=offset, limit=page_size)
    else:
        where = conversation_filters(dialect, actor, filters)
        total = MatchCount(session.scalar(select(func.count()).select_from(Conversation).where(*where)) or 0)
        query = _with_owner(select(*_ROW)).where(*where).order_by(*SORTS[filters.sort])
        rows = session.execute(query.limit(page_size).offset(offset)).all()
    frame = _table(rows)
    on_page = tags_of(session, actor, frame["id"].tolist())
    frame["tags"] = [on_page.get(cid, []) for cid in frame["id"].tolist()]
    return frame, total


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
        self.hits = fulltext.hits(dialect, filters.query)
        self.where = conversation_filters(dialect, actor, filters, search=False, deleted_index=False)

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
        shown = conversation_filters(self.dialect, self.actor, self.filters, search=False)  # the form the index serves
        # The walk's end: ordered by time alone, the index gives it without sorting ties by id.
        newest = select(Conversation.updated_at).where(*shown).order_by(Conversation.updated_at.desc())
        oldest = select(func.min(Conversation.updated_at)).where(*shown)  # fewer than the walk's: walk them all
        since = func.coalesce(newest.offset(self.tuning.walk - 1).limit(1).scalar_subquery(), oldest.scalar_subquery())
        found = fulltext.has_hit(self.dialect, self.filters.query, recent_messages=self.tuning.recent_messages)
        query = select(*_ROW).where(*shown, Conversation.updated_at >= since, found)
        return self._page(_with_owner(query))

    def _found(self, *columns):
        """A select of ``columns`` from the conversations the hits found that ``where`` keeps."""
        found = self.hits.distinct().subquery()
        query = select(*columns).select_from(found).join(Conversation, Conversation.id == found.c.conversation_id)
        return query.where(*self.where)

    def _page(self, query):
        return query.order_by(*SORTS[self.filters.sort]).limit(self.limit).offset(self.offset)


def _table(rows: list) -> pd.DataFrame:
    """The history table of these rows of ``_ROW``, times in UTC."""
    names = TABLE_COLUMNS[:-1]
    columns = dict(zip(names, map(list, zip(*rows)))) if rows else dict.fromkeys(names, [])
    for name in ("started", "last_activity"):  # a list converts at once, a column of objects one by one
        columns[name] = utc(columns[name])
    return pd.DataFrame(columns)


def engines(session: Session, actor: Actor) -> list[str]:
    """The engines and flows that answered in the actor's conversations (the filter's options)."""
    query = select(Conversation.last_engine).distinct().where(Conversation.last_engine.is_not(None))
    if not actor.is_admin:
        query = query.where(store.owned_by(actor))
    return sorted(session.scalars(query))


def flow_versions(session: Session, actor: Actor) -> list[str]:
    """The flow versions that answered in the actor's conversations, as 'Notes RAG v7' (the
    version filter's options), by flow, then version. An admin's read every answer that has a
    version (0.2-0.3 s at a million messages): the index holds no flow names."""
    query = select(Message.flow_name, Message.flow_version).distinct()
    query = query.where(Message.flow_version.is_not(None), Message.flow_name.is_not(None))
    if not actor.is_admin:
        owned = select(Conversation.id).where(store.owned_by(actor))
        query = query.where(Message.conversation_id.in_(owned))
    return [store.version_label(flow, version) for flow, version in sorted(session.execute(query).all())]
