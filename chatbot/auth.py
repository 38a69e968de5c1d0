"""The login gate: the password form, the login cookie, first-admin setup, logout.

The login cookie is streamlit-authenticator's (a JWT of the user name and an expiry date signed
with AUTH_COOKIE_KEY), so a browser logged in before keeps its login. The form and the cookie are
the app's own, for three faults of the authenticator's widget under load:
- its cookie was written by a component in an iframe, which loads after the page: a reload in
  the first second after login found no cookie and logged the user out;
- that component reported back with a rerun on every page load, which could overtake a login;
- the form was drawn, then the login checked, then the page drawn under the form.
Here the login is checked in the form's callback, before the run that draws the page, and the
cookie is written by a small script in the page itself (allowed by its hash in the CSP).
"""

from __future__ import annotations

import hashlib
import hmac
import html
import logging
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jwt
import streamlit as st
from sqlalchemy.orm import Session, sessionmaker

from chatbot import accounts, store
from chatbot.config import Settings, cookie_key
from chatbot.errors import ChatbotError
from chatbot.render import plain_text
from chatbot.store import Actor

logger = logging.getLogger(__name__)
COOKIE_SCRIPT = (Path(__file__).resolve().parent.parent / "assets" / "login-cookie.js").read_text(encoding="utf-8")
COOKIE_SETTLE_SECONDS = 30.0  # the cookie-writing element stays this long after a login
USER_KEY = "auth_user_id"  # the logged-in user's id in st.session_state


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


def first_admin_form(db: sessionmaker[Session], token: str, policy: accounts.LoginPolicy) -> None:
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
        password = st.text_input("Password", type="password", key="setup_password",
                                 help=f"At least {policy.min_length} characters; a few unrelated words are best.")
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
        _create_first_admin(db, username, name, password, policy)


def _create_first_admin(db: sessionmaker[Session], username: str, name: str, password: str,
                        policy: accounts.LoginPolicy) -> None:
    try:
        accounts.check_password(password, policy=policy, username=username.strip().lower(), name=name)
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


# -- the login gate ------------------------------------------------------------------------


def login(db: sessionmaker[Session], settings: Settings) -> Actor | None:
    """The logged-in user, from this browser session or its login cookie; else the login form."""
    user_id = st.session_state.get(USER_KEY) or _user_from_cookie(db, settings)
    if user_id is not None:
        with db.begin() as session:
            user = accounts.current_user(user_id, session=session)
            actor = Actor.of(user) if user is not None else None
            must_change = user is not None and user.must_change_password
        if actor is None:  # deactivated or removed since: this session ends here
            logger.info("ended the session of user id %s: deactivated or removed", user_id)
            _forget_login(settings)
            st.warning("Your account is not active any more. Ask an admin.", icon=":material/block:")
            return None
        st.session_state[USER_KEY] = actor.id
        _write_cookie(settings)
        if must_change:
            _choose_password_form(db, actor, accounts.LoginPolicy.of(settings))
            return None
        return actor
    _login_form(db, settings)
    return None


def _login_form(db: sessionmaker[Session], settings: Settings) -> None:
    if st.session_state.get("auth_logged_out"):
        _erase_cookie(settings)
    if st.session_state.pop("auth_bye", False):
        st.info("You are logged out.", icon=":material/logout:")
    if notice := st.session_state.pop("auth_notice", None):
        st.success(notice, icon=":material/check_circle:")
    with st.form("auth_login"):
        st.subheader("Login")
        st.text_input("Username", key="auth_username", autocomplete="username")
        st.text_input("Password", type="password", key="auth_password", autocomplete="current-password")
        st.form_submit_button("Login", on_click=_submit_login, args=(db, settings))
    if refusal := st.session_state.pop("auth_refusal", None):
        st.error(refusal, icon=":material/lock:")


def _submit_login(db: sessionmaker[Session], settings: Settings) -> None:
    """The Login button's callback: runs before the next run, so that run already draws the page."""
    username = st.session_state.get("auth_username", "")
    password = st.session_state.pop("auth_password", "")
    st.session_state["auth_password"] = ""  # never kept, never sent back
    address = client_address(settings)
    try:
        with db.begin() as session:
            outcome = accounts.attempt_login(username, password, session=session, address=address,
                                             policy=accounts.LoginPolicy.of(settings))
            user_id = outcome.user.id if outcome.user else None
    except ChatbotError as exc:
        st.session_state["auth_refusal"] = plain_text(f"Logging in failed. {exc}")
        return
    if user_id is None:
        logger.warning("failed login for %r from %s: %s", username[:80], address or "an unknown address",
                       outcome.refusal)
        st.session_state["auth_refusal"] = outcome.refusal
        return
    logger.info("user %r logged in", username.strip().lower())
    st.session_state[USER_KEY] = user_id
    st.session_state["auth_cookie"] = (*_encode_cookie(username.strip().lower(), settings), time.monotonic())
    st.session_state.pop("auth_logged_out", None)


def client_address(settings: Settings) -> str | None:
    """The browser's address: CLIENT_ADDRESS_HEADER when a proxy sets it (X-Real-IP behind
    deploy/'s nginx, which overwrites whatever the browser sent), else the connection's."""
    if settings.client_address_header:
        value = st.context.headers.get(settings.client_address_header)
        if value:
            return value.split(",")[-1].strip()[:100]  # X-Forwarded-For: the proxy appended the last one
    address = st.context.ip_address
    return address if isinstance(address, str) and address else None


def _choose_password_form(db: sessionmaker[Session], actor: Actor, policy: accounts.LoginPolicy) -> None:
    """After a one-time password: the user chooses their own before anything else."""
    st.title("Choose your password")
    st.write(f"Your admin gave you a one-time password. Choose your own: at least {policy.min_length} "
             "characters, not your name; a few unrelated words are best.")
    with st.form("auth_choose"):
        new = st.text_input("New password", type="password", key="auth_new_password", autocomplete="new-password")
        repeat = st.text_input("Repeat the new password", type="password", key="auth_repeat_password",
                               autocomplete="new-password")
        submitted = st.form_submit_button("Save password")
    if not submitted:
        return
    if new != repeat:
        st.error("The two passwords differ.")
        return
    try:
        with db.begin() as session:
            accounts.change_own_password(actor.id, new, session=session, policy=policy)
    except ChatbotError as exc:
        st.error(plain_text(str(exc)))
        return
    logger.info("user %r chose their password", actor.username)
    st.rerun()


# -- the login cookie ----------------------------------------------------------------------


def _encode_cookie(username: str, settings: Settings) -> tuple[str, float]:
    """The login cookie's value and its expiry (a timestamp), as streamlit-authenticator wrote them."""
    expires = (datetime.now() + timedelta(days=settings.auth_cookie_days)).timestamp()
    return jwt.encode({"username": username, "exp_date": expires}, cookie_key(settings), algorithm="HS256"), expires


def _user_from_cookie(db: sessionmaker[Session], settings: Settings) -> int | None:
    """The user id the browser's login cookie names, if it is valid; a bad one means "not logged in"."""
    token = st.context.cookies.get(settings.auth_cookie_name)
    if not token or st.session_state.get("auth_logged_out"):
        return None
    try:
        claims = jwt.decode(token, cookie_key(settings), algorithms=["HS256"])
    except jwt.PyJWTError as exc:
        logger.info("ignored a login cookie that does not decode: %s", exc)
        return None
    if not isinstance(claims.get("username"), str) or not claims.get("exp_date", 0) > time.time():
        return None
    with db.begin() as session:
        user = accounts.resume_login(claims["username"], session=session)
        user_id = user.id if user is not None else None
    if user_id is not None:
        logger.info("user %r logged in", claims["username"])  # by cookie: the same line as by the form
    return user_id


def _write_cookie(settings: Settings) -> None:
    """Keep the cookie-writing element on the page for a while after a login: drawn with the same
    content on every run, it stays mounted, and its script runs as soon as the browser has it."""
    token, expires_at, since = st.session_state.get("auth_cookie") or (None, 0.0, 0.0)
    if token is None or time.monotonic() - since > COOKIE_SETTLE_SECONDS:
        return
    expires = datetime.fromtimestamp(expires_at, UTC)
    _cookie_element(f"{settings.auth_cookie_name}={token}; expires={expires:%a, %d %b %Y %H:%M:%S} GMT; "
                    "path=/; SameSite=Strict")


def _cookie_element(cookie: str, key: str = "auth_cookie_writer") -> None:
    with st.container(key=key):  # hidden by app.css
        st.html(f"<span data-login-cookie=\"{html.escape(cookie)}\"></span><script>{COOKIE_SCRIPT}</script>",
                unsafe_allow_javascript=True)


def _forget_login(settings: Settings) -> None:
    for key in (USER_KEY, "actor", "auth_cookie"):
        st.session_state.pop(key, None)
    st.session_state["auth_logged_out"] = True  # the cookie this connection was opened with is stale
    _erase_cookie(settings)


def _erase_cookie(settings: Settings) -> None:
    _cookie_element(f"{settings.auth_cookie_name}=; expires=Thu, 01 Jan 1970 00:00:00 GMT; path=/; SameSite=Strict",
                    key="auth_cookie_eraser")


def logout_button(settings: Settings) -> None:
    """Log out: forget the session, and show the login form at once (its run deletes the login
    cookie in the browser, as every run of the form does until the next login)."""
    if not st.button("Log out", key="auth_logout"):
        return
    actor = st.session_state.get("actor")
    for key in (USER_KEY, "actor", "auth_cookie"):
        st.session_state.pop(key, None)
    st.session_state["auth_logged_out"] = True  # the cookie this connection was opened with is stale
    st.session_state["auth_bye"] = True
    logger.info("user %r logged out", actor.username if actor else None)
    st.rerun()
