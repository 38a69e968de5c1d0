"""Data access for users, conversations, messages and feedback; every query scoped to its actor.

Functions take ``session`` (the caller owns the transaction: one per user action) and,
for user data, the acting ``Actor``. They never commit. Another user's conversation is
reported as not found, never as forbidden, so ids leak nothing.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import datetime

import bcrypt
from sqlalchemy import ColumnElement, and_, delete, func, or_, select, true, update
from sqlalchemy.orm import Session

from chatbot.errors import InputError, NotFoundError
from chatbot.models import ROLES, STATUSES, AuditEntry, Conversation, Feedback, Message, User, utcnow

USERNAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_.@-]{0,79}$")
TITLE_CHARS = 80
NAME_CHARS = 200  # the users columns' sizes: PostgreSQL refuses longer text
EMAIL_CHARS = 320
BCRYPT_MAX_BYTES = 72
BCRYPT_ROUNDS = 12  # the tests lower it: hashing is deliberately slow


@dataclass(frozen=True)
class Actor:
    """Who is acting: every data function is scoped by it."""

    id: int
    username: str
    role: str
    name: str = ""

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    @classmethod
    def of(cls, user: User) -> Actor:
        return cls(id=user.id, username=user.username, role=user.role, name=user.name)


# -- who sees what: the ownership rule, written once ------------------------------------


def visible_to(actor: Actor) -> ColumnElement[bool]:
    """The conversations the actor may read: their own, or everyone's for an admin.

    Every query of conversations (or of what hangs off them) carries this clause; whether
    deleted ones count is each query's own business (admins see them to purge them).
    A structure test checks that no other code compares an owner with the actor.
    """
    return true() if actor.is_admin else Conversation.owner_id == actor.id


def owned_by(actor: Actor) -> ColumnElement[bool]:
    """The conversations the actor may change: their own, not deleted (admins included)."""
    return and_(Conversation.owner_id == actor.id, Conversation.deleted.is_(False))


# -- text as typed ------------------------------------------------------------------------


def storable(text: str) -> str:
    """The rule for every text a person typed on its way to the database.

    PostgreSQL text cannot hold NUL (it raised DataError), so NUL becomes U+FFFD on both
    databases alike; every other character is kept as typed.
    """
    return text.replace("\x00", "\ufffd")


def one_line(text: str | None, *, what: str, max_chars: int) -> str:
    """A name, email or title as stored: ``storable``, whitespace runs made one space, not too long."""
    line = " ".join(storable(text or "").split())
    if len(line) > max_chars:
        raise InputError(f"The {what} is too long ({len(line):,} characters; at most {max_chars:,}).")
    return line


# -- users -----------------------------------------------------------------------------


def hash_password(password: str) -> str:
    if not password or not password.strip():
        raise InputError("The password must not be empty.")
    if len(password.encode()) > BCRYPT_MAX_BYTES:
        raise InputError(f"The password is too long (at most {BCRYPT_MAX_BYTES} bytes).")
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(BCRYPT_ROUNDS)).decode()


def check_username(username: str) -> str:
    name = username.strip().lower()
    if not USERNAME_PATTERN.match(name):
        raise InputError(
            f"Invalid username {username!r}: use 1-80 lowercase letters, digits, '.', '_', '-' or '@'."
        )
    return name


def check_role(role: str) -> str:
    if role not in ROLES:
        raise InputError(f"Unknown role {role!r}: use one of {', '.join(ROLES)}.")
    return role


def create_user(
    session: Session, *, username: str, password: str, role: str = "analyst",
    name: str | None = None, email: str | None = None, password_hash: str | None = None,
) -> User:
    """Add a user; ``password_hash`` (bcrypt) may be given instead of a password (imports)."""
    username = check_username(username)
    check_role(role)
    if get_user(session, username) is not None:
        raise InputError(f"User {username!r} already exists.")
    name = one_line(name, what="full name", max_chars=NAME_CHARS) or username
    email = one_line(email, what="email address", max_chars=EMAIL_CHARS) or None
    hashed = password_hash if password_hash and password_hash.startswith("$2") else hash_password(password)
    user = User(username=username, name=name, email=email, password_hash=hashed, role=role)
    session.add(user)
    session.flush()
    return user


def get_user(session: Session, username: str) -> User | None:
    return session.scalar(select(User).where(User.username == username.strip().lower()))


def require_user(session: Session, username: str) -> User:
    user = get_user(session, username)
    if user is None:
        raise NotFoundError(f"No user {username!r}.")
    return user


def list_users(session: Session) -> list[User]:
    return list(session.scalars(select(User).order_by(User.username)))


def count_users(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(User)) or 0


def remove_user(session: Session, username: str) -> None:
    session.delete(require_user(session, username))


# -- conversations ---------------------------------------------------------------------


def title_from(question: str) -> str:
    """A conversation's title: one line of at most TITLE_CHARS, cut with an ellipsis."""
    line = " ".join(storable(question).split())
    return line if len(line) <= TITLE_CHARS else line[: TITLE_CHARS - 1].rstrip() + "…"


def create_conversation(session: Session, actor: Actor, *, title: str, flow: str | None = None) -> Conversation:
    """A new conversation of the actor's; ``flow`` is the catalog flow it asks (None: the default)."""
    conversation = Conversation(
        owner_id=actor.id, title=title_from(title) or "New chat",
        langflow_session_id=str(uuid.uuid4()), flow=flow,
    )
    session.add(conversation)
    session.flush()
    return conversation


def get_conversation(session: Session, actor: Actor, conversation_id: int, *, any_owner: bool = False) -> Conversation:
    """The actor's conversation; with ``any_owner`` an admin may read anyone's."""
    query = select(Conversation).where(Conversation.id == conversation_id, Conversation.deleted.is_(False))
    query = query.where(visible_to(actor) if any_owner else owned_by(actor))
    conversation = session.scalar(query)
    if conversation is None:
        raise NotFoundError("This conversation does not exist or was deleted.")
    return conversation


def list_conversations(
    session: Session, actor: Actor, *, limit: int = 100, title_search: str | None = None
) -> list[Conversation]:
    """The actor's own conversations, most recent activity first (the chat sidebar).

    ``title_search`` keeps those whose title holds that text, in any case.
    """
    query = (
        select(Conversation)
        .where(owned_by(actor))
        .order_by(Conversation.updated_at.desc(), Conversation.id.desc())
        .limit(limit)
    )
    if title_search and title_search.strip():
        words = storable(title_search).strip().lower()
        escaped = words.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        query = query.where(func.lower(Conversation.title).like(f"%{escaped}%", escape="\\"))
    return list(session.scalars(query))


def rename_conversation(session: Session, actor: Actor, conversation_id: int, title: str) -> None:
    cleaned = title_from(title)
    if not cleaned:
        raise InputError("A title must not be empty.")
    get_conversation(session, actor, conversation_id).title = cleaned


def delete_conversation(session: Session, actor: Actor, conversation_id: int) -> None:
    """Hide the actor's conversation everywhere; an admin can purge it later."""
    get_conversation(session, actor, conversation_id).deleted = True


def conversation_label(conversation_id: int, title: str, owner: str) -> str:
    """'conversation 4 “Churn dashboard” of alice': how the audit log names a conversation."""
    return f"conversation {conversation_id} “{title}” of {owner}"


def purge_conversation(session: Session, actor: Actor, conversation_id: int) -> None:
    """Delete a conversation and its messages for good (admins only)."""
    if not actor.is_admin:
        raise NotFoundError("This conversation does not exist or was deleted.")
    found = session.execute(
        select(Conversation.title, User.username).join(User, User.id == Conversation.owner_id)
        .where(Conversation.id == conversation_id)
    ).one_or_none()
    if found is None:
        raise NotFoundError("This conversation does not exist.")
    session.execute(delete(Conversation).where(Conversation.id == conversation_id))
    session.add(AuditEntry(actor_id=actor.id, action="purge", target=conversation_label(conversation_id, *found)))


# -- messages --------------------------------------------------------------------------


def append_message(
    session: Session, actor: Actor, conversation_id: int, *, role: str, content: str,
    status: str = "complete", **metadata,
) -> Message:
    """Add one message: one UPDATE of the conversation's counters and one INSERT, at any size."""
    if status not in STATUSES:
        raise ValueError(f"unknown status {status!r}")
    now = utcnow()
    values = {"updated_at": now, "message_count": Conversation.message_count + 1}
    if role == "assistant":
        values |= {"last_status": status, "last_engine": metadata.get("flow_id") or metadata.get("engine")}
    touched = session.execute(
        update(Conversation)
        .where(Conversation.id == conversation_id, owned_by(actor))
        .values(**values)
    )
    if touched.rowcount == 0:
        raise NotFoundError("This conversation does not exist or was deleted.")
    message = Message(
        conversation_id=conversation_id, role=role, content=storable(content), status=status,
        created_at=now, **metadata,
    )
    session.add(message)
    session.flush()
    return message


def update_answer(
    session: Session, actor: Actor, message_id: int, *, content: str, status: str | None = None,
    **fields,
) -> None:
    """Rewrite an answer in the actor's conversation: its text so far, and at the end its status.

    An answer is saved while it streams, so a crashed server leaves it with what had arrived.
    """
    if status is not None and status not in STATUSES:
        raise ValueError(f"unknown status {status!r}")
    owned = select(Conversation.id).where(owned_by(actor))
    values = {"content": storable(content), **fields} | ({"status": status} if status else {})
    if values.get("error"):  # an engine's error text comes from outside too
        values["error"] = storable(values["error"])
    touched = session.execute(
        update(Message)
        .where(Message.id == message_id, Message.role == "assistant", Message.conversation_id.in_(owned))
        .values(**values)
        .returning(Message.conversation_id)
    ).scalar()
    if touched is None:
        raise NotFoundError("This answer does not exist or was deleted.")
    if status is not None:
        latest = {"updated_at": utcnow(), "last_status": status}
        if fields.get("flow_name"):
            latest["last_version"] = version_label(fields["flow_name"], fields.get("flow_version"))
        session.execute(update(Conversation).where(Conversation.id == touched).values(**latest))


def version_label(flow: str | None, version: str | None) -> str:
    """'Notes RAG v7': a flow and the version that answered; 'v7+' is v7 edited since it was saved."""
    return " ".join(part for part in (flow, version) if part)


def list_messages(
    session: Session, actor: Actor, conversation_id: int, *, limit: int | None = None,
    any_owner: bool = False, current_only: bool = False,
) -> list[Message]:
    """The conversation's messages in order; with ``limit``, only the most recent ones; with
    ``current_only``, only the newest version of each (the chat transcript)."""
    get_conversation(session, actor, conversation_id, any_owner=any_owner)
    query = select(Message).where(Message.conversation_id == conversation_id).order_by(Message.id.desc())
    if current_only:
        query = query.where(Message.current.is_(True))
    if limit is not None:
        query = query.limit(limit)
    return list(reversed(session.scalars(query).all()))


# -- versions of a turn ------------------------------------------------------------------
# A turn is a question and its answer. Regenerate (and Retry) add a version of the answer;
# editing the question adds a version of both. Earlier versions stay, with current False.


def last_turn(session: Session, actor: Actor, conversation_id: int) -> tuple[Message, Message | None]:
    """The newest question in the conversation and its current answer (None: it has none yet)."""
    get_conversation(session, actor, conversation_id)
    question = session.scalar(
        select(Message)
        .where(Message.conversation_id == conversation_id, Message.role == "user", Message.current.is_(True))
        .order_by(Message.id.desc()).limit(1)
    )
    if question is None:
        raise NotFoundError("There is no question to answer again in this conversation.")
    return question, _current_answer(session, question)


def begin_answer(session: Session, actor: Actor, question_id: int, **metadata) -> Message:
    """A new answer to the actor's question, marked interrupted until it finishes.

    When the turn already has an answer (Retry, regenerate, an edited question), that one is
    kept as an earlier version and the new one becomes the current version after it.
    """
    question = _owned_message(session, actor, question_id)
    previous = _current_answer(session, question)
    versions = {}
    if previous is not None:
        previous.current = False
        root = previous.version_of or previous.id
        versions = {"version_of": root, "version": _newest_version(session, root) + 1}
    return append_message(
        session, actor, question.conversation_id, role="assistant", content="", status="interrupted",
        reply_to=question.id, **versions, **metadata,
    )


def edit_question(session: Session, actor: Actor, conversation_id: int, text: str) -> Message:
    """The conversation's last question, asked again as ``text``; the question as it was (and its
    answer, once the new one begins) stay as earlier versions."""
    question, _answer = last_turn(session, actor, conversation_id)
    question.current = False
    root = question.version_of or question.id
    return append_message(
        session, actor, conversation_id, role="user", content=text, files=question.files,
        version_of=root, version=_newest_version(session, root) + 1,
    )


def set_question_files(session: Session, actor: Actor, question_id: int, files: list[dict]) -> None:
    """Record where the question's files are in Langflow, once uploaded (the names came with it)."""
    question = _owned_message(session, actor, question_id)
    question.files = [dict(f) for f in files] or None


def answer_version(session: Session, actor: Actor, answer_id: int, version: int) -> tuple[Message, Message | None]:
    """Version ``version`` of the turn whose answer is ``answer_id``, and the question it answered."""
    answer = _owned_message(session, actor, answer_id)
    root = answer.version_of or answer.id
    shown = session.scalar(
        select(Message).where(or_(Message.id == root, Message.version_of == root), Message.version == version)
    )
    if shown is None:
        raise NotFoundError(f"This answer has no version {version}.")
    asked = session.get(Message, shown.reply_to) if shown.reply_to else None
    return shown, asked


def _current_answer(session: Session, question: Message) -> Message | None:
    """The current answer of the question's turn, whichever version of the question it answered."""
    root = question.version_of or question.id
    asked = select(Message.id).where(or_(Message.id == root, Message.version_of == root))
    return session.scalar(
        select(Message).where(Message.role == "assistant", Message.current.is_(True), Message.reply_to.in_(asked))
        .order_by(Message.id.desc()).limit(1)
    )


def _newest_version(session: Session, root: int) -> int:
    return session.scalar(
        select(func.max(Message.version)).where(or_(Message.id == root, Message.version_of == root))
    ) or 1


def _owned_message(session: Session, actor: Actor, message_id: int) -> Message:
    message = session.scalar(
        select(Message).join(Conversation)
        .where(Message.id == message_id, owned_by(actor))
    )
    if message is None:
        raise NotFoundError("This message does not exist or was deleted.")
    return message


# -- feedback --------------------------------------------------------------------------


def set_feedback(
    session: Session, actor: Actor, message_id: int, *, score: int, comment: str | None = None
) -> Feedback:
    """Record (or change) the actor's 👍 (1) / 👎 (0) on an answer in their own conversation."""
    if score not in (0, 1):
        raise InputError("Feedback is 1 (thumbs up) or 0 (thumbs down).")
    conversation_id = session.scalar(
        select(Message.conversation_id).join(Conversation)
        .where(Message.id == message_id, Message.role == "assistant", owned_by(actor))
    )
    if conversation_id is None:
        raise NotFoundError("This answer does not exist or was deleted.")
    # Locked, so two tabs changing the same rating count it once (SQLite writes one at a time anyway).
    feedback = session.scalar(
        select(Feedback).where(Feedback.message_id == message_id, Feedback.user_id == actor.id)
        .with_for_update().execution_options(populate_existing=True)
    )
    before = None if feedback is None else feedback.score
    if feedback is None:
        feedback = Feedback(message_id=message_id, user_id=actor.id, score=score)
        session.add(feedback)
    feedback.score, feedback.comment = score, storable(comment or "").strip() or None
    feedback.created_at = utcnow()
    if before != score:
        session.execute(update(Conversation).where(Conversation.id == conversation_id).values(_recount(score, before)))
    session.flush()
    return feedback


def _recount(score: int, before: int | None) -> dict:
    """The conversation's 👍/👎 counters after a rating changed from ``before`` (None: new) to ``score``."""
    column = {1: Conversation.thumbs_up, 0: Conversation.thumbs_down}
    values = {column[score].key: column[score] + 1}
    return values if before is None else values | {column[before].key: column[before] - 1}


def feedback_for(session: Session, actor: Actor, message_ids: list[int]) -> dict[int, Feedback]:
    """The feedback on these messages, keyed by message id (the conversation owner's)."""
    if not message_ids:
        return {}
    query = (
        select(Feedback).join(Message).join(Conversation)
        .where(Feedback.message_id.in_(message_ids), Feedback.user_id == Conversation.owner_id, visible_to(actor))
    )
    return {f.message_id: f for f in session.scalars(query)}


# -- audit -----------------------------------------------------------------------------


COMMAND_LINE = "(command line)"  # who did what the command line did, in the audit log


def audit(session: Session, actor: Actor, action: str, target: str) -> None:
    """Note what an admin did; the command line's operator (id 0) is noted without a user."""
    actor_id = actor.id or None
    session.add(AuditEntry(actor_id=actor_id, action=action, target=storable(target)))  # a search as typed


def list_audit(session: Session, actor: Actor, *, limit: int = 500) -> list[tuple[datetime, str, str, str]]:
    if not actor.is_admin:
        return []
    query = (
        select(AuditEntry.created_at, func.coalesce(User.username, COMMAND_LINE), AuditEntry.action,
               AuditEntry.target)
        .outerjoin(User, User.id == AuditEntry.actor_id)
        .order_by(AuditEntry.id.desc()).limit(limit)
    )
    return [tuple(row) for row in session.execute(query)]
