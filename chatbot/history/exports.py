"""The filtered set's messages as export rows, streamed in chunks, and the audit of an admin's export."""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator

import numpy as np
import pandas as pd
from sqlalchemy import String, Text, and_, cast, func, null, select, type_coerce
from sqlalchemy.orm import Session

from chatbot import export, store
from chatbot.errors import InputError
from chatbot.history.filters import (
    SORTS,
    HistoryFilter,
    conversation_filters,
    date_filters,
    dialect_of,
    message_filters,
    utc,
)
from chatbot.history.tags import tags_of
from chatbot.models import AnswerNote, Conversation, Feedback, Message, User
from chatbot.store import Actor

_FETCH_ROWS = 5_000  # rows turned into Python objects at a time while exporting


def _export_query(dialect: str, filters: HistoryFilter, batch: list[int]):
    """The export rows of a batch of conversations (already filtered and scoped) by conversation id,
    each conversation's messages in order; the date range applies to the messages."""
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
            null(), null(), null(),  # tags, note and corrected answer: read per chunk (_annotate)
        )  # export.EXPORT_COLUMNS, in order
        .select_from(Conversation)
        .join(User, User.id == Conversation.owner_id)
        .join(Message, Message.conversation_id == Conversation.id)
        .outerjoin(Feedback, and_(Feedback.message_id == Message.id, Feedback.user_id == Conversation.owner_id))
        .where(Message.conversation_id.in_(batch), *date_filters(filters))
        .order_by(Message.conversation_id, Message.id)  # the index's order: no sort
    )


def _conversation_batches(session: Session, actor: Actor, filters: HistoryFilter, rows: int) -> Iterator[list[int]]:
    """The matching conversations' ids in the history table's order (``filters.sort``), in batches
    of about ``rows`` messages; a conversation with more is a batch of its own.

    Exporting batch by batch keeps the table's order without sorting every message at once (a
    million rows sorted on disk), and each batch reads its messages by index.
    """
    where = conversation_filters(dialect_of(session), actor, filters, deleted_index=False)
    query = select(Conversation.id, Conversation.message_count).where(*where).order_by(*SORTS[filters.sort])
    batch, size = [], 0
    for conversation_id, count in session.execute(query).all():
        if batch and (size + count > rows or count > rows):
            yield batch
            batch, size = [], 0
        batch.append(conversation_id)
        size += count
    if batch:
        yield batch


def iter_export_frames(
    session: Session, actor: Actor, filters: HistoryFilter, *, chunk_size: int = 50_000
) -> Iterator[pd.DataFrame]:
    """The matching messages, one row each with exactly ``export.EXPORT_COLUMNS``, in chunks of at
    most ``chunk_size`` rows: the conversations in the history table's order (``filters.sort``),
    each one's messages in the order they were written.

    Rows stream from the database (a server-side cursor on PostgreSQL) a few thousand at a time
    and become compact columns at once, so memory follows the chunk's text, not Python's per-row
    objects. Use a read-only session for long exports, and call ``record_export`` first in a
    write transaction.
    """
    dialect = dialect_of(session)
    fetch = min(chunk_size, _FETCH_ROWS)
    annotate = functools.partial(_annotate, session, actor, _all_notes(session, actor))
    pending, size = [], 0
    for batch in _conversation_batches(session, actor, filters, fetch):
        # Core rows, not ORM ones: a third less work per row, and nothing here needs the ORM.
        query = _export_query(dialect, filters, batch)
        if len(batch) == 1:  # one conversation of any size: streamed (a server-side cursor on PostgreSQL)
            pieces = session.connection().execute(query.execution_options(stream_results=True, yield_per=fetch))
            pieces = pieces.partitions()
        else:  # several, about ``fetch`` rows together: read at once and put in the batch's order
            rank = {conversation_id: n for n, conversation_id in enumerate(batch)}
            pieces = [sorted(session.connection().execute(query).all(), key=lambda row: rank[row[0]])]
        for rows in pieces:
            if not rows:
                continue
            if pending and size + len(rows) > chunk_size:
                chunk, pending, size = _joined_frames(pending), [], 0
                yield chunk  # the pieces it was joined from are let go first: a chunk is not held twice
            pending.append(annotate(_export_frame(rows)))
            size += len(rows)
    if pending:
        chunk, pending = _joined_frames(pending), []
        yield chunk


def _export_frame(rows) -> pd.DataFrame:
    frame = pd.DataFrame.from_records(map(tuple, rows), columns=export.EXPORT_COLUMNS, coerce_float=False)
    frame["created_at"] = utc(frame["created_at"])
    for name in export.JSON_COLUMNS:
        stored = frame[name].to_numpy(dtype=object, na_value=None)
        present = np.flatnonzero(frame[name].notna().to_numpy())
        if len(present):
            stored[present] = [export.json_text(json.loads(text)) for text in stored[present]]
            frame[name] = stored
    return frame


def _annotate(session: Session, actor: Actor, notes: dict, frame: pd.DataFrame) -> pd.DataFrame:
    """The chunk with its conversations' tags (one look-up per chunk, not a join per row) and its
    answers' notes (few: all of the actor's were read once)."""
    tags = tags_of(session, actor, frame["conversation_id"].unique().tolist())
    if tags:
        texts = frame["conversation_id"].map({cid: export.tags_text(names) for cid, names in tags.items()})
        frame["tags"] = texts.astype(object).where(texts.notna(), None)
    ids = frame["message_id"]
    if notes and (noted := ids.isin(notes)).any():
        frame["note"] = ids.map({i: note for i, (note, _) in notes.items()}).astype(object).where(noted, None)
        frame["corrected_answer"] = ids.map({i: fix for i, (_, fix) in notes.items()}).astype(object).where(noted, None)
    return frame


def _all_notes(session: Session, actor: Actor) -> dict[int, tuple[str | None, str | None]]:
    """Every note the actor may read, by answer id: people write them, so they are few."""
    query = (
        select(AnswerNote.message_id, AnswerNote.note, AnswerNote.corrected_answer)
        .join(Message, Message.id == AnswerNote.message_id)
        .join(Conversation, Conversation.id == Message.conversation_id).where(store.visible_to(actor))
    )
    return {message_id: (note or None, fix) for message_id, note, fix in session.execute(query)}


def _joined_frames(frames: list[pd.DataFrame]) -> pd.DataFrame:
    return frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)


def count_export_rows(session: Session, actor: Actor, filters: HistoryFilter) -> int:
    """How many messages an export of ``filters`` writes (the conversations' counters, when no dates)."""
    dialect = dialect_of(session)
    if filters.since is None and filters.until is None:
        where = conversation_filters(dialect, actor, filters)
        return session.scalar(select(func.coalesce(func.sum(Conversation.message_count), 0)).where(*where)) or 0
    query = select(func.count()).select_from(Message).join(Conversation, Conversation.id == Message.conversation_id)
    return session.scalar(query.where(*message_filters(dialect, actor, filters))) or 0


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
