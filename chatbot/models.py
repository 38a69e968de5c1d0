"""SQLAlchemy 2.0 models: users, login throttles, conversations, messages, feedback, the audit log,
the analysts' workbench (tags on conversations, notes on answers, saved views), and replays (past
questions asked again of another flow, compared side by side)."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    false,
    true,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

ROLES = ("analyst", "admin")
# interrupted: the stream was lost (a dropped connection, a crashed server); stopped: the user stopped it.
STATUSES = ("complete", "error", "interrupted", "stopped")
# A replay waits (queued), runs, and ends done, cancelled, or failed (it could not start: no such flow).
REPLAY_STATES = ("queued", "running", "done", "cancelled", "failed")
# A replayed question waits (pending), runs on one worker, and ends complete, error, or cancelled.
ITEM_STATES = ("pending", "running", "complete", "error", "cancelled")
VERDICTS = ("better", "same", "worse")  # the replayed answer against the original
REPLAY_MODES = ("context", "questions")  # earlier turns asked first in the new session, or not


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(80), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str | None] = mapped_column(String(320))
    # None: no password login (a single sign-on user).
    password_hash: Mapped[str | None] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(20), default="analyst")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_login_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Failures since the last lock or login; lock_level counts the locks in a row (each one longer).
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    lock_level: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    locked_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # A deactivated user keeps their conversations and cannot log in; their sessions end.
    active: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    # Set by an admin's reset or a new account's one-time password: choose one at the next login.
    must_change_password: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # Single sign-on: the provider's name in st.secrets [auth] and its "sub" claim; None: password login.
    auth_provider: Mapped[str | None] = mapped_column(String(100))
    auth_subject: Mapped[str | None] = mapped_column(String(255))

    __table_args__ = (UniqueConstraint("auth_provider", "auth_subject", name="uq_users_auth_identity"),)


class LoginThrottle(Base):
    """Failed logins from one client address, or for a user name that has no account."""

    __tablename__ = "login_throttle"

    key: Mapped[str] = mapped_column(String(320), primary_key=True)  # "address:10.0.0.7", "name:bob"
    failures: Mapped[int] = mapped_column(Integer, default=0)
    lock_level: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)


class Conversation(Base):
    __tablename__ = "conversations"

    id: Mapped[int] = mapped_column(primary_key=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    title: Mapped[str] = mapped_column(String(200))
    langflow_session_id: Mapped[str] = mapped_column(String(36), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)
    # Kept up to date by store.append_message so the history table never counts rows.
    message_count: Mapped[int] = mapped_column(Integer, default=0)
    last_status: Mapped[str | None] = mapped_column(String(20))
    last_engine: Mapped[str | None] = mapped_column(String(200))
    # The owner's 👍 and 👎 on its answers, kept up to date by store.set_feedback.
    thumbs_up: Mapped[int] = mapped_column(Integer, default=0)
    thumbs_down: Mapped[int] = mapped_column(Integer, default=0)
    # The flow it asks (a catalog entry's flow id or endpoint name), or "notes"; None: the default.
    flow: Mapped[str | None] = mapped_column(String(200))
    # "Notes RAG v7": the flow and version of its latest answer, kept by store.update_answer.
    last_version: Mapped[str | None] = mapped_column(String(250))

    owner: Mapped[User] = relationship()

    __table_args__ = (
        Index("ix_conversations_owner_updated", "owner_id", "deleted", "updated_at"),
        Index("ix_conversations_updated", "deleted", "updated_at"),
    )


class Message(Base):
    __tablename__ = "messages"

    id: Mapped[int] = mapped_column(primary_key=True)
    conversation_id: Mapped[int] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"))
    role: Mapped[str] = mapped_column(String(20))  # "user" or "assistant"
    content: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    status: Mapped[str] = mapped_column(String(20), default="complete")
    error: Mapped[str | None] = mapped_column(Text)
    engine: Mapped[str | None] = mapped_column(String(20))  # "langflow" or "notes"
    flow_id: Mapped[str | None] = mapped_column(String(200))
    latency_ms: Mapped[int | None] = mapped_column(Integer)
    ttft_ms: Mapped[int | None] = mapped_column(Integer)
    input_tokens: Mapped[int | None] = mapped_column(Integer)
    output_tokens: Mapped[int | None] = mapped_column(Integer)
    total_tokens: Mapped[int | None] = mapped_column(Integer)
    # A flow with several Chat Outputs: [{"text", "label", "component_id", "usage"}] in the flow's
    # order (content holds them all as one text). None for an answer with one output.
    outputs: Mapped[list | None] = mapped_column(JSON(none_as_null=True))
    # Versions of a turn (regenerate, edit, Retry): an answer replies to a question; each later
    # version points at version 1 of its role in the turn; only the newest version is current.
    reply_to: Mapped[int | None] = mapped_column(Integer)
    version: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    version_of: Mapped[int | None] = mapped_column(Integer, index=True)
    current: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    # Provenance of an answer: the flow's name and version ("v7"; "v7+" when edited since v7),
    # the model (Langflow's properties.source), Langflow's run id and the tweaks sent.
    flow_name: Mapped[str | None] = mapped_column(String(200))
    flow_version: Mapped[str | None] = mapped_column(String(40))
    model: Mapped[str | None] = mapped_column(String(200))
    run_id: Mapped[str | None] = mapped_column(String(64))
    tweaks: Mapped[dict | None] = mapped_column(JSON(none_as_null=True))
    # An agent's tool calls: [{"name", "input", "output", "status", "duration_ms", "error"}], in order.
    steps: Mapped[list | None] = mapped_column(JSON(none_as_null=True))
    # On a question: the files attached, [{"name", "size", "type", "path"}]; the bytes stay in Langflow.
    files: Mapped[list | None] = mapped_column(JSON(none_as_null=True))

    __table_args__ = (
        Index("ix_messages_conversation", "conversation_id", "id"),
        Index("ix_messages_created", "created_at"),
        Index("ix_messages_flow_version", "flow_version", "flow_name", "conversation_id"),
    )


class Feedback(Base):
    __tablename__ = "feedback"

    id: Mapped[int] = mapped_column(primary_key=True)
    message_id: Mapped[int] = mapped_column(ForeignKey("messages.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    score: Mapped[int] = mapped_column(Integer)  # 1 = thumbs up, 0 = thumbs down
    comment: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    __table_args__ = (UniqueConstraint("message_id", "user_id", name="uq_feedback_message_user"),)


class AuditEntry(Base):
    """An admin looked at or exported conversations that are not theirs, or changed an account."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(primary_key=True)
    # None: the command line (python -m chatbot users ...), which runs as the operator.
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    action: Mapped[str] = mapped_column(String(40))  # "view", "export", "purge", "user.add", ...
    target: Mapped[str] = mapped_column(Text)  # what was seen: a conversation id or a filter
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ConversationTag(Base):
    """A free-text label an analyst put on a conversation; a tag exists while a conversation has it."""

    __tablename__ = "conversation_tags"

    conversation_id: Mapped[int] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"), primary_key=True)
    tag: Mapped[str] = mapped_column(String(60), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    __table_args__ = (Index("ix_conversation_tags_tag", "tag", "conversation_id"),)


class AnswerNote(Base):
    """An analyst's note on an answer and, optionally, what it should have said; one per answer."""

    __tablename__ = "answer_notes"

    message_id: Mapped[int] = mapped_column(ForeignKey("messages.id", ondelete="CASCADE"), primary_key=True)
    author_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    note: Mapped[str] = mapped_column(Text, default="")
    corrected_answer: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class SavedView(Base):
    """Named history filters (the page's query parameters); private to its owner or shared with everyone."""

    __tablename__ = "saved_views"

    id: Mapped[int] = mapped_column(primary_key=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(120))
    filters: Mapped[dict] = mapped_column(JSON)
    shared: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    __table_args__ = (
        UniqueConstraint("owner_id", "name", name="uq_saved_views_owner_name"),
        CheckConstraint("name <> ''", name="ck_saved_views_name"),
    )


class Replay(Base):
    """Past questions asked again of one flow (or the notes engine), in the background.

    The questions are copied into ``replay_items`` when the replay is made, so it never reads or
    touches the original conversations again; the state lives here, so a restarted app resumes it.
    """

    __tablename__ = "replays"

    id: Mapped[int] = mapped_column(primary_key=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(250))
    # Where the questions came from, as people read it: 'view "Billing"', 'history filters', 'file eval.jsonl'.
    source: Mapped[str] = mapped_column(String(400))
    filters: Mapped[dict | None] = mapped_column(JSON(none_as_null=True))  # the history filters used, if any
    flow: Mapped[str] = mapped_column(String(200))  # the catalog key asked: a flow id or endpoint name, or "notes"
    flow_label: Mapped[str] = mapped_column(String(200))
    tweaks: Mapped[dict | None] = mapped_column(JSON(none_as_null=True))
    mode: Mapped[str] = mapped_column(String(20), default="context")
    status: Mapped[str] = mapped_column(String(20), default="queued")
    total: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        Index("ix_replays_owner_created", "owner_id", "created_at"),
        Index("ix_replays_status", "status"),
    )


class ReplayItem(Base):
    """One question of a replay: the original turn as it was when the replay was made, the
    replayed answer, and the analyst's verdict on it."""

    __tablename__ = "replay_items"

    id: Mapped[int] = mapped_column(primary_key=True)
    replay_id: Mapped[int] = mapped_column(ForeignKey("replays.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)  # 1, 2, ... in the order the questions came
    # The original (no foreign keys: a purged conversation leaves its copy here).
    conversation_id: Mapped[int | None] = mapped_column(Integer)
    question_id: Mapped[int | None] = mapped_column(Integer)
    answer_id: Mapped[int | None] = mapped_column(Integer)
    question: Mapped[str] = mapped_column(Text)
    context: Mapped[list | None] = mapped_column(JSON(none_as_null=True))  # earlier turns, [{"role", "content"}]
    files: Mapped[list | None] = mapped_column(JSON(none_as_null=True))  # the question's files in Langflow
    original_answer: Mapped[str | None] = mapped_column(Text)
    original_status: Mapped[str | None] = mapped_column(String(20))
    original_flow: Mapped[str | None] = mapped_column(String(250))  # "Notes RAG v7"
    original_latency_ms: Mapped[int | None] = mapped_column(Integer)
    original_ttft_ms: Mapped[int | None] = mapped_column(Integer)
    original_tokens: Mapped[int | None] = mapped_column(Integer)
    original_feedback: Mapped[int | None] = mapped_column(Integer)  # 1 = 👍, 0 = 👎
    original_comment: Mapped[str | None] = mapped_column(Text)  # the feedback's comment
    corrected_answer: Mapped[str | None] = mapped_column(Text)  # from the answer's note
    # The replayed answer.
    status: Mapped[str] = mapped_column(String(20), default="pending")
    answer: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    latency_ms: Mapped[int | None] = mapped_column(Integer)
    ttft_ms: Mapped[int | None] = mapped_column(Integer)
    tokens: Mapped[int | None] = mapped_column(Integer)
    flow_name: Mapped[str | None] = mapped_column(String(200))
    flow_version: Mapped[str | None] = mapped_column(String(40))
    model: Mapped[str | None] = mapped_column(String(200))
    run_id: Mapped[str | None] = mapped_column(String(64))
    session_id: Mapped[str | None] = mapped_column(String(36))  # a fresh Langflow session per question
    steps: Mapped[list | None] = mapped_column(JSON(none_as_null=True))
    # Who runs it: a worker's name and its last sign of life; a stale heartbeat frees the question again.
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    worker: Mapped[str | None] = mapped_column(String(120))
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The analyst's judgement of the replayed answer against the original.
    verdict: Mapped[str | None] = mapped_column(String(10))
    verdict_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    verdict_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        UniqueConstraint("replay_id", "position", name="uq_replay_items_position"),
        Index("ix_replay_items_status", "status", "heartbeat_at"),
    )
