"""The database: engine with SQLite pragmas, session factory, and migrations at start."""

from __future__ import annotations

import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

logger = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"
SQLITE_BUSY_TIMEOUT_MS = 30_000
# Any constant shared by every replica: pg_advisory_lock serialises their migrations.
MIGRATION_LOCK_ID = 7_202_611


def make_engine(database_url: str, *, pool_size: int = 10) -> Engine:
    """An engine ready for concurrent use: WAL and a busy timeout on SQLite, pre-ping on PostgreSQL.

    ``hide_parameters``: a statement's parameters (a new user's password hash, a message)
    never appear in an exception's text or a log line; tracebacks end up in logs.
    """
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        if url.database and url.database != ":memory:":
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30}, hide_parameters=True)
        _configure_sqlite(engine)
        return engine
    engine = create_engine(
        url, pool_pre_ping=True, pool_size=pool_size, max_overflow=pool_size, pool_recycle=1800,
        hide_parameters=True,
    )
    _configure_postgres(engine)
    return engine


def _configure_postgres(engine: Engine) -> None:
    """No JIT: the app's statements run in milliseconds, and a search whose estimate passes
    jit_above_cost spent 25 ms compiling for 24 ms of work (bench search.syntax)."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):
        with dbapi_connection.cursor() as cursor:
            cursor.execute("SET jit = off")
        dbapi_connection.commit()


def _configure_sqlite(engine: Engine) -> None:
    """WAL, busy timeout, foreign keys, and BEGIN IMMEDIATE for write transactions.

    A deferred SQLite transaction that reads and then writes fails at once with
    "database is locked" when another writer got there first (the busy timeout is not
    consulted), so transactions start IMMEDIATE unless marked read-only.
    """

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves, below
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        # 32 MB of pages per connection keeps search and history hot. No mmap: mapped pages
        # count as the process's memory, and a full export would map the whole file.
        cursor.execute("PRAGMA cache_size=-32768")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection):
        readonly = connection.get_execution_options().get("readonly", False)
        connection.exec_driver_sql("BEGIN" if readonly else "BEGIN IMMEDIATE")


def session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions for one action each: ``with factory.begin() as session: ...``."""
    return sessionmaker(engine, expire_on_commit=False)


def readonly_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions that only read: on SQLite they never take the write lock (long exports)."""
    return sessionmaker(engine.execution_options(readonly=True), expire_on_commit=False)


def migrate(engine: Engine) -> None:
    """Bring the schema up to date; replicas starting together take turns (PostgreSQL lock)."""
    with engine.connect() as connection:
        if engine.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_lock(:id)"), {"id": MIGRATION_LOCK_ID})
            connection.commit()
        try:
            _alembic(connection, "upgrade", "head")
        finally:
            if engine.dialect.name == "postgresql":
                connection.execute(text("SELECT pg_advisory_unlock(:id)"), {"id": MIGRATION_LOCK_ID})
                connection.commit()


def downgrade(engine: Engine, revision: str = "base") -> None:
    with engine.connect() as connection:
        _alembic(connection, "downgrade", revision)


def _alembic(connection, action: str, revision: str) -> None:
    """Run Alembic; on SQLite with foreign keys off, as SQLite documents for changing a table.

    SQLite changes a column by copying its table and dropping the old one, and with foreign
    keys on, dropping ``users`` would first delete every conversation (ON DELETE CASCADE).
    The pragma is a no-op inside a transaction, so it is set on the bare connection.
    """
    sqlite = connection.dialect.name == "sqlite"
    if sqlite:
        connection.connection.dbapi_connection.execute("PRAGMA foreign_keys=OFF")
    try:
        _run_alembic(connection, action, revision)
        if sqlite and connection.exec_driver_sql("PRAGMA foreign_key_check").first() is not None:
            raise RuntimeError("the migration left rows whose foreign keys point nowhere")
    finally:
        if sqlite:
            connection.commit()
            connection.connection.dbapi_connection.execute("PRAGMA foreign_keys=ON")


def _run_alembic(connection, action: str, revision: str) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    getattr(command, action)(config, revision)
    connection.commit()
