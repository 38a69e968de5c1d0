"""One question-and-answer turn: validate, save the question, stream the answer, save it."""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from chatbot import store
from chatbot.config import DEFAULT_UPLOAD_TYPES
from chatbot.engine import Answer, Attachment, ChatBackend, Output, Progress, Token, combined_text, repaired
from chatbot.errors import ChatbotError, EngineError, InputError
from chatbot.flows import Prepared, Route, extension
from chatbot.store import Actor

logger = logging.getLogger(__name__)

# C0 controls other than tab, newline and carriage return; they are never meaningful in a question.
CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def clean_question(text: str | None, *, max_chars: int) -> str | None:
    """The question as it will be sent, or None when there is nothing to ask."""
    if text is None:
        return None
    cleaned = CONTROL_CHARS.sub("", text).strip()
    if not cleaned:
        return None
    if len(cleaned) > max_chars:
        raise InputError(
            f"Your question is {len(cleaned):,} characters long; the limit is {max_chars:,}. "
            "Shorten it or split it into several questions. Nothing was sent."
        )
    return cleaned


def pair_turns(messages: list) -> list[tuple]:
    """(question, answer) for each turn of a transcript in order; either may be None (a question
    not answered yet, or an answer whose question is older than the messages shown)."""
    turns = []
    for message in messages:
        if message.role == "assistant" and turns and turns[-1][1] is None and turns[-1][0] is not None:
            turns[-1] = (turns[-1][0], message)
        elif message.role == "assistant":
            turns.append((None, message))
        else:
            turns.append((message, None))
    return turns


INTERRUPTED = "The answer was interrupted before it finished."
STOPPED = "You stopped this answer."


@dataclass
class Turn:
    """A question saved in a conversation, and the answer streaming for it.

    ``begin()`` saves the answer's row, marked interrupted; iterating ``chunks()`` streams the
    answer and saves its text every ``save_every`` seconds, so a server that dies mid-answer
    leaves what had arrived. Afterwards ``message_id``, ``status`` and ``error`` say what was
    saved. ``stop()`` (from any thread) ends the stream at its next event and saves the partial
    answer as ``stopped``; closing the iterator early saves it as ``interrupted``. Either closes
    the engine's connection, so Langflow cancels the run.
    """

    db: sessionmaker[Session]
    actor: Actor
    conversation_id: int
    session_id: str
    question: str
    question_id: int
    backend: ChatBackend
    route: Route | None = None  # the flow and its tweaks; None: ``backend`` alone
    attachments: tuple[Attachment, ...] = ()  # new files, uploaded when the turn starts
    files: list[dict] = field(default_factory=list)  # the question's files already in Langflow
    tweaks: Mapping | None = None  # an admin's tweaks for this one question
    save_every: float = 1.0
    status: str | None = None
    error: ChatbotError | None = None
    message_id: int | None = None
    text: str = ""
    metadata: dict = field(default_factory=dict)
    _live: dict[str, list[str]] = field(default_factory=dict, repr=False)  # output id -> its tokens
    _lengths: dict[str, int] = field(default_factory=dict, repr=False)
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)
    progress: Progress = field(default_factory=Progress)  # what an agent is doing, and its steps so far

    def begin(self) -> None:
        """The answer's row, before the engine is called: interrupted until it is finished."""
        if self.message_id is not None:
            return
        with self.db.begin() as session:
            self.message_id = _begin_answer(session, self.actor, self.question_id, self.backend)

    def stop(self) -> None:
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def live_outputs(self, tail: int | None = None) -> list[tuple[str, int]]:
        """The answer so far, in the order the outputs began: (text, its length) for each; with
        ``tail``, only about the last ``tail`` characters of each text, at the same cost at any
        length (safe from any thread: the stream only appends)."""
        shown = []
        for output, tokens in list(self._live.items()):
            length = self._lengths.get(output, 0)
            if tail is None or length <= tail:
                text = repaired("".join(tokens))
                shown.append((text, len(text)))
                continue
            picked, size = [], 0
            for token in reversed(tokens):
                if size >= tail:
                    break
                picked.append(token)
                size += len(token)
            shown.append((repaired("".join(reversed(picked))), length))
        return shown

    def chunks(self) -> Iterator[str]:
        started, first, answer, prepared = time.perf_counter(), None, None, None
        self.status = "interrupted"
        self.begin()
        events = iter(())
        saved = started
        try:
            prepared = self._prepare()
            events = self.backend.stream(self.question, session_id=self.session_id, tweaks=prepared.tweaks or None)
            for event in events:
                if self._stop.is_set():
                    self.status = "stopped"
                    break
                if isinstance(event, Progress):
                    self.progress = event
                elif isinstance(event, Token):
                    first = first or time.perf_counter()
                    self._live.setdefault(event.output, []).append(event.text)
                    self._lengths[event.output] = self._lengths.get(event.output, 0) + len(event.text)
                    if time.perf_counter() - saved >= self.save_every:
                        self._save_progress(self._partial())
                        saved = time.perf_counter()
                    yield event.text
                elif isinstance(event, Answer):
                    answer = event
            else:
                self.status = "complete" if answer is not None else "error"
        except (EngineError, InputError) as exc:  # InputError: a file the flow cannot take
            self.status, self.error = "error", exc
            logger.warning("answer failed in conversation %s: %s", self.conversation_id, exc.detail)
        finally:
            if hasattr(events, "close"):
                events.close()
            self._finish(answer, self._partial(), started, first, prepared)

    def _prepare(self) -> Prepared:
        """The flow's provenance, the uploads and the tweaks; the question keeps its files' paths."""
        route = self.route or Route(self.backend)
        if self.tweaks:  # an admin trying a tweak: kept with the answer, and in the log
            logger.info("%s sends tweaks %s to flow %s", self.actor.username, json.dumps(self.tweaks), route.key)
        prepared = route.prepare(self.attachments, self.files, self.tweaks)
        if self.attachments:
            with self.db.begin() as session:
                store.set_question_files(session, self.actor, self.question_id, prepared.files)
        return prepared

    def _partial(self) -> str:
        texts = self.live_outputs()
        return combined_text([Output(text) for text, _length in texts]) if texts else ""

    @property
    def _flow_id(self) -> str | None:
        return _flow_of(self.backend)

    def _save_progress(self, partial: str) -> None:
        """Best effort: a failed intermediate save must not cut the answer off; the last one counts."""
        try:
            with self.db.begin() as session:
                store.update_answer(session, self.actor, self.message_id, content=partial)
        except SQLAlchemyError as exc:
            logger.warning("could not save the partial answer %s yet: %s", self.message_id, exc)

    def _finish(
        self, answer: Answer | None, partial: str, started: float, first: float | None, prepared: Prepared | None,
    ) -> None:
        finished = time.perf_counter()
        complete = answer is not None and self.status == "complete"
        self.text = repaired(answer.text) if complete else partial
        usage = (answer.usage or {}) if answer else {}
        info = prepared.info if prepared else None
        steps = answer.steps if answer else self.progress.steps  # a stopped agent keeps the steps it took
        self.metadata = {
            "engine": self.backend.engine,
            "flow_id": self._flow_id,
            "flow_name": info.name if info else None,
            "flow_version": info.version if info else None,
            "model": answer.model if answer else None,
            "run_id": answer.run_id if answer else None,
            "tweaks": prepared.tweaks or None if prepared else None,
            "steps": [step.stored() for step in steps] or None,
            "latency_ms": round((finished - started) * 1000),
            "ttft_ms": round((first - started) * 1000) if first else None,
            "input_tokens": usage.get("input_tokens"),
            "output_tokens": usage.get("output_tokens"),
            "total_tokens": usage.get("total_tokens"),
            "outputs": [asdict(o) | {"text": repaired(o.text)} for o in answer.outputs] if complete and answer.outputs else None,
        }
        error = {"interrupted": INTERRUPTED, "stopped": STOPPED}.get(self.status) or (
            str(self.error) if self.error else None)
        with self.db.begin() as session:
            store.update_answer(
                session, self.actor, self.message_id, content=self.text, status=self.status, error=error,
                **self.metadata,
            )


def ask(
    db: sessionmaker[Session], actor: Actor, conversation_id: int | None, question: str,
    route: Route | ChatBackend, *, max_chars: int, attachments: tuple[Attachment, ...] = (),
    limits: FileLimits | None = None, tweaks: Mapping | None = None,
) -> Turn | None:
    """Save the question (in a new conversation, asking ``route``'s flow, when ``conversation_id``
    is None) and return its Turn; its files are uploaded when the turn starts.

    Returns None for an empty question. The question (with its files' names, sizes and types) is
    committed before any engine is called. A file past ``limits`` is refused, and nothing saved.
    """
    route = route if isinstance(route, Route) else Route(route)
    cleaned = clean_question(question, max_chars=max_chars)
    if cleaned is None and attachments:
        cleaned = "Here is a file." if len(attachments) == 1 else "Here are some files."
    if cleaned is None:
        return None
    (limits or FileLimits()).check(attachments)
    files = [{"name": a.name, "size": a.size, "type": a.type, "path": None} for a in attachments] or None
    with db.begin() as session:
        if conversation_id is None:
            conversation = store.create_conversation(session, actor, title=cleaned, flow=route.key)
        else:
            conversation = store.get_conversation(session, actor, conversation_id)
        asked = store.append_message(session, actor, conversation.id, role="user", content=cleaned, files=files)
        ids = conversation.id, conversation.langflow_session_id, asked.id
    return Turn(db, actor, ids[0], ids[1], cleaned, ids[2], route.backend, route=route,
                attachments=tuple(attachments), tweaks=tweaks)


def regenerate(
    db: sessionmaker[Session], actor: Actor, conversation_id: int, route: Route | ChatBackend,
    *, tweaks: Mapping | None = None,
) -> Turn:
    """Answer the conversation's last question again, with the files it had (Retry after a failure
    is the same): the answer it has stays as an earlier version."""
    route = route if isinstance(route, Route) else Route(route)
    with db.begin() as session:
        conversation = store.get_conversation(session, actor, conversation_id)
        question, _answer = store.last_turn(session, actor, conversation_id)
        ids = conversation.langflow_session_id, question.content, question.id, list(question.files or [])
    return Turn(db, actor, conversation_id, ids[0], ids[1], ids[2], route.backend, route=route, files=ids[3],
                tweaks=tweaks)


def edit(
    db: sessionmaker[Session], actor: Actor, conversation_id: int, question: str, route: Route | ChatBackend,
    *, max_chars: int, tweaks: Mapping | None = None,
) -> Turn | None:
    """Ask the conversation's last question again as edited, with the files it had; None when the
    edit is empty. The question and answer as they were stay as earlier versions of the turn.
    """
    route = route if isinstance(route, Route) else Route(route)
    cleaned = clean_question(question, max_chars=max_chars)
    if cleaned is None:
        return None
    with db.begin() as session:
        conversation = store.get_conversation(session, actor, conversation_id)
        asked = store.edit_question(session, actor, conversation_id, cleaned)
        # In the same transaction, so the old answer is never left current under the new question.
        answer_id = _begin_answer(session, actor, asked.id, route.backend)
        ids = conversation.langflow_session_id, asked.id, answer_id, list(asked.files or [])
    return Turn(db, actor, conversation_id, ids[0], cleaned, ids[1], route.backend, route=route, files=ids[3],
                tweaks=tweaks, message_id=ids[2])


@dataclass(frozen=True)
class FileLimits:
    """What may be attached to a question (the settings MAX_UPLOAD_MB and UPLOAD_TYPES)."""

    max_mb: float = 20.0
    types: tuple[str, ...] = DEFAULT_UPLOAD_TYPES

    def check(self, attachments: tuple[Attachment, ...]) -> None:
        """Refuse a file of another type or past the size limit, saying which and why."""
        for attachment in attachments:
            kind = extension(attachment.name)
            if kind not in self.types:
                allowed = ", ".join(self.types) if self.types else "none"
                raise InputError(f"{attachment.name!r} is not a file type this app takes (it takes: {allowed}). "
                                 "Nothing was sent.")
            if attachment.size > self.max_mb * 1024 * 1024:
                raise InputError(f"{attachment.name!r} is {attachment.size / 1024**2:.1f} MB; the limit is "
                                 f"{self.max_mb:g} MB. Nothing was sent.")


def _begin_answer(session: Session, actor: Actor, question_id: int, backend: ChatBackend) -> int:
    answer = store.begin_answer(
        session, actor, question_id, error=INTERRUPTED, engine=backend.engine, flow_id=_flow_of(backend),
    )
    return answer.id


def _flow_of(backend: ChatBackend) -> str | None:
    return backend.label if backend.engine == "langflow" else None
