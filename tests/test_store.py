"""The store on a real SQLite file and a real PostgreSQL schema: scoping, counters, feedback, users."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import func, select

from chatbot import db as database
from chatbot import history, store
from chatbot.errors import InputError, NotFoundError
from chatbot.history import HistoryFilter
from chatbot.models import Conversation, Message


def start(db, actor, question="What is a window function?"):
    with db.begin() as session:
        conversation = store.create_conversation(session, actor, title=question)
        store.append_message(session, actor, conversation.id, role="user", content=question)
        return conversation.id


def test_conversation_title_comes_from_the_first_question(db, users):
    cid = start(db, users["alice"], "  How do I\nvacuum a  big table?  ")
    with db.begin() as session:
        assert store.get_conversation(session, users["alice"], cid).title == "How do I vacuum a big table?"


def test_long_titles_are_cut_with_an_ellipsis(db, users):
    cid = start(db, users["alice"], "word " * 40)
    with db.begin() as session:
        title = store.get_conversation(session, users["alice"], cid).title
    assert len(title) == store.TITLE_CHARS and title.endswith("…")


def test_sidebar_lists_own_conversations_most_recent_activity_first(db, users):
    alice = users["alice"]
    first, second = start(db, alice, "first"), start(db, alice, "second")
    start(db, users["bob"], "bob's")
    with db.begin() as session:
        store.append_message(session, alice, first, role="assistant", content="answer")
    with db.begin() as session:
        titles = [c.title for c in store.list_conversations(session, alice)]
    assert titles == ["first", "second"]
    assert second


def test_append_message_keeps_the_conversation_counters(db, users):
    alice = users["alice"]
    cid = start(db, alice)
    with db.begin() as session:
        store.append_message(session, alice, cid, role="assistant", content="partial", status="error",
                             error="Langflow timed out", engine="langflow", flow_id="flow-1", latency_ms=1200)
    with db.begin() as session:
        conversation = store.get_conversation(session, alice, cid)
        assert (conversation.message_count, conversation.last_status, conversation.last_engine) == (2, "error", "flow-1")
        messages = store.list_messages(session, alice, cid)
    assert [(m.role, m.content, m.status, m.error) for m in messages] == [
        ("user", "What is a window function?", "complete", None),
        ("assistant", "partial", "error", "Langflow timed out"),
    ]


def test_list_messages_with_limit_returns_the_most_recent_in_order(db, users):
    alice = users["alice"]
    cid = start(db, alice, "q0")
    with db.begin() as session:
        for i in range(1, 6):
            store.append_message(session, alice, cid, role="user", content=f"q{i}")
    with db.begin() as session:
        assert [m.content for m in store.list_messages(session, alice, cid, limit=3)] == ["q3", "q4", "q5"]


def test_another_users_conversation_is_not_found_by_any_function(db, users):
    alice, bob = users["alice"], users["bob"]
    cid = start(db, alice)
    with db.begin() as session:
        answer = store.append_message(session, alice, cid, role="assistant", content="a")
    calls = [
        lambda s: store.get_conversation(s, bob, cid),
        lambda s: store.list_messages(s, bob, cid),
        lambda s: store.append_message(s, bob, cid, role="user", content="sneaky"),
        lambda s: store.rename_conversation(s, bob, cid, "mine now"),
        lambda s: store.delete_conversation(s, bob, cid),
        lambda s: store.purge_conversation(s, bob, cid),
        lambda s: store.last_turn(s, bob, cid),
        lambda s: store.begin_answer(s, bob, answer.id - 1),
        lambda s: store.edit_question(s, bob, cid, "mine now"),
        lambda s: store.answer_version(s, bob, answer.id, 1),
        lambda s: store.set_feedback(s, bob, answer.id, score=0),
        lambda s: store.update_answer(s, bob, answer.id, content="rewritten", status="complete"),
    ]
    for call in calls:
        with pytest.raises(NotFoundError), db.begin() as session:
            call(session)
    with db.begin() as session:
        assert store.list_conversations(session, bob) == []
        assert store.feedback_for(session, bob, [answer.id]) == {}
        conversation = store.get_conversation(session, alice, cid)
        assert (conversation.title, conversation.message_count) == ("What is a window function?", 2)
        assert [m.content for m in store.list_messages(session, alice, cid)][-1] == "a"


def test_an_answer_is_rewritten_in_place_and_only_a_final_status_moves_the_conversation(db, users):
    alice = users["alice"]
    cid = start(db, alice)
    with db.begin() as session:
        answer = store.append_message(session, alice, cid, role="assistant", content="", status="interrupted")
    with db.begin() as session:
        store.update_answer(session, alice, answer.id, content="Half an")
        assert store.get_conversation(session, alice, cid).last_status == "interrupted"
    with db.begin() as session:
        store.update_answer(session, alice, answer.id, content="Half an answer\x00.", status="complete", error=None)
    with db.begin() as session:
        conversation = store.get_conversation(session, alice, cid)
        kept = [(m.role, m.content, m.status) for m in store.list_messages(session, alice, cid)]
    assert kept[-1] == ("assistant", "Half an answer\ufffd.", "complete")
    assert (conversation.message_count, conversation.last_status) == (2, "complete")


def test_admin_reads_any_conversation_only_when_asked_and_cannot_write_to_it(db, users):
    cid = start(db, users["alice"])
    with db.begin() as session:
        assert store.get_conversation(session, users["root"], cid, any_owner=True).id == cid
        with pytest.raises(NotFoundError):
            store.get_conversation(session, users["root"], cid)
        with pytest.raises(NotFoundError):
            store.append_message(session, users["root"], cid, role="user", content="x")


def test_deleted_conversations_disappear_and_admins_purge_them(db, users):
    alice, root = users["alice"], users["root"]
    cid = start(db, alice)
    with db.begin() as session:
        store.delete_conversation(session, alice, cid)
    with db.begin() as session:
        assert store.list_conversations(session, alice) == []
        with pytest.raises(NotFoundError):
            store.list_messages(session, alice, cid)
        store.purge_conversation(session, root, cid)
    with db.begin() as session:
        assert session.scalar(select(func.count()).select_from(Message)) == 0
        assert [a[2] for a in store.list_audit(session, root)] == ["purge"]
        assert store.list_audit(session, alice) == []


def test_rename_refuses_an_empty_title(db, users):
    cid = start(db, users["alice"])
    with pytest.raises(InputError), db.begin() as session:
        store.rename_conversation(session, users["alice"], cid, "   ")
    with db.begin() as session:
        store.rename_conversation(session, users["alice"], cid, "Vacuum notes")
        assert store.get_conversation(session, users["alice"], cid).title == "Vacuum notes"


def test_feedback_is_one_per_user_and_answer_and_can_change(db, users):
    alice = users["alice"]
    cid = start(db, alice)
    with db.begin() as session:
        answer = store.append_message(session, alice, cid, role="assistant", content="a")
        store.set_feedback(session, alice, answer.id, score=1)
    with db.begin() as session:
        store.set_feedback(session, alice, answer.id, score=0, comment="  cites the wrong note ")
    with db.begin() as session:
        saved = store.feedback_for(session, alice, [answer.id])[answer.id]
        assert (saved.score, saved.comment) == (0, "cites the wrong note")
        with pytest.raises(InputError):
            store.set_feedback(session, alice, answer.id, score=5)


def test_feedback_only_on_answers(db, users):
    alice = users["alice"]
    cid = start(db, alice)
    with db.begin() as session:
        question_id = store.list_messages(session, alice, cid)[0].id
        with pytest.raises(NotFoundError):
            store.set_feedback(session, alice, question_id, score=1)


def test_text_round_trips_exactly_and_nul_bytes_never_break_the_database(db, users):
    alice = users["alice"]
    text = "emoji 🧪🦄, RTL שלום עליכם, 4-byte 𝔘𝔫𝔦𝔠𝔬𝔡𝔢, tab\tnewline\n"
    cid = start(db, alice, text)
    with db.begin() as session:
        store.append_message(session, alice, cid, role="assistant", content="nul\x00byte")
    with db.begin() as session:
        contents = [m.content for m in store.list_messages(session, alice, cid)]
    assert contents == [text, "nul\ufffdbyte"]


def test_a_full_name_and_email_with_nul_bytes_are_stored_with_replacement_characters(db):
    """PostgreSQL raised DataError for the first-admin form's full name 'Ad\\x00min'."""
    with db.begin() as session:
        store.create_user(session, username="admin", password="pw-admin", role="admin",
                          name="Ad\x00min", email="ad\x00min@example.com")
    with db.begin() as session:
        user = store.get_user(session, "admin")
        assert (user.name, user.email) == ("Ad\ufffdmin", "ad\ufffdmin@example.com")


def test_a_full_name_or_email_longer_than_its_column_is_refused(db):
    for kwargs, message in [
        ({"name": "n" * 201}, "The full name is too long (201 characters; at most 200)."),
        ({"email": "e" * 321}, "The email address is too long (321 characters; at most 320)."),
    ]:
        with pytest.raises(InputError) as refused, db.begin() as session:
            store.create_user(session, username="carol", password="pw-carol", **kwargs)
        assert str(refused.value) == message
    with db.begin() as session:
        assert store.list_users(session) == []


def test_a_feedback_comment_with_a_nul_byte_is_stored_with_a_replacement_character(db, users):
    alice = users["alice"]
    cid = start(db, alice)
    with db.begin() as session:
        answer = store.append_message(session, alice, cid, role="assistant", content="a")
        store.set_feedback(session, alice, answer.id, score=0, comment="bad\x00comment")
    with db.begin() as session:
        assert store.feedback_for(session, alice, [answer.id])[answer.id].comment == "bad\ufffdcomment"


def test_a_title_with_a_nul_byte_is_stored_with_a_replacement_character_on_create_and_rename(db, users):
    alice = users["alice"]
    with db.begin() as session:
        cid = store.create_conversation(session, alice, title="first\x00title").id
    with db.begin() as session:
        assert store.get_conversation(session, alice, cid).title == "first\ufffdtitle"
        store.rename_conversation(session, alice, cid, "re\x00named")
    with db.begin() as session:
        assert store.get_conversation(session, alice, cid).title == "re\ufffdnamed"


def test_an_admins_export_of_a_search_with_a_nul_byte_is_audited(db, users):
    """A shared link's ?history_search=%00 reaches the audit log's record of an admin's export, as the
    search that ran (the NUL splits the word, as both indexes would)."""
    with db.begin() as session:
        assert history.record_export(session, users["root"], HistoryFilter(search="ch\x00urn")) is True
    with db.begin() as session:
        assert [entry[1:] for entry in store.list_audit(session, users["root"])] == [
            ("root", "export", 'search="ch urn"')]


def test_users_are_created_hashed_and_validated(db):
    with db.begin() as session:
        user = store.create_user(session, username="Carol", password="pw-carol", role="admin")
        assert (user.username, user.role, user.name) == ("carol", "admin", "carol")
        assert user.password_hash.startswith("$2") and "pw-carol" not in user.password_hash
    for kwargs, message in [
        ({"username": "carol", "password": "x"}, "already exists"),
        ({"username": "dave", "password": "x", "role": "boss"}, "Unknown role"),
        ({"username": "dave", "password": "   "}, "must not be empty"),
        ({"username": "../etc", "password": "x"}, "Invalid username"),
        ({"username": "dave", "password": "x" * 80}, "too long"),
    ]:
        with pytest.raises(InputError, match=message), db.begin() as session:
            store.create_user(session, **kwargs)
    with db.begin() as session:
        assert [u.username for u in store.list_users(session)] == ["carol"]


def test_concurrent_writers_lose_nothing(db, users):
    """20 threads x 50 messages: every message stored, no 'database is locked' reaches anyone."""
    alice = users["alice"]
    conversation_ids = [start(db, alice, f"thread {i}") for i in range(20)]
    errors = []

    def write(cid):
        try:
            for i in range(50):
                with db.begin() as session:
                    store.append_message(session, alice, cid, role="assistant", content=f"m{i}")
        except Exception as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(cid,)) for cid in conversation_ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with db.begin() as session:
        assert session.scalar(select(func.count()).select_from(Message)) == 20 * 51
        assert set(session.scalars(select(Conversation.message_count))) == {51}


def test_conversation_titles_are_searched_in_any_case_and_wildcards_are_text(db, users):
    alice, bob = users["alice"], users["bob"]
    with db.begin() as session:
        for title in ("Q3 Sales review", "sales_2024 100% done", "Churn"):
            store.create_conversation(session, alice, title=title)
        store.create_conversation(session, bob, title="Sales of bob")
    with db.begin() as session:
        assert [c.title for c in store.list_conversations(session, alice, title_search="SALES")] == [
            "sales_2024 100% done", "Q3 Sales review"]
        assert [c.title for c in store.list_conversations(session, alice, title_search="100%")] == ["sales_2024 100% done"]
        assert store.list_conversations(session, alice, title_search="s_l") == []  # "_" is no wildcard
        assert [c.title for c in store.list_conversations(session, alice, limit=1)] == ["Churn"]


def test_versions_migration_makes_earlier_retries_versions_of_one_turn(engine, db, users):
    """Before 0006 a Retry appended a second answer after the failed one."""
    alice = users["alice"]
    cid = start(db, alice, "q1")
    with db.begin() as session:
        for content, status in (("", "error"), ("a1", "complete")):
            store.append_message(session, alice, cid, role="assistant", content=content, status=status)
        store.append_message(session, alice, cid, role="user", content="q2")
        store.append_message(session, alice, cid, role="assistant", content="a2")
    database.downgrade(engine, "0005")
    database.migrate(engine)
    with db.begin() as session:
        rows = [(m.role, m.content, m.version, m.current) for m in store.list_messages(session, alice, cid)]
        shown = [m.content for m in store.list_messages(session, alice, cid, current_only=True)]
        question, answer = store.last_turn(session, alice, cid)
        first, asked = store.answer_version(session, alice, store.list_messages(session, alice, cid)[2].id, 1)
    assert rows == [("user", "q1", 1, True), ("assistant", "", 1, False), ("assistant", "a1", 2, True),
                    ("user", "q2", 1, True), ("assistant", "a2", 1, True)]
    assert shown == ["q1", "a1", "q2", "a2"]
    assert (question.content, answer.content) == ("q2", "a2")
    assert (first.status, asked.content) == ("error", "q1")


def test_a_question_without_an_answer_gets_version_1(db, users):
    alice = users["alice"]
    cid = start(db, alice, "q1")
    with db.begin() as session:
        question, answer = store.last_turn(session, alice, cid)
        assert answer is None
        begun = store.begin_answer(session, alice, question.id)
        assert (begun.version, begun.version_of, begun.reply_to, begun.status) == (1, None, question.id, "interrupted")
