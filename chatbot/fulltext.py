"""Full-text matching of messages: FTS5 on SQLite, a tsvector column and its GIN index on PostgreSQL.

A search is words and "quoted phrases", all of which a message must have. These build the
SQL that finds such messages, the conversations they are in, or tests one conversation.
"""

from __future__ import annotations

import re
from functools import reduce

from sqlalchemy import ColumnElement, and_, column, func, literal, literal_column, or_, select, table

from chatbot.models import Conversation, Message

# The newest messages whose hits a PostgreSQL walk reads at once (``has_hit``): about those of
# the few hundred conversations a page of the history table looks through.
RECENT_MESSAGES = 10_000
_TERM = re.compile(r'"([^"]*)"|([^\s"]+)')
_FTS = table("messages_fts", column("rowid"))
# SQLite only (migration 0003): message id -> conversation id, read from a covering index.
_HITS = table("message_conversations", column("id"), column("conversation_id"))


def search_terms(text: str) -> list[str]:
    """The words and "quoted phrases" of a search, each reduced to its word characters."""
    terms = (quoted or word for quoted, word in _TERM.findall(text))
    return [" ".join(words) for words in (re.findall(r"\w+", term) for term in terms) if words]


def found_conversations(dialect: str, text: str):
    """The ids of conversations with a message that has every term (None when the search has no words).

    FTS5 on SQLite, the tsvector GIN index on PostgreSQL; uncorrelated on purpose, so the
    index is read once, not once per conversation.
    """
    found = hits(dialect, text)
    return None if found is None else found.distinct()


def hits(dialect: str, text: str):
    """The conversation id of each message that has every term, one row per message, in index
    order (None when the search has no words)."""
    terms = search_terms(text)
    if not terms:
        return None
    if dialect == "sqlite":
        found = select(_HITS.c.conversation_id).select_from(_FTS).join(_HITS, _HITS.c.id == _FTS.c.rowid)
        return found.where(_fts_match(terms))
    return select(Message.conversation_id).where(_tsv_match(terms))


def has_hit(dialect: str, text: str, *, recent_messages: int = RECENT_MESSAGES) -> ColumnElement[bool]:
    """Conversations with a message that has every term, tested one conversation at a time
    (on PostgreSQL, the newest ``recent_messages`` messages' hits read at once)."""
    terms = search_terms(text)
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


def _fts_match(terms: list[str]) -> ColumnElement[bool]:
    return literal_column("messages_fts").op("MATCH")(" ".join(f'"{term}"' for term in terms))


def _tsv_match(terms: list[str]) -> ColumnElement[bool]:
    english = literal_column("'english'::regconfig")
    # Inlined, not bound: a prepared statement's generic plan would parse the query text again
    # for every message it tests, instead of once.
    queries = (func.phraseto_tsquery(english, literal(term, literal_execute=True)) for term in terms)
    return literal_column("messages.content_tsv").op("@@")(reduce(lambda a, b: a.op("&&")(b), queries))
