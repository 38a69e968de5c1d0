"""The login gate with single sign-on through AppTest on the real app.py (st.user seeded)."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import select
from streamlit.testing.v1 import AppTest

from chatbot import store
from chatbot.models import User
from tests.apps import ENTRY, texts

AUTH = {"redirect_uri": "http://localhost:8501/oauth2callback", "cookie_secret": "x" * 40,
        "okta": {"client_id": "chat", "client_secret": "s",
                 "server_metadata_url": "https://acme.okta.com/.well-known/openid-configuration"}}
ANN = {"is_logged_in": True, "provider": "okta", "sub": "00u-ann", "email": "ann@example.com",
       "email_verified": True, "name": "Ann Example", "groups": ["chat-admins"]}


def app(user: dict, **query: str) -> AppTest:
    at = AppTest.from_file(ENTRY, default_timeout=30)
    at.secrets["auth"] = AUTH
    at.user = user
    at.query_params.update(query)
    return at.run()


def buttons(at: AppTest) -> list[str]:
    """The buttons a person sees (not ui's hidden "Reconnected" button, which a script presses)."""
    return [button.label for button in at.button if button.label != "Reconnected"]


def test_the_login_page_offers_the_provider_beside_the_password_form(app_db):
    at = app({"is_logged_in": False})
    assert not at.exception, at.exception
    assert "Sign in with Okta" in buttons(at)
    assert [box.label for box in at.text_input][:2] == ["Username", "Password"]


def test_without_password_login_only_the_provider_is_offered(app_db, monkeypatch):
    monkeypatch.setenv("PASSWORD_LOGIN", "false")
    at = app({"is_logged_in": False})
    assert buttons(at) == ["Sign in with Okta"]
    assert not at.text_input


def test_without_password_login_an_empty_deployment_asks_for_no_setup_token(tmp_path, monkeypatch):
    monkeypatch.setenv("PASSWORD_LOGIN", "false")
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'empty.db'}")
    monkeypatch.delenv("LANGFLOW_URL", raising=False)
    at = app({"is_logged_in": False})
    assert buttons(at) == ["Sign in with Okta"]
    assert "Create the admin account" not in [title.value for title in at.title]


def test_a_signed_in_identity_opens_the_app_as_its_own_new_user(app_db):
    at = app({**ANN, "iat": int(time.time())})
    assert not at.exception, at.exception
    assert at.chat_input(key="chat_input") is not None
    assert "Signed in as **Ann Example** (analyst)" in [caption.value for caption in at.sidebar.caption]
    with app_db.begin() as session:
        user = session.scalar(select(User).where(User.auth_subject == "00u-ann"))
        assert (user.username, user.auth_provider, user.password_hash) == ("ann@example.com", "okta", None)


def test_the_admin_claim_setting_makes_an_admin(app_db, monkeypatch):
    monkeypatch.setenv("SSO_ADMIN_CLAIM", "groups=chat-admins")
    at = app({**ANN, "iat": int(time.time())})
    assert "Signed in as **Ann Example** (admin)" in [caption.value for caption in at.sidebar.caption]


def test_a_deactivated_user_is_refused_and_may_sign_out(app_db):
    app({**ANN, "iat": int(time.time()) - 5})
    with app_db.begin() as session:
        session.scalar(select(User).where(User.auth_subject == "00u-ann")).active = False
    at = app({**ANN, "iat": int(time.time())})
    assert not at.exception, at.exception
    assert "Your account (ann@example.com) is deactivated. Ask an admin to reactivate it." in texts(at)
    assert buttons(at) == ["Sign out and use another account"]
    assert not at.chat_input


@pytest.mark.parametrize(("outcome", "message"), [
    ("failed", "Single sign-on did not complete"), ("denied", "cancelled or refused by the sign-in provider")])
def test_a_failed_callback_is_explained_on_the_login_page(app_db, outcome, message):
    at = app({"is_logged_in": False}, sso=outcome)
    assert not at.exception, at.exception
    assert message in texts(at)
    assert "sso" not in at.query_params  # it must not follow the user to /chat


def test_a_password_user_still_logs_in_beside_single_sign_on(app_db):
    at = app({"is_logged_in": False})
    at.text_input[0].input("alice")
    at.text_input[1].input("secret-alice")
    next(button for button in at.button if button.label == "Login").click()
    at.run()
    assert not at.exception, at.exception
    assert "Signed in as **Alice** (analyst)" in [caption.value for caption in at.sidebar.caption]
    with app_db.begin() as session:
        assert store.get_user(session, "alice").last_login_at is not None


def test_an_address_outside_the_allowed_domains_is_refused_and_no_user_is_made(app_db, monkeypatch):
    monkeypatch.setenv("SSO_ALLOWED_DOMAINS", "corp.example")
    at = app({**ANN, "iat": int(time.time())})
    assert not at.exception, at.exception
    assert "may not sign in here" in texts(at)
    assert not at.chat_input
    with app_db.begin() as session:
        assert session.scalar(select(User).where(User.auth_subject == "00u-ann")) is None


def test_logging_out_ends_the_single_sign_on_session(app_db):
    at = app({**ANN, "iat": int(time.time())})
    next(button for button in at.sidebar.button if button.label == "Log out").click()
    at.run()
    assert not at.exception, at.exception
    assert "auth_sso" not in at.session_state and "actor" not in at.session_state
    at.run()  # st.logout emptied st.user: the next run is the login page
    assert "Sign in with Okta" in buttons(at)
    assert not at.chat_input
