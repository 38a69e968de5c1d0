"""Faults survived and secrets kept: name resolution, a dropped database connection, the logs."""

from __future__ import annotations

import logging
import uuid

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import IntegrityError
from streamlit.testing.v1 import AppTest

from chatbot import db as database
from chatbot import logs, store
from chatbot.errors import LangflowUnreachable
from chatbot.langflow import LangflowClient
from chatbot.models import User
from tests.apps import ENTRY, ask, logged_in
from tests.conftest import postgres_url


def test_a_host_that_does_not_resolve_is_reported_as_unreachable():
    client = LangflowClient(base_url="http://langflow.invalid:7860", flow_id="f", api_key=None, timeout=5)
    with pytest.raises(LangflowUnreachable, match="host name not found. Check LANGFLOW_URL"):
        client.run("hello", session_id="s-1")


@pytest.mark.postgres
def test_the_next_action_works_after_postgres_drops_the_connections(postgres_schema_url):
    name = f"chatbot-test-{uuid.uuid4().hex[:8]}"
    engine = database.make_engine(f"{postgres_schema_url}&application_name={name}", pool_size=2)
    database.migrate(engine)
    db = database.session_factory(engine)
    with db.begin() as session:
        alice = store.Actor.of(store.create_user(session, username="alice", password="pw-alice"))
    admin = create_engine(postgres_url())
    with admin.begin() as connection:
        dropped = connection.execute(
            text("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = :n"),
            {"n": name},
        ).scalar()
    admin.dispose()
    assert dropped >= 1
    with db.begin() as session:  # the pool notices the dead connection and opens a new one
        conversation = store.create_conversation(session, alice, title="after the outage")
    with db.begin() as session:
        assert [c.title for c in store.list_conversations(session, alice)] == ["after the outage"]
    assert conversation.id
    engine.dispose()


def test_passwords_and_the_api_key_never_reach_the_logs(app_db, replay_langflow, monkeypatch, capsys, caplog):
    monkeypatch.setenv("LOG_LEVEL", "DEBUG")
    monkeypatch.setattr(logs, "_configured", None)  # log to this test's captured stdout
    caplog.set_level(logging.DEBUG)
    failed = logged_in(password="not-alices-password")
    assert failed.error
    at = ask(logged_in(), "What is in my notes?")
    assert not at.exception
    AppTest.from_file(ENTRY, default_timeout=30).run()
    logged = capsys.readouterr().out + caplog.text
    assert "user 'alice' logged in" in logged and "failed login" in logged
    for secret in ("secret-alice", "not-alices-password", "sk-test-key-123"):
        assert secret not in logged
    monkeypatch.setattr(logs, "_configured", None)


def test_a_database_error_never_shows_the_statement_parameters(db, users, caplog):
    """A crash log once printed an INSERT's parameters: a new admin's bcrypt hash."""
    secret = "$2b$12$" + "K" * 40 + "Xy7Qz3Wv8Pn5R"  # shaped like a bcrypt hash
    caplog.set_level(logging.INFO)
    caplog.set_level(logging.INFO, logger="sqlalchemy.engine")  # which then logs every statement
    with pytest.raises(IntegrityError) as raised, db.begin() as session:  # alice exists already
        session.add(User(username="alice", name="Alice again", password_hash=secret, role="admin"))
        session.flush()
    assert "SQL parameters hidden" in str(raised.value)
    for shown in (str(raised.value), caplog.text):
        assert secret[-8:] not in shown  # SQLAlchemy shortens long values to their ends
    assert "INSERT INTO users" in caplog.text  # the statement is still logged, without its values
