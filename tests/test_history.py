"""History queries on a real SQLite file and a real PostgreSQL schema: every filter, search, export and usage."""

from __future__ import annotations

import datetime as dt
import io
import json

import pandas as pd
import pytest
from sqlalchemy import select, text

from chatbot import db as database
from chatbot import fulltext, history, store
from chatbot.errors import InputError, NotFoundError
from chatbot.export import EXPORT_COLUMNS
from chatbot.history import HistoryFilter
from chatbot.models import Conversation, Feedback

UTC = dt.UTC
MAY = dt.datetime(2024, 5, 1, 9, 0, tzinfo=UTC)
EVERYTHING = HistoryFilter()


class Clock:
    """What store.utcnow returns: the tests decide when each message was sent."""

    def __init__(self) -> None:
        self.now = MAY

    def __call__(self) -> dt.datetime:
        return self.now


@pytest.fixture
def clock(monkeypatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(store, "utcnow", clock)
    return clock


def converse(db, clock, actor, title, when, turns) -> int:
    """A conversation started at ``when``: each turn is a question and its answer, a minute apart.

    A turn is ``(question, answer, fields)``; fields may hold status, error, latency_ms,
    ttft_ms, engine, flow_id and ``feedback`` = (score, comment).
    """
    with db.begin() as session:
        conversation = store.create_conversation(session, actor, title=title)
        conversation.created_at = when
        for i, (question, answer, fields) in enumerate(turns):
            fields = dict(fields)
            feedback = fields.pop("feedback", None)
            fields.setdefault("engine", "notes")
            clock.now = when + dt.timedelta(minutes=2 * i)
            store.append_message(session, actor, conversation.id, role="user", content=question)
            clock.now = when + dt.timedelta(minutes=2 * i + 1)
            message = store.append_message(session, actor, conversation.id, role="assistant", content=answer, **fields)
            if feedback:
                store.set_feedback(session, actor, message.id, score=feedback[0], comment=feedback[1])
        return conversation.id


@pytest.fixture
def seeded(db, users, clock) -> dict[str, int]:
    """alice: three conversations (👍, an error then 👎, nothing); bob and root one each."""
    alice, bob, root = users["alice"], users["bob"], users["root"]
    ids = {
        "sales": converse(db, clock, alice, "Quarterly sales", MAY, [
            ("What were Q3 sales?", "Q3 sales were **1.2M**.",
             {"latency_ms": 1000, "ttft_ms": 100, "feedback": (1, "great")}),
        ]),
        "churn": converse(db, clock, alice, "Churn dashboard", MAY + dt.timedelta(days=2), [
            ("Show churn by region", "", {"status": "error", "error": "Langflow timed out.",
                                          "latency_ms": 5000, "engine": "langflow", "flow_id": "flow-9"}),
            ("Show churn by region again", "Churn is 4% in the north.",
             {"latency_ms": 3000, "ttft_ms": 300, "engine": "langflow", "flow_id": "flow-9",
              "feedback": (0, "wrong region")}),
        ]),
        "vacuum": converse(db, clock, alice, "Vacuum tips", MAY + dt.timedelta(days=9), [
            ("How do I vacuum postgres?", "Run VACUUM ANALYZE.", {"latency_ms": 2000, "ttft_ms": 200}),
        ]),
        "bob": converse(db, clock, bob, "Forecast for bob", MAY + dt.timedelta(days=1), [
            ("What is the sales forecast?", "The forecast is flat.",
             {"latency_ms": 4000, "ttft_ms": 400, "engine": "langflow", "flow_id": "flow-bob",
              "feedback": (1, None)}),
        ]),
        "root": converse(db, clock, root, "Admin checks", MAY + dt.timedelta(days=4), [
            ("Are backups running?", "Yes.", {"latency_ms": 500, "ttft_ms": 50}),
        ]),
    }
    return ids


STEPS = [{"name": "search_notes", "input": {"query": "churn"}, "output": "Churn: 4 % (north)", "status": "success",
          "duration_ms": 1200, "error": None}]
FILES = [{"name": "q3.pdf", "size": 12_288, "type": "application/pdf", "path": "flow-9/q3.pdf"}]


def ask_flow(db, clock, actor, conversation_id, when, question, answer, *, flow, version, **fields) -> int:
    """A question and its answer from ``flow`` at ``version``, saved as the chat saves them (the answer
    begun, then completed with what answered); the answer's id."""
    files = fields.pop("files", None)
    with db.begin() as session:
        clock.now = when
        asked = store.append_message(session, actor, conversation_id, role="user", content=question, files=files)
        clock.now = when + dt.timedelta(minutes=1)
        begun = store.begin_answer(session, actor, asked.id, engine="langflow", flow_id="flow-9")
        store.update_answer(session, actor, begun.id, content=answer, status="complete", flow_name=flow,
                            flow_version=version, **fields)
        return begun.id


@pytest.fixture
def flows(db, users, clock) -> dict[str, int]:
    """alice: 'Churn by version' (Notes RAG v6, then v7) and 'Agent chat' (Agent v7, another flow's
    v7); bob: 'Bob on v7+' (Notes RAG v7+); alice's 'Gone' (Notes RAG v5) is deleted."""
    alice, bob = users["alice"], users["bob"]
    with db.begin() as session:
        ids = {name: store.create_conversation(session, owner, title=title).id for name, owner, title in (
            ("churn", alice, "Churn by version"), ("agent", alice, "Agent chat"), ("bob", bob, "Bob on v7+"),
            ("gone", alice, "Gone"))}  # fmt: skip
    ask_flow(db, clock, alice, ids["churn"], MAY, "Churn?", "4 %.", flow="Notes RAG", version="v6")
    ask_flow(db, clock, alice, ids["churn"], MAY + dt.timedelta(days=1), "Churn this week?", "5 %.", flow="Notes RAG",
             version="v7", model="gpt-4o-mini", run_id="run-7", tweaks={"Prompt-1": {"template": "Be brief"}},
             steps=STEPS, files=FILES)
    ask_flow(db, clock, alice, ids["agent"], MAY + dt.timedelta(days=2), "7*6?", "42", flow="Agent", version="v7")
    ask_flow(db, clock, bob, ids["bob"], MAY + dt.timedelta(days=3), "Churn?", "3 %.", flow="Notes RAG",
             version="v7+")
    ask_flow(db, clock, alice, ids["gone"], MAY + dt.timedelta(days=4), "Old?", "Yes.", flow="Notes RAG",
             version="v5")
    with db.begin() as session:
        store.delete_conversation(session, alice, ids["gone"])
    return ids


def titles(db, actor, filters=EVERYTHING, **kwargs) -> list[str]:
    with db.begin() as session:
        frame, _ = history.list_history(session, actor, filters, page=0, **kwargs)
    return frame["title"].tolist()


def total(db, actor, filters=EVERYTHING) -> int:
    with db.begin() as session:
        return history.list_history(session, actor, filters, page=0)[1]


# -- the table ---------------------------------------------------------------------------


def test_analyst_sees_only_own_conversations_by_last_activity(db, users, seeded):
    assert titles(db, users["alice"]) == ["Vacuum tips", "Churn dashboard", "Quarterly sales"]
    assert total(db, users["alice"]) == 3


def test_admin_sees_every_conversation_with_its_owner(db, users, seeded):
    with db.begin() as session:
        frame, count = history.list_history(session, users["root"], HistoryFilter(), page=0)
    assert count == 5
    assert list(zip(frame["title"], frame["owner"])) == [
        ("Vacuum tips", "alice"), ("Admin checks", "root"), ("Churn dashboard", "alice"),
        ("Forecast for bob", "bob"), ("Quarterly sales", "alice"),
    ]


def test_table_row_shows_counters_feedback_and_last_answer(db, users, seeded):
    with db.begin() as session:
        frame, _ = history.list_history(session, users["alice"], HistoryFilter(), page=0)
    assert list(frame.columns) == history.TABLE_COLUMNS
    row = frame.set_index("title").loc["Churn dashboard"]
    assert row["id"] == seeded["churn"]
    assert (row["messages"], row["thumbs_up"], row["thumbs_down"]) == (4, 0, 1)
    assert (row["last_status"], row["engine"], row["flow_version"]) == ("complete", "flow-9", None)
    assert row["started"] == pd.Timestamp("2024-05-03 09:00", tz="UTC")
    assert row["last_activity"] == pd.Timestamp("2024-05-03 09:03", tz="UTC")


def test_pages_are_cut_in_sql_and_the_total_counts_every_match(db, users, seeded):
    with db.begin() as session:
        first, count = history.list_history(session, users["alice"], HistoryFilter(), page=0, page_size=2)
        second, _ = history.list_history(session, users["alice"], HistoryFilter(), page=1, page_size=2)
    assert (first["title"].tolist(), count) == (["Vacuum tips", "Churn dashboard"], 3)
    assert second["title"].tolist() == ["Quarterly sales"]


@pytest.mark.parametrize(
    ("sort", "expected"),
    [
        ("started", ["Vacuum tips", "Churn dashboard", "Quarterly sales"]),
        ("messages", ["Churn dashboard", "Vacuum tips", "Quarterly sales"]),
        ("title", ["Churn dashboard", "Quarterly sales", "Vacuum tips"]),
    ],
)
def test_sort_orders_the_whole_set(db, users, seeded, sort, expected):
    assert titles(db, users["alice"], HistoryFilter(sort=sort)) == expected


# -- filters -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("since", "until", "expected"),
    [
        ("2024-05-03", "2024-05-03", ["Churn dashboard"]),
        ("2024-05-02", None, ["Vacuum tips", "Churn dashboard"]),
        (None, "2024-05-02", ["Quarterly sales"]),
        ("2024-05-11", None, []),
    ],
)
def test_date_range_keeps_conversations_active_in_it(db, users, seeded, since, until, expected):
    filters = HistoryFilter(
        since=since and dt.date.fromisoformat(since), until=until and dt.date.fromisoformat(until)
    )
    assert titles(db, users["alice"], filters) == expected


@pytest.mark.parametrize(
    ("search", "expected"),
    [
        ("sales", ["Quarterly sales"]),
        ("sale", ["Quarterly sales"]),  # stemmed: sale / sales
        ("REGION churn", ["Churn dashboard"]),  # every word, any case
        ('"churn by region"', ["Churn dashboard"]),  # a phrase
        ('"region by churn"', []),
        ("vacuum forecast", []),  # forecast is only in bob's conversation
        ("???", ["Vacuum tips", "Churn dashboard", "Quarterly sales"]),  # no words: ignored, and said so
    ],
)
def test_search_uses_the_full_text_index(db, users, seeded, search, expected):
    assert titles(db, users["alice"], HistoryFilter(search=search)) == expected


@pytest.mark.parametrize("search", ['NOT near( "', "sales OR", "* - ^ : AND", "a\"b'c", "\x00 sales"])
def test_search_syntax_is_never_an_error(db, users, seeded, search):
    assert titles(db, users["alice"], HistoryFilter(search=search)) in ([], ["Quarterly sales"])


def test_search_reaches_other_users_only_for_admins(db, users, seeded):
    assert titles(db, users["alice"], HistoryFilter(search="forecast")) == []
    assert titles(db, users["root"], HistoryFilter(search="forecast")) == ["Forecast for bob"]


@pytest.fixture
def vacuums(db, users, clock) -> list[str]:
    """Twelve conversations of bob's, a day apart, each with two messages that say vacuum; newest first."""
    for n in range(12):
        converse(db, clock, users["bob"], f"Vacuum {n:02d}", MAY + dt.timedelta(days=n), [("Vacuum?", "Run VACUUM.", {})])
    return [f"Vacuum {n:02d}" for n in reversed(range(12))]


def searched(db, actor, page, page_size=3, **filters):
    with db.begin() as session:
        frame, count = history.list_history(
            session, actor, HistoryFilter(search="vacuum", **filters), page=page, page_size=page_size
        )
    return frame["title"].tolist(), count


def test_search_count_is_exact_when_every_hit_was_read(db, users, vacuums):
    shown, count = searched(db, users["root"], 0)

    assert shown == vacuums[:3]
    assert (count, count.at_least, count.label()) == (12, False, "12")


def test_search_with_more_hits_than_it_reads_counts_at_least_one_past_the_page(db, users, vacuums, monkeypatch):
    monkeypatch.setattr(history.page, "_COUNTED_HITS", 4)

    pages = [searched(db, users["root"], page) for page in range(4)]

    assert [titles for titles, _ in pages] == [vacuums[0:3], vacuums[3:6], vacuums[6:9], vacuums[9:12]]
    # Each page reads twice the hits it needs (two per conversation here) and counts them,
    # until every hit was read.
    assert [(count.label(), count) for _, count in pages] == [("4+", 4), ("7+", 7), ("10+", 10), ("12", 12)]


def test_search_that_walks_too_few_new_conversations_reads_every_hit(db, users, vacuums, monkeypatch):
    monkeypatch.setattr(history.page, "_COUNTED_HITS", 4)
    monkeypatch.setattr(history.page, "_WALK", 2)

    assert searched(db, users["root"], 0) == (vacuums[:3], 4)


def test_search_in_another_order_counts_at_least_and_sorts_every_hit(db, users, vacuums, monkeypatch):
    monkeypatch.setattr(history.page, "_COUNTED_HITS", 4)

    shown, count = searched(db, users["root"], 0, sort="title")

    assert shown == sorted(vacuums)[:3] and count.label() == "4+"


def test_walk_reads_through_conversations_older_than_the_newest_messages(db, users, clock, monkeypatch):
    bob, root = users["bob"], users["root"]
    old = converse(db, clock, bob, "Old vacuum", MAY - dt.timedelta(days=2), [("Vacuum?", "Run VACUUM.", {})])
    for n in range(3):
        converse(db, clock, bob, f"Vacuum {n:02d}", MAY + dt.timedelta(days=n), [("Vacuum?", "Run VACUUM.", {})])
    converse(db, clock, bob, "Backups", MAY + dt.timedelta(days=1, hours=12), [("Backups?", "Nightly.", {})])
    converse(db, clock, bob, "Weather", MAY + dt.timedelta(days=20), [("Rain?", "No rain.", {})])
    with db.begin() as session:  # the old conversation, active again: its hit is not among the newest messages
        clock.now = MAY + dt.timedelta(days=21)
        store.append_message(session, bob, old, role="user", content="Thanks")
    monkeypatch.setattr(fulltext, "RECENT_MESSAGES", 3)  # Weather's two and the thanks
    with db.begin() as session:
        search = HistoryFilter(search="vacuum")
        walk = history.page._Search(history.filters.dialect_of(session), root, search, 0, 3, history.page._tuning()).walk
        rows = session.execute(walk).all()
    assert [row.title for row in rows] == ["Old vacuum", "Vacuum 02", "Vacuum 01"]


@pytest.fixture
def vacuum_all_day(db, users, clock) -> None:
    """alice's one conversation with ten messages that say vacuum (ask for it before ``vacuums``: its
    hits then come first in the index)."""
    converse(db, clock, users["alice"], "Vacuum all day", MAY - dt.timedelta(days=1), [("vacuum", "vacuum", {})] * 5)


def test_search_with_its_first_hits_in_few_conversations_counts_every_one(
    db, users, vacuum_all_day, vacuums, monkeypatch
):
    monkeypatch.setattr(history.page, "_COUNTED_HITS", 4)

    assert searched(db, users["root"], 0) == (vacuums[:3], 13)
    assert searched(db, users["alice"], 0) == (["Vacuum all day"], 1)  # bob's hits are not alice's


def test_match_count_labels():
    assert (history.MatchCount(1234).label(), history.MatchCount(1234, at_least=True).label()) == ("1,234", "1,234+")


@pytest.mark.parametrize(
    ("feedback", "expected"),
    [
        ("any", ["Vacuum tips", "Churn dashboard", "Quarterly sales"]),
        ("up", ["Quarterly sales"]),
        ("down", ["Churn dashboard"]),
        ("none", ["Vacuum tips"]),
    ],
)
def test_feedback_filter(db, users, seeded, feedback, expected):
    assert titles(db, users["alice"], HistoryFilter(feedback=feedback)) == expected


def test_feedback_counts_only_the_conversation_owners(db, users, seeded):
    with db.begin() as session:  # not possible through the store: an admin rating alice's answer
        answer = history.transcript(session, users["alice"], seeded["vacuum"]).messages[1]
        session.add(Feedback(message_id=answer.id, user_id=users["root"].id, score=1))
    assert titles(db, users["root"], HistoryFilter(feedback="up", user="alice")) == ["Quarterly sales"]
    assert titles(db, users["alice"], HistoryFilter(feedback="none")) == ["Vacuum tips"]


def thumbs(db, actor, conversation_id) -> tuple[int, int]:
    with db.begin() as session:
        frame, _ = history.list_history(session, actor, EVERYTHING, page=0)
    row = frame.set_index("id").loc[conversation_id]
    return int(row["thumbs_up"]), int(row["thumbs_down"])


def test_thumbs_follow_a_changed_rating_and_count_each_answer_once(db, users, seeded):
    alice = users["alice"]
    with db.begin() as session:
        answer = history.transcript(session, alice, seeded["vacuum"]).messages[1]
        store.set_feedback(session, alice, answer.id, score=1)
    assert thumbs(db, alice, seeded["vacuum"]) == (1, 0)
    for score in (0, 0):  # changed, then the same again
        with db.begin() as session:
            store.set_feedback(session, alice, answer.id, score=score, comment="on second thought")
    assert thumbs(db, alice, seeded["vacuum"]) == (0, 1)
    assert titles(db, alice, HistoryFilter(feedback="down")) == ["Vacuum tips", "Churn dashboard"]
    assert titles(db, alice, HistoryFilter(feedback="none")) == []


def test_errors_only_keeps_conversations_with_a_failed_answer(db, users, seeded):
    assert titles(db, users["alice"], HistoryFilter(status="error")) == ["Churn dashboard"]
    assert titles(db, users["bob"], HistoryFilter(status="error")) == []


def test_errors_only_narrows_exports_and_usage_too(db, users, seeded):
    """Exporting or counting usage with 'Errors only' failed: the filter's messages were the query's own."""
    alice, filters = users["alice"], HistoryFilter(status="error")
    assert export_frame(db, alice, filters)["conversation_title"].tolist() == ["Churn dashboard"] * 4
    with db.begin() as session:
        assert history.count_export_rows(session, alice, HistoryFilter(status="error", since=dt.date(2024, 5, 1))) == 4
        assert (history.usage(session, alice, filters).answers, history.usage(session, alice, filters).errors) == (2, 1)


def test_engine_filter_uses_the_latest_answers_engine_or_flow(db, users, seeded):
    assert titles(db, users["alice"], HistoryFilter(engine="flow-9")) == ["Churn dashboard"]
    assert titles(db, users["alice"], HistoryFilter(engine="notes")) == ["Vacuum tips", "Quarterly sales"]


def test_table_shows_the_flow_version_of_the_latest_answer(db, users, flows):
    with db.begin() as session:
        frame, _ = history.list_history(session, users["alice"], HistoryFilter(), page=0)
    assert dict(zip(frame["title"], frame["flow_version"])) == {"Agent chat": "Agent v7", "Churn by version": "Notes RAG v7"}


@pytest.mark.parametrize(
    ("version", "expected"),
    [
        ("Notes RAG v6", ["Churn by version"]),  # an earlier answer counts, not only the latest
        ("Notes RAG v7", ["Churn by version"]),  # not Agent's v7: the flow counts too
        ("Agent v7", ["Agent chat"]),
        ("Notes RAG v7+", []),  # bob's
        ("Notes RAG v5", []),  # a deleted conversation's
        ("Notes RAG v8", []),
    ],
)
def test_version_filter_keeps_conversations_with_an_answer_from_that_flow_version(db, users, flows, version, expected):
    assert titles(db, users["alice"], HistoryFilter(version=version)) == expected


def test_version_filter_reaches_other_users_only_for_admins(db, users, flows):
    alice, root = users["alice"], users["root"]
    theirs = HistoryFilter(version="Notes RAG v7+")
    assert titles(db, root, theirs) == ["Bob on v7+"]
    assert titles(db, root, HistoryFilter(version="Notes RAG v5", deleted=True)) == ["Gone"]
    with db.begin() as session:
        assert list(history.iter_export_frames(session, alice, theirs)) == []
        assert history.count_export_rows(session, alice, theirs) == 0
        assert history.usage(session, alice, theirs).questions == 0
        assert history.list_history(session, alice, HistoryFilter(version="Notes RAG v7+", search="churn"), page=0)[1] == 0


def test_version_filter_combines_with_search_and_narrows_exports_and_usage(db, users, flows):
    alice, filters = users["alice"], HistoryFilter(version="Notes RAG v6", search="week")
    assert titles(db, alice, filters) == ["Churn by version"]
    assert titles(db, alice, HistoryFilter(version="Agent v7", search="week")) == []
    with db.begin() as session:
        assert history.count_export_rows(session, alice, HistoryFilter(version="Agent v7")) == 2
        assert history.usage(session, alice, HistoryFilter(version="Notes RAG v6")).answers == 2


def test_version_options_are_the_flow_versions_the_actor_can_see(db, users, flows):
    with db.begin() as session:
        assert history.flow_versions(session, users["alice"]) == ["Agent v7", "Notes RAG v6", "Notes RAG v7"]
        assert history.flow_versions(session, users["bob"]) == ["Notes RAG v7+"]
        assert history.flow_versions(session, users["root"]) == [
            "Agent v7", "Notes RAG v5", "Notes RAG v6", "Notes RAG v7", "Notes RAG v7+"]


def test_version_filter_is_a_look_up_in_the_flow_version_index(db, users, flows):
    with db.begin() as session:
        where = history.filters.conversation_filters(history.filters.dialect_of(session), users["alice"], HistoryFilter(version="Agent v7"))
        query = select(Conversation.id).where(*where)
        if history.filters.dialect_of(session) == "sqlite":
            plan = " ".join(row[-1] for row in session.execute(text("EXPLAIN QUERY PLAN " + compiled(session, query))))
        else:  # on a few rows PostgreSQL would rather read the table: ask whether the index serves
            session.execute(text("SET LOCAL enable_seqscan = off"))
            plan = " ".join(row[0] for row in session.execute(text("EXPLAIN " + compiled(session, query))))
    assert "ix_messages_flow_version" in plan


def compiled(session, query) -> str:
    return str(query.compile(session.get_bind(), compile_kwargs={"literal_binds": True}))


def test_user_filter_narrows_an_admins_view(db, users, seeded):
    assert titles(db, users["root"], HistoryFilter(user="bob")) == ["Forecast for bob"]
    assert titles(db, users["root"], HistoryFilter(user="nobody")) == []


def test_filters_combine(db, users, seeded):
    filters = HistoryFilter(since=dt.date(2024, 5, 2), feedback="down", engine="flow-9", search="north")
    assert titles(db, users["alice"], filters) == ["Churn dashboard"]
    assert titles(db, users["alice"], HistoryFilter(status="error", feedback="up")) == []


def test_engines_lists_the_actors_engines_and_flows(db, users, seeded):
    with db.begin() as session:
        assert history.engines(session, users["alice"]) == ["flow-9", "notes"]
        assert history.engines(session, users["bob"]) == ["flow-bob"]
        assert history.engines(session, users["root"]) == ["flow-9", "flow-bob", "notes"]


# -- deletion ----------------------------------------------------------------------------


def test_deleted_conversation_is_hidden_everywhere_for_its_owner(db, users, seeded):
    with db.begin() as session:
        store.delete_conversation(session, users["alice"], seeded["vacuum"])
    alice = users["alice"]
    assert titles(db, alice) == ["Churn dashboard", "Quarterly sales"]
    assert titles(db, alice, HistoryFilter(deleted=True)) == []
    with db.begin() as session:
        with pytest.raises(NotFoundError):
            history.transcript(session, alice, seeded["vacuum"])
        exported = pd.concat(history.iter_export_frames(session, alice, HistoryFilter()))
        assert history.usage(session, alice, HistoryFilter()).questions == 3
    assert sorted(set(exported["conversation_title"])) == ["Churn dashboard", "Quarterly sales"]


def test_admin_lists_deleted_conversations_and_purges_them(db, users, seeded):
    with db.begin() as session:
        store.delete_conversation(session, users["alice"], seeded["vacuum"])
    root = users["root"]
    assert "Vacuum tips" not in titles(db, root)
    assert titles(db, root, HistoryFilter(deleted=True)) == ["Vacuum tips"]
    with db.begin() as session:
        assert history.transcript(session, root, seeded["vacuum"]).deleted is True
        store.purge_conversation(session, root, seeded["vacuum"])
    assert titles(db, root, HistoryFilter(deleted=True)) == []
    with db.begin() as session:
        with pytest.raises(NotFoundError):
            history.transcript(session, root, seeded["vacuum"])


# -- transcript --------------------------------------------------------------------------


def test_transcript_has_every_message_with_its_details(db, users, seeded):
    with db.begin() as session:
        chat = history.transcript(session, users["alice"], seeded["churn"])
    assert (chat.title, chat.owner, chat.deleted) == ("Churn dashboard", "alice", False)
    assert [(m.role, m.status) for m in chat.messages] == [
        ("user", "complete"), ("assistant", "error"), ("user", "complete"), ("assistant", "complete"),
    ]
    failed, answer = chat.messages[1], chat.messages[3]
    assert (failed.error, failed.latency_ms, failed.feedback_score) == ("Langflow timed out.", 5000, None)
    assert (answer.content, answer.latency_ms, answer.ttft_ms) == ("Churn is 4% in the north.", 3000, 300)
    assert (answer.feedback_score, answer.feedback_comment) == (0, "wrong region")
    assert answer.created_at == dt.datetime(2024, 5, 3, 9, 3, tzinfo=UTC)


def test_transcript_exports_as_markdown_and_json(db, users, seeded):
    with db.begin() as session:
        chat = history.transcript(session, users["alice"], seeded["sales"])
    assert chat.markdown().startswith("# Quarterly sales\n\nalice · conversation ")
    assert "Feedback: 👍 “great”" in chat.markdown()
    rows = json.loads(chat.json())
    assert [(r["role"], r["content"]) for r in rows] == [
        ("user", "What were Q3 sales?"), ("assistant", "Q3 sales were **1.2M**."),
    ]
    assert rows[1]["created_at"] == "2024-05-01T09:01:00.000000Z"
    assert list(rows[1]) == EXPORT_COLUMNS


def test_admin_reading_another_users_transcript_is_audited(db, users, seeded):
    root = users["root"]
    with db.begin() as session:
        history.transcript(session, root, seeded["root"])
        history.transcript(session, root, seeded["bob"])
        history.transcript(session, users["bob"], seeded["bob"])
    with db.begin() as session:
        entries = [entry[1:] for entry in store.list_audit(session, root)]
    assert entries == [("root", "view", f"conversation {seeded['bob']} “Forecast for bob” of bob")]


# -- export ------------------------------------------------------------------------------


def export_frame(db, actor, filters=EVERYTHING, **kwargs) -> pd.DataFrame:
    with db.begin() as session:
        frames = list(history.iter_export_frames(session, actor, filters, **kwargs))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=EXPORT_COLUMNS)


def test_export_frames_have_the_export_columns_in_the_tables_order_then_message_order(db, users, seeded):
    frame = export_frame(db, users["alice"])  # by last activity, as the table shows them
    assert list(frame.columns) == EXPORT_COLUMNS
    assert frame["conversation_id"].tolist() == [seeded["vacuum"]] * 2 + [seeded["churn"]] * 4 + [seeded["sales"]] * 2
    assert all(group["message_id"].is_monotonic_increasing for _, group in frame.groupby("conversation_id"))
    assert set(frame["username"]) == {"alice"}


@pytest.mark.parametrize("sort, expected", [
    ("title", ["churn", "sales", "vacuum"]), ("messages", ["churn", "vacuum", "sales"]),
    ("started", ["vacuum", "churn", "sales"]),
])
def test_an_export_follows_the_order_the_analyst_sorted_the_table_by(db, users, seeded, sort, expected):
    frame = export_frame(db, users["alice"], HistoryFilter(sort=sort))
    with db.begin() as session:
        table, _count = history.list_history(session, users["alice"], HistoryFilter(sort=sort), page=0)
    assert list(dict.fromkeys(frame["conversation_id"])) == [seeded[name] for name in expected]
    assert list(dict.fromkeys(frame["conversation_id"])) == table["id"].tolist()


def test_export_row_carries_message_details_and_owner_feedback(db, users, seeded):
    frame = export_frame(db, users["alice"], HistoryFilter(search="north"))
    answer = {name: None if pd.isna(value) else value for name, value in frame.iloc[3].items()}
    assert answer | {"message_id": 0} == {
        "conversation_id": seeded["churn"], "conversation_title": "Churn dashboard",
        "username": "alice", "message_id": 0, "role": "assistant", "version": 1, "current": True,
        "content": "Churn is 4% in the north.",
        "created_at": pd.Timestamp("2024-05-03 09:03", tz="UTC"), "status": "complete", "error": None,
        "latency_ms": 3000, "ttft_ms": 300, "engine": "langflow", "flow_id": "flow-9", "flow_name": None,
        "flow_version": None, "model": None, "run_id": None, "input_tokens": None, "output_tokens": None,
        "feedback_score": 0, "feedback_comment": "wrong region", "tweaks": None, "steps": None, "files": None,
        "tags": None, "note": None, "corrected_answer": None,
    }


def test_export_rows_say_what_answered_and_carry_steps_tweaks_and_files_as_json_text(db, users, flows):
    frame = export_frame(db, users["alice"])
    churn = frame[frame["conversation_title"] == "Churn by version"]
    rows = [{name: None if pd.isna(value) else value for name, value in row.items()} for row in churn.to_dict("records")]
    provenance = ["flow_name", "flow_version", "model", "run_id", "tweaks", "steps", "files"]
    assert [[row[name] for name in provenance] for row in rows] == [
        [None, None, None, None, None, None, None],
        ["Notes RAG", "v6", None, None, None, None, None],
        [None, None, None, None, None, None, '[{"name":"q3.pdf","path":"flow-9/q3.pdf","size":12288,"type":"application/pdf"}]'],
        ["Notes RAG", "v7", "gpt-4o-mini", "run-7", '{"Prompt-1":{"template":"Be brief"}}',
         '[{"duration_ms":1200,"error":null,"input":{"query":"churn"},"name":"search_notes",'
         '"output":"Churn: 4 % (north)","status":"success"}]', None],
    ]  # fmt: skip


def test_transcript_carries_steps_files_and_provenance_and_exports_them(db, users, flows):
    with db.begin() as session:
        chat = history.transcript(session, users["alice"], flows["churn"])
    question, answer = chat.messages[2:]
    assert (question.files, answer.steps, answer.tweaks) == (FILES, STEPS, {"Prompt-1": {"template": "Be brief"}})
    assert (answer.flow_name, answer.flow_version, answer.model, answer.run_id) == ("Notes RAG", "v7", "gpt-4o-mini", "run-7")
    exported = export_frame(db, users["alice"])
    assert chat.rows()[3]["steps"] == exported[exported["conversation_id"] == flows["churn"]]["steps"].iloc[3]
    assert json.loads(chat.json())[3]["steps"] == STEPS
    markdown = chat.markdown()
    assert "**Assistant** · 2024-05-02 09:01:00 UTC · Notes RAG v7 · gpt-4o-mini · complete\n\n5 %.\n" in markdown
    assert "Churn this week?\n\nAttached: q3.pdf (12 KB, application/pdf)\n" in markdown
    assert "Step 1 of 1 · search_notes · 1.2 s · success\n\nInput:\n\n```\n{\n  \"query\": \"churn\"\n}\n```\n" in markdown


def test_every_version_of_a_regenerated_answer_is_exported_with_its_number(db, users):
    alice = users["alice"]
    with db.begin() as session:
        conversation = store.create_conversation(session, alice, title="Versions")
        question = store.append_message(session, alice, conversation.id, role="user", content="q")
        for text in ("first try", "second try"):
            answer = store.begin_answer(session, alice, question.id)
            store.update_answer(session, alice, answer.id, content=text, status="complete")
    frame = export_frame(db, alice)
    assert frame[["role", "content", "version", "current"]].values.tolist() == [
        ["user", "q", 1, True], ["assistant", "first try", 1, False], ["assistant", "second try", 2, True]]
    with db.begin() as session:
        markdown = history.transcript(session, alice, conversation.id).markdown()
    assert "complete · version 1, replaced\n\nfirst try" in markdown
    assert "complete · version 2\n\nsecond try" in markdown


def test_export_keeps_times_to_the_microsecond(db, users, clock):
    clock.now = dt.datetime(2024, 5, 1, 9, 0, 0, 123456, tzinfo=UTC)
    with db.begin() as session:
        conversation = store.create_conversation(session, users["bob"], title="Precise")
        store.append_message(session, users["bob"], conversation.id, role="user", content="now")
    frame = export_frame(db, users["bob"])
    assert frame["created_at"].tolist() == [pd.Timestamp("2024-05-01 09:00:00.123456", tz="UTC")]


def test_export_streams_in_chunks(db, users, seeded):
    with db.begin() as session:
        sizes = [len(f) for f in history.iter_export_frames(session, users["alice"], HistoryFilter(), chunk_size=3)]
    assert sum(sizes) == 8 and max(sizes) <= 3 and len(sizes) == 3  # at most 3 rows at a time, none lost


def test_export_keeps_only_messages_inside_the_date_range(db, users, seeded, clock):
    alice = users["alice"]
    with db.begin() as session:  # a conversation that goes on the next day
        clock.now = dt.datetime(2024, 5, 4, 10, 0, tzinfo=UTC)
        store.append_message(session, alice, seeded["churn"], role="user", content="Still there?")
    filters = HistoryFilter(since=dt.date(2024, 5, 4), until=dt.date(2024, 5, 4))
    frame = export_frame(db, alice, filters)
    assert frame["content"].tolist() == ["Still there?"]
    with db.begin() as session:
        assert history.count_export_rows(session, alice, filters) == 1


def test_count_export_rows_matches_the_export(db, users, seeded):
    with db.begin() as session:
        assert history.count_export_rows(session, users["alice"], HistoryFilter()) == 8
        assert history.count_export_rows(session, users["root"], HistoryFilter()) == 12
        assert history.count_export_rows(session, users["root"], HistoryFilter(since=dt.date(2024, 5, 3))) == 8
    assert len(export_frame(db, users["root"], HistoryFilter(since=dt.date(2024, 5, 3)))) == 8


def test_write_export_writes_the_chosen_format(db, users, seeded):
    out = io.BytesIO()
    with db.begin() as session:
        rows = history.write_export(session, users["bob"], HistoryFilter(), "JSON", out)
        with pytest.raises(InputError, match="Unknown export format"):
            history.write_export(session, users["bob"], HistoryFilter(), "PDF", io.BytesIO())
    assert rows == 2
    assert [r["content"] for r in json.loads(out.getvalue())] == ["What is the sales forecast?", "The forecast is flat."]


def test_admin_export_of_other_users_is_audited(db, users, seeded):
    root = users["root"]
    with db.begin() as session:
        assert history.record_export(session, root, HistoryFilter(search="sales")) is True
        assert history.record_export(session, root, HistoryFilter(user="root")) is False
        assert history.record_export(session, users["alice"], HistoryFilter()) is False
    with db.begin() as session:
        entries = [entry[1:] for entry in store.list_audit(session, root)]
    assert entries == [("root", "export", "search=sales")]


# -- usage -------------------------------------------------------------------------------


def test_usage_for_an_analyst(db, users, seeded):
    with db.begin() as session:
        numbers = history.usage(session, users["alice"], HistoryFilter())
    assert (numbers.questions, numbers.answers, numbers.errors) == (4, 4, 1)
    assert (numbers.thumbs_up, numbers.thumbs_down) == (1, 1)
    assert (numbers.error_rate, numbers.thumbs_up_rate, numbers.thumbs_down_rate) == (0.25, 0.25, 0.25)
    # completed answers only: 1000, 2000, 3000 ms
    assert (numbers.latency_p50_ms, numbers.latency_p95_ms) == (2000, 3000)
    assert (numbers.ttft_p50_ms, numbers.ttft_p95_ms) == (200, 300)
    assert numbers.per_user is None
    per_day = dict(zip(numbers.per_day["day"].dt.strftime("%m-%d"), numbers.per_day["questions"]))
    assert per_day == {
        "05-01": 1, "05-02": 0, "05-03": 2, "05-04": 0, "05-05": 0, "05-06": 0, "05-07": 0,
        "05-08": 0, "05-09": 0, "05-10": 1,
    }


def test_usage_follows_the_filters(db, users, seeded):
    with db.begin() as session:
        numbers = history.usage(session, users["alice"], HistoryFilter(engine="flow-9"))
    assert (numbers.questions, numbers.answers, numbers.errors) == (2, 2, 1)
    assert (numbers.latency_p50_ms, numbers.latency_p95_ms) == (3000, 3000)


def test_usage_for_an_admin_has_a_per_user_breakdown(db, users, seeded):
    with db.begin() as session:
        numbers = history.usage(session, users["root"], HistoryFilter())
    assert (numbers.questions, numbers.answers, numbers.thumbs_up) == (6, 6, 2)
    assert (numbers.latency_p50_ms, numbers.latency_p95_ms) == (2000, 4000)  # 500 1000 2000 3000 4000
    assert numbers.per_user.to_dict("records") == [
        {"user": "alice", "conversations": 3, "questions": 4, "answers": 4, "error_rate": 0.25,
         "latency_p50_ms": 2000, "latency_p95_ms": 3000, "thumbs_up": 1, "thumbs_down": 1},
        {"user": "bob", "conversations": 1, "questions": 1, "answers": 1, "error_rate": 0.0,
         "latency_p50_ms": 4000, "latency_p95_ms": 4000, "thumbs_up": 1, "thumbs_down": 0},
        {"user": "root", "conversations": 1, "questions": 1, "answers": 1, "error_rate": 0.0,
         "latency_p50_ms": 500, "latency_p95_ms": 500, "thumbs_up": 0, "thumbs_down": 0},
    ]


def test_usage_of_nothing_is_empty(db, users):
    with db.begin() as session:
        numbers = history.usage(session, users["alice"], HistoryFilter())
    assert (numbers.questions, numbers.answers, numbers.latency_p50_ms, numbers.error_rate) == (0, 0, None, None)
    assert numbers.per_day.empty


# -- scoping -----------------------------------------------------------------------------


def test_every_history_function_gives_another_users_data_as_nothing(db, users, seeded):
    alice, theirs = users["alice"], HistoryFilter(user="bob")
    with db.begin() as session:
        assert history.list_history(session, alice, theirs, page=0)[1] == 0
        assert history.list_history(session, alice, HistoryFilter(search="forecast"), page=0)[1] == 0
        assert list(history.iter_export_frames(session, alice, theirs)) == []
        assert history.count_export_rows(session, alice, theirs) == 0
        assert history.usage(session, alice, theirs).questions == 0
        assert "flow-bob" not in history.engines(session, alice)
        assert history.record_export(session, alice, theirs) is False
        for conversation_id in (seeded["bob"], seeded["root"], 10_000):
            with pytest.raises(NotFoundError):
                history.transcript(session, alice, conversation_id)
        assert store.list_audit(session, alice) == []


# -- the filter and its query parameters -------------------------------------------------


def test_filter_round_trips_through_query_params():
    filters = HistoryFilter(
        since=dt.date(2024, 5, 1), until=dt.date(2024, 5, 31), search="churn", feedback="up",
        status="error", engine="flow-9", version="Notes RAG v7+", user="bob", deleted=True, sort="title",
    )
    params = filters.to_query_params()
    assert params == {
        "history_from": "2024-05-01", "history_to": "2024-05-31", "history_search": "churn",
        "history_feedback": "👍", "history_status": "Failed", "history_engine": "flow-9",
        "history_version": "Notes RAG v7+", "history_user": "bob", "history_deleted": "true", "history_sort": "Title",
    }
    assert HistoryFilter.from_query_params(params) == filters


def test_default_filter_has_no_query_params():
    assert HistoryFilter().to_query_params() == {}
    assert HistoryFilter.from_query_params({}) == HistoryFilter()


def test_query_params_that_do_not_parse_are_left_at_their_defaults():
    params = {"history_from": "yesterday", "history_feedback": "meh", "history_sort": "size",
              "history_search": ["old", "new"], "history_errors": "TRUE", "history_version": "v7", "other": "x"}
    assert HistoryFilter.from_query_params(params) == HistoryFilter(search="new", status="error")
    assert HistoryFilter.from_query_params({"history_feedback": "down"}).feedback == "down"


def test_filter_refuses_a_version_without_its_flow():
    for label in ("v7", " v7", "Notes RAG "):
        with pytest.raises(InputError, match="is not a flow and its version, such as 'Notes RAG v7'"):
            HistoryFilter(version=label)
    assert history.flow_and_version("My  flow v7+") == ("My  flow", "v7+")


def test_filter_refuses_dates_the_wrong_way_round():
    with pytest.raises(InputError, match="The start date is after the end date."):
        HistoryFilter(since=dt.date(2024, 5, 2), until=dt.date(2024, 5, 1))


def test_filter_refuses_the_last_date_there_is_instead_of_overflowing():
    for day in ({"since": dt.date.max}, {"until": dt.date.max}):
        with pytest.raises(InputError, match="Dates must be on or before 9999-12-30."):
            HistoryFilter(**day)


def test_filter_describes_itself_for_the_audit_log():
    assert HistoryFilter().describe() == "all conversations"
    assert HistoryFilter(user="bob", since=dt.date(2024, 5, 1)).describe() == "since=2024-05-01, user=bob"
    assert HistoryFilter(version="Notes RAG v7", user="bob").describe() == "version=Notes RAG v7, user=bob"


def test_search_terms_are_words_quoted_phrases_and_exclusions():
    query = HistoryFilter(search='churn "by  region" Q3? -x ??').query
    assert query.groups == ((fulltext.Term("churn"), fulltext.Term("by region"), fulltext.Term("Q3")),)
    assert query.excluded == (fulltext.Term("x"),)


def test_feedback_counters_migration_counts_the_ratings_already_given(engine, db, users, seeded):
    database.downgrade(engine, "0003")
    database.migrate(engine)
    assert thumbs(db, users["alice"], seeded["sales"]) == (1, 0)
    assert thumbs(db, users["alice"], seeded["churn"]) == (0, 1)
    assert thumbs(db, users["alice"], seeded["vacuum"]) == (0, 0)
    assert titles(db, users["root"], HistoryFilter(feedback="up")) == ["Forecast for bob", "Quarterly sales"]


def test_history_indexes_migration_goes_down_and_up(engine, db, users, seeded):
    database.downgrade(engine, "0002")
    database.migrate(engine)
    assert titles(db, users["alice"], HistoryFilter(status="error", search="churn")) == ["Churn dashboard"]
