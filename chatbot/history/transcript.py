"""One conversation as the transcript view shows and exports it, with its owner's feedback."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import asdict, dataclass, fields, replace

from sqlalchemy import and_, select
from sqlalchemy.orm import Session

from chatbot import export, store
from chatbot.errors import NotFoundError
from chatbot.history.notes import notes_for
from chatbot.history.tags import tags_of
from chatbot.models import Conversation, Feedback, Message, User
from chatbot.store import Actor


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
    note: str | None = None  # an analyst's note on the answer (notes.py)
    corrected_answer: str | None = None  # what the answer should have said


_STORED = [f.name for f in fields(TranscriptMessage)][:-4]  # the models.Message attributes


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
    tags: tuple[str, ...] = ()

    def rows(self) -> list[dict]:
        """The messages as export rows (keys as in ``export.EXPORT_COLUMNS``)."""
        common = {"conversation_id": self.id, "conversation_title": self.title, "username": self.owner,
                  "tags": export.tags_text(self.tags)}
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


def aware(value: dt.datetime) -> dt.datetime:
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def transcript(session: Session, actor: Actor, conversation_id: int) -> Transcript:
    """A conversation with every message and its owner's feedback.

    Admins may read anyone's, deleted ones included; reading another user's is audited ("view").
    """
    query = select(Conversation, User.username).join(User, User.id == Conversation.owner_id)
    query = query.where(Conversation.id == conversation_id)
    query = query.where(store.visible_to(actor))
    if not actor.is_admin:
        query = query.where(Conversation.deleted.is_(False))
    found = session.execute(query).one_or_none()
    if found is None:
        raise NotFoundError("This conversation does not exist or was deleted.")
    conversation, owner = found
    if conversation.owner_id != actor.id:
        store.audit(session, actor, "view", store.conversation_label(conversation.id, conversation.title, owner))
    messages = list(_transcript_messages(session, conversation))
    kept = notes_for(session, actor, [m.id for m in messages if m.role == "assistant"])
    messages = [replace(m, note=kept[m.id].note or None, corrected_answer=kept[m.id].corrected_answer)
                if m.id in kept else m for m in messages]
    return Transcript(
        id=conversation.id, title=conversation.title, owner=owner,
        created_at=aware(conversation.created_at), updated_at=aware(conversation.updated_at),
        deleted=conversation.deleted, messages=tuple(messages),
        tags=tuple(tags_of(session, actor, [conversation.id]).get(conversation.id, [])),
    )


def _transcript_messages(session: Session, conversation: Conversation) -> Iterator[TranscriptMessage]:
    query = (
        select(Message, Feedback.score, Feedback.comment)
        .outerjoin(Feedback, and_(Feedback.message_id == Message.id, Feedback.user_id == conversation.owner_id))
        .where(Message.conversation_id == conversation.id).order_by(Message.id)
    )
    names = _STORED
    for message, score, comment in session.execute(query):
        values = {name: getattr(message, name) for name in names}
        values["created_at"] = aware(message.created_at)
        yield TranscriptMessage(**values, feedback_score=score, feedback_comment=comment)
