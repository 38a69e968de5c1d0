"""Evaluation sets: the answered turns of a filtered set, as JSONL or CSV with stable field names.

One record per answered turn (the current version of a completed answer and the question it
answers), in the history table's order, then the turn's order. ``EVAL_FIELDS`` is the contract the
README documents; a field is never renamed or removed, only added at the end.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Collection, Iterator
from typing import BinaryIO

from sqlalchemy import select
from sqlalchemy.orm import Session

from chatbot import export
from chatbot.history.filters import SORTS, HistoryFilter, conversation_filters, dialect_of, end_of, start_of
from chatbot.history.notes import notes_for
from chatbot.history.tags import tags_of
from chatbot.history.transcript import aware
from chatbot.models import Conversation, Feedback, Message, User
from chatbot.store import Actor

EVAL_FIELDS = [
    "conversation_id", "conversation_title", "owner", "question_id", "answer_id", "asked_at", "question",
    "answer", "corrected_answer", "note", "feedback_score", "feedback_comment", "tags", "flow",
    "flow_version", "model", "context",
]  # fmt: skip
FORMATS = {"eval-jsonl": ("Evaluation JSONL", "jsonl", "application/jsonl"),
           "eval-csv": ("Evaluation CSV", "csv", "text/csv")}  # fmt: skip
_BATCH = 500  # turns whose tags, notes and feedback are read at once


def iter_turns(
    session: Session, actor: Actor, filters: HistoryFilter, *, statuses: Collection[str] = ("complete",)
) -> Iterator[dict]:
    """The evaluation records (``EVAL_FIELDS``) of the matching conversations' answered turns.

    ``context`` is the conversation's earlier turns, [{"role", "content"}] in order (current
    versions only). With dates, only turns answered inside the range are kept, with their context.
    ``statuses`` are the answers' that count as answered (a replay takes failed ones too).
    """
    where = conversation_filters(dialect_of(session), actor, filters, deleted_index=False)
    conversations = select(Conversation.id).where(*where)
    query = (
        select(Message, Conversation.title, User.username)
        .join(Conversation, Conversation.id == Message.conversation_id)
        .join(User, User.id == Conversation.owner_id)
        .where(Message.conversation_id.in_(conversations), Message.current.is_(True))
        .order_by(*SORTS[filters.sort], Message.id)
    )
    since = start_of(filters.since) if filters.since else None
    until = end_of(filters.until) if filters.until else None
    pending: list[tuple] = []
    context: list[dict] = []
    questions: dict[int, Message] = {}
    current, last_question = None, None
    for message, title, owner in session.execute(query.execution_options(yield_per=2_000)):
        if message.conversation_id != current:
            current, context, questions, last_question = message.conversation_id, [], {}, None
        if message.role == "user":
            questions[message.id] = last_question = message
        # An answer saved without reply_to (by older code) answers the question before it.
        elif message.status in statuses and (question := questions.get(message.reply_to, last_question)):
            if _inside(message.created_at, since, until):
                earlier = [turn for turn in context if turn["id"] < question.id]
                pending.append((message, question, title, owner, [_turn(t) for t in earlier]))
        context.append({"id": message.id, "role": message.role, "content": message.content})
        if len(pending) >= _BATCH:
            yield from _records(session, actor, pending)
            pending = []
    yield from _records(session, actor, pending)


def _inside(when, since, until) -> bool:
    when = aware(when)
    return (since is None or when >= since) and (until is None or when < until)


def _turn(turn: dict) -> dict:
    return {"role": turn["role"], "content": turn["content"]}


def _records(session: Session, actor: Actor, pending: list[tuple]) -> Iterator[dict]:
    if not pending:
        return
    answers = [answer.id for answer, *_ in pending]
    notes = notes_for(session, actor, answers)
    tags = tags_of(session, actor, {answer.conversation_id for answer, *_ in pending})
    feedback = {
        f.message_id: f for f in session.scalars(
            select(Feedback).join(Message, Message.id == Feedback.message_id)
            .join(Conversation, Conversation.id == Message.conversation_id)
            .where(Feedback.message_id.in_(answers), Feedback.user_id == Conversation.owner_id)
        )
    }  # fmt: skip
    for answer, question, title, owner, context in pending:
        note, rating = notes.get(answer.id), feedback.get(answer.id)
        yield {
            "conversation_id": answer.conversation_id, "conversation_title": title, "owner": owner,
            "question_id": question.id, "answer_id": answer.id,
            "asked_at": aware(question.created_at).isoformat(),
            "question": question.content, "answer": answer.content,
            "corrected_answer": note.corrected_answer if note else None, "note": (note.note or None) if note else None,
            "feedback_score": rating.score if rating else None, "feedback_comment": rating.comment if rating else None,
            "tags": tags.get(answer.conversation_id, []), "flow": answer.flow_name or answer.flow_id or answer.engine,
            "flow_version": answer.flow_version, "model": answer.model, "context": context,
        }  # fmt: skip


def write_jsonl(records: Iterator[dict], out: BinaryIO) -> int:
    """One JSON object per line, UTF-8, keys in ``EVAL_FIELDS`` order."""
    written = 0
    for record in records:
        out.write((json.dumps({name: record[name] for name in EVAL_FIELDS}, ensure_ascii=False) + "\n").encode())
        written += 1
    return written


def write_csv(records: Iterator[dict], out: BinaryIO) -> int:
    """CSV (UTF-8 with a BOM, formulas neutralized): tags joined by '; ', context as JSON text."""
    text = io.TextIOWrapper(out, encoding="utf-8-sig", newline="", write_through=True)
    writer = csv.writer(text)
    writer.writerow(EVAL_FIELDS)
    written = 0
    for record in records:
        row = dict(record, tags="; ".join(record["tags"]), context=json.dumps(record["context"], ensure_ascii=False))
        writer.writerow([_cell(row[name]) for name in EVAL_FIELDS])
        written += 1
    text.detach()
    return written


def _cell(value):
    return export.neutralize_cell(value) if isinstance(value, str) else "" if value is None else value


def write_evaluation(session: Session, actor: Actor, filters: HistoryFilter, fmt: str, out: BinaryIO) -> int:
    """Write the evaluation set of ``filters`` in ``fmt`` ('eval-jsonl' or 'eval-csv'); how many turns."""
    writer = write_jsonl if fmt == "eval-jsonl" else write_csv
    return writer(iter_turns(session, actor, filters), out)
