"""Accounts: logging in with a password, temporary locks after failures, password rules, and the
admin's operations on users (the users page and ``python -m chatbot users`` share them).

Locks. After ``max_attempts`` failed logins in a row an account is locked for the first of
``lock_minutes``; each further lock in a row lasts the next one (the last repeats), until a
login succeeds or an admin unlocks it. A client address is locked the same way after
``address_max_attempts`` failures for any user names. A user name with no account is counted
in ``login_throttle`` like an account, and checked against a dummy hash, so an unknown name
answers with the same message, lock and timing as a real one: nobody learns who has an account.

Every function takes ``*, session`` and never commits: the caller's transaction is the action.
"""

from __future__ import annotations

import functools
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import bcrypt
from sqlalchemy import delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session
from zxcvbn import zxcvbn

from chatbot import store
from chatbot.errors import InputError, NotFoundError
from chatbot.models import LoginThrottle, User, utcnow
from chatbot.store import Actor

Clock = Callable[[], datetime]
WRONG = "Username or password is incorrect."
DEACTIVATED = "This account is deactivated. Ask an admin to reactivate it."
STRONG_ENOUGH = 3  # zxcvbn's score: 3 is "safely unguessable: moderate protection from offline attacks"
# A throttle row with no failure for this long starts over (and is deleted when seen).
THROTTLE_MEMORY = timedelta(days=1)


@dataclass(frozen=True)
class LoginPolicy:
    """The lock and password settings (chatbot.config.Settings has the same names)."""

    max_attempts: int = 5
    lock_minutes: tuple[float, ...] = (1.0, 5.0, 30.0)
    address_max_attempts: int = 20
    min_length: int = 12

    @classmethod
    def of(cls, settings) -> LoginPolicy:
        return cls(max_attempts=settings.login_max_attempts, lock_minutes=settings.login_lock_minutes,
                   address_max_attempts=settings.login_address_max_attempts,
                   min_length=settings.password_min_length)

    def lock_for(self, level: int) -> timedelta:
        return timedelta(minutes=self.lock_minutes[min(level, len(self.lock_minutes) - 1)])


@dataclass(frozen=True)
class LoginOutcome:
    """What a login attempt came to: the user, or the one message to show instead."""

    user: User | None = None
    refusal: str = ""
    locked_for: timedelta | None = None


# -- logging in ----------------------------------------------------------------------------


def attempt_login(
    username: str, password: str, *, session: Session, address: str | None, policy: LoginPolicy,
    now: Clock = utcnow,
) -> LoginOutcome:
    """Check a password login and record its outcome (failures, locks, last login)."""
    moment = now()
    forget_old_throttles(session=session, now=now)
    name = username.strip().lower()[:store.NAME_CHARS]
    user = store.get_user(session, name) if name else None
    if user is not None and user.password_hash is None:
        user = None  # a single sign-on account has no password to guess: treated as unknown
    holders = [_throttle(session, f"address:{address}", moment)] if address else []
    holders.insert(0, _AccountLock(user) if user is not None else _throttle(session, f"name:{name}", moment))
    if left := _longest(_left(holder.locked_until, moment) for holder in holders):
        return LoginOutcome(refusal=locked_message(left), locked_for=left)
    hashed = user.password_hash.encode() if user is not None else _dummy_hash(store.BCRYPT_ROUNDS)
    if bcrypt.checkpw(password.encode()[:store.BCRYPT_MAX_BYTES], hashed):
        if not user.active:
            return LoginOutcome(refusal=DEACTIVATED)
        user.failed_logins, user.lock_level, user.locked_until, user.last_login_at = 0, 0, None, moment
        return LoginOutcome(user=user)
    limits = [policy.max_attempts] + ([policy.address_max_attempts] if address else [])
    for holder in holders:  # the account (or name) first, then the address: every login in this order
        holder.lock()
    locks = [_fail(holder, limit, policy, moment) for holder, limit in zip(holders, limits, strict=True)]
    if left := _longest(locks):
        return LoginOutcome(refusal=locked_message(left), locked_for=left)
    return LoginOutcome(refusal=WRONG)


@functools.cache
def _dummy_hash(rounds: int) -> bytes:
    """Checked when the name has no account (or no password): as slow as a real check, never a match."""
    return bcrypt.hashpw(b"no such user", bcrypt.gensalt(rounds))


def locked_message(left: timedelta) -> str:
    return f"Too many failed logins: logging in is locked for {duration(left)}. Try again then."


def duration(left: timedelta) -> str:
    """'45 s', '4 min 10 s', '30 min': how long a lock has left, rounded up to the second."""
    seconds = max(1, int(-(-left.total_seconds() // 1)))
    minutes, seconds = divmod(seconds, 60)
    if not minutes:
        return f"{seconds} s"
    return f"{minutes} min" + (f" {seconds} s" if seconds else "")


class _AccountLock:
    """An account's lock state, on its users row."""

    def __init__(self, user: User) -> None:
        self.user = user

    locked_until = property(lambda self: self.user.locked_until)

    def lock(self) -> None:
        """Hold the account's row to the end of the transaction, its counts read afresh: failures
        at the same moment count one after the other."""
        self.user = _locked(Session.object_session(self.user), select(User).where(User.id == self.user.id))

    def set(self, failures: int, level: int, locked_until: datetime | None) -> None:
        self.user.failed_logins, self.user.lock_level, self.user.locked_until = failures, level, locked_until

    def get(self) -> tuple[int, int]:
        return self.user.failed_logins or 0, self.user.lock_level or 0


class _ThrottleLock:
    """A client address's or an unknown name's lock state, on its login_throttle row."""

    def __init__(self, session: Session, key: str, row: LoginThrottle | None, moment: datetime) -> None:
        self.session, self.key, self.row, self.moment = session, key, row, moment

    locked_until = property(lambda self: self.row.locked_until if self.row else None)

    def lock(self) -> None:
        """The row, made if missing (two first failures at once: one inserts, both use it), held to
        the end of the transaction with its counts read afresh."""
        insert = postgresql.insert if self.session.get_bind().dialect.name == "postgresql" else sqlite.insert
        self.session.execute(insert(LoginThrottle).values(
            key=self.key, failures=0, lock_level=0, updated_at=self.moment).on_conflict_do_nothing())
        self.row = _locked(self.session, select(LoginThrottle).where(LoginThrottle.key == self.key))

    def set(self, failures: int, level: int, locked_until: datetime | None) -> None:
        self.row.failures, self.row.lock_level, self.row.locked_until = failures, level, locked_until
        self.row.updated_at = self.moment

    def get(self) -> tuple[int, int]:
        return (self.row.failures, self.row.lock_level) if self.row else (0, 0)


def _locked(session: Session, query):
    """The row ``query`` selects, locked FOR UPDATE (PostgreSQL; SQLite's write transactions are
    serial already) and read afresh.

    Rows are locked in one order (the account, then the address) before any change is flushed:
    a failure that wrote one row and then waited for another deadlocked with its twin.
    """
    return session.scalar(query.with_for_update().execution_options(populate_existing=True))


def _throttle(session: Session, key: str, moment: datetime) -> _ThrottleLock:
    row = session.get(LoginThrottle, key[:320])
    if row is not None and _aware(row.updated_at) < moment - THROTTLE_MEMORY and not _left(row.locked_until, moment):
        session.delete(row)  # quiet for a day: start over
        session.flush()
        row = None
    return _ThrottleLock(session, key[:320], row, moment)


def _fail(holder, limit: int, policy: LoginPolicy, moment: datetime) -> timedelta | None:
    """Count one failure; past the limit, lock for the next duration and return it."""
    failures, level = holder.get()
    failures += 1
    if failures < limit:
        holder.set(failures, level, holder.locked_until)
        return None
    lock = policy.lock_for(level)
    holder.set(0, level + 1, moment + lock)
    return lock


def _longest(durations) -> timedelta | None:
    return max((d for d in durations if d is not None), default=None)


def _left(locked_until: datetime | None, moment: datetime) -> timedelta | None:
    if locked_until is None:
        return None
    left = _aware(locked_until) - moment
    return left if left > timedelta(0) else None


def _aware(when: datetime) -> datetime:
    """SQLite gives back naive datetimes (stored as UTC)."""
    return when if when.tzinfo else when.replace(tzinfo=utcnow().tzinfo)


def forget_old_throttles(*, session: Session, now: Clock = utcnow) -> int:
    """Delete throttle rows quiet for a day and not locked; return how many."""
    moment = now()
    result = session.execute(delete(LoginThrottle).where(
        LoginThrottle.updated_at < moment - THROTTLE_MEMORY,
        (LoginThrottle.locked_until.is_(None)) | (LoginThrottle.locked_until < moment),
    ).execution_options(synchronize_session=False))
    return result.rowcount or 0


def is_locked(user: User, now: Clock = utcnow) -> bool:
    return _left(user.locked_until, now()) is not None


# -- passwords -----------------------------------------------------------------------------


def password_problem(password: str, *, username: str = "", name: str = "", email: str = "",
                     min_length: int = 12) -> str | None:
    """Why this password is refused, in words a person can act on; None when it is fine."""
    if not password or not password.strip():
        return "The password must not be empty."
    if len(password) < min_length:
        return f"The password is too short ({len(password)} characters): use at least {min_length}."
    if len(password.encode()) > store.BCRYPT_MAX_BYTES:
        return f"The password is too long (at most {store.BCRYPT_MAX_BYTES} bytes)."
    personal = [part for part in (username, name, email.partition("@")[0]) if part and len(part) >= 3]
    folded = password.casefold()
    for part in personal:
        if part.casefold() in folded or folded in part.casefold():
            return "The password must not contain the user name, the full name or the email address."
    verdict = zxcvbn(password, user_inputs=[*personal, *name.split()])
    if verdict["score"] >= STRONG_ENOUGH:
        return None
    feedback = verdict["feedback"]
    why = " ".join(filter(None, [feedback.get("warning"), *feedback.get("suggestions", [])]))
    return ("The password is too easy to guess" + (f": {why}" if why else ".")
            + " A few unrelated words make a strong one.").replace(".:", ":").replace("..", ".")


def check_password(password: str, *, policy: LoginPolicy, user: User | None = None, username: str = "",
                   name: str = "", email: str = "") -> str:
    """The password, or InputError saying why it is refused."""
    if user is not None:
        username, name, email = user.username, user.name, user.email or ""
    problem = password_problem(password, username=username, name=name or "", email=email or "",
                               min_length=policy.min_length)
    if problem:
        raise InputError(problem)
    return password


def one_time_password() -> str:
    """A random password for a new account or a reset: the user chooses their own at first login."""
    return "-".join(secrets.token_urlsafe(6) for _ in range(3))


# -- the admin's operations ----------------------------------------------------------------


@dataclass(frozen=True)
class UserRow:
    """A user as the users page and ``users list`` show them."""

    username: str
    name: str
    email: str
    role: str
    provider: str
    last_login: datetime | None
    locked_until: datetime | None
    active: bool


def list_accounts(*, session: Session, now: Clock = utcnow) -> list[UserRow]:
    moment = now()
    return [
        UserRow(username=u.username, name=u.name, email=u.email or "", role=u.role,
                provider=u.auth_provider or "password", last_login=u.last_login_at,
                locked_until=u.locked_until if _left(u.locked_until, moment) else None, active=u.active)
        for u in session.scalars(select(User).order_by(User.username))
    ]


def add_user(actor: Actor, username: str, *, session: Session, policy: LoginPolicy, role: str = "analyst",
             name: str | None = None, email: str | None = None, password: str | None = None) -> str | None:
    """Add a password user; with no password, one is made up and returned (a one-time password:
    the user must choose their own at first login)."""
    store.check_role(role)
    given = password is not None
    if given:
        check_password(password, policy=policy, username=username.strip().lower(), name=name or "",
                       email=email or "")
    chosen = password if given else one_time_password()
    user = store.create_user(session, username=username, password=chosen, role=role, name=name, email=email)
    user.must_change_password = not given
    store.audit(session, actor, "user.add", f"{user.username} ({user.role})")
    return None if given else chosen


def set_role(actor: Actor, username: str, role: str, *, session: Session) -> None:
    user = _account(session, username)
    store.check_role(role)
    if user.role == role:
        return
    if user.role == "admin":
        _keep_an_admin(session, user, "change the role of")
    user.role = role
    store.audit(session, actor, "user.role", f"{user.username}: {role}")


def reset_password(actor: Actor, username: str, *, session: Session, policy: LoginPolicy,
                   password: str | None = None) -> str | None:
    """Set a user's password and unlock them; with no password, a one-time one is made and returned."""
    user = _account(session, username)
    if password is not None:
        check_password(password, policy=policy, user=user)
    chosen = password if password is not None else one_time_password()
    user.password_hash = store.hash_password(chosen)
    user.must_change_password = password is None
    user.failed_logins, user.lock_level, user.locked_until = 0, 0, None
    store.audit(session, actor, "user.password", user.username)
    return None if password is not None else chosen


def change_own_password(user_id: int, new: str, *, session: Session, policy: LoginPolicy) -> None:
    """A user who just logged in with a one-time password chooses their own."""
    user = session.get(User, user_id)
    if user is None or not user.active:
        raise NotFoundError("Your account is not active any more. Ask an admin.")
    if user.password_hash and bcrypt.checkpw(new.encode()[:store.BCRYPT_MAX_BYTES], user.password_hash.encode()):
        raise InputError("Choose a new password, not the one you were given.")
    check_password(new, policy=policy, user=user)
    user.password_hash = store.hash_password(new)
    user.must_change_password = False


def unlock(actor: Actor, username: str, *, session: Session) -> None:
    user = _account(session, username)
    user.failed_logins, user.lock_level, user.locked_until = 0, 0, None
    store.audit(session, actor, "user.unlock", user.username)


def deactivate(actor: Actor, username: str, *, session: Session) -> None:
    """Block a user's logins and end their sessions; their conversations stay."""
    user = _account(session, username)
    if user.id == actor.id:
        raise InputError("You cannot deactivate yourself: ask another admin.")
    if user.role == "admin":
        _keep_an_admin(session, user, "deactivate")
    user.active = False
    store.audit(session, actor, "user.deactivate", user.username)


def reactivate(actor: Actor, username: str, *, session: Session) -> None:
    user = _account(session, username)
    user.active = True
    user.failed_logins, user.lock_level, user.locked_until = 0, 0, None
    store.audit(session, actor, "user.reactivate", user.username)


def resume_login(username: str, *, session: Session, now: Clock = utcnow) -> User | None:
    """The active user a valid login cookie names, their login noted (a browser back after a
    while, or moved to another replica); None for an unknown or deactivated user."""
    user = store.get_user(session, username)
    if user is None or not user.active:
        return None
    user.last_login_at = now()
    return user


def current_user(user_id: int, *, session: Session) -> User | None:
    """The user behind a browser session, if they may still use the app (a deactivated or removed
    user's sessions end at their next rerun)."""
    user = session.get(User, user_id)
    return user if user is not None and user.active else None


def _account(session: Session, username: str) -> User:
    try:
        return store.require_user(session, username)
    except NotFoundError:
        raise NotFoundError(f"No user {username.strip().lower()!r}.") from None


def _keep_an_admin(session: Session, user: User, doing: str) -> None:
    others = session.scalars(select(User.id).where(User.role == "admin", User.active, User.id != user.id)).first()
    if others is None:
        raise InputError(f"Cannot {doing} {user.username}: they are the only active admin.")
