"""The benchmark data: 1,000,000 messages bulk-loaded into SQLite and PostgreSQL, built once and cached.

The dataset is generated deterministically (seeded numpy), so the SQLite file and the PostgreSQL
schema hold the same rows. Both are keyed by ``DATASET_VERSION``, the scale and the migration
head, and rebuilt when any of them changes:

- SQLite: ``bench/data/messages-<key>.db`` (git-ignored), built under another name and renamed
  when complete.
- PostgreSQL: schema ``d_<key>`` in the database of ``BENCH_POSTGRES_URL`` (default
  ``postgresql+psycopg://postgres@127.0.0.1:5432/bench``), built as ``<schema>_building`` and
  renamed when complete.

Rows skip the ORM: ``executemany`` on SQLite and ``COPY`` on PostgreSQL, with the secondary
indexes dropped during the load and created afterwards. The SQLite FTS5 index is
external-content: its insert trigger is dropped during the load and the index rebuilt with
``INSERT INTO messages_fts(messages_fts) VALUES('rebuild')``; PostgreSQL computes the generated
tsvector column during COPY. SQLite is not ANALYZEd (the app never does it); PostgreSQL is
VACUUM ANALYZEd, as autovacuum would have done on a live database.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import sqlite3
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

import numpy as np
import psycopg
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy.engine import make_url

from bench.vocabulary import COMMON, TOPICS
from chatbot import db as database

logger = logging.getLogger("bench.data")

DATASET_VERSION = 3  # 2: answers say which flow version answered, agents' steps, tweaks, files; 3: tags
DATA_DIR = Path(__file__).resolve().parent / "data"
DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/bench"
SEED = 20251126
END = datetime(2025, 11, 1, tzinfo=UTC)  # the newest conversation starts just before this
DAYS = 365
FLOW_ID = "3fa85f64-5717-4562-b3fc-2c963f66afa6"
FLOW_NAME = "Analytics agent"
MODEL = "gpt-4o-mini"
VERSION_DAYS = 60  # the flow is saved as a new version every 60 days: v1 … v7 over the year
EDITED_DAYS = 15  # and edited in the last 15 days of each version's time ("v3+")
STEP_SHARE, TWEAK_SHARE = 0.3, 0.1  # answers with an agent's tool calls, with tweaks
FILE_SHARE = 0.03  # questions with a file attached
# bcrypt of "bench-password" at cost 4: the dataset's users never log in.
PASSWORD_HASH = "$2b$04$mLKKnNBfoKZiPsLz3gVeMODEFTWrfjno9LWmXUc8/9ZLrzAluM8RK"
TOPIC_SHARE = 0.025  # share of words drawn from TOPICS: about one topic word in every message
CHUNK_CONVERSATIONS = 2_000
TABLES = ("users", "conversations", "messages", "feedback", "conversation_tags")
ID_TABLES = TABLES[:4]  # the tables with an id sequence
# Tags on conversations: none on 60 %, one on 30 %, two on 10 %; billing is on about 8 % of them.
TAGS = ("billing", "refund", "onboarding", "churn", "outage", "security", "pricing", "reporting")
TAG_WEIGHTS = (0.2, 0.1, 0.15, 0.15, 0.1, 0.1, 0.1, 0.1)
# The columns each generated row fills, in order; the others keep their defaults (NULL, or the
# server default: a message's version 1 and current true). Named, so a new column cannot shift them.
COLUMNS = {
    "users": ("id", "username", "name", "email", "password_hash", "role", "created_at", "last_login_at",
              "failed_logins"),
    "conversations": ("id", "owner_id", "title", "langflow_session_id", "created_at", "updated_at", "deleted",
                      "message_count", "last_status", "last_engine", "thumbs_up", "thumbs_down", "flow",
                      "last_version"),
    "messages": ("id", "conversation_id", "role", "content", "created_at", "status", "error", "engine", "flow_id",
                 "latency_ms", "ttft_ms", "input_tokens", "output_tokens", "total_tokens", "flow_name",
                 "flow_version", "model", "run_id", "tweaks", "steps", "files"),
    "feedback": ("id", "message_id", "user_id", "score", "comment", "created_at"),
    "conversation_tags": ("conversation_id", "tag", "created_at"),
}  # fmt: skip


@dataclass(frozen=True)
class Scale:
    """How much data a run uses: ``full`` is the issue's; ``quick`` is a tenth, for a one-minute run."""

    name: str
    users: int
    conversations: int
    messages: int
    notes: int  # notes for the notes engine, about 5 KB each
    excel_rows: int


FULL = Scale("full", users=200, conversations=50_000, messages=1_000_000, notes=5_000, excel_rows=100_000)
QUICK = Scale("quick", users=200, conversations=5_000, messages=100_000, notes=1_000, excel_rows=10_000)


def history_window() -> tuple[date, date]:
    """The date filter of the history benchmarks: the last 90 days of the data."""
    last = (END - timedelta(days=1)).date()
    return last - timedelta(days=89), last


def admin_username() -> str:
    return "admin"


def analyst_username(number: int) -> str:
    return f"analyst{number:03d}"


def migration_head() -> str:
    config = Config()
    config.set_main_option("script_location", str(database.MIGRATIONS))
    return ScriptDirectory.from_config(config).get_current_head() or "base"


def dataset_key(scale: Scale) -> str:
    """Version, scale, migration head and a hash of the migrations: a changed schema means new data."""
    digest = hashlib.sha256()
    for path in sorted((database.MIGRATIONS / "versions").glob("*.py")):
        digest.update(path.name.encode() + path.read_bytes())
    return f"v{DATASET_VERSION}_{scale.name}_{migration_head()}_{digest.hexdigest()[:8]}".lower()


# -- generated rows --------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    """Every conversation's owner, start, length and deletion; messages follow from it."""

    owner: np.ndarray  # user id, 1..users
    started_us: np.ndarray  # microseconds since the epoch
    pairs: np.ndarray  # question-and-answer pairs: the conversation has 2 * pairs messages
    deleted: np.ndarray


def plan(scale: Scale) -> Plan:
    rng = np.random.default_rng([SEED, 0])
    n = scale.conversations
    owner = rng.integers(1, scale.users + 1, n)
    span_us = DAYS * 86_400 * 1_000_000
    start_us = int((END.timestamp() - DAYS * 86_400) * 1_000_000)
    started = start_us + ((np.arange(n) + rng.random(n)) * (span_us / n)).astype(np.int64)
    pairs = rng.integers(1, 20, n)  # 1..19, 10 on average
    missing = scale.messages // 2 - int(pairs.sum())
    while missing:  # nudge random conversations until the total is exact
        pick = rng.integers(0, n, min(abs(missing), n))
        step = 1 if missing > 0 else -1
        allowed = (pairs[pick] + step >= 1) & (pairs[pick] + step <= 40)
        np.add.at(pairs, pick[allowed], step)
        missing = scale.messages // 2 - int(pairs.sum())
    deleted = rng.random(n) < 0.01
    return Plan(owner=owner, started_us=started, pairs=pairs, deleted=deleted)


def users(scale: Scale) -> list[tuple]:
    """(id, username, name, email, password_hash, role, created_at, last_login_at, failed_logins)."""
    created = _timestamps(np.array([int((END.timestamp() - (DAYS + 30) * 86_400) * 1_000_000)]))[0]
    rows = [
        (i, analyst_username(i), f"Analyst {i}", f"{analyst_username(i)}@example.com", PASSWORD_HASH,
         "analyst", created, None, 0)
        for i in range(1, scale.users + 1)
    ]  # fmt: skip
    admin = scale.users + 1
    rows.append((admin, admin_username(), "Admin", "admin@example.com", PASSWORD_HASH, "admin", created, None, 0))
    return rows


_WORDS = np.array(COMMON + TOPICS, dtype=object)
_COMMON_P = 1 / (np.arange(len(COMMON)) + 3.0) ** 0.9
_COMMON_P /= _COMMON_P.sum()


def _texts(rng: np.random.Generator, lengths: np.ndarray, questions: np.ndarray) -> list[str]:
    """Sentences of Zipf-distributed common words with topic words sprinkled in."""
    total = int(lengths.sum())
    index = rng.choice(len(COMMON), total, p=_COMMON_P)
    topical = rng.random(total) < TOPIC_SHARE
    index[topical] = len(COMMON) + rng.integers(0, len(TOPICS), int(topical.sum()))
    words = _WORDS[index].tolist()
    texts, start = [], 0
    for end, question in zip(np.cumsum(lengths).tolist(), questions.tolist()):
        text = " ".join(words[start:end])
        texts.append(text[:1].upper() + text[1:] + ("?" if question else "."))
        start = end
    return texts


def sample_texts(n: int, *, seed: int = 0, question: bool = False) -> list[str]:
    """``n`` message texts like the dataset's: questions of 5-20 words, answers of 15-60."""
    rng = np.random.default_rng([SEED, 2, seed])
    lengths = rng.integers(5, 21, n) if question else rng.integers(15, 61, n)
    return _texts(rng, lengths, np.full(n, question))


def _timestamps(micros: np.ndarray) -> list[str]:
    """'YYYY-MM-DD HH:MM:SS.ffffff', as SQLAlchemy stores DateTime on SQLite (UTC)."""
    text = np.datetime_as_string(micros.astype("datetime64[us]"), unit="us")
    return [t[:10] + " " + t[11:] for t in text.tolist()]


@dataclass
class Chunk:
    """The rows of a run of consecutive conversations, each in ``COLUMNS`` order."""

    conversations: list[tuple]
    messages: list[tuple]
    feedback: list[tuple]
    tags: list[tuple]


def chunks(scale: Scale) -> Iterator[Chunk]:
    """The whole dataset, ``CHUNK_CONVERSATIONS`` conversations at a time, deterministically."""
    p = plan(scale)
    first_message, first_feedback = 1, 1
    for number, start in enumerate(range(0, scale.conversations, CHUNK_CONVERSATIONS)):
        stop = min(start + CHUNK_CONVERSATIONS, scale.conversations)
        chunk = _chunk(np.random.default_rng([SEED, 1, number]), p, start, stop, first_message, first_feedback)
        first_message += len(chunk.messages)
        first_feedback += len(chunk.feedback)
        yield chunk


def _chunk(rng: np.random.Generator, p: Plan, start: int, stop: int, first_message: int, first_feedback: int) -> Chunk:
    counts = 2 * p.pairs[start:stop]
    n = int(counts.sum())
    conversation_of = np.repeat(np.arange(start, stop), counts)  # 0-based conversation index per message
    position = np.arange(n) - np.repeat(np.cumsum(counts) - counts, counts)  # 0-based within its conversation
    question = position % 2 == 0
    # A question comes 10 s to 10 min after the previous answer; an answer 1-20 s after its question.
    gaps = np.where(question, rng.integers(10, 600, n), rng.integers(1, 20, n)) * 1_000_000
    gaps[position == 0] = 0
    offsets = np.cumsum(gaps)
    offsets -= np.repeat(offsets[np.cumsum(counts) - counts], counts)
    created_us = p.started_us[conversation_of] + offsets
    lengths = np.where(question, rng.integers(5, 21, n), rng.integers(15, 61, n))
    texts = _texts(rng, lengths, question)
    created = _timestamps(created_us)

    roll = rng.random(n)
    status = np.where(question | (roll >= 0.015), "complete", np.where(roll < 0.01, "error", "interrupted"))
    latency = rng.lognormal(7.4, 0.5, n).astype(int)
    ttft = (latency * rng.uniform(0.1, 0.3, n)).astype(int)
    tokens_in = rng.integers(20, 400, n)
    tokens_out = (lengths * 1.3).astype(int)
    message_ids = np.arange(first_message, first_message + n)
    rated = np.flatnonzero(~question & (rng.random(n) < 0.05))
    scores = rng.random(len(rated)) < 0.7
    commented = rng.random(len(rated)) < 0.2
    feedback = [
        (first_feedback + k, int(message_ids[i]), int(p.owner[conversation_of[i]]), int(scores[k]),
         ("Clear and useful." if scores[k] else "This missed the point.") if commented[k] else None,
         created[i])
        for k, i in enumerate(rated.tolist())
    ]  # fmt: skip
    rated_in = conversation_of[rated] - start  # each rating's conversation, 0-based in this chunk
    ups = np.bincount(rated_in, weights=scores, minlength=stop - start).astype(int)
    downs = np.bincount(rated_in, weights=~scores, minlength=stop - start).astype(int)

    # Drawn after everything above, so texts, statuses and ratings are those of dataset version 1.
    extra = _Provenance(rng, question, created_us, texts, message_ids)
    messages = []
    for i in range(n):
        conversation_id = int(conversation_of[i]) + 1
        if question[i]:
            messages.append((int(message_ids[i]), conversation_id, "user", texts[i], created[i], "complete",
                             None, None, None, None, None, None, None, None,
                             None, None, None, None, None, None, extra.files(i)))  # fmt: skip
            continue
        state = str(status[i])
        error = {"error": "The flow failed: the model is overloaded.",
                 "interrupted": "The answer was interrupted before it finished."}.get(state)  # fmt: skip
        messages.append((
            int(message_ids[i]), conversation_id, "assistant", texts[i], created[i], state, error, "langflow",
            FLOW_ID, int(latency[i]), int(ttft[i]), int(tokens_in[i]), int(tokens_out[i]),
            int(tokens_in[i] + tokens_out[i]), FLOW_NAME, extra.version[i], MODEL, extra.run_id(i),
            extra.tweaks(i), extra.steps(i), None,
        ))  # fmt: skip

    last = np.cumsum(counts) - 1  # each conversation's last message (always an answer)
    conversations = []
    for j, conversation in enumerate(range(start, stop)):
        first = int(last[j] - counts[j] + 1)
        title = " ".join(texts[first].split())
        title = title if len(title) <= 80 else title[:79].rstrip() + "…"
        conversations.append((
            conversation + 1, int(p.owner[conversation]), title, str(uuid.UUID(int=conversation + 1)),
            created[first], created[int(last[j])], bool(p.deleted[conversation]), int(counts[j]),
            str(status[last[j]]), FLOW_ID, int(ups[j]), int(downs[j]), FLOW_ID,
            f"{FLOW_NAME} {extra.version[int(last[j])]}",
        ))  # fmt: skip
    return Chunk(conversations, messages, feedback, _tags(start, stop, [row[4] for row in conversations]))


def _tags(start: int, stop: int, started: list[str]) -> list[tuple]:
    """(conversation_id, tag, created_at) rows, from a stream of their own (the other rows stay as they were)."""
    rng = np.random.default_rng([SEED, 3, start])
    how_many = rng.choice(3, stop - start, p=[0.6, 0.3, 0.1])
    rows = []
    for j, count in enumerate(how_many.tolist()):
        for tag in rng.choice(len(TAGS), count, replace=False, p=TAG_WEIGHTS).tolist():
            rows.append((start + j + 1, TAGS[tag], started[j]))
    return rows


class _Provenance:
    """What answered each message of a chunk and how, as the app stores it: the flow's version
    (a new one every ``VERSION_DAYS``, "+" when edited since), the run, and JSON text for the
    tweaks sent (``TWEAK_SHARE`` of answers), an agent's tool calls (``STEP_SHARE``: one to
    three, 5 % of them failed) and a question's attached file (``FILE_SHARE``)."""

    TOOLS = ("search_notes", "run_sql", "calculator")

    def __init__(self, rng: np.random.Generator, question: np.ndarray, created_us: np.ndarray, texts: list[str],
                 message_ids: np.ndarray) -> None:
        n = len(question)
        day = (created_us - int((END.timestamp() - DAYS * 86_400) * 1_000_000)) // 86_400_000_000
        edited = np.where(day % VERSION_DAYS >= VERSION_DAYS - EDITED_DAYS, "+", "")
        self.version = [f"v{v}{e}" for v, e in zip((1 + day // VERSION_DAYS).tolist(), edited.tolist())]
        self.texts, self.message_ids = texts, message_ids
        self.step_count = np.where(~question & (rng.random(n) < STEP_SHARE), rng.integers(1, 4, n), 0)
        total = int(self.step_count.sum())
        self.step_first = np.cumsum(self.step_count) - self.step_count
        self.tool = rng.integers(0, len(self.TOOLS), total)
        self.output = _texts(rng, rng.integers(20, 80, total), np.zeros(total, dtype=bool))
        self.duration = rng.integers(40, 3_000, total)
        self.failed = rng.random(total) < 0.05
        self.tweaked = ~question & (rng.random(n) < TWEAK_SHARE)
        self.temperature = rng.choice([0.0, 0.2, 0.7], n)
        self.attached = question & (rng.random(n) < FILE_SHARE)
        self.size = rng.integers(1_000, 5_000_000, n)

    def run_id(self, i: int) -> str:
        return str(uuid.UUID(int=(1 << 64) + int(self.message_ids[i])))

    def tweaks(self, i: int) -> str | None:
        if not self.tweaked[i]:
            return None
        return json.dumps({"OpenAIModel-k9x2Q": {"temperature": float(self.temperature[i])}})

    def steps(self, i: int) -> str | None:
        first = int(self.step_first[i])
        calls = []
        for k in range(first, first + int(self.step_count[i])):
            failed = bool(self.failed[k])
            calls.append({
                "name": self.TOOLS[self.tool[k]], "input": {"query": self.texts[i - 1][:60]},
                "output": None if failed else self.output[k], "status": "error" if failed else "success",
                "duration_ms": int(self.duration[k]), "error": "The tool timed out." if failed else None,
            })  # fmt: skip
        return json.dumps(calls) if calls else None

    def files(self, i: int) -> str | None:
        if not self.attached[i]:
            return None
        name = f"report-{int(self.message_ids[i])}.pdf"
        path = f"{FLOW_ID}/{uuid.UUID(int=int(self.message_ids[i]))}.pdf"
        return json.dumps([{"name": name, "size": int(self.size[i]), "type": "application/pdf", "path": path}])


# -- notes -----------------------------------------------------------------------------

NOTES_VERSION = 2


def notes_dir(scale: Scale) -> Path:
    """A folder of ``scale.notes`` Markdown notes of about 5 KB each (built once, cached)."""
    folder = DATA_DIR / f"notes-v{NOTES_VERSION}-{scale.name}"
    if not folder.exists():
        building = folder.with_name(folder.name + ".building")
        shutil.rmtree(building, ignore_errors=True)
        _write_notes(building, scale.notes)
        building.rename(folder)
    return folder


def _write_notes(folder: Path, count: int) -> None:
    rng = np.random.default_rng([SEED, 3])
    sections, paragraphs = 4, 2
    lengths = rng.integers(95, 170, count * sections * paragraphs)
    texts = _texts(rng, lengths, np.zeros(len(lengths), dtype=bool))
    headings = _texts(rng, rng.integers(2, 5, count * (sections + 1)), np.zeros(count * (sections + 1), dtype=bool))
    for n in range(count):
        topic = TOPICS[n % len(TOPICS)]
        parts = [f"# {topic.title()} notes {n}: {headings[n * (sections + 1)][:-1]}\n"]
        for s in range(sections):
            parts.append(f"## {headings[n * (sections + 1) + s + 1][:-1]}\n")
            at = (n * sections + s) * paragraphs
            parts += [texts[at + p] + "\n" for p in range(paragraphs)]
        path = folder / f"team-{n % 10}" / f"{topic}-{n:05d}.md"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(parts))


# -- SQLite ----------------------------------------------------------------------------


def sqlite_path(scale: Scale) -> Path:
    return DATA_DIR / f"messages-{dataset_key(scale)}.db"


def sqlite_dataset(scale: Scale) -> str:
    """The URL of the cached SQLite dataset, built first if missing."""
    path = sqlite_path(scale)
    if not path.exists():
        started = time.perf_counter()
        logger.info("building the SQLite dataset %s (once; cached)", path.name)
        _build_sqlite(path, scale)
        logger.info("built %s in %.0f s", path.name, time.perf_counter() - started)
        for stale in DATA_DIR.glob(f"messages-v*_{scale.name}_*.db"):  # older versions of this scale
            if stale != path:
                _remove_sqlite(stale)
    return f"sqlite:///{path}"


def _build_sqlite(path: Path, scale: Scale) -> None:
    building = path.with_name(path.name + ".building")
    _remove_sqlite(building)
    engine = database.make_engine(f"sqlite:///{building}")
    database.migrate(engine)
    engine.dispose()
    connection = sqlite3.connect(building, isolation_level=None)
    try:
        connection.execute("PRAGMA journal_mode=OFF")
        connection.execute("PRAGMA synchronous=OFF")
        connection.execute("PRAGMA cache_size=-400000")
        saved = connection.execute(
            "SELECT type, name, sql FROM sqlite_master WHERE sql IS NOT NULL AND "
            "((type = 'index' AND tbl_name IN ('conversations', 'messages', 'feedback', 'conversation_tags')) "
            " OR (type = 'trigger' AND name = 'messages_fts_insert'))"
        ).fetchall()
        for kind, name, _ in saved:
            connection.execute(f'DROP {kind.upper()} "{name}"')
        connection.execute("BEGIN")
        connection.executemany(_insert("users"), users(scale))
        for chunk in chunks(scale):
            connection.executemany(_insert("conversations"), chunk.conversations)
            connection.executemany(_insert("messages"), chunk.messages)
            connection.executemany(_insert("feedback"), chunk.feedback)
            connection.executemany(_insert("conversation_tags"), chunk.tags)
        connection.execute("COMMIT")
        for kind, _, sql in saved:
            if kind == "index":
                connection.execute(sql)
        connection.execute("INSERT INTO messages_fts(messages_fts) VALUES('rebuild')")
        for kind, _, sql in saved:
            if kind == "trigger":
                connection.execute(sql)
        connection.execute("PRAGMA journal_mode=WAL")
    finally:
        connection.close()
    building.rename(path)


def _insert(table: str) -> str:
    columns = COLUMNS[table]
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"


def _remove_sqlite(path: Path) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


# -- PostgreSQL ------------------------------------------------------------------------


def postgres_base_url() -> str:
    return os.environ.get("BENCH_POSTGRES_URL", DEFAULT_POSTGRES_URL)


def _libpq(url: str) -> str:
    """A psycopg connection string from a SQLAlchemy URL."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def ensure_postgres_database() -> None:
    """Create the benchmark database if it does not exist (connecting to ``postgres`` to do so)."""
    url = make_url(postgres_base_url())
    try:
        psycopg.connect(_libpq(str(url)), connect_timeout=5).close()
        return
    except psycopg.OperationalError as exc:
        if "does not exist" not in str(exc):
            raise
    admin = url.set(database="postgres")
    with psycopg.connect(_libpq(admin.render_as_string(hide_password=False)), autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{url.database}"')


def postgres_version() -> str:
    with psycopg.connect(_libpq(postgres_base_url()), connect_timeout=5) as connection:
        return str(connection.execute("SHOW server_version").fetchone()[0])


def schema_url(schema: str) -> str:
    """The benchmark database with ``search_path`` set to ``schema`` (as the tests do)."""
    base = postgres_base_url()
    separator = "&" if "?" in base else "?"
    return f"{base}{separator}options={quote(f'-csearch_path={schema}')}"


def postgres_dataset(scale: Scale) -> str:
    """The URL of the cached PostgreSQL dataset (a schema), built first if missing."""
    ensure_postgres_database()
    schema = f"d_{dataset_key(scale)}"
    with psycopg.connect(_libpq(postgres_base_url()), autocommit=True) as connection:
        found = connection.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,)).fetchone()
    if found is None:
        started = time.perf_counter()
        logger.info("building the PostgreSQL dataset %s (once; cached)", schema)
        _build_postgres(schema, scale)
        logger.info("built %s in %.0f s", schema, time.perf_counter() - started)
        _drop_schemas(f"d\\_v%\\_{scale.name}\\_%", keep=schema)  # older versions of this scale
    return schema_url(schema)


def _build_postgres(schema: str, scale: Scale) -> None:
    building = f"{schema}_building"
    with psycopg.connect(_libpq(postgres_base_url()), autocommit=True) as connection:
        connection.execute(f'DROP SCHEMA IF EXISTS "{building}" CASCADE')
        connection.execute(f'CREATE SCHEMA "{building}"')
    engine = database.make_engine(schema_url(building), pool_size=1)
    database.migrate(engine)
    engine.dispose()
    with psycopg.connect(_libpq(postgres_base_url()), autocommit=True) as connection:
        connection.execute(f'SET search_path TO "{building}"')
        connection.execute("SET TIME ZONE 'UTC'")  # the generated times are UTC without a zone
        indexes = connection.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = %s AND tablename = ANY(%s) "
            "AND indexname NOT IN (SELECT conname FROM pg_constraint WHERE connamespace = %s::regnamespace)",
            (building, list(TABLES), building),
        ).fetchall()
        for name, _ in indexes:
            connection.execute(f'DROP INDEX "{name}"')
        with connection.transaction():
            _copy(connection, "users", users(scale))
            for chunk in chunks(scale):
                _copy(connection, "conversations", chunk.conversations)
                _copy(connection, "messages", chunk.messages)
                _copy(connection, "feedback", chunk.feedback)
                _copy(connection, "conversation_tags", chunk.tags)
        for _, definition in indexes:
            connection.execute(definition)
        for name in ID_TABLES:
            connection.execute(
                f"SELECT setval(pg_get_serial_sequence('{name}', 'id'), (SELECT max(id) FROM {name}))"
            )
        connection.execute("VACUUM ANALYZE")
        connection.execute(f'ALTER SCHEMA "{building}" RENAME TO "{schema}"')


def _copy(connection: psycopg.Connection, table: str, rows: list[tuple]) -> None:
    """COPY rows in (``COLUMNS[table]``); SQLite-style timestamps are read as UTC."""
    with connection.cursor().copy(f"COPY {table} ({', '.join(COLUMNS[table])}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)


def _drop_schemas(pattern: str, *, keep: str = "") -> list[str]:
    """Drop the schemas whose names are LIKE ``pattern``, except ``keep``; answer their names."""
    with psycopg.connect(_libpq(postgres_base_url()), autocommit=True) as connection:
        schemas = [row[0] for row in connection.execute(
            "SELECT nspname FROM pg_namespace WHERE nspname LIKE %s AND nspname <> %s", (pattern, keep)
        )]  # fmt: skip
        for schema in schemas:
            connection.execute(f'DROP SCHEMA "{schema}" CASCADE')
    return schemas


def drop_postgres_datasets() -> list[str]:
    """Drop every benchmark schema: datasets, half-built ones and scratch leftovers."""
    return _drop_schemas("d\\_%") + _drop_schemas("scratch\\_%")


def clean() -> list[str]:
    """Remove every cached dataset: the SQLite files and notes under bench/data, the PostgreSQL schemas."""
    removed = []
    if DATA_DIR.exists():
        removed.append(str(DATA_DIR))
        shutil.rmtree(DATA_DIR)
    with contextlib.suppress(psycopg.OperationalError):  # no PostgreSQL: nothing to drop there
        removed += drop_postgres_datasets()
    return removed


# -- scratch databases -----------------------------------------------------------------


@contextlib.contextmanager
def scratch_database(backend: str, workdir: Path) -> Iterator[str]:
    """An empty, migrated database for benchmarks that write: a SQLite file or a PostgreSQL schema."""
    if backend == "sqlite":
        path = workdir / f"scratch-{uuid.uuid4().hex[:8]}.db"
        url = f"sqlite:///{path}"
        _migrate(url)
        try:
            yield url
        finally:
            _remove_sqlite(path)
        return
    ensure_postgres_database()
    schema = f"scratch_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(_libpq(postgres_base_url()), autocommit=True) as connection:
        connection.execute(f'CREATE SCHEMA "{schema}"')
    try:
        url = schema_url(schema)
        _migrate(url)
        yield url
    finally:
        with psycopg.connect(_libpq(postgres_base_url()), autocommit=True) as connection:
            connection.execute(f'DROP SCHEMA "{schema}" CASCADE')


def _migrate(url: str) -> None:
    engine = database.make_engine(url, pool_size=1)
    try:
        database.migrate(engine)
    finally:
        engine.dispose()
