"""append_flat: appending a message costs the same at 10,000 messages as at 10.

Ours is ``store.append_message`` in its own transaction (one UPDATE of the conversation's
counters, one INSERT). The baseline is the original design: a conversation stored as one JSON
list, read, extended and rewritten on every save. Each design appends alternately to a
conversation of 10 messages (a fresh one each time) and to one of 10,000.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy import Engine, insert, text, update

from bench import data
from bench.context import Context
from bench.report import Figure
from bench.timing import Stats, time_pairs
from chatbot import db as database
from chatbot import store
from chatbot.models import Conversation, Message

SMALL, LARGE = 10, 10_000
RULE = "append at 10,000 messages ÷ at 10 ≤ 1.5"


def run(ctx: Context) -> list[Figure]:
    figures = []
    for backend in ctx.backends:
        with ctx.scratch(backend) as url:
            engine = database.make_engine(url)
            try:
                figures.append(_measure(ctx, backend, engine))
            finally:
                engine.dispose()
    return figures


def _measure(ctx: Context, backend: str, engine: Engine) -> Figure:
    appends = 20 if ctx.quick else 100
    texts = data.sample_texts(LARGE, seed=1)
    question = data.sample_texts(1, seed=2, question=True)[0]
    ours_small, ours_large = _ours(engine, texts, question, appends)
    json_small, json_large = _json_design(engine, texts, question, appends)
    ours = ours_large.median / ours_small.median
    baseline = json_large.median / json_small.median
    ctx.log("append_flat %s: ours %.2f×, one JSON list %.1f×", backend, ours, baseline)
    return Figure(
        name=f"append_flat.{backend}", value=ours, unit="×", target=RULE, met=ours <= 1.5,
        baseline=baseline, baseline_label="JSON list rewritten per save",
        details={
            "appends_each": appends,
            "ours_ms": {"at_10": ours_small.summary(), "at_10000": ours_large.summary()},
            "json_list_ms": {"at_10": json_small.summary(), "at_10000": json_large.summary()},
        },
    )


# -- ours: one row per message ---------------------------------------------------------------


def _ours(engine: Engine, texts: list[str], question: str, appends: int) -> tuple[Stats, Stats]:
    factory = database.session_factory(engine)
    with factory.begin() as session:
        user = store.create_user(session, username="appender", password="x", password_hash=data.PASSWORD_HASH)
        actor = store.Actor.of(user)
        small = [_prefilled(session, actor, texts[:SMALL]) for _ in range(appends + 1)]
        large = _prefilled(session, actor, texts)
    fresh = iter(small)

    def append_to(conversation_id: int) -> Callable[[], None]:
        def append() -> None:
            with factory.begin() as session:
                store.append_message(session, actor, conversation_id, role="user", content=question)
        return append

    return time_pairs(lambda: append_to(next(fresh))(), append_to(large), pairs=appends, warmup=1)


def _prefilled(session, actor: store.Actor, texts: list[str]) -> int:
    """A conversation holding ``texts`` as alternating questions and answers (bulk inserted)."""
    conversation = store.create_conversation(session, actor, title=texts[0])
    now = datetime.now(UTC)
    rows = [dict(conversation_id=conversation.id, created_at=now, **_message(i, body)) for i, body in enumerate(texts)]
    session.execute(insert(Message), rows)
    session.execute(
        update(Conversation).where(Conversation.id == conversation.id).values(message_count=len(texts))
    )
    return conversation.id


def _message(i: int, body: str) -> dict:
    if i % 2 == 0:
        return {"role": "user", "content": body, "status": "complete"}
    return {
        "role": "assistant", "content": body, "status": "complete", "engine": "langflow",
        "flow_id": data.FLOW_ID, "latency_ms": 1800, "ttft_ms": 300, "input_tokens": 120,
        "output_tokens": 60, "total_tokens": 180,
    }  # fmt: skip


# -- the baseline: one JSON list per conversation ----------------------------------------------

_CREATE = (
    "CREATE TABLE json_conversations (id integer PRIMARY KEY, owner_id integer NOT NULL, "
    "updated_at varchar(40) NOT NULL, messages text NOT NULL)"
)


def _json_design(engine: Engine, texts: list[str], question: str, appends: int) -> tuple[Stats, Stats]:
    now = datetime.now(UTC).isoformat()
    with engine.begin() as connection:
        connection.execute(text(_CREATE))
        small = [_json_conversation(connection, i, texts[:SMALL], now) for i in range(1, appends + 2)]
        large = _json_conversation(connection, appends + 2, texts, now)
    fresh = iter(small)

    def append_to(conversation_id: int) -> Callable[[], None]:
        def append() -> None:
            with engine.begin() as connection:
                stored = connection.execute(
                    text("SELECT messages FROM json_conversations WHERE id = :id"), {"id": conversation_id}
                ).scalar_one()
                messages = json.loads(stored)
                stamp = datetime.now(UTC).isoformat()
                messages.append({"role": "user", "content": question, "status": "complete", "created_at": stamp})
                connection.execute(
                    text("UPDATE json_conversations SET messages = :m, updated_at = :t WHERE id = :id"),
                    {"m": json.dumps(messages), "t": stamp, "id": conversation_id},
                )
        return append

    return time_pairs(lambda: append_to(next(fresh))(), append_to(large), pairs=appends, warmup=1)


def _json_conversation(connection, conversation_id: int, texts: list[str], now: str) -> int:
    messages = [{**_message(i, body), "created_at": now} for i, body in enumerate(texts)]
    connection.execute(
        text("INSERT INTO json_conversations VALUES (:id, 1, :t, :m)"),
        {"id": conversation_id, "t": now, "m": json.dumps(messages)},
    )
    return conversation_id
