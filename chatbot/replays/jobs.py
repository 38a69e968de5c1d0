"""Making, reading and cancelling replays, and the analysts' verdicts on their answers.

A replay copies its questions (with the originals' answers, context and feedback) into
``replay_items`` when it is made; a worker (``worker.py``) asks them again. Who sees a replay is
``replays_visible_to`` (the owner; an admin every one), and only the conversations an actor can
see can be replayed (``store.visible_to``, through the history filters). Functions take
``session`` and never commit.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import ColumnElement, case, delete, func, select, true, update
from sqlalchemy.orm import Session

from chatbot import store
from chatbot.config import NOTES
from chatbot.errors import InputError, NotFoundError
from chatbot.history.evaluation import EVAL_FIELDS, iter_turns
from chatbot.history.filters import HistoryFilter
from chatbot.history.notes import notes_for
from chatbot.models import (
    REPLAY_MODES,
    STATUSES,
    VERDICTS,
    Conversation,
    Feedback,
    Message,
    Replay,
    ReplayItem,
    User,
    utcnow,
)
from chatbot.store import Actor

NAME_CHARS = 250  # replays.name
SHOW = ("all", "changed", "worse", "better", "unjudged", "original_down", "errors")
DONE = ("complete", "error", "cancelled")  # an item's states once it has run (or never will)
FINISHED = ("done", "cancelled", "failed")  # a replay's states once it has ended
NOT_YOURS = "This replay does not exist or is not yours."


def replays_visible_to(actor: Actor) -> ColumnElement[bool]:
    """The replays the actor may read and change: their own, or every one for an admin.

    The one place a replay's owner is compared with the actor (a structure test checks it).
    """
    return true() if actor.is_admin else Replay.owner_id == actor.id


# -- the questions a replay asks ------------------------------------------------------------


@dataclass(frozen=True)
class Question:
    """One past question, with its answer as it was: what a replay item copies."""

    conversation_id: int | None
    question_id: int | None
    answer_id: int | None
    question: str
    context: list[dict] = field(default_factory=list)  # earlier turns, [{"role", "content"}]
    files: list[dict] | None = None
    original_answer: str | None = None
    original_status: str | None = None
    original_flow: str | None = None  # "Notes RAG v7", as store.version_label writes it
    original_latency_ms: int | None = None
    original_ttft_ms: int | None = None
    original_tokens: int | None = None
    original_feedback: int | None = None  # 1 = 👍, 0 = 👎
    original_comment: str | None = None
    corrected_answer: str | None = None


def questions_from_filters(session: Session, actor: Actor, filters: HistoryFilter, *, limit: int) -> list[Question]:
    """The answered turns of the conversations the actor sees through ``filters``, in the history
    table's order: the current version of each answer, whatever its status (failed ones count)."""
    records, matched = [], 0
    for record in iter_turns(session, actor, filters, statuses=STATUSES):
        matched += 1
        if matched <= limit:
            records.append(record)
    if not matched:
        raise InputError("No answered questions match these filters. Widen them and try again.")
    _check_limit(matched, limit, "These filters match")
    return _with_answers(session, records)


def _check_limit(count: int, limit: int, said: str) -> None:
    if count > limit:
        raise InputError(
            f"{said} {count:,} questions; a replay takes at most {limit:,} (REPLAY_MAX_QUESTIONS). "
            "Narrow them (a date range, a tag) and try again."
        )


def _with_answers(session: Session, records: list[dict]) -> list[Question]:
    """Evaluation records as Questions, with what the records leave out of each answer (status,
    latency, time to first token, tokens, version) and the question's files: one query."""
    ids = [r["answer_id"] for r in records] + [r["question_id"] for r in records]
    rows = {
        row.id: row for row in session.execute(
            select(Message.id, Message.status, Message.latency_ms, Message.ttft_ms, Message.total_tokens,
                   Message.flow_name, Message.flow_version, Message.flow_id, Message.engine, Message.files)
            .where(Message.id.in_(ids))
        )
    }  # fmt: skip
    questions = []
    for record in records:
        answer, asked = rows[record["answer_id"]], rows.get(record["question_id"])
        questions.append(Question(
            conversation_id=record["conversation_id"], question_id=record["question_id"],
            answer_id=record["answer_id"], question=record["question"], context=record["context"],
            files=list(asked.files) if asked is not None and asked.files else None,
            original_answer=record["answer"], original_status=answer.status,
            original_flow=store.version_label(answer.flow_name or answer.flow_id or answer.engine, answer.flow_version)
            or None,
            original_latency_ms=answer.latency_ms, original_ttft_ms=answer.ttft_ms, original_tokens=answer.total_tokens,
            original_feedback=record["feedback_score"], original_comment=record["feedback_comment"],
            corrected_answer=record["corrected_answer"],
        ))  # fmt: skip
    return questions


def questions_from_file(
    session: Session, actor: Actor, name: str, data: bytes, *, limit: int
) -> tuple[list[Question], list[str]]:
    """The questions of an evaluation file (JSONL or CSV with ``EVAL_FIELDS``), and notices.

    A record with an ``answer_id`` is read from the database, as stored now, when the actor can
    see its conversation; one the actor cannot see is left out and counted in a notice. A record
    without ids (a hand-written dataset) keeps the file's question, answer and context.
    """
    records = _records_of(name, data)
    if not records:
        raise InputError(f"{name} has no questions.")
    _check_limit(len(records), limit, f"{name} holds")
    stored = _stored_turns(session, actor, [r["answer_id"] for _line, r in records if r["answer_id"] is not None])
    seen = _visible_conversations(session, actor, [r["conversation_id"] for _l, r in records if r["conversation_id"]])
    questions, hidden = [], 0
    for _line, record in records:
        if record["answer_id"] is not None:
            found = stored.get(record["answer_id"])
            hidden += found is None
            questions += [found] if found else []
        elif record["conversation_id"] is not None and record["conversation_id"] not in seen:
            hidden += 1
        else:
            questions.append(_written(record))
    notices = []
    if hidden:
        notices.append(f"{hidden} question{'s' if hidden != 1 else ''} belong{'s' if hidden == 1 else ''} to "
                       "conversations you cannot see; they were left out.")
    if not questions:
        raise InputError(f"None of the questions in {name} can be replayed: "
                         + (notices[0] if notices else "it has none."))
    return questions, notices


def _records_of(name: str, data: bytes) -> list[tuple[int, dict]]:
    """(line number, record) for each record of the file, checked; InputError names a bad line."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InputError(f"{name} is not UTF-8 text.") from None
    jsonl = name.lower().endswith((".jsonl", ".json", ".ndjson")) or text.lstrip().startswith("{")
    raw = _jsonl_rows(name, text) if jsonl else _csv_rows(name, text)
    return [(line, _record(name, line, row)) for line, row in raw]


def _jsonl_rows(name: str, text: str) -> Iterable[tuple[int, dict]]:
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as exc:
            raise InputError(f"{name} line {number} is not valid JSON ({exc.msg}).") from None
        if not isinstance(row, dict):
            raise InputError(f"{name} line {number} is not a JSON object.")
        yield number, row


def _csv_rows(name: str, text: str) -> Iterable[tuple[int, dict]]:
    reader = csv.DictReader(io.StringIO(text, newline=""))
    if not reader.fieldnames or "question" not in reader.fieldnames:
        raise InputError(f"{name} line 1: a CSV evaluation file needs a 'question' column "
                         f"(its columns are {', '.join(EVAL_FIELDS)}).")
    for row in reader:
        row = {key: (value if value != "" else None) for key, value in row.items() if key}
        try:
            row["context"] = json.loads(row["context"]) if row.get("context") else []
        except ValueError:
            raise InputError(f"{name} line {reader.line_num}: its context is not JSON.") from None
        yield reader.line_num, row


def _record(name: str, line: int, row: dict) -> dict:
    question = row.get("question")
    if not isinstance(question, str) or not question.strip():
        raise InputError(f"{name} line {line} has no question.")
    context = row.get("context") or []
    if not isinstance(context, list) or not all(
        isinstance(turn, dict) and isinstance(turn.get("content"), str) and turn.get("role") in ("user", "assistant")
        for turn in context
    ):
        raise InputError(f"{name} line {line}: its context must be a list of {{\"role\", \"content\"}} turns.")
    record = {"question": store.storable(question), "context": [
        {"role": turn["role"], "content": store.storable(turn["content"])} for turn in context]}
    for key in ("conversation_id", "question_id", "answer_id", "feedback_score"):
        record[key] = _whole(name, line, key, row.get(key))
    for key in ("answer", "corrected_answer", "feedback_comment"):
        value = row.get(key)
        record[key] = store.storable(str(value)) if value is not None else None
    return record


def _whole(name: str, line: int, key: str, value) -> int | None:
    if value is None or value == "":
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    raise InputError(f"{name} line {line}: {key} must be a whole number, not {value!r}.")


def _written(record: dict) -> Question:
    """A record as the file has it (a hand-written dataset, or one without ids)."""
    score = record["feedback_score"]
    return Question(
        conversation_id=record["conversation_id"], question_id=None, answer_id=None,
        question=record["question"], context=record["context"], original_answer=record["answer"],
        original_status="complete" if record["answer"] is not None else None,
        original_feedback=score if score in (0, 1) else None, original_comment=record["feedback_comment"],
        corrected_answer=record["corrected_answer"],
    )  # fmt: skip


def _visible_conversations(session: Session, actor: Actor, ids: list[int]) -> set[int]:
    if not ids:
        return set()
    query = select(Conversation.id).where(Conversation.id.in_(ids), store.visible_to(actor),
                                          Conversation.deleted.is_(False))
    return set(session.scalars(query))


def _stored_turns(session: Session, actor: Actor, answer_ids: list[int]) -> dict[int, Question]:
    """The turns of these answers as stored now, by answer id: only those the actor can see."""
    if not answer_ids:
        return {}
    answers = {
        answer.id: answer for answer in session.scalars(
            select(Message).join(Conversation, Conversation.id == Message.conversation_id)
            .where(Message.id.in_(answer_ids), Message.role == "assistant", store.visible_to(actor),
                   Conversation.deleted.is_(False))
        )
    }  # fmt: skip
    if not answers:
        return {}
    conversations = {answer.conversation_id for answer in answers.values()}
    transcript: dict[int, list[Message]] = {}
    for message in session.scalars(
        select(Message).where(Message.conversation_id.in_(conversations)).order_by(Message.id)
    ):
        transcript.setdefault(message.conversation_id, []).append(message)
    notes = notes_for(session, actor, answers)
    feedback = {
        f.message_id: f for f in session.scalars(
            select(Feedback).join(Message, Message.id == Feedback.message_id)
            .join(Conversation, Conversation.id == Message.conversation_id)
            .where(Feedback.message_id.in_(list(answers)), Feedback.user_id == Conversation.owner_id)
        )
    }  # fmt: skip
    turns = {}
    for answer in answers.values():
        messages = transcript[answer.conversation_id]
        asked = next((m for m in messages if m.id == answer.reply_to), None) or next(
            (m for m in reversed(messages) if m.role == "user" and m.id < answer.id), None)
        if asked is None:
            continue
        context = [{"role": m.role, "content": m.content} for m in messages if m.current and m.id < asked.id]
        note, rating = notes.get(answer.id), feedback.get(answer.id)
        turns[answer.id] = Question(
            conversation_id=answer.conversation_id, question_id=asked.id, answer_id=answer.id,
            question=asked.content, context=context, files=list(asked.files) if asked.files else None,
            original_answer=answer.content, original_status=answer.status,
            original_flow=store.version_label(answer.flow_name or answer.flow_id or answer.engine, answer.flow_version)
            or None,
            original_latency_ms=answer.latency_ms, original_ttft_ms=answer.ttft_ms, original_tokens=answer.total_tokens,
            original_feedback=rating.score if rating else None, original_comment=rating.comment if rating else None,
            corrected_answer=note.corrected_answer if note else None,
        )  # fmt: skip
    return turns


# -- replays ---------------------------------------------------------------------------------


def create_replay(
    session: Session, actor: Actor, questions: list[Question], *, flow: str, flow_label: str, source: str,
    name: str | None = None, mode: str = "context", tweaks: dict | None = None, filters: dict | None = None,
) -> Replay:
    """A queued replay of ``questions`` (positions 1..n) against ``flow``; a worker picks it up.

    The notes engine has no memory, so a replay of it asks the questions alone whatever ``mode``.
    """
    if not questions:
        raise InputError("A replay needs at least one question.")
    if mode not in REPLAY_MODES:
        raise InputError(f"Unknown replay mode {mode!r}: use {' or '.join(REPLAY_MODES)}.")
    if not flow:
        raise InputError("Pick the flow to replay the questions against.")
    if tweaks is not None and not (isinstance(tweaks, dict) and all(isinstance(v, dict) for v in tweaks.values())):
        raise InputError("Tweaks are a JSON object of objects keyed by component id.")
    source = store.one_line(source, what="source", max_chars=400)
    label = store.one_line(flow_label, what="flow label", max_chars=200) or flow
    name = store.one_line(name or f"{source} → {label}", what="replay name", max_chars=NAME_CHARS)
    replay = Replay(
        owner_id=actor.id, name=name or f"{source} → {label}", source=source, filters=filters or None, flow=flow,
        flow_label=label, tweaks=tweaks or None, mode="questions" if flow == NOTES else mode, status="queued",
        total=len(questions), created_at=utcnow(),
    )  # fmt: skip
    session.add(replay)
    session.flush()
    session.add_all(_item(replay.id, position, q) for position, q in enumerate(questions, 1))
    session.flush()
    return replay


def _item(replay_id: int, position: int, question: Question) -> ReplayItem:
    return ReplayItem(
        replay_id=replay_id, position=position, conversation_id=question.conversation_id,
        question_id=question.question_id, answer_id=question.answer_id, question=store.storable(question.question),
        context=list(question.context or []) or None, files=question.files or None,
        original_answer=question.original_answer, original_status=question.original_status,
        original_flow=question.original_flow, original_latency_ms=question.original_latency_ms,
        original_ttft_ms=question.original_ttft_ms, original_tokens=question.original_tokens,
        original_feedback=question.original_feedback, original_comment=question.original_comment,
        corrected_answer=question.corrected_answer, status="pending", attempts=0,
    )  # fmt: skip


@dataclass(frozen=True)
class ReplaySummaryRow:
    """A replay as the list shows it."""

    id: int
    name: str
    owner: str
    flow_label: str
    status: str
    total: int
    done: int  # items complete, failed or cancelled
    errors: int
    created_at: datetime
    finished_at: datetime | None


def _counts():
    """Per replay: items done (complete, error, cancelled) and failed; a subquery."""
    return (
        select(ReplayItem.replay_id,
               func.count(case((ReplayItem.status.in_(DONE), 1))).label("done"),
               func.count(case((ReplayItem.status == "error", 1))).label("errors"))
        .group_by(ReplayItem.replay_id).subquery()
    )  # fmt: skip


def list_replays(session: Session, actor: Actor) -> list[ReplaySummaryRow]:
    """The replays the actor sees, newest first."""
    counts = _counts()
    query = (
        select(Replay, User.username, func.coalesce(counts.c.done, 0), func.coalesce(counts.c.errors, 0))
        .join(User, User.id == Replay.owner_id)
        .outerjoin(counts, counts.c.replay_id == Replay.id)
        .where(replays_visible_to(actor))
        .order_by(Replay.created_at.desc(), Replay.id.desc())
    )
    return [
        ReplaySummaryRow(id=r.id, name=r.name, owner=owner, flow_label=r.flow_label, status=r.status, total=r.total,
                         done=done, errors=errors, created_at=r.created_at, finished_at=r.finished_at)
        for r, owner, done, errors in session.execute(query)
    ]  # fmt: skip


def _visible(session: Session, actor: Actor, replay_id: int, *, lock: bool = False) -> tuple[Replay, str]:
    """The replay and its owner's username; ``lock`` takes its row lock (the worker's order: the
    replay, then its items)."""
    query = (
        select(Replay, User.username).join(User, User.id == Replay.owner_id)
        .where(Replay.id == replay_id, replays_visible_to(actor))
    )
    found = session.execute(query.with_for_update(of=Replay) if lock else query).one_or_none()
    if found is None:
        raise NotFoundError(NOT_YOURS)
    return found[0], found[1]


def replay_label(replay: Replay, owner: str) -> str:
    """'replay 4 “Billing → Flow B” of bob': how the audit log names a replay."""
    return f"replay {replay.id} “{replay.name}” of {owner}"


def get_replay(session: Session, actor: Actor, replay_id: int) -> Replay:
    """The replay, if the actor may see it; an admin opening another's is audited ("replay.view")."""
    replay, owner = _visible(session, actor, replay_id)
    if owner != actor.username:
        store.audit(session, actor, "replay.view", replay_label(replay, owner))
    return replay


@dataclass(frozen=True)
class Progress:
    """How far a replay has got, for the page's progress bar."""

    status: str
    total: int
    done: int  # complete + error + cancelled
    complete: int
    errors: int
    running: int

    @property
    def fraction(self) -> float:
        return min(1.0, self.done / self.total) if self.total else 1.0


def progress(session: Session, actor: Actor, replay_id: int) -> Progress:
    """The replay's status and its items' counts (the page polls it: not audited)."""
    replay, _owner = _visible(session, actor, replay_id)
    counts = dict(session.execute(
        select(ReplayItem.status, func.count()).where(ReplayItem.replay_id == replay_id).group_by(ReplayItem.status)
    ).all())  # fmt: skip
    return Progress(
        status=replay.status, total=replay.total, done=sum(counts.get(state, 0) for state in DONE),
        complete=counts.get("complete", 0), errors=counts.get("error", 0), running=counts.get("running", 0),
    )  # fmt: skip


def cancel_replay(session: Session, actor: Actor, replay_id: int) -> None:
    """Stop the replay: its waiting questions are cancelled now, a running one by its worker
    within a second. A replay that has ended stays as it ended."""
    replay, _owner = _visible(session, actor, replay_id, lock=True)
    if replay.status in FINISHED:
        return
    now = utcnow()
    replay.status, replay.finished_at = "cancelled", now
    session.execute(
        update(ReplayItem).where(ReplayItem.replay_id == replay_id, ReplayItem.status == "pending")
        .values(status="cancelled", finished_at=now)
    )  # fmt: skip
    session.flush()


def _normalized(text: str | None) -> str:
    return " ".join((text or "").split())


def changed(item) -> bool:
    """The replayed answer says something else than the original (whitespace aside); False until it
    has an answer (a failed replay counts as an error, not a change)."""
    return item.status == "complete" and _normalized(item.original_answer) != _normalized(item.answer)


def unjudged(item) -> bool:
    """Replayed (answered or failed) and not yet marked better, same or worse: a question still
    waiting for its turn is not counted."""
    return item.status in ("complete", "error") and item.verdict is None


def _shown(item: ReplayItem, show: str) -> bool:
    return {
        "all": True,
        "changed": changed(item),
        "worse": item.verdict == "worse",
        "better": item.verdict == "better",
        "unjudged": unjudged(item),
        "original_down": item.original_feedback == 0,
        "errors": item.status == "error" or item.original_status not in (None, "complete"),
    }[show]


def items(session: Session, actor: Actor, replay_id: int, *, show: str = "all") -> list[ReplayItem]:
    """The replay's questions in order; ``show`` keeps some of them (one of ``SHOW``)."""
    if show not in SHOW:
        raise InputError(f"Unknown row filter {show!r}: use one of {', '.join(SHOW)}.")
    _visible(session, actor, replay_id)
    rows = session.scalars(select(ReplayItem).where(ReplayItem.replay_id == replay_id).order_by(ReplayItem.position))
    return shown(rows, show)


def shown(rows, show: str) -> list:
    """The questions (in their order) that the row filter ``show`` keeps: the page filters the
    items it has read for the summary instead of reading them again."""
    if show not in SHOW:
        raise InputError(f"Unknown row filter {show!r}: use one of {', '.join(SHOW)}.")
    return [item for item in rows if _shown(item, show)]


def set_verdict(session: Session, actor: Actor, item_id: int, verdict: str | None) -> None:
    """Mark a replayed answer better, same or worse than the original; None clears the mark."""
    if verdict is not None and verdict not in VERDICTS:
        raise InputError(f"Unknown verdict {verdict!r}: use one of {', '.join(VERDICTS)}.")
    visible = select(Replay.id).where(replays_visible_to(actor))
    item = session.scalar(select(ReplayItem).where(ReplayItem.id == item_id, ReplayItem.replay_id.in_(visible)))
    if item is None:
        raise NotFoundError("This question of a replay does not exist or is not yours.")
    if verdict is not None and item.status not in ("complete", "error"):
        raise InputError("This question has not been replayed yet: judge it once its answer is in.")
    item.verdict = verdict
    item.verdict_by = (actor.id or None) if verdict else None
    item.verdict_at = utcnow() if verdict else None
    session.flush()


def delete_replay(session: Session, actor: Actor, replay_id: int) -> None:
    """Delete the replay and its answers and verdicts (a running worker's result is then dropped)."""
    _visible(session, actor, replay_id, lock=True)
    session.execute(delete(ReplayItem).where(ReplayItem.replay_id == replay_id))
    session.execute(delete(Replay).where(Replay.id == replay_id))
