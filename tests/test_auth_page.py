"""First-admin setup and the login gate through AppTest on the real app.py."""

from __future__ import annotations

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from chatbot import auth, logs, store
from chatbot import db as database
from tests.apps import ENTRY, logged_in, shown

COOKIE_KEY = "test-cookie-key-0123456789abcdefghij"


def empty_deployment(url: str, monkeypatch):
    """The app's settings pointed at a migrated database with no users; caches cleared."""
    monkeypatch.delenv("LANGFLOW_URL", raising=False)
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("AUTH_COOKIE_KEY", COOKIE_KEY)
    st.cache_resource.clear()
    engine = database.make_engine(url)
    database.migrate(engine)
    yield database.session_factory(engine)
    st.cache_resource.clear()
    engine.dispose()


@pytest.fixture
def empty_app(tmp_path, monkeypatch):
    yield from empty_deployment(f"sqlite:///{tmp_path / 'empty.db'}", monkeypatch)


@pytest.fixture
def empty_app_on(database_url, monkeypatch):
    """A fresh deployment on a SQLite file or a PostgreSQL schema."""
    yield from empty_deployment(database_url, monkeypatch)


def fill_setup(at: AppTest, token: str, password="staple orbit canyon", repeat=None, name="The Admin") -> AppTest:
    values = {"setup_token": token, "setup_username": "Admin", "setup_name": name,
              "setup_password": password, "setup_repeat": repeat or password}
    for key, value in values.items():
        at.text_input(key=key).input(value)
    at.button[0].click().run()
    assert not at.exception, at.exception
    return at


def test_a_fresh_deployment_asks_for_the_setup_token_printed_in_the_log(empty_app, capsys, monkeypatch):
    monkeypatch.setattr(logs, "_configured", None)  # log to this test's captured stdout
    at = AppTest.from_file(ENTRY, default_timeout=30).run()
    assert [t.value for t in at.title] == ["Create the admin account"]
    assert len(at.chat_input) == 0
    assert f"setup token: {auth.setup_token(COOKIE_KEY)}" in capsys.readouterr().out
    monkeypatch.setattr(logs, "_configured", None)


def test_a_wrong_setup_token_creates_nobody(empty_app):
    at = fill_setup(AppTest.from_file(ENTRY, default_timeout=30).run(), "guessed-token")
    assert [e.value for e in at.error] == ["The setup token is wrong. Copy it from the server's log."]
    with empty_app.begin() as session:
        assert store.count_users(session) == 0


def test_the_right_token_creates_the_admin_who_can_then_log_in(empty_app):
    at = fill_setup(AppTest.from_file(ENTRY, default_timeout=30).run(), auth.setup_token(COOKIE_KEY))
    assert not at.error
    assert [shown(s.value) for s in at.success] == ["Admin admin created. Log in below."]  # above the login form
    with empty_app.begin() as session:
        admin = store.get_user(session, "admin")
        assert (admin.role, admin.name) == ("admin", "The Admin")
    at = logged_in("admin", "staple orbit canyon")
    assert len(at.chat_input) == 1
    assert any("The Admin" in c.value and "admin" in c.value for c in at.sidebar.caption)


def test_a_full_name_with_a_nul_byte_creates_the_admin(empty_app_on):
    """PostgreSQL raised an unhandled DataError for the full name 'Ad\\x00min'."""
    at = fill_setup(AppTest.from_file(ENTRY, default_timeout=30).run(), auth.setup_token(COOKIE_KEY),
                    name="Ad\x00min")
    assert not at.error
    with empty_app_on.begin() as session:
        assert store.get_user(session, "admin").name == "Ad\ufffdmin"


def test_mismatched_passwords_create_nobody(empty_app):
    at = fill_setup(AppTest.from_file(ENTRY, default_timeout=30).run(), auth.setup_token(COOKIE_KEY),
                    repeat="something-else")
    assert [e.value for e in at.error] == ["The two passwords differ."]
    with empty_app.begin() as session:
        assert store.count_users(session) == 0


def test_the_setup_token_depends_on_the_cookie_key():
    assert auth.setup_token("key-one") != auth.setup_token("key-two")
    assert auth.setup_token("key-one") == auth.setup_token("key-one")


def test_too_many_failed_logins_lock_the_account_with_one_message(app_db, monkeypatch):
    monkeypatch.setenv("LOGIN_MAX_ATTEMPTS", "2")
    assert [e.value for e in logged_in(password="wrong-password").error] == ["Username or password is incorrect."]
    locked = logged_in(password="wrong-password")
    assert [e.value for e in locked.error] == [
        "Too many failed logins: logging in is locked for 1 min. Try again then."]
    at = logged_in()  # the right password, too early
    assert len(at.chat_input) == 0
    assert len(at.error) == 1 and at.error[0].value.startswith("Too many failed logins: logging in is locked for ")


def test_a_weak_admin_password_is_refused_saying_why(empty_app):
    at = fill_setup(AppTest.from_file(ENTRY, default_timeout=30).run(), auth.setup_token(COOKIE_KEY),
                    password="x")
    assert [shown(e.value) for e in at.error] == ["The password is too short (1 characters): use at least 12."]
    with empty_app.begin() as session:
        assert store.count_users(session) == 0


def test_logging_out_shows_the_login_form_at_once(app_db):
    at = logged_in()
    at.sidebar.button(key="auth_logout").click().run()
    assert not at.exception
    assert [i.value for i in at.info] == ["You are logged out."] and len(at.chat_input) == 0
    assert [t.label for t in at.text_input] == ["Username", "Password"]
    at.run()  # and stays logged out
    assert len(at.chat_input) == 0 and [t.label for t in at.text_input] == ["Username", "Password"]
