"""Shared fixtures: a real SQLite file or a real PostgreSQL schema per test, users, and service checks."""

from __future__ import annotations

import functools
import os
import uuid
from pathlib import Path
from urllib.parse import quote

import pytest
import streamlit as st
from sqlalchemy import create_engine, text

from chatbot import db as database
from chatbot import store
from chatbot.store import Actor
from tests.replay_server import FLOW_ID, ReplayServer, echo_flow

pytest_plugins = [
    "tests.langflow_server",  # the real Langflow server fixtures (marker: langflow)
    "tests.browser",  # one Chromium for the e2e and deploy suites
]

IN_CI = os.environ.get("CI", "").lower() == "true"
NOTES = Path(__file__).resolve().parent.parent / "notes"


@pytest.fixture(autouse=True)
def fast_password_hashing(monkeypatch):
    """bcrypt at its lowest cost: the same code path, a hundred times faster."""
    monkeypatch.setattr(store, "BCRYPT_ROUNDS", 4)


def unavailable(reason: str) -> None:
    """Skip on a laptop that lacks a service; fail in CI, where every service must be there."""
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: tests that need it must run, not skip)")
    pytest.skip(reason)


def postgres_url() -> str:
    url = os.environ.get("TEST_DATABASE_URL")
    if not url:
        unavailable("TEST_DATABASE_URL is not set: no PostgreSQL to test against")
    return url


@pytest.fixture
def postgres_schema_url():
    """A fresh schema in the test PostgreSQL, dropped afterwards: tests never see each other's rows."""
    base = postgres_url()
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base)
    try:
        with admin.begin() as connection:
            connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    except Exception as exc:  # connection refused, auth: the service is not usable
        admin.dispose()
        unavailable(f"PostgreSQL at TEST_DATABASE_URL is not reachable: {exc}")
    separator = "&" if "?" in base else "?"
    yield f"{base}{separator}options={quote(f'-csearch_path={schema}')}"
    with admin.begin() as connection:
        connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request, tmp_path):
    """The URL of an empty, migrated-on-demand database: a SQLite file, or a PostgreSQL schema."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'chatbot.db'}"
    return request.getfixturevalue("postgres_schema_url")


@pytest.fixture
def engine(database_url):
    engine = database.make_engine(database_url, pool_size=5)
    database.migrate(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def db(engine):
    """Session factory: ``with db.begin() as session`` is one committed action."""
    return database.session_factory(engine)


@pytest.fixture
def users(db) -> dict[str, Actor]:
    """alice and bob (analysts) and root (admin), with password 'secret-<name>'."""
    actors = {}
    with db.begin() as session:
        for name, role in (("alice", "analyst"), ("bob", "analyst"), ("root", "admin")):
            user = store.create_user(session, username=name, password=f"secret-{name}", role=role,
                                     name=name.title(), email=f"{name}@example.com")
            actors[name] = Actor.of(user)
    return actors


@pytest.fixture
def app_db(tmp_path, monkeypatch):
    """The app's settings pointed at a fresh SQLite file with alice and bob (analysts) and root
    (admin); caches cleared."""
    url = f"sqlite:///{tmp_path / 'app.db'}"
    for name in ("LANGFLOW_URL", "LANGFLOW_FLOW_ID", "LANGFLOW_FLOWS", "LANGFLOW_API_KEY", "CHATBOT_ENV", "MAX_MESSAGE_CHARS",
                 "UPLOAD_TYPES", "MAX_UPLOAD_MB"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("NOTES_DIR", str(NOTES))
    monkeypatch.setenv("AUTH_COOKIE_KEY", "test-cookie-key-0123456789abcdefghij")
    engine = database.make_engine(url)
    database.migrate(engine)
    factory = database.session_factory(engine)
    with factory.begin() as session:
        store.create_user(session, username="alice", password="secret-alice", name="Alice")
        store.create_user(session, username="bob", password="secret-bob", name="Bob")
        store.create_user(session, username="root", password="secret-root", name="Root", role="admin")
    st.cache_resource.clear()
    yield factory
    st.cache_resource.clear()
    engine.dispose()


@pytest.fixture
def replay_langflow(monkeypatch):
    """A local server speaking Langflow's wire format, configured as the app's Langflow."""
    with ReplayServer(default=functools.partial(echo_flow, tokens=True)) as server:
        monkeypatch.setenv("LANGFLOW_URL", server.url)
        monkeypatch.setenv("LANGFLOW_FLOW_ID", FLOW_ID)
        monkeypatch.setenv("LANGFLOW_API_KEY", "sk-test-key-123")
        yield server
