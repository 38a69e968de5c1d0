"""The login gate: single sign-on with st.login, the password form, the login cookie, first-admin
setup, logout. Both kinds of sign-in end at the same Actor; chatbot.sso decides who an SSO user is.

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
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from chatbot import accounts, signin_routes, sso, store
from chatbot.config import Settings, cookie_key
from chatbot.errors import ChatbotError, SignInRefused
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


SSO_NOTICES = {
    signin_routes.FAILED: "Single sign-on did not complete: the answer from the sign-in provider was not "
                          "valid (an expired, reused or altered sign-in link). Sign in again.",
    signin_routes.DENIED: "Single sign-on was cancelled or refused by the sign-in provider. Sign in again, "
                          "or ask an admin if it keeps failing.",
}


def login(db: sessionmaker[Session], settings: Settings) -> Actor | None:
    """The logged-in user: a single sign-on identity (st.user), else this browser session's or its
    login cookie's password login; else the ways to sign in (provider buttons, the password form)."""
    if settings.sso_providers and st.user.get("is_logged_in"):
        return _sso_actor(db, settings)
    user_id = (st.session_state.get(USER_KEY) or _user_from_cookie(db, settings)) if settings.password_login else None
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
    if st.session_state.get("auth_logged_out"):
        _erase_cookie(settings)
    if st.session_state.pop("auth_bye", False):
        st.info("You are logged out.", icon=":material/logout:")
    _sso_buttons(settings)
    if settings.password_login:
        _login_form(db, settings)
    return None


# -- single sign-on ------------------------------------------------------------------------


def _sso_buttons(settings: Settings) -> None:
    """A "Sign in with <provider>" button per [auth] provider, and why the last sign-in failed."""
    _sso_notice()
    for provider in settings.sso_providers:
        if st.button(f"Sign in with {sso.provider_label(provider)}", key=f"auth_sso_{provider}",
                     icon=":material/login:"):
            st.session_state.pop("auth_sso_notice", None)
            st.login(None if provider == sso.DEFAULT else provider)
    if settings.sso_providers and settings.password_login:
        st.caption("Or log in with a username and password:")


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
    """The user of the signed-in identity, made on their first sign-in; refused ones can sign out.

    Checked on every run, so a user deactivated while signed in is refused at their next click.
    """
    claims = {key: value for key, value in st.user.items() if key != "tokens"}
    try:
        actor = _sign_in(db, claims, sso.Policy.of(settings))
    except SignInRefused as exc:
        st.session_state.pop("actor", None)
        st.error(plain_text(str(exc)), icon=":material/block:")
        if st.button("Sign out and use another account", key="auth_sso_refused_logout"):
            st.logout()
        return None
    st.session_state.pop("auth_sso_notice", None)
    st.session_state["auth_sso"] = claims.get("provider", sso.DEFAULT)
    return actor


def _sign_in(db: sessionmaker[Session], claims: dict, policy: sso.Policy) -> Actor:
    """sso.sign_in in a transaction of its own; once more if another tab made the same new user
    (or took the username) at the same moment, which the unique constraints refuse."""
    try:
        with db.begin() as session:
            return sso.sign_in(session, claims, policy)
    except IntegrityError:
        logger.info("single sign-on raced another sign-in of the same user; trying once more")
        with db.begin() as session:
            return sso.sign_in(session, claims, policy)


# -- the password form ---------------------------------------------------------------------


def _login_form(db: sessionmaker[Session], settings: Settings) -> None:
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
    cookie in the browser, as every run of the form does until the next login).

    A single sign-on session ends with st.logout: Streamlit's identity cookie, then the provider's
    own sign-out; its route deletes the password login's cookie too (chatbot.signin_routes).
    """
    if not st.button("Log out", key="auth_logout"):
        return
    actor = st.session_state.get("actor")
    provider = st.session_state.pop("auth_sso", None)
    for key in (USER_KEY, "actor", "auth_cookie"):
        st.session_state.pop(key, None)
    st.session_state["auth_logged_out"] = True  # the cookie this connection was opened with is stale
    st.session_state["auth_bye"] = True
    logger.info("user %r logged out", actor.username if actor else None)
    if provider is not None:
        st.logout()
        st.stop()
    st.rerun()
