"""The replays page through AppTest: a real SQLite database, replays made, run, judged and guarded."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from chatbot import store
from chatbot.engine import Answer, Token
from chatbot.flows import Route
from chatbot.history import HistoryFilter, views
from chatbot.models import AuditEntry
from chatbot.notes import NotesEngine, NotesIndex
from chatbot.replays import jobs
from chatbot.replays.worker import ReplayWorker
from tests.apps import logged_in, shown
from tests.conftest import NOTES

PAGE = str(Path(__file__).resolve().parent.parent / "pages" / "replays.py")
HISTORY = str(Path(__file__).resolve().parent.parent / "pages" / "history.py")
QUESTIONS = {"Q3 sales?": "Q3 sales were 1.2M.", "Churn by region?": "Churn is 4% in the north.",
             "Forecast?": "Flat."}  # fmt: skip
REPLIES = {"Q3 sales?": "Q3 sales were 1.3M.", "Churn by region?": "Churn is 4% in the north.", "Forecast?": "Growing."}


def actor(db, username: str) -> store.Actor:
    with db.begin() as session:
        return store.Actor.of(store.get_user(session, username))


@pytest.fixture
def alice_view(app_db) -> int:
    """alice's three answered questions (the third answered 👎 "wrong"), and her saved view of them."""
    alice = actor(app_db, "alice")
    with app_db.begin() as session:
        for question, answer in QUESTIONS.items():
            conversation = store.create_conversation(session, alice, title=question)
            store.append_message(session, alice, conversation.id, role="user", content=question)
            answered = store.append_message(session, alice, conversation.id, role="assistant", content=answer,
                                            engine="notes", latency_ms=1000, ttft_ms=200)
        store.set_feedback(session, alice, answered.id, score=0, comment="wrong")
        return views.save_view(session, alice, "Mine", HistoryFilter()).id


def open_page(db, username: str, **query) -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=30)
    at.session_state["actor"] = actor(db, username)
    at.query_params.update(query)
    return rerun(at)


def rerun(at) -> AppTest:
    """Run the page again; ``at`` may be a widget just clicked or set (its AppTest runs)."""
    at = at.run()
    assert not at.exception, at.exception
    return at


def captions(at: AppTest) -> list[str]:
    return [shown(c.value) for c in at.caption]


def errors(at: AppTest) -> list[str]:
    return [shown(e.value) for e in at.error]


def metric(at: AppTest, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


class Scripted:
    """An engine that answers each question as REPLIES says (the notes engine's answers depend on the notes)."""

    engine, label = "scripted", "scripted"

    def stream(self, question: str, *, session_id: str, tweaks: dict | None = None):
        yield Token(REPLIES[question])
        yield Answer(REPLIES[question], usage={"total_tokens": 12})


def finish(db, replay_id: int, route_for=lambda _key: Route(Scripted())) -> None:
    """The worker, run in the test's thread until the replay has no question left."""
    ReplayWorker(db, route_for, concurrency=2).run_until_idle(replay_id)


def start_from_the_view(app_db) -> tuple[AppTest, int]:
    at = open_page(app_db, "alice")
    assert "This replay asks 3 questions of Notes." in captions(at)
    assert at.radio(key="replays_mode_notes").value == "questions"
    assert "The notes engine has no memory: each question is asked alone." in captions(at)
    rerun(at.button(key="replays_start").click())
    replay_id = int(at.query_params["replay"][0] if isinstance(at.query_params["replay"], list)
                    else at.query_params["replay"])
    return at, replay_id


def test_an_analyst_replays_a_saved_view_on_the_notes_engine_and_opens_it_with_its_rows(app_db, alice_view):
    at, replay_id = start_from_the_view(app_db)
    assert shown(at.title[0].value) == "view “Mine” → Notes"
    assert at.button(key="replays_cancel") and at.get("progress")[0].value == 0
    finish(app_db, replay_id, lambda _key: Route(NotesEngine(NotesIndex.build(NOTES))))
    at = open_page(app_db, "alice", replay=str(replay_id))
    rows = [k for k in (w.key for w in at.segmented_control) if k.startswith("replays_verdict_")]
    assert len(rows) == 3 and not at.get("progress") and "replays_cancel" not in [b.key for b in at.button]
    assert metric(at, "Unjudged") == "3" and metric(at, "Error rate") == "0%"
    assert [b.label for b in at.download_button] == ["CSV", "Excel", "JSON"]
    listed = open_page(app_db, "alice").dataframe(key="replays_table").value
    assert listed["name"].tolist() == ["view “Mine” → Notes"] and listed["status"].tolist() == ["Done"]


def test_verdicts_are_saved_at_once_and_counted_in_the_summary(app_db, alice_view):
    _, replay_id = start_from_the_view(app_db)
    finish(app_db, replay_id)
    at = open_page(app_db, "alice", replay=str(replay_id))
    assert (metric(at, "Unjudged"), metric(at, "Answers changed")) == ("3", "67%")
    first, second, _third = [w.key for w in at.segmented_control if w.key.startswith("replays_verdict_")]
    rerun(at.segmented_control(key=first).set_value("better"))
    rerun(at.segmented_control(key=second).set_value("worse"))
    assert [metric(at, label) for label in ("Better", "Same", "Worse", "Unjudged")] == ["1", "0", "1", "1"]
    with app_db.begin() as session:
        assert [i.verdict for i in jobs.items(session, actor(app_db, "alice"), replay_id)] == ["better", "worse", None]
    rerun(at.segmented_control(key="replays_show").set_value("worse"))
    assert [w.key for w in at.segmented_control if w.key.startswith("replays_verdict_")] == [second]


def test_the_word_diff_marks_what_the_replay_changed(app_db, alice_view):
    _, replay_id = start_from_the_view(app_db)
    finish(app_db, replay_id)
    at = rerun(open_page(app_db, "alice", replay=str(replay_id)).toggle(key="replays_diff").set_value(True))
    assert any("<s>1.2M.</s><strong>1.3M.</strong>" in m.value for m in at.markdown)


def test_another_analyst_cannot_open_the_replay_by_its_url(app_db, alice_view):
    _, replay_id = start_from_the_view(app_db)
    at = open_page(app_db, "bob", replay=str(replay_id))
    assert errors(at) == ["Opening the replay failed. This replay does not exist or is not yours."]
    assert not at.metric and not at.download_button
    assert "No replays yet: start one below." in [i.value for i in open_page(app_db, "bob").info]


def test_an_admin_sees_every_replay_with_its_owner_and_opening_one_is_audited(app_db, alice_view):
    _, replay_id = start_from_the_view(app_db)
    with app_db.begin() as session:
        question = jobs.Question(conversation_id=None, question_id=None, answer_id=None, question="Forecast?")
        jobs.create_replay(session, actor(app_db, "bob"), [question], flow="notes", flow_label="Notes",
                           source="file bob.jsonl")
    at = open_page(app_db, "root")
    listed = at.dataframe(key="replays_table")
    assert listed.value[["name", "owner"]].values.tolist() == [
        ["file bob.jsonl → Notes", "bob"], ["view “Mine” → Notes", "alice"]]
    assert "owner" in listed.proto.column_order
    mine = open_page(app_db, "alice").dataframe(key="replays_table")
    assert mine.value["name"].tolist() == ["view “Mine” → Notes"] and "owner" not in mine.proto.column_order
    at = open_page(app_db, "root", replay=str(replay_id))
    assert not errors(at) and shown(at.title[0].value) == "view “Mine” → Notes"
    with app_db.begin() as session:
        assert [(a.action, a.target) for a in session.query(AuditEntry)] == [
            ("replay.view", f"replay {replay_id} “view “Mine” → Notes” of alice")]


def test_a_replay_past_the_question_limit_is_refused_and_says_why(app_db, alice_view, monkeypatch):
    monkeypatch.setenv("REPLAY_MAX_QUESTIONS", "2")
    at = open_page(app_db, "alice")
    assert errors(at) == ["Planning the replay failed. These filters match 3 questions; a replay takes at most 2 "
                          "(REPLAY_MAX_QUESTIONS). Narrow them (a date range, a tag) and try again."]
    assert "replays_start" not in [b.key for b in at.button]
    assert at.selectbox(key="replays_view").value.name == "Mine"


def test_history_filters_in_the_link_are_a_source(app_db, alice_view):
    at = open_page(app_db, "alice", history="history_search=churn")
    assert at.segmented_control(key="replays_source").value == "filters"
    assert "History filters: search=churn" in captions(at)
    assert "This replay asks 1 question of Notes." in captions(at)


def test_the_tweaks_box_is_for_admins_only(app_db, alice_view, replay_langflow):
    assert "replays_tweaks" in [t.key for t in open_page(app_db, "root").text_area]
    assert "replays_tweaks" not in [t.key for t in open_page(app_db, "alice").text_area]


def test_back_from_a_history_link_the_form_offers_the_saved_view_again(app_db, alice_view):
    at = open_page(app_db, "alice", history="history_search=churn")
    at.query_params.clear()
    rerun(at)
    assert at.segmented_control(key="replays_source").value == "view"
    assert "This replay asks 3 questions of Notes." in captions(at)


def test_cancel_stops_a_queued_replay(app_db, alice_view):
    at, replay_id = start_from_the_view(app_db)
    rerun(at.button(key="replays_cancel").click())
    assert [i.value for i in at.info] == ["Cancelled after 0 of 3 questions."]
    assert not at.get("progress") and "replays_cancel" not in [b.key for b in at.button]
    assert open_page(app_db, "alice").dataframe(key="replays_table").value["status"].tolist() == ["Cancelled"]


def test_replay_these_questions_opens_the_form_with_the_history_filters(app_db, alice_view):
    """Through the whole app: a history_* parameter is bound to a History widget, so the switch
    passes the filters as ?history=... (setting history_search itself failed in the browser)."""
    at = logged_in()
    rerun(at.switch_page(HISTORY))
    rerun(at.text_input(key="history_search").input("churn"))
    rerun(at.button(key="history_replay").click())
    assert at.query_params["history"] in ("history_search=churn", ["history_search=churn"])
    assert at.segmented_control(key="replays_source").value == "filters"
    assert "This replay asks 1 question of Notes." in captions(at)


def test_replay_these_questions_with_no_filters_offers_every_conversation(app_db, alice_view):
    """No filter at all is an empty ?history=: still the history's questions, not the view picker
    (a fresh-clone run found the form without its first source)."""
    at = logged_in()
    rerun(at.switch_page(HISTORY))
    rerun(at.button(key="history_replay").click())
    assert at.segmented_control(key="replays_source").value == "filters"
    assert "This replay asks 3 questions of Notes." in captions(at)  # all of alice's


def test_the_owner_deletes_a_replay_and_is_back_at_the_list(app_db, alice_view):
    at, _ = start_from_the_view(app_db)
    rerun(at.button(key="replays_delete").click())
    assert "replay" not in at.query_params
    assert "No replays yet: start one below." in [i.value for i in at.info]
