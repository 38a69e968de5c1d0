"""The st.cache_resource factories: settings, database, HTTP session, engines, the replay worker.
The one place that caches."""

from __future__ import annotations

import atexit
import hashlib
import logging
from pathlib import Path

import streamlit as st
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from chatbot import db
from chatbot.config import NOTES, Settings, load_settings
from chatbot.engine import ChatBackend
from chatbot.errors import ConfigError, StoreError
from chatbot.flows import FlowDirectory, Route
from chatbot.langflow import LangflowClient, make_http_session
from chatbot.logs import configure_logging
from chatbot.notes import NotesEngine, NotesIndex, notes_signature
from chatbot.replays.worker import ReplayWorker

logger = logging.getLogger(__name__)
NOTES_CHECK_SECONDS = 5
SHUTDOWN_SECONDS = 3.0  # how long a stopping server waits for a replayed question to hand back  # a changed note is re-indexed at the first question after this


def settings() -> Settings:
    """Settings from the environment, then st.secrets (read every run: cheap, and never stale)."""
    try:
        secrets = dict(st.secrets)
    except FileNotFoundError:
        secrets = {}
    loaded = load_settings(secrets=secrets)
    configure_logging(loaded.log_level, loaded.log_format)
    return loaded


@st.cache_resource(show_spinner=False)
def database(database_url: str, pool_size: int = 10) -> sessionmaker[Session]:
    """The engine, migrated once per process; sessions for one user action each."""
    engine = db.make_engine(database_url, pool_size=pool_size)
    try:
        db.migrate(engine)
    except SQLAlchemyError as exc:
        engine.dispose()
        raise StoreError(
            "Cannot open the database. Check DATABASE_URL and that the database server is running.",
            detail=str(exc),
        ) from exc
    logger.info("database ready: %s", engine.url.render_as_string(hide_password=True))
    return db.session_factory(engine)


@st.cache_resource(show_spinner=False)
def readonly_database(database_url: str, pool_size: int = 10) -> sessionmaker[Session]:
    """Read-only sessions on the same pool (long exports never hold the SQLite write lock)."""
    return db.readonly_factory(database(database_url, pool_size).kw["bind"])


@st.cache_resource(show_spinner=False)
def http_session():
    """One pooled requests.Session per process, shared by every browser session."""
    return make_http_session()


@st.cache_resource(show_spinner=False, ttl=NOTES_CHECK_SECONDS)
def notes_fingerprint(notes_dir: str) -> str:
    """A digest of the notes folder's listing, looked at every few seconds, not on every click:
    listing 5,000 notes takes about 75 ms."""
    return hashlib.sha256(repr(notes_signature(Path(notes_dir))).encode()).hexdigest()


@st.cache_resource(show_spinner="Indexing your notes…", max_entries=4)
def notes_index(notes_dir: str, fingerprint: str) -> NotesIndex:
    """The notes index, rebuilt when a note is added, changed or removed (the fingerprint changes)."""
    index = NotesIndex.build(Path(notes_dir))
    logger.info("indexed %d notes (%d passages) from %s", index.note_count, index.passage_count, notes_dir)
    return index


def backend(config: Settings, flow: str | None = None) -> ChatBackend:
    """The engine that answers a conversation: the catalog flow it asks (None: the default one),
    or the notes engine. A flow no longer in the catalog is still asked, by its id."""
    key = flow or (config.choices() or [NOTES])[0]
    if key == NOTES:
        notes_dir = str(config.notes_dir)
        return NotesEngine(notes_index(notes_dir, notes_fingerprint(notes_dir)))
    if not config.uses_langflow:
        raise ConfigError("LANGFLOW_URL", f"is not set, and this conversation asks the Langflow flow {key!r}. "
                          "Start a new chat to ask your notes, or set LANGFLOW_URL again.")
    return LangflowClient(
        base_url=config.langflow_url, flow_id=key, api_key=config.langflow_api_key,
        timeout=config.langflow_timeout, http=http_session(),
    )


def route(config: Settings, flow: str | None = None) -> Route:
    """Where a conversation's questions go: its catalog flow (None: the default) with the
    catalog's tweaks and the directory that knows the flow, or the notes engine."""
    key = flow or (config.choices() or [NOTES])[0]
    engine = backend(config, key)
    if engine.engine != "langflow":
        return Route(engine)
    entry = config.flow_entry(key)
    directory = flow_directory(config.langflow_url, config.langflow_api_key, config.langflow_timeout)
    return Route(engine, key, directory, tweaks=entry.tweaks if entry else {})


@st.cache_resource(show_spinner=False)
def flow_directory(langflow_url: str, api_key: str | None, timeout: float) -> FlowDirectory:
    """What Langflow says of the catalog's flows (names, versions, file inputs), one per process."""
    http = http_session()
    return FlowDirectory(lambda key: LangflowClient(
        base_url=langflow_url, flow_id=key, api_key=api_key, timeout=timeout, http=http))


def _stop_worker(worker: ReplayWorker | None) -> None:
    if worker is not None:
        worker.stop()


class _ReplayThreadsUseCaches(logging.Filter):
    """Drop Streamlit's "missing ScriptRunContext" warning for the replay worker's threads: they
    use the process's cached notes index and HTTP session outside any script run, by design."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.args and str(record.args[0]).startswith("replay-"))


_REPLAY_THREADS = _ReplayThreadsUseCaches()


@st.cache_resource(show_spinner=False, on_release=_stop_worker)  # a cleared cache stops its threads
def replay_worker(database_url: str, pool_size: int = 10, concurrency: int = 2, *,
                  enabled: bool = True) -> ReplayWorker | None:
    """This process's replay worker, started at the first page load, so a restarted app resumes
    queued and interrupted replays at once; None when REPLAY_WORKER is false (the command line
    runs them). Its threads ask flows through ``route`` with the settings of the moment."""
    if not enabled:
        return None
    logging.getLogger("streamlit.runtime.scriptrunner_utils.script_run_context").addFilter(_REPLAY_THREADS)
    worker = ReplayWorker(database(database_url, pool_size), lambda key: route(settings(), key),
                          concurrency=concurrency)
    # A stopping server (SIGTERM: a rollout) hands its running questions back at once, for the
    # next worker anywhere; a killed one's wait for a worker that sees it is gone.
    atexit.register(worker.stop, SHUTDOWN_SECONDS)
    return worker.start()
