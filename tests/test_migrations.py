"""The migrations build exactly the schema the models describe, on SQLite and PostgreSQL."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text

from chatbot import db as database
from chatbot import store
from chatbot.models import Base, User

# What only the migrations make: the full-text tables and index, and indexes the queries
# need that the models do not declare (partial or expression indexes).
MIGRATION_ONLY = {
    "messages_fts", "messages_fts_config", "messages_fts_data", "messages_fts_docsize", "messages_fts_idx",
    "ix_conversations_activity", "ix_messages_failed", "ix_messages_id_conversation", "ix_messages_content_tsv",
    "content_tsv",
}  # fmt: skip


def _name(difference: tuple) -> str:
    kind, *rest = difference
    if kind == "remove_column":
        return rest[2].name
    return rest[0].name


def unexpected_differences(engine) -> list[tuple]:
    with engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    return [d for d in differences if not (d[0].startswith("remove_") and _name(d) in MIGRATION_ONLY)]


def test_the_migrated_schema_is_the_models_schema(engine):
    assert unexpected_differences(engine) == []


def test_every_migration_goes_down_and_up_again(engine):
    database.downgrade(engine, "base")
    database.migrate(engine)
    assert unexpected_differences(engine) == []


def test_a_conversation_remembers_the_flow_that_answered_it_before_0007(engine, db, users):
    alice = users["alice"]
    with db.begin() as session:
        flows = {}
        for title, flow in (("flow", "flow-9"), ("notes", None), ("unanswered", "-")):
            conversation = store.create_conversation(session, alice, title=title)
            question = store.append_message(session, alice, conversation.id, role="user", content="q")
            if flow != "-":
                answer = store.begin_answer(session, alice, question.id, engine="notes" if flow is None else "langflow",
                                            flow_id=flow)
                store.update_answer(session, alice, answer.id, content="a", status="complete")
            flows[title] = conversation.id
    database.downgrade(engine, "0006")
    database.migrate(engine)
    with db.begin() as session:
        remembered = {title: store.get_conversation(session, alice, cid).flow for title, cid in flows.items()}
    assert remembered == {"flow": "flow-9", "notes": "notes", "unanswered": None}


def test_0008_keeps_every_conversation_on_sqlite_where_it_copies_the_users_table(engine, db, users):
    """Regression: SQLite changes users.password_hash by copying the table; with foreign keys on,
    dropping the old table would have deleted every conversation (ON DELETE CASCADE)."""
    alice = users["alice"]
    with db.begin() as session:
        conversation_id = store.create_conversation(session, alice, title="kept").id
    database.downgrade(engine, "0007")
    database.migrate(engine)
    with db.begin() as session:
        assert store.get_conversation(session, alice, conversation_id).title == "kept"
    if engine.dialect.name == "sqlite":  # and the connections that migrated enforce foreign keys again
        with engine.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1


def test_a_user_without_a_password_gets_one_no_password_matches_below_0008(engine, db):
    with db.begin() as session:
        session.add(User(username="sso", name="Sso", password_hash=None, auth_provider="okta", auth_subject="1"))
    database.downgrade(engine, "0007")
    with engine.connect() as connection:
        assert connection.execute(text("SELECT password_hash FROM users WHERE username = 'sso'")).scalar() == "!"
    database.migrate(engine)
