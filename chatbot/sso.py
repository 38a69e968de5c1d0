"""Single sign-on: the user an OpenID Connect identity is here, matched by (provider, subject) only.

Streamlit's st.login does the OIDC dance and hands the ID token's claims to the app (st.user);
this module decides who that is: the user with the same provider and ``sub`` claim, created on
the first sign-in. A name or an e-mail address never picks the user: two people can share a
name, and a provider may let a user change their address. E-mail addresses and group claims
only decide *whether* someone may sign in (SSO_ALLOWED_DOMAINS) and *as what* (SSO_ADMIN_EMAILS,
SSO_ADMIN_CLAIM).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from chatbot import store
from chatbot.config import Settings
from chatbot.errors import SignInRefused
from chatbot.models import User, utcnow
from chatbot.store import EMAIL_CHARS, NAME_CHARS, Actor, one_line

logger = logging.getLogger(__name__)

DEFAULT = "default"  # st.login's name for the provider configured in [auth] itself
LABELS = {DEFAULT: "single sign-on", "google": "Google", "microsoft": "Microsoft", "okta": "Okta",
          "auth0": "Auth0", "github": "GitHub", "gitlab": "GitLab", "keycloak": "Keycloak"}
USERNAME_CHARS = 70  # room for a "-2" suffix within the column's 80
SUBJECT_CHARS = 255  # users.auth_subject


def provider_label(name: str) -> str:
    """What the login page calls a provider of st.secrets [auth]: "Sign in with Google"."""
    return LABELS.get(name.lower(), name.replace("-", " ").title())


@dataclass(frozen=True)
class Identity:
    """Who the provider says signed in: the claims of the ID token that matter here."""

    provider: str
    subject: str
    email: str | None  # None when absent or marked unverified (email_verified false)
    name: str
    username_hint: str
    issued_at: datetime | None
    claims: Mapping

    @classmethod
    def of(cls, claims: Mapping) -> Identity:
        """The identity in st.user's claims (Streamlit adds ``provider``, the [auth] name)."""
        subject = str(claims.get("sub") or "").strip()
        provider = str(claims.get("provider") or DEFAULT)
        if not subject or len(subject) > SUBJECT_CHARS:
            raise SignInRefused(f"{provider_label(provider)} sent no usable subject (sub claim): "
                                "ask an admin to check the provider's configuration.")
        email = str(claims.get("email") or "").strip().lower() or None
        if claims.get("email_verified") is False:
            email = None
        issued = claims.get("iat")
        return cls(
            provider=provider, subject=subject, email=email,
            name=str(claims.get("name") or claims.get("preferred_username") or email or subject),
            username_hint=str(email or claims.get("preferred_username") or claims.get("name") or "user"),
            issued_at=datetime.fromtimestamp(issued, UTC) if isinstance(issued, int | float) else None,
            claims=claims,
        )

    @property
    def domain(self) -> str | None:
        return self.email.rsplit("@", 1)[1] if self.email and "@" in self.email else None

    def claim_has(self, claim: str, wanted: str) -> bool:
        """True when the claim (a dotted path reaches into objects) is ``wanted`` or a list holding it."""
        value: object = self.claims
        for part in claim.split("."):
            value = value.get(part) if isinstance(value, Mapping) else None
        if isinstance(value, list | tuple):
            return wanted in (str(item) for item in value)
        return value is not None and str(value) == wanted


@dataclass(frozen=True)
class Policy:
    """Who may sign in, and who is an admin: SSO_ALLOWED_DOMAINS, SSO_ADMIN_EMAILS, SSO_ADMIN_CLAIM."""

    allowed_domains: frozenset[str] = frozenset()
    admin_emails: frozenset[str] = frozenset()
    admin_claim: tuple[str, str] | None = None

    @classmethod
    def of(cls, settings: Settings) -> Policy:
        return cls(settings.sso_allowed_domains, settings.sso_admin_emails, settings.sso_admin_claim)

    def admits(self, identity: Identity) -> bool:
        """Without SSO_ALLOWED_DOMAINS everyone the provider signs in may enter; with it, only a
        verified e-mail address in one of the domains (or an admin the rules name)."""
        if not self.allowed_domains or identity.domain in self.allowed_domains:
            return True
        return self.role_for(identity) == "admin"

    def role_for(self, identity: Identity) -> str | None:
        """The role the rules give this identity; None when no rule is set (the stored role stays)."""
        if not self.admin_emails and self.admin_claim is None:
            return None
        by_email = identity.email is not None and identity.email in self.admin_emails
        by_claim = self.admin_claim is not None and identity.claim_has(*self.admin_claim)
        return "admin" if by_email or by_claim else "analyst"


def find_user(session: Session, provider: str, subject: str) -> User | None:
    """The user with this provider's subject; never looked up by name or e-mail."""
    return session.scalar(select(User).where(User.auth_provider == provider, User.auth_subject == subject))


def sign_in(session: Session, claims: Mapping, policy: Policy) -> Actor:
    """The user these claims name, created on their first sign-in; raise SignInRefused when they
    may not sign in. Records (and audits) a sign-in once per ID token, not once per page load.

    Nothing is written before a refusal, so the caller's rollback loses nothing.
    """
    identity = Identity.of(claims)
    label = provider_label(identity.provider)
    if not policy.admits(identity):
        logger.warning("single sign-on refused for %s subject %r (%s): domain not allowed",
                       identity.provider, identity.subject, identity.email)
        raise SignInRefused(f"Your {label} account ({identity.email or 'no verified e-mail address'}) may not "
                            "sign in here: this app admits only addresses of its organisation's domains.")
    user = find_user(session, identity.provider, identity.subject)
    if user is not None and not user.active:
        logger.warning("single sign-on refused for deactivated user %r", user.username)
        raise SignInRefused(f"Your account ({user.username}) is deactivated. Ask an admin to reactivate it.")
    role = policy.role_for(identity)
    if user is None:
        user = _create(session, identity, role or "analyst")
    elif role is not None and role != user.role:
        store.audit(session, Actor.of(user), "user.role", f"{user.username}: {user.role} → {role} "
                    f"by the rules for {label}")
        logger.info("user %r is now %s (single sign-on rules)", user.username, role)
        user.role = role
    if _new_token(user, identity):
        user.last_login_at = utcnow()
        store.audit(session, Actor.of(user), "sso.login", f"{user.username} via {identity.provider}")
        logger.info("user %r signed in with %s", user.username, identity.provider)
    session.flush()
    return Actor.of(user)


def _new_token(user: User, identity: Identity) -> bool:
    """True the first time an ID token is seen: it was issued after the last recorded sign-in.

    Streamlit keeps the identity in a cookie for 30 days; each reload opens a new session with
    the same token, which is not a new sign-in.
    """
    if user.last_login_at is None or identity.issued_at is None:
        return user.last_login_at is None
    last = user.last_login_at if user.last_login_at.tzinfo else user.last_login_at.replace(tzinfo=UTC)
    return identity.issued_at > last


def _create(session: Session, identity: Identity, role: str) -> User:
    user = User(
        username=_free_username(session, identity.username_hint),
        name=one_line(identity.name[:NAME_CHARS], what="full name", max_chars=NAME_CHARS) or identity.subject,
        email=identity.email if len(identity.email or "") <= EMAIL_CHARS else None, password_hash=None, role=role,
        auth_provider=identity.provider, auth_subject=identity.subject,
    )
    session.add(user)
    session.flush()
    store.audit(session, Actor.of(user), "user.add",
                f"{user.username} ({role}) at their first sign-in with {identity.provider}")
    logger.info("user %r (%s) created at their first sign-in with %s", user.username, role, identity.provider)
    return user


def _free_username(session: Session, hint: str) -> str:
    """A username from the e-mail address or name, made unique with -2, -3…; only a label."""
    base = re.sub(r"[^a-z0-9_.@-]+", "-", hint.strip().lower()).strip("-_.@")[:USERNAME_CHARS] or "user"
    taken = set(session.scalars(select(User.username).where(User.username.like(f"{base}%"))))
    candidate, number = base, 1
    while candidate in taken:
        number += 1
        candidate = f"{base}-{number}"
    return candidate
