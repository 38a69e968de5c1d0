"""Notes on answers: an analyst's remark and, optionally, the answer it should have given."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from chatbot import store
from chatbot.errors import InputError, NotFoundError
from chatbot.models import AnswerNote, Conversation, Message, utcnow
from chatbot.store import Actor

NOTE_CHARS = 5_000
CORRECTED_CHARS = 50_000


def set_note(
    session: Session, actor: Actor, message_id: int, *, note: str, corrected_answer: str | None = None
) -> AnswerNote | None:
    """Write the note on an answer the actor may read; an empty note and correction remove it (None)."""
    note = store.storable(note or "").strip()
    corrected = store.storable(corrected_answer or "").strip() or None
    if len(note) > NOTE_CHARS or len(corrected or "") > CORRECTED_CHARS:
        raise InputError(f"A note holds at most {NOTE_CHARS:,} characters and a corrected answer {CORRECTED_CHARS:,}.")
    answer = session.scalar(
        select(Message.id).join(Conversation, Conversation.id == Message.conversation_id)
        .where(Message.id == message_id, Message.role == "assistant", Conversation.deleted.is_(False),
               store.visible_to(actor))
    )  # fmt: skip
    if answer is None:
        raise NotFoundError("This answer does not exist or was deleted.")
    if not note and not corrected:
        session.execute(delete(AnswerNote).where(AnswerNote.message_id == message_id))
        return None
    kept = session.get(AnswerNote, message_id) or AnswerNote(message_id=message_id)
    kept.author_id, kept.note, kept.corrected_answer, kept.updated_at = actor.id, note, corrected, utcnow()
    session.add(kept)
    session.flush()
    return kept


def notes_for(session: Session, actor: Actor, message_ids: Iterable[int]) -> dict[int, AnswerNote]:
    """The notes on these answers, by message id (those the actor may read)."""
    ids = list(message_ids)
    if not ids:
        return {}
    query = (
        select(AnswerNote).join(Message, Message.id == AnswerNote.message_id)
        .join(Conversation, Conversation.id == Message.conversation_id)
        .where(AnswerNote.message_id.in_(ids), store.visible_to(actor))
    )
    return {note.message_id: note for note in session.scalars(query)}
