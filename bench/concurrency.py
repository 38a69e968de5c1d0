"""concurrency: 20 threads × 50 messages through the store at once: none lost, no errors.

Ten users each have one conversation and two threads appending to it (so two writers race on
the same conversation row), each message in its own transaction, as the chat page does. Lost
means sent, not reported as failed, and not stored; the conversations' message counters must
also add up to the messages stored. The baseline is one thread appending the same 1,000 messages (250 with ``--quick``) in the same kind of database.
"""

from __future__ import annotations

import logging
import threading
import time

from sqlalchemy import func, select

from bench import data
from bench.context import Context
from bench.report import Figure
from chatbot import db as database
from chatbot import store
from chatbot.models import Conversation, Message

logger = logging.getLogger("bench.concurrency")

THREADS, PER_THREAD, USERS = 20, 50, 10


def run(ctx: Context) -> list[Figure]:
    figures = []
    for backend in ctx.backends:
        with ctx.scratch(backend) as url:
            concurrent = _append(url, threads=THREADS, per_thread=PER_THREAD)
        with ctx.scratch(backend) as url:  # a rate: a quarter of the messages is enough for --quick
            sequential = _append(url, threads=1, per_thread=THREADS * PER_THREAD // (4 if ctx.quick else 1))
        met = concurrent["lost"] == 0 and concurrent["errors"] == 0 and concurrent["counter_mismatch"] == 0
        ctx.log("concurrency %s: %s (one thread: %s)", backend, concurrent, sequential)
        figures.append(Figure(
            name=f"concurrency.{backend}", value=concurrent["per_second"], unit="msg/s",
            target=f"{THREADS} threads × {PER_THREAD} messages: 0 lost, 0 errors", met=met,
            baseline=sequential["per_second"], baseline_label="1 thread",
            details={"concurrent": concurrent, "one_thread": sequential},
        ))  # fmt: skip
    return figures


def _append(url: str, *, threads: int, per_thread: int) -> dict:
    engine = database.make_engine(url, pool_size=threads)
    factory = database.session_factory(engine)
    texts = data.sample_texts(per_thread, seed=4)
    try:
        owners = _owners(factory, min(USERS, threads))
        barrier = threading.Barrier(threads)
        errors: list[str] = []

        def work(number: int) -> None:
            actor, conversation_id = owners[number % len(owners)]
            barrier.wait()
            for i in range(per_thread):
                try:
                    with factory.begin() as session:
                        store.append_message(session, actor, conversation_id, role="user", content=texts[i])
                except Exception as exc:  # counted and reported: the figure is the number of failures
                    errors.append(f"{type(exc).__name__}: {exc}"[:300])

        workers = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
        started = time.perf_counter()
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        seconds = time.perf_counter() - started
        stored, counted = _totals(factory)
    finally:
        engine.dispose()
    sent = threads * per_thread
    if errors:
        logger.warning("%d appends failed, first: %s", len(errors), errors[0])
    return {
        "threads": threads, "messages": sent, "stored": stored, "counted": counted,
        "lost": sent - len(errors) - stored, "counter_mismatch": stored - counted, "errors": len(errors),
        "first_error": errors[0] if errors else None, "seconds": round(seconds, 2),
        "per_second": round(sent / seconds, 1),
    }  # fmt: skip


def _owners(factory, users: int) -> list[tuple[store.Actor, int]]:
    owners = []
    with factory.begin() as session:
        for n in range(users):
            user = store.create_user(session, username=f"writer{n}", password="x", password_hash=data.PASSWORD_HASH)
            actor = store.Actor.of(user)
            owners.append((actor, store.create_conversation(session, actor, title=f"thread race {n}").id))
    return owners


def _totals(factory) -> tuple[int, int]:
    """Messages stored, and messages the conversations' counters say they hold."""
    with factory.begin() as session:
        stored = session.scalar(select(func.count()).select_from(Message)) or 0
        counted = session.scalar(select(func.sum(Conversation.message_count))) or 0
    return stored, counted
