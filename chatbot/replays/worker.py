"""The replay worker: claims replay items in the database, asks each question again, saves the answer.

The database is the coordinator, so any number of workers (threads of every app replica, or
``python -m chatbot replay worker`` under a scheduler) share one limit: a claim counts the items
running anywhere with a fresh heartbeat and takes one only under ``concurrency``. PostgreSQL
serializes claims with a transaction-scoped advisory lock; SQLite's write transactions already
begin IMMEDIATE (``chatbot/db.py``), which serializes them too.

A worker beats every ``heartbeat_seconds`` for each item it runs, from a thread of its own (a
flow may think for a minute without a token). An item whose heartbeat is older than
``stale_seconds`` is claimable again (its worker died), with ``attempts`` one higher. A result
is saved only while the item is still claimed by the same worker and attempt, so a worker
presumed dead that wakes up cannot overwrite the re-run: nothing is repeated into the results,
nothing is lost. Replays never touch conversations or messages.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import and_, exists, func, or_, select, text, update
from sqlalchemy.orm import Session, sessionmaker

from chatbot import db as database
from chatbot import store
from chatbot.engine import Answer, Output, Progress, Token, combined_text, repaired
from chatbot.errors import ChatbotError, EngineError, InputError
from chatbot.flows import Route
from chatbot.models import Replay, ReplayItem, utcnow

logger = logging.getLogger(__name__)

REPLAY_LOCK_ID = 7_202_617  # pg_advisory_xact_lock: every replica's claims take turns
LIVE = ("queued", "running")  # a replay whose items may still run
CHECK_SECONDS = 0.5  # how often a running item's replay is looked at (cancelled? deleted?)
IDLE_SECONDS = 2.0  # how often an idle worker looks for work
CANCELLED = "The replay was cancelled before this question finished."
WORKER_FAILED = "The replay worker failed on this question; the log has the details."


@dataclass(frozen=True)
class Claim:
    """An item claimed by a worker: saving its result needs the same worker and attempt."""

    item_id: int
    replay_id: int
    worker: str
    attempts: int


def _claimable(stale) -> list:
    """An item that waits, or whose worker stopped beating, in a replay that is still live."""
    live = select(Replay.id).where(Replay.status.in_(LIVE))
    orphaned = and_(ReplayItem.status == "running",
                    or_(ReplayItem.heartbeat_at.is_(None), ReplayItem.heartbeat_at < stale))
    return [or_(ReplayItem.status == "pending", orphaned), ReplayItem.replay_id.in_(live)]


def claim_item(
    session: Session, worker: str, *, limit: int, stale_seconds: float, replay_id: int | None = None
) -> Claim | None:
    """Claim the next item (oldest replay first, then by position) if fewer than ``limit`` items run
    in the whole database; None when the limit is reached or nothing waits. One transaction."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": REPLAY_LOCK_ID})
    now = utcnow()
    stale = now - timedelta(seconds=stale_seconds)
    _drop_orphans_of_ended_replays(session, stale, now)
    running = session.scalar(
        select(func.count()).select_from(ReplayItem)
        .where(ReplayItem.status == "running", ReplayItem.heartbeat_at >= stale)
    )  # fmt: skip
    if running >= limit:
        return None
    query = select(ReplayItem.id, ReplayItem.replay_id, ReplayItem.attempts).where(*_claimable(stale))
    if replay_id is not None:
        query = query.where(ReplayItem.replay_id == replay_id)
    found = session.execute(query.order_by(ReplayItem.replay_id, ReplayItem.position).limit(1)).one_or_none()
    if found is None:
        return None
    item_id, owner_replay, attempts = found
    _lock(session, owner_replay)
    taken = session.execute(
        update(ReplayItem).where(ReplayItem.id == item_id, ReplayItem.attempts == attempts, *_claimable(stale))
        .values(status="running", worker=worker, attempts=attempts + 1, heartbeat_at=now, started_at=now,
                finished_at=None, error=None)
    ).rowcount  # fmt: skip
    if not taken:
        return None
    session.execute(
        update(Replay).where(Replay.id == owner_replay, Replay.status == "queued").values(status="running", started_at=now)
    )  # fmt: skip
    return Claim(item_id, owner_replay, worker, attempts + 1)


def _drop_orphans_of_ended_replays(session: Session, stale, now) -> None:
    """Items left running by a dead worker in a cancelled or failed replay: cancelled (nobody
    would ever claim them, and the progress bar would wait for them)."""
    ended = select(Replay.id).where(Replay.status.in_(("cancelled", "failed")))
    session.execute(
        update(ReplayItem)
        .where(ReplayItem.status == "running", ReplayItem.replay_id.in_(ended),
               or_(ReplayItem.heartbeat_at.is_(None), ReplayItem.heartbeat_at < stale))
        .values(status="cancelled", finished_at=now)
    )  # fmt: skip


def _lock(session: Session, replay_id: int) -> None:
    """Take the replay's row lock first, in every transaction that changes it and its items (the
    same order everywhere: no deadlocks). Two workers finishing its last two questions at once
    would otherwise each still see the other's as running, and neither would end the replay."""
    session.execute(select(Replay.id).where(Replay.id == replay_id).with_for_update())


def _still_mine(claim: Claim):
    return (ReplayItem.id == claim.item_id, ReplayItem.worker == claim.worker,
            ReplayItem.attempts == claim.attempts, ReplayItem.status == "running")


def beat(session: Session, claim: Claim) -> bool:
    """Note that the claim's worker is alive; False when the item is no longer its to run."""
    return bool(session.execute(update(ReplayItem).where(*_still_mine(claim)).values(heartbeat_at=utcnow())).rowcount)


def save_result(session: Session, claim: Claim, **values) -> bool:
    """Save the item's result if it is still this claim's; then end the replay when nothing of it
    is left to run. False (and nothing saved) when another worker took the item over."""
    now = utcnow()
    _lock(session, claim.replay_id)
    saved = session.execute(
        update(ReplayItem).where(*_still_mine(claim)).values(finished_at=now, heartbeat_at=now, **values)
    ).rowcount
    if not saved:
        logger.warning("replay item %s is no longer %s's (attempt %s; taken over, or its replay deleted): "
                       "its result is dropped",
                       claim.item_id, claim.worker, claim.attempts)
        return False
    left = exists().where(ReplayItem.replay_id == claim.replay_id, ReplayItem.status.in_(("pending", "running")))
    session.execute(
        update(Replay).where(Replay.id == claim.replay_id, Replay.status.in_(LIVE), ~left)
        .values(status="done", finished_at=now)
    )  # fmt: skip
    return True


def release(session: Session, claim: Claim) -> None:
    """Give a claimed item back (this worker is stopping): it waits for the next worker at once."""
    session.execute(update(ReplayItem).where(*_still_mine(claim))
                    .values(status="pending", worker=None, heartbeat_at=None, started_at=None))


def fail_replay(session: Session, claim: Claim, error: str) -> None:
    """The replay cannot run at all (its flow is gone, Langflow is not configured): it fails with
    ``error``, the claimed question shows it, and the waiting ones are cancelled."""
    now = utcnow()
    _lock(session, claim.replay_id)
    session.execute(update(ReplayItem).where(*_still_mine(claim)).values(status="error", error=error, finished_at=now))
    session.execute(
        update(ReplayItem).where(ReplayItem.replay_id == claim.replay_id, ReplayItem.status == "pending")
        .values(status="cancelled", finished_at=now)
    )  # fmt: skip
    session.execute(
        update(Replay).where(Replay.id == claim.replay_id, Replay.status.in_(LIVE))
        .values(status="failed", error=error, finished_at=now)
    )  # fmt: skip


# -- running a question ----------------------------------------------------------------------------


@dataclass
class _Job:
    """A claimed item as the worker runs it; ``stop`` is set by the heart thread."""

    claim: Claim
    stop: threading.Event = field(default_factory=threading.Event)
    why: str = ""  # "cancelled" or "lost"
    beaten: float = field(default_factory=time.monotonic)


@dataclass(frozen=True)
class _Work:
    """What an item asks: read once, in a short transaction."""

    question: str
    context: list[dict]
    files: list[dict]
    flow: str
    tweaks: dict | None
    mode: str


class _Stopped(Exception):
    pass


class ReplayWorker:
    """Runs replay items: ``start()`` in daemon threads (the app), ``run_until_idle()`` in the
    calling thread's pool until nothing is left (the command line, tests). Safe to share."""

    def __init__(
        self, db: sessionmaker[Session], route_for: Callable[[str], Route], *, concurrency: int = 2,
        name: str | None = None, heartbeat_seconds: float = 5.0, stale_seconds: float = 30.0,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.db = db
        self.reader = database.readonly_factory(db.kw["bind"])  # looks that never take SQLite's write lock
        self.route_for = route_for
        self.concurrency = concurrency
        self.name = name or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.heartbeat_seconds = heartbeat_seconds
        self.stale_seconds = stale_seconds
        self.finished = 0  # the questions whose results this worker saved
        self._jobs: dict[int, _Job] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []

    # -- lifecycle

    def start(self) -> ReplayWorker:
        """Run items in ``concurrency`` daemon threads until ``stop()``; a restarted app resumes."""
        if self._threads:
            return self
        self._stopping.clear()
        self._threads = [threading.Thread(target=self._serve, name=f"replay-{n}", daemon=True)
                         for n in range(self.concurrency)]
        self._threads.append(threading.Thread(target=self._heart, args=(self._stopping,), name="replay-heart",
                                              daemon=True))
        for thread in self._threads:
            thread.start()
        logger.info("replay worker %s started (%d at a time)", self.name, self.concurrency)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop taking items; running ones end at their next event (and are re-run later)."""
        self._stopping.set()
        with self._lock:
            for job in self._jobs.values():
                job.why = job.why or "stopping"
                job.stop.set()
        for thread in self._threads:
            thread.join(timeout)
        self._threads = []

    def run_until_idle(self, replay_id: int | None = None) -> None:
        """Run claimable items (of one replay, with ``replay_id``) in ``concurrency`` threads until
        none waits; returns when every one of them has ended. A failure (the database went away)
        is raised here once the other threads have ended."""
        idle, failures = threading.Event(), []
        heart = threading.Thread(target=self._heart, args=(idle,), name="replay-heart", daemon=True)
        threads = [threading.Thread(target=self._drain, args=(replay_id, failures), name=f"replay-{n}", daemon=True)
                   for n in range(self.concurrency)]
        heart.start()
        try:
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        finally:
            idle.set()
            heart.join()
        if failures:
            raise failures[0]

    # -- the loops

    def _serve(self) -> None:
        while not self._stopping.is_set():
            try:
                ran = self._next()
            except Exception:  # a worker thread must outlive a bad item or a database blip
                logger.exception("replay worker %s: an item failed outside its engine", self.name)
                ran = False
            if not ran:
                self._stopping.wait(IDLE_SECONDS)

    def _drain(self, replay_id: int | None, failures: list[Exception]) -> None:
        try:
            while not self._stopping.is_set() and not failures:
                if self._next(replay_id):
                    continue
                if not self._waiting(replay_id):
                    return
                self._stopping.wait(CHECK_SECONDS)  # the limit is reached elsewhere: wait for a free place
        except Exception as exc:
            logger.exception("replay worker %s stopped", self.name)
            failures.append(exc)

    def _waiting(self, replay_id: int | None) -> bool:
        """Whether an item waits for a worker (pending, or orphaned) in a live replay."""
        stale = utcnow() - timedelta(seconds=self.stale_seconds)
        query = select(ReplayItem.id).where(*_claimable(stale))
        if replay_id is not None:
            query = query.where(ReplayItem.replay_id == replay_id)
        with self.reader.begin() as session:
            return session.scalar(query.limit(1)) is not None

    def _next(self, replay_id: int | None = None) -> bool:
        """Claim and run one item; False when there was none to take."""
        if not self._waiting(replay_id):  # a read first: an idle worker never takes the write lock
            return False
        with self.db.begin() as session:
            claim = claim_item(session, self.name, limit=self.concurrency, stale_seconds=self.stale_seconds,
                               replay_id=replay_id)
        if claim is None:
            return False
        job = _Job(claim)
        with self._lock:
            self._jobs[claim.item_id] = job
        try:
            self._run(job)
        finally:
            with self._lock:
                self._jobs.pop(claim.item_id, None)
        return True

    def _heart(self, ended: threading.Event) -> None:
        """Beat for every running item, and stop those whose replay was cancelled or deleted, or
        that another worker took over; until ``ended``."""
        while not ended.wait(CHECK_SECONDS):
            try:
                self._check_jobs()
            except Exception:
                logger.exception("replay worker %s: the heartbeat failed", self.name)

    def _check_jobs(self) -> None:
        with self._lock:
            jobs = list(self._jobs.values())
        if not jobs:
            return
        with self.reader.begin() as session:
            live = set(session.scalars(select(Replay.id).where(
                Replay.id.in_({job.claim.replay_id for job in jobs}), Replay.status.in_(LIVE))))
        for job in jobs:
            if job.claim.replay_id not in live:
                job.why = job.why or "cancelled"
                job.stop.set()
            elif time.monotonic() - job.beaten >= self.heartbeat_seconds:
                with self.db.begin() as session:
                    alive = beat(session, job.claim)
                job.beaten = time.monotonic()
                if not alive:
                    job.why = job.why or "lost"
                    job.stop.set()

    # -- one item

    def _run(self, job: _Job) -> None:
        work = self._work(job.claim)
        if work is None:
            return  # the replay was deleted since the claim
        try:
            route = self.route_for(work.flow)
        except ChatbotError as exc:  # no such flow, Langflow not configured: no question can run
            logger.warning("replay %s cannot run: %s", job.claim.replay_id, exc.detail)
            with self.db.begin() as session:
                fail_replay(session, job.claim, str(exc))
            return
        values = self._ask(job, route, work)
        if job.why == "lost":
            return  # another worker took it over
        with self.db.begin() as session:
            if job.why == "stopping" and values["status"] == "cancelled":
                release(session, job.claim)  # the worker stops, not the replay: the next one runs it
            elif save_result(session, job.claim, **values):
                with self._lock:
                    self.finished += 1

    def _work(self, claim: Claim) -> _Work | None:
        with self.reader.begin() as session:
            item = session.get(ReplayItem, claim.item_id)
            replay = session.get(Replay, claim.replay_id)
            if item is None or replay is None:
                return None
            return _Work(question=item.question, context=list(item.context or []), files=list(item.files or []),
                         flow=replay.flow, tweaks=replay.tweaks, mode=replay.mode)

    def _ask(self, job: _Job, route: Route, work: _Work) -> dict:
        """Ask the question in a fresh session (its earlier turns first, in context mode), as the
        chat does; the values to save. An engine's failure is the item's error, as people read it."""
        session_id, started, first, answer = str(uuid.uuid4()), None, None, None
        partial: dict[str, list[str]] = {}  # output -> its tokens (a flow's outputs interleave)
        status, error, prepared = "error", None, None
        try:
            prepared = route.prepare(files=work.files, extra=work.tweaks)
            tweaks = prepared.tweaks or None
            if work.mode == "context":
                for turn in work.context:
                    if turn.get("role") == "user" and str(turn.get("content") or "").strip():
                        for _event in self._events(job, route, turn["content"], session_id, tweaks):
                            pass  # the earlier answers only build the flow's memory
            started = time.perf_counter()
            for event in self._events(job, route, work.question, session_id, tweaks):
                if isinstance(event, Token):
                    first = first or time.perf_counter()
                    partial.setdefault(event.output, []).append(event.text)
                elif isinstance(event, Answer):
                    answer = event
            status = "complete" if answer is not None else "error"
            error = None if answer is not None else "The flow ended without an answer."
        except (EngineError, InputError) as exc:
            error = str(exc)
            logger.warning("replay item %s failed: %s", job.claim.item_id, exc.detail)
        except _Stopped:
            status, error = "cancelled", CANCELLED
        except Exception:
            logger.exception("replay item %s failed", job.claim.item_id)
            error = WORKER_FAILED
        finished = time.perf_counter()
        info = prepared.info if prepared else None
        usage = (answer.usage or {}) if answer else {}
        text = repaired(answer.text) if answer is not None else combined_text(
            [Output(repaired("".join(tokens))) for tokens in partial.values()])
        return {
            "status": status, "error": store.storable(error) if error else None, "answer": store.storable(text),
            "latency_ms": round((finished - started) * 1000) if started else None,
            "ttft_ms": round((first - started) * 1000) if first and started else None,
            "tokens": usage.get("total_tokens"), "session_id": session_id,
            "flow_name": info.name if info else route.backend.label, "flow_version": info.version if info else None,
            "model": answer.model if answer else None, "run_id": answer.run_id if answer else None,
            "steps": [step.stored() for step in answer.steps] or None if answer else None,
        }  # fmt: skip

    def _events(self, job: _Job, route: Route, question: str, session_id: str, tweaks) -> Iterator:
        """The engine's events for one question; ends the stream (closing the connection, so
        Langflow cancels the run) as soon as the job is told to stop."""
        if job.stop.is_set():
            raise _Stopped
        events = route.backend.stream(question, session_id=session_id, tweaks=tweaks)
        try:
            for event in events:
                if job.stop.is_set():
                    raise _Stopped
                if not isinstance(event, Progress):
                    yield event
        finally:
            if hasattr(events, "close"):
                events.close()
