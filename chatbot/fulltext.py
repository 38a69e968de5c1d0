"""Full-text matching of messages: FTS5 on SQLite, a tsvector column and its GIN index on PostgreSQL.

A ``TextQuery`` is groups of terms joined by OR, each group's terms ANDed (a message matches when
it has every term of one group), and excluded terms (a conversation with a message that has one
is left out). A term is a word, a "phrase", or a word's prefix (``vac*``). These build the SQL
that finds matching messages, the conversations they are in, or tests one conversation. The
text syntax that reads into a ``TextQuery`` is ``chatbot.history.syntax``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import reduce

from sqlalchemy import ColumnElement, and_, column, func, literal, literal_column, or_, select, table

from chatbot.models import Conversation, Message

# The newest messages whose hits a PostgreSQL walk reads at once (``has_hit``): about those of
# the few hundred conversations a page of the history table looks through.
RECENT_MESSAGES = 10_000
_FTS = table("messages_fts", column("rowid"))
# SQLite only (migration 0003): message id -> conversation id, read from a covering index.
_HITS = table("message_conversations", column("id"), column("conversation_id"))


_WORDS = re.compile(r"[^\W_]+")  # letters and digits: what both indexes call a word


@dataclass(frozen=True)
class Term:
    """Words a message must have in this order (one word, or a phrase); ``prefix``: the last word
    may go on (``vac*`` finds vacuum)."""

    words: str  # word characters, one space between words
    prefix: bool = False

    def __str__(self) -> str:
        quoted = " " in self.words or self.words == "OR"
        return (f'"{self.words}"' if quoted else self.words) + ("*" if self.prefix else "")


@dataclass(frozen=True)
class TextQuery:
    """Groups joined by OR, each a tuple of ANDed terms; and the excluded terms."""

    groups: tuple[tuple[Term, ...], ...] = ()
    excluded: tuple[Term, ...] = ()

    def __str__(self) -> str:
        """The query as typed in canonical form: 'vac* "full scan" OR analyze -refund'."""
        parts = [" OR ".join(" ".join(map(str, group)) for group in self.groups)]
        parts += [f"-{term}" for term in self.excluded]
        return " ".join(part for part in parts if part)

    def __bool__(self) -> bool:
        return bool(self.groups or self.excluded)


def words_of(text: str) -> str:
    """The word characters of ``text``, one space between words ('' when it has none)."""
    return " ".join(_WORDS.findall(text))


def found_conversations(dialect: str, query: TextQuery):
    """The ids of conversations with a message that matches (None when nothing is searched for).

    FTS5 on SQLite, the tsvector GIN index on PostgreSQL; uncorrelated on purpose, so the
    index is read once, not once per conversation.
    """
    found = hits(dialect, query)
    return None if found is None else found.distinct()


def hits(dialect: str, query: TextQuery):
    """The conversation id of each message that matches the groups, one row per message, in index
    order (None when the query has no groups)."""
    if not query.groups:
        return None
    return _hits(dialect, query.groups)


def _hits(dialect: str, groups):
    if dialect == "sqlite":
        found = select(_HITS.c.conversation_id).select_from(_FTS).join(_HITS, _HITS.c.id == _FTS.c.rowid)
        return found.where(_fts_match(groups))
    return select(Message.conversation_id).where(_tsv_match(groups))


def excluded(dialect: str, query: TextQuery) -> ColumnElement[bool] | None:
    """Conversations none of whose messages has an excluded term (None when none is excluded).

    Tested one conversation at a time, after the other filters: an excluded word is often common
    ("-refund"), and reading all its hits to leave them out cost more than looking into the few
    conversations the other filters keep.
    """
    if not query.excluded:
        return None
    groups = tuple((term,) for term in query.excluded)
    if dialect == "sqlite":
        matched = (Message.id + 0).in_(select(_FTS.c.rowid).where(_fts_match(groups)))
        return ~select(Message.id).where(Message.conversation_id == Conversation.id, matched).exists()
    probe = select(Message.id).where(Message.conversation_id == Conversation.id, _tsv_match(groups))
    return ~probe.offset(0).exists()  # OFFSET 0: a test per conversation, not an anti-join over every hit


def has_hit(dialect: str, query: TextQuery, *, recent_messages: int = RECENT_MESSAGES) -> ColumnElement[bool]:
    """Conversations with a message that matches the groups, tested one conversation at a time
    (on PostgreSQL, the newest ``recent_messages`` messages' hits read at once)."""
    terms = query.groups
    if dialect == "sqlite":
        # "+ 0": SQLite reads the conversation's messages by their index and looks each up among
        # the hits (read once), instead of looking every hit up in each conversation.
        matched = (Message.id + 0).in_(select(_FTS.c.rowid).where(_fts_match(terms)))
        return select(Message.id).where(Message.conversation_id == Conversation.id, matched).exists()
    probe = select(Message.id).where(Message.conversation_id == Conversation.id, _tsv_match(terms))
    # OFFSET 0 keeps PostgreSQL from turning the test into a join that reads every hit first.
    probe = probe.offset(0).exists()
    # Reading a conversation's messages one by one is the cost. A conversation whose messages are
    # all among the newest ones has a hit exactly when it is among their hits, which one index
    # read finds for every conversation at once; only the older conversations are read through.
    window = select(func.max(Message.id)).scalar_subquery() - recent_messages
    recent_hits = select(Message.conversation_id).where(_tsv_match(terms), Message.id > window)
    older = select(Message.id).where(Message.conversation_id == Conversation.id, Message.id <= window).exists()
    return or_(Conversation.id.in_(recent_hits), and_(older, probe))


def _fts_term(term: Term) -> str:
    return f'"{term.words}"' + ("*" if term.prefix else "")  # words are word characters: nothing to escape


def _fts_match(groups) -> ColumnElement[bool]:
    ands = [" AND ".join(map(_fts_term, group)) for group in groups]
    text = ands[0] if len(ands) == 1 else " OR ".join(f"({a})" for a in ands)
    return literal_column("messages_fts").op("MATCH")(text)


def _tsquery(term: Term):
    english = literal_column("'english'::regconfig")
    # Inlined, not bound: a prepared statement's generic plan would parse the query text again
    # for every message it tests, instead of once.
    if term.prefix:  # one word (the parser makes sure): 'vac:*'
        return func.to_tsquery(english, literal(f"{term.words}:*", literal_execute=True))
    return func.phraseto_tsquery(english, literal(term.words, literal_execute=True))


def _tsv_match(groups) -> ColumnElement[bool]:
    ands = [reduce(lambda a, b: a.op("&&")(b), map(_tsquery, group)) for group in groups]
    return literal_column("messages.content_tsv").op("@@")(reduce(lambda a, b: a.op("||")(b), ands))
