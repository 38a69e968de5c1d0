"""Single sign-on: claims to user and role, on SQLite and PostgreSQL; the [auth] and SSO_* settings."""

from __future__ import annotations

import contextlib
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import func, select

from chatbot import accounts, auth, sso, store
from chatbot.config import load_settings
from chatbot.errors import ConfigError, SignInRefused
from chatbot.models import AuditEntry, User
from chatbot.sso import Policy

NO_RULES = Policy()
AUTH = {"redirect_uri": "http://localhost:8501/oauth2callback", "cookie_secret": "x" * 40}
PROVIDER = {"client_id": "chat", "client_secret": "s", "server_metadata_url": "https://idp.example/.well-known/openid-configuration"}


def claims(sub="sub-ann", provider="okta", **extra):
    """An ID token's claims as st.user shows them."""
    return {"sub": sub, "provider": provider, "email": "ann@example.com", "email_verified": True,
            "name": "Ann Example", "iat": int(time.time()), **extra}


def audit(db) -> list[tuple[str, str]]:
    with db.begin() as session:
        return [(entry.action, entry.target) for entry in session.scalars(select(AuditEntry).order_by(AuditEntry.id))]


def sign_in(db, token, policy=NO_RULES):
    with db.begin() as session:
        return sso.sign_in(session, token, policy)


def test_first_sign_in_creates_an_analyst_with_no_password(db):
    actor = sign_in(db, claims())
    with db.begin() as session:
        user = session.get(User, actor.id)
        assert (user.username, user.name, user.email, user.role) == ("ann@example.com", "Ann Example", "ann@example.com", "analyst")
        assert (user.auth_provider, user.auth_subject, user.password_hash) == ("okta", "sub-ann", None)
        assert user.last_login_at is not None
    assert audit(db) == [("user.add", "ann@example.com (analyst) at their first sign-in with okta"),
                         ("sso.login", "ann@example.com via okta")]


def test_the_same_subject_is_the_same_user_whatever_name_or_email_it_brings(db):
    first = sign_in(db, claims())
    again = sign_in(db, claims(email="ann.new@example.com", name="Ann Renamed", iat=int(time.time()) + 5))
    assert again.id == first.id
    with db.begin() as session:
        assert store.count_users(session) == 1


def test_a_user_is_never_matched_by_name_or_email(db, users):
    """alice@example.com is alice's e-mail (a password user); a stranger's token with that address is
    another user."""
    actor = sign_in(db, claims(sub="someone-else", email="alice@example.com", name="Alice"))
    assert actor.id != users["alice"].id
    assert actor.username == "alice@example.com"
    again = sign_in(db, claims(sub="third", email="alice@example.com", name="Alice"))
    assert again.username == "alice@example.com-2"


def test_two_tabs_signing_a_new_user_in_at_once_make_one_user(db, monkeypatch):
    """Both tabs find no user and create one; the database refuses the second, which signs in
    again and finds the first's (on SQLite the second waits for the first's write instead)."""
    together = threading.Barrier(2, timeout=3)
    create = sso._create

    def create_at_once(session, identity, role):
        with contextlib.suppress(threading.BrokenBarrierError):
            together.wait()
        return create(session, identity, role)

    monkeypatch.setattr(sso, "_create", create_at_once)
    token = claims(sub="sub-race")
    with ThreadPoolExecutor(2) as pool:
        first, second = pool.map(lambda _tab: auth._sign_in(db, token, NO_RULES), range(2))
    assert first == second
    with db.begin() as session:
        assert session.scalar(select(func.count()).select_from(User).where(User.auth_subject == "sub-race")) == 1
    assert [action for action, _target in audit(db)] == ["user.add", "sso.login"]


def test_the_same_subject_at_another_provider_is_another_user(db):
    assert sign_in(db, claims(provider="okta")).id != sign_in(db, claims(provider="google")).id


def test_a_reload_with_the_same_token_is_not_another_sign_in(db):
    token = claims(iat=int(time.time()) - 2)
    sign_in(db, token)
    sign_in(db, token)
    assert [action for action, _ in audit(db)] == ["user.add", "sso.login"]
    sign_in(db, {**token, "iat": int(time.time()) + 2})  # signed in again: a new ID token
    assert [action for action, _ in audit(db)] == ["user.add", "sso.login", "sso.login"]


def test_a_group_claim_makes_an_admin(db):
    policy = Policy(admin_claim=("groups", "chat-admins"))
    assert sign_in(db, claims(groups=["staff", "chat-admins"]), policy).role == "admin"
    assert sign_in(db, claims(sub="bob", email="bob@example.com", groups=["staff"]), policy).role == "analyst"
    assert audit(db)[0] == ("user.add", "ann@example.com (admin) at their first sign-in with okta")


def test_a_nested_or_single_valued_claim_makes_an_admin(db):
    policy = Policy(admin_claim=("realm_access.roles", "admin"))
    assert sign_in(db, claims(realm_access={"roles": ["admin"]}), policy).role == "admin"
    assert sign_in(db, claims(sub="2", role="admin"), Policy(admin_claim=("role", "admin"))).role == "admin"
    assert sign_in(db, claims(sub="3", realm_access="admin"), policy).role == "analyst"


def test_an_admin_email_makes_an_admin_only_when_verified(db):
    policy = Policy(admin_emails=frozenset({"ann@example.com"}))
    assert sign_in(db, claims(), policy).role == "admin"
    assert sign_in(db, claims(sub="2", email_verified=False), policy).role == "analyst"


def test_the_rules_decide_the_role_at_every_sign_in(db):
    policy = Policy(admin_claim=("groups", "chat-admins"))
    sign_in(db, claims(groups=["chat-admins"], iat=int(time.time()) - 2), policy)
    demoted = sign_in(db, claims(groups=[], iat=int(time.time()) + 2), policy)
    assert demoted.role == "analyst"
    assert ("user.role", "ann@example.com: admin → analyst by the rules for Okta") in audit(db)


def test_without_rules_the_stored_role_stays(db):
    actor = sign_in(db, claims())
    with db.begin() as session:
        session.get(User, actor.id).role = "admin"  # an admin promoted them
    assert sign_in(db, claims(groups=["nothing"])).role == "admin"


def test_allowed_domains_refuse_other_addresses_before_writing_anything(db):
    policy = Policy(allowed_domains=frozenset({"example.com"}))
    assert sign_in(db, claims(), policy).username == "ann@example.com"
    for refused in (claims(sub="x", email="eve@evil.example"), claims(sub="y", email_verified=False), claims(sub="z", email=None)):
        with pytest.raises(SignInRefused, match="may not sign in here"):
            sign_in(db, refused, policy)
    with db.begin() as session:
        assert store.count_users(session) == 1


def test_an_admin_named_by_the_rules_passes_the_domain_check(db):
    policy = Policy(allowed_domains=frozenset({"example.com"}), admin_claim=("groups", "chat-admins"))
    assert sign_in(db, claims(email="contractor@other.example", groups=["chat-admins"]), policy).role == "admin"


def test_a_deactivated_user_is_refused_with_a_clear_message(db):
    actor = sign_in(db, claims(iat=int(time.time()) - 2))
    with db.begin() as session:
        session.get(User, actor.id).active = False
    before = audit(db)
    with pytest.raises(SignInRefused, match=r"Your account \(ann@example.com\) is deactivated. Ask an admin"):
        sign_in(db, claims(iat=int(time.time()) + 2))
    assert audit(db) == before


def test_a_token_without_subject_is_refused(db):
    with pytest.raises(SignInRefused, match="no usable subject"):
        sign_in(db, claims(sub=""))


def test_a_long_or_odd_name_still_makes_a_valid_username(db):
    actor = sign_in(db, claims(email=None, name="  Ünïcode   Person  " + "x" * 300, preferred_username=None))
    assert store.USERNAME_PATTERN.match(actor.username)
    assert len(actor.username) <= 80


def test_the_password_form_does_not_know_single_sign_on_users(db):
    sign_in(db, claims())
    with db.begin() as session:
        outcome = accounts.attempt_login("ann@example.com", "anything-at-all", session=session, address=None,
                                         policy=accounts.LoginPolicy())
    assert (outcome.user, outcome.refusal) == (None, accounts.WRONG)


def test_provider_labels():
    assert [sso.provider_label(n) for n in ("default", "google", "microsoft", "okta", "test-idp")] == [
        "single sign-on", "Google", "Microsoft", "Okta", "Test Idp"]


# -- settings ---------------------------------------------------------------------------------


def settings(tmp_path, environ=None, secrets=None):
    (tmp_path / "notes").mkdir(exist_ok=True)
    return load_settings({"NOTES_DIR": str(tmp_path / "notes"), **(environ or {})}, secrets or {})


def test_sso_is_off_without_an_auth_section(tmp_path):
    loaded = settings(tmp_path)
    assert (loaded.password_login, loaded.sso_providers) == (True, ())


def test_every_provider_of_the_auth_section_is_offered(tmp_path):
    assert settings(tmp_path, secrets={"auth": {**AUTH, **PROVIDER}}).sso_providers == ("default",)
    named = {**AUTH, "okta": PROVIDER, "google": PROVIDER, "client_kwargs": {"prompt": "login"}}
    assert settings(tmp_path, secrets={"auth": named}).sso_providers == ("okta", "google")


def test_the_command_line_runs_whatever_the_sign_in_settings(tmp_path):
    """It reads .streamlit/secrets.toml, which may lack the [auth] section the app gets elsewhere."""
    loaded = load_settings({"PASSWORD_LOGIN": "false"}, {"auth": {"redirect_uri": "x"}}, check_engine=False)
    assert (loaded.password_login, loaded.sso_providers) == (False, ())


def test_sso_rules_are_read(tmp_path):
    loaded = settings(tmp_path, {"SSO_ALLOWED_DOMAINS": "@Example.com, corp.example", "PASSWORD_LOGIN": "false",
                                 "SSO_ADMIN_EMAILS": "Boss@Example.com", "SSO_ADMIN_CLAIM": "groups = chat-admins"},
                      {"auth": {**AUTH, "okta": PROVIDER}})
    assert loaded.sso_allowed_domains == {"example.com", "corp.example"}
    assert (loaded.sso_admin_emails, loaded.sso_admin_claim, loaded.password_login) == (
        {"boss@example.com"}, ("groups", "chat-admins"), False)


@pytest.mark.parametrize(("environ", "secrets", "setting", "hint"), [
    ({"PASSWORD_LOGIN": "false"}, {}, "PASSWORD_LOGIN", "nobody could sign in"),
    ({"PASSWORD_LOGIN": "maybe"}, {}, "PASSWORD_LOGIN", "true or false"),
    ({"SSO_ADMIN_CLAIM": "chat-admins"}, {}, "SSO_ADMIN_CLAIM", "groups=chat-admins"),
    ({"SSO_ALLOWED_DOMAINS": "https://example.com"}, {}, "SSO_ALLOWED_DOMAINS", "not an e-mail domain"),
    ({"SSO_ADMIN_EMAILS": "boss"}, {}, "SSO_ADMIN_EMAILS", "not an e-mail address"),
    ({}, {"auth": {"cookie_secret": "x" * 40, **PROVIDER}}, "[auth]", "needs redirect_uri"),
    ({}, {"auth": {**AUTH, **PROVIDER, "redirect_uri": "http://localhost:8501/"}}, "[auth]", "/oauth2callback"),
    ({}, {"auth": AUTH}, "[auth]", "names no provider"),
    ({}, {"auth": {**AUTH, "my_idp": PROVIDER}}, "[auth]", "cannot hold '_'"),
    ({}, {"auth": {**AUTH, "okta": {"client_id": "x"}}}, "[auth]", "needs client_secret, server_metadata_url"),
    ({"CHATBOT_ENV": "production", "AUTH_COOKIE_KEY": "k" * 20 + "abcdefghijklmnop"},
     {"auth": {**AUTH, "cookie_secret": "short", **PROVIDER}}, "[auth]", "cookie_secret must be a random secret"),
])
def test_a_bad_sign_in_setting_is_named(tmp_path, environ, secrets, setting, hint):
    with pytest.raises(ConfigError) as raised:
        settings(tmp_path, environ, secrets)
    assert raised.value.setting == setting
    assert hint in str(raised.value)
