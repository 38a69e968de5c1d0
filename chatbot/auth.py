"""Login gate: single sign-on with st.login, streamlit-authenticator's password form, first-admin
setup, logout. Both kinds of sign-in end at the same Actor; chatbot.sso decides who an SSO user is."""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from datetime import datetime

import jwt
import streamlit as st
import streamlit_authenticator as stauth
from sqlalchemy.orm import Session, sessionmaker
from streamlit_authenticator.utilities import LoginError

from chatbot import signin_routes, sso, store
from chatbot.config import Settings, cookie_key
from chatbot.errors import ChatbotError, SignInRefused
from chatbot.render import plain_text
from chatbot.store import Actor

logger = logging.getLogger(__name__)


def setup_token(key: str) -> str:
    """The one-time token for creating the first admin; the same on every replica sharing the key."""
    return hmac.new(key.encode(), b"chatbot-first-admin", hashlib.sha256).hexdigest()[:20]


@st.cache_resource(show_spinner=False)
def announce_setup_token(token: str) -> bool:
    """Print the setup token in the server log, once per process."""
    logger.warning("No users yet. Open the app and create the admin account with setup token: %s", token)
    return True


def needs_first_admin(db: sessionmaker[Session]) -> bool:
    with db.begin() as session:
        return store.count_users(session) == 0


def first_admin_form(db: sessionmaker[Session], token: str) -> None:
    """The one-time form shown while the database has no users."""
    announce_setup_token(token)
    st.title("Create the admin account")
    st.write(
        "This deployment has no users yet. Enter the **setup token** printed in the server's log "
        "(`No users yet… setup token: …`) and choose the admin's username and password."
    )
    with st.form("setup_form"):
        given = st.text_input("Setup token", type="password", key="setup_token")
        username = st.text_input("Username", key="setup_username")
        name = st.text_input("Full name", key="setup_name")
        password = st.text_input("Password", type="password", key="setup_password")
        repeat = st.text_input("Repeat password", type="password", key="setup_repeat")
        submitted = st.form_submit_button("Create admin")
    if not submitted:
        return
    if not hmac.compare_digest(given.strip(), token):
        logger.warning("first-admin setup refused: wrong setup token")
        st.error("The setup token is wrong. Copy it from the server's log.")
    elif password != repeat:
        st.error("The two passwords differ.")
    else:
        _create_first_admin(db, username, name, password)


def _create_first_admin(db: sessionmaker[Session], username: str, name: str, password: str) -> None:
    try:
        with db.begin() as session:
            if store.count_users(session):
                raise ChatbotError("An admin already exists: log in instead.")
            username = store.create_user(session, username=username, password=password, role="admin",
                                         name=name or None).username
    except ChatbotError as exc:
        st.error(plain_text(str(exc)))
        return
    logger.info("first admin %r created", username)
    st.session_state["auth_notice"] = plain_text(f"Admin {username} created. Log in below.")  # shown after the rerun
    st.rerun()


SSO_NOTICES = {
    signin_routes.FAILED: "Single sign-on did not complete: the answer from the sign-in provider was not "
                          "valid (an expired, reused or altered sign-in link). Sign in again.",
    signin_routes.DENIED: "Single sign-on was cancelled or refused by the sign-in provider. Sign in again, "
                          "or ask an admin if it keeps failing.",
}


def login(db: sessionmaker[Session], settings: Settings) -> Actor | None:
    """Show the ways to sign in until the user is authenticated; return the acting user.

    A single sign-on identity (st.user) comes first; otherwise the provider buttons and, when
    PASSWORD_LOGIN is on, the password form.
    """
    if settings.sso_providers and st.user.get("is_logged_in"):
        return _sso_actor(db, settings)
    _sso_notice()
    for provider in settings.sso_providers:
        if st.button(f"Sign in with {sso.provider_label(provider)}", key=f"auth_sso_{provider}",
                     icon=":material/login:"):
            st.session_state.pop("auth_sso_notice", None)
            st.login(None if provider == sso.DEFAULT else provider)
    if not settings.password_login:
        return None
    if settings.sso_providers:
        st.caption("Or sign in with a username and password:")
    return _password_login(db, settings)


def _sso_notice() -> None:
    """Say why the last single sign-on failed (signin_routes marks the redirect with ?sso=…).

    The mark leaves the URL at once (it must not follow the user to /chat) and the message
    stays for this browser session's login page.
    """
    if (outcome := st.query_params.get("sso")) is not None:
        del st.query_params["sso"]
        st.session_state["auth_sso_notice"] = SSO_NOTICES.get(outcome, SSO_NOTICES[signin_routes.FAILED])
    if notice := st.session_state.get("auth_sso_notice"):
        st.error(notice, icon=":material/error:")


def _sso_actor(db: sessionmaker[Session], settings: Settings) -> Actor | None:
    """The user of the signed-in identity, made on their first sign-in; refused ones can sign out."""
    claims = {key: value for key, value in st.user.items() if key != "tokens"}
    try:
        with db.begin() as session:
            actor = sso.sign_in(session, claims, sso.Policy.of(settings))
    except SignInRefused as exc:
        st.session_state.pop("actor", None)  # deactivated while signed in: their session ends too
        st.error(plain_text(str(exc)), icon=":material/block:")
        if st.button("Sign out and use another account", key="auth_sso_refused_logout"):
            st.logout()
        return None
    st.session_state.pop("auth_sso_notice", None)
    st.session_state["auth_sso"] = claims.get("provider", sso.DEFAULT)
    return actor


def _password_login(db: sessionmaker[Session], settings: Settings) -> Actor | None:
    """streamlit-authenticator's form and cookie, backed by the users table."""
    with db.begin() as session:
        creds = store.credentials(session)
    before = {name: user["failed_login_attempts"] for name, user in creds["usernames"].items()}
    authenticator = stauth.Authenticate(
        creds, settings.auth_cookie_name, cookie_key(settings), settings.auth_cookie_days, auto_hash=False
    )
    _log_bad_cookies(authenticator)
    if notice := st.session_state.pop("auth_notice", None):
        st.success(notice, icon=":material/check_circle:")
    try:
        authenticator.login(location="main", max_login_attempts=settings.login_max_attempts, key="auth_login")
    except LoginError as exc:
        st.error(f"{exc}. Ask an admin to reset your password (python -m chatbot users set-password).")
    _record_failures(db, creds, before)
    status = st.session_state.get("authentication_status")
    if status is False:
        st.error("Username or password is incorrect.")
    if not status:
        return None
    return _actor(db, authenticator, st.session_state["username"])


def _log_bad_cookies(authenticator: stauth.Authenticate) -> None:
    """A login cookie that does not decode (expired key, tampered, stale) means "not logged in".

    streamlit-authenticator prints the reason to stdout, which breaks JSON-lines logs; this
    authenticator logs it instead (same decoding, same False result).
    """
    model = authenticator.cookie_controller.cookie_model

    def decode() -> dict | bool:
        try:
            return jwt.decode(model.token, model.cookie_key, algorithms=["HS256"])
        except jwt.PyJWTError as exc:
            logger.info("ignored a login cookie that does not decode: %s", exc)
            return False

    model._token_decode = decode


def _record_failures(db: sessionmaker[Session], creds: dict, before: dict[str, int]) -> None:
    for name, user in creds["usernames"].items():
        if user.get("failed_login_attempts", 0) > before.get(name, 0):
            with db.begin() as session:
                count = store.record_failed_login(session, name)
            logger.warning("failed login for user %r (%d in a row)", name, count)


def _actor(db: sessionmaker[Session], authenticator: stauth.Authenticate, username: str) -> Actor | None:
    """The logged-in user from the database; a removed user is logged out."""
    with db.begin() as session:
        user = store.get_user(session, username)
        if user is not None and st.session_state.get("auth_recorded") != username:
            store.record_login(session, username)
        actor = Actor.of(user) if user is not None else None
    if actor is None:
        authenticator.authentication_controller.logout()
        st.rerun()
    _keep_login_cookie(authenticator)
    st.session_state["auth_authenticator"] = authenticator
    if st.session_state.get("auth_recorded") != username:
        logger.info("user %r logged in", username)
        st.session_state["auth_recorded"] = username
        _remember_login_cookie(authenticator)
        _keep_login_cookie(authenticator)
        st.rerun()  # a run without the login form: one drawn in this run could outlive the login
    return actor


COOKIE_SETTLE_SECONDS = 30.0


def _remember_login_cookie(authenticator: stauth.Authenticate) -> None:
    """After a form login, note the cookie the authenticator just asked the browser to store."""
    model = authenticator.cookie_controller.cookie_model
    if model.exp_date:  # None after a login from an existing cookie: nothing to store
        st.session_state["auth_cookie"] = (model._token_encode(), model.exp_date, time.monotonic())


def _keep_login_cookie(authenticator: stauth.Authenticate) -> None:
    """Keep the cookie-writing component on the page for a while after login.

    streamlit-authenticator renders it only in the login run; a rerun soon after (another
    component reporting back) can remove it before the browser ran it, and then a reload
    logs the user out. Drawn with the same arguments on every run, it stays mounted and
    runs once.
    """
    token, expires, since = st.session_state.get("auth_cookie") or (None, 0.0, 0.0)
    if token is None or time.monotonic() - since > COOKIE_SETTLE_SECONDS:
        return
    model = authenticator.cookie_controller.cookie_model
    model.cookie_manager.set(model.cookie_name, token, key="auth_cookie_keep",
                             expires_at=datetime.fromtimestamp(expires))



def logout_button() -> None:
    """Log out: forget the session, delete the login cookie in the browser, show nothing else.

    The run stops right after, so the page is not drawn for a user who just left and the
    cookie-deleting component stays on the page long enough to run in the browser. A single
    sign-on session ends with st.logout (Streamlit's identity cookie, then the provider's own
    sign-out), whose route also deletes the password cookie (chatbot.signin_routes).
    """
    authenticator = st.session_state.get("auth_authenticator")
    provider = st.session_state.get("auth_sso")
    if (authenticator is None and provider is None) or not st.button("Log out", key="auth_logout"):
        return
    actor = st.session_state.get("actor")
    if authenticator is not None:
        authenticator.authentication_controller.logout()
        authenticator.cookie_controller.delete_cookie()
    for key in ("auth_recorded", "actor", "auth_cookie", "auth_sso"):
        st.session_state.pop(key, None)
    logger.info("user %r logged out", actor.username if actor else st.session_state.get("username"))
    if provider is not None:
        st.logout()
    st.info("You are logged out.")
    st.stop()
