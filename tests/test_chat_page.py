"""The chat page through AppTest: the real app.py, a real SQLite file, HTTP to a local Langflow replay."""

from __future__ import annotations

import datetime as dt
import json

from streamlit.testing.v1 import AppTest

import ui
from chatbot import resources, store
from tests.apps import ENTRY, ask, logged_in, saved, shown, texts
from tests.replay_server import (
    CHAT_INPUT,
    FLOW_ID,
    FLOW_NAME,
    failed_run,
    flow_error_detail,
    json_reply,
    stream_reply,
    streamed_run,
)
from tests.test_chat import recorded_agent


def test_nothing_but_the_login_form_before_login(app_db):
    at = AppTest.from_file(ENTRY, default_timeout=30).run()
    assert [t.label for t in at.text_input] == ["Username", "Password"]
    assert [b.label for b in at.button if b.key != "app_reconnect_rerun"] == ["Login"]
    assert len(at.chat_input) == 0


def test_a_wrong_password_is_refused_and_counted(app_db):
    at = logged_in(password="wrong")
    assert "Username or password is incorrect." in [e.value for e in at.error]
    assert len(at.chat_input) == 0
    with app_db.begin() as session:
        assert store.get_user(session, "alice").failed_logins == 1


def test_a_question_to_the_notes_engine_is_answered_and_saved(app_db):
    at = ask(logged_in(), "How does autovacuum decide when to run?")
    [question, answer] = saved(app_db)
    assert (question.role, question.content) == ("user", "How does autovacuum decide when to run?")
    assert (answer.role, answer.status, answer.engine) == ("assistant", "complete", "notes")
    assert answer.latency_ms is not None and "postgres-vacuum.md" in answer.content
    assert "postgres-vacuum.md" in texts(at)
    assert any("notes" in c.value for c in at.caption)
    assert [shown(b.label) for b in at.sidebar.button if b.label.startswith("How does")] == [
        "How does autovacuum decide when to run?"]


def test_a_langflow_answer_is_saved_with_flow_and_timing(app_db, replay_langflow):
    ask(logged_in(), "stream me please")
    answer = saved(app_db)[-1]
    assert (answer.content, answer.engine, answer.flow_id, answer.status) == (
        "stream me please", "langflow", FLOW_ID, "complete")
    assert answer.ttft_ms is not None and answer.latency_ms >= answer.ttft_ms
    assert replay_langflow.requests[0].headers["x-api-key"] == "sk-test-key-123"


def test_a_failing_flow_shows_an_error_keeps_the_question_and_retry_works(app_db, replay_langflow):
    replay_langflow.answer(lambda r: stream_reply(failed_run("The model is overloaded", session_id=r.body["session_id"])))
    at = ask(logged_in("root"), "Will this work?")
    assert any("The model is overloaded" in e.value for e in at.error)  # an admin sees Langflow's reason
    assert [(m.role, m.content, m.status) for m in saved(app_db, "root")] == [
        ("user", "Will this work?", "complete"), ("assistant", "", "error")]
    assert "Will this work?" in texts(at)
    assert len(at.feedback) == 0  # nothing to rate
    at.button(key="chat_retry").click().run()
    assert not at.exception
    assert [(m.role, m.status, m.version, m.current) for m in saved(app_db, "root")] == [
        ("user", "complete", 1, True), ("assistant", "error", 1, False), ("assistant", "complete", 2, True)]
    assert [b for b in at.button if b.key == "chat_retry"] == []
    assert len(at.error) == 0  # the failed bubble is replaced, not repeated
    assert "2 / 2" in [c.value for c in at.caption]


def test_an_analyst_sees_what_to_do_and_not_the_technical_cause(app_db, replay_langflow):
    replay_langflow.answer(lambda r: stream_reply(failed_run("LANGFLOW quota exceeded", session_id=r.body["session_id"])))
    at = ask(logged_in(), "Will this work?")
    assert [shown(e.value) for e in at.error] == [ui.ANALYST_ERROR]
    assert "quota" not in texts(at) and "LANGFLOW_URL" not in "".join(c.value for c in at.caption)
    assert [b.key for b in at.button if b.key == "chat_retry"] == ["chat_retry"]


def test_a_server_error_with_replay_langflows_encoded_detail_is_shown_plainly(app_db, replay_langflow):
    replay_langflow.answer(json_reply(flow_error_detail("Component OpenAI failed: quota exceeded"), status=500))
    at = ask(logged_in("root"), "hello")
    assert any("quota exceeded" in e.value for e in at.error)
    assert saved(app_db, "root")[0].content == "hello"


def test_a_too_long_question_is_refused_and_nothing_is_sent(app_db, replay_langflow, monkeypatch):
    monkeypatch.setenv("MAX_MESSAGE_CHARS", "10")
    at = ask(logged_in(), "this question is far too long")
    assert any("the limit is 10" in e.value for e in at.error)
    assert "this question is far too long" in [c.value for c in at.code]
    assert saved(app_db) == [] and replay_langflow.requests == []


def test_thumbs_down_with_a_comment_is_saved(app_db):
    at = ask(logged_in(), "What is a window function?")
    at.feedback[0].set_value(0).run()
    at.text_input(key=f"chat_fb_comment_{saved(app_db)[-1].id}").input("cited the wrong note").run()
    answer = saved(app_db)[-1]
    with app_db.begin() as session:
        actor = store.Actor.of(store.get_user(session, "alice"))
        feedback = store.feedback_for(session, actor, [answer.id])[answer.id]
    assert (feedback.score, feedback.comment) == (0, "cited the wrong note")


def test_another_user_sees_none_of_alices_conversations(app_db):
    ask(logged_in(), "alice's private question")
    at = logged_in("bob")
    assert "alice's private question" not in texts(at)
    assert all("alice's" not in b.label for b in at.sidebar.button)


def test_a_bad_setting_shows_one_clear_page(app_db, monkeypatch):
    monkeypatch.setenv("LANGFLOW_URL", "http://replay_langflow:7860")
    at = AppTest.from_file(ENTRY, default_timeout=30).run()
    assert not at.exception
    assert [t.value for t in at.title] == ["The app is not configured correctly"]
    assert "LANGFLOW_FLOW_ID" in at.error[0].value


def test_a_note_added_while_the_app_runs_is_answered_from_after_the_next_check(app_db, tmp_path, monkeypatch):
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "vacuum.md").write_text("# Vacuum\n\nAutovacuum runs when dead tuples pile up.\n")
    monkeypatch.setenv("NOTES_DIR", str(notes))
    at = ask(logged_in(), "What does the zebracorn runbook say?")
    assert "zebracorn-runbook.md" not in texts(at)

    (notes / "zebracorn-runbook.md").write_text("# Zebracorn\n\nRestart the zebracorn service twice.\n")
    resources.notes_fingerprint.clear()  # what NOTES_CHECK_SECONDS of waiting does
    at = ask(at, "What does the zebracorn runbook say?")
    assert "zebracorn-runbook.md" in saved(app_db)[-1].content


def test_an_image_in_langflows_error_is_shown_as_text_not_loaded(app_db, replay_langflow):
    """Issue #18: st.error renders Markdown, and Langflow's error text went there unsanitized."""
    replay_langflow.answer(json_reply(flow_error_detail("bad ![x](http://attacker.example/e.png?leak=1)"), status=500))
    at = ask(logged_in("root"), "hello")
    [error] = [e.value for e in at.error if "attacker" in e.value]
    assert "![x](" not in error and shown(error).endswith("bad ![x](http://attacker.example/e.png?leak=1).")


def test_a_title_with_markdown_is_shown_as_typed(app_db):
    at = ask(logged_in(), "**vacuum** ![t](http://attacker.example/t.png)")
    [label] = [b.label for b in at.sidebar.button if "vacuum" in b.label]
    assert "![t](" not in label and shown(label) == "**vacuum** ![t](http://attacker.example/t.png)"


def test_the_sidebar_shows_the_newest_30_by_date_with_show_more_and_a_title_search(app_db):
    with app_db.begin() as session:
        alice = store.Actor.of(store.get_user(session, "alice"))
        ids = [store.create_conversation(session, alice, title=f"chat {n:02d}").id for n in range(40)]
        old = store.get_conversation(session, alice, ids[0])
        old.updated_at = old.updated_at - dt.timedelta(days=30)
    at = logged_in()
    titles = [shown(b.label) for b in at.sidebar.button if b.key and b.key.startswith("chat_open_")]
    assert titles == [f"chat {n:02d}" for n in range(39, 9, -1)]
    assert [c.value for c in at.sidebar.caption if c.value in ui.DATE_GROUPS] == ["Today"]
    at.button(key="chat_sidebar_more").click().run()
    titles = [shown(b.label) for b in at.sidebar.button if b.key and b.key.startswith("chat_open_")]
    assert len(titles) == 40 and titles[-1] == "chat 00"
    assert [c.value for c in at.sidebar.caption if c.value in ui.DATE_GROUPS] == ["Today", "Older"]
    assert [b.key for b in at.button if b.key == "chat_sidebar_more"] == []
    at.text_input(key="chat_title_search").input("chat 3").run()
    assert [shown(b.label) for b in at.sidebar.button if b.key and b.key.startswith("chat_open_")] == [
        f"chat {n:02d}" for n in range(39, 29, -1)]


def test_pressing_enter_in_the_title_renames_the_chat(app_db):
    at = ask(logged_in(), "How does autovacuum decide when to run?")
    [conversation] = [k for k in (t.key for t in at.text_input) if k and k.startswith("chat_title_") and k != "chat_title_search"]
    at.text_input(key=conversation).input("Vacuum notes").run()
    assert "Vacuum notes" in [shown(b.label) for b in at.sidebar.button]


def answers(*texts_in_order):
    """Langflow answers, one per request, each streamed in two tokens."""
    return [lambda r, t=t: stream_reply(streamed_run([t[:3], t[3:]], session_id=r.body["session_id"])) for t in texts_in_order]


def test_regenerate_shows_the_new_version_and_pages_back_to_the_first(app_db, replay_langflow):
    replay_langflow.answer(*answers("first answer", "second answer"))
    at = ask(logged_in(), "Tell me something")
    at.feedback[0].set_value(1).run()
    at.button(key="chat_regenerate").click().run()
    assert not at.exception
    first, second = (m for m in saved(app_db) if m.role == "assistant")
    assert (first.content, first.version, second.content, second.version) == ("first answer", 1, "second answer", 2)
    assert "second answer" in texts(at) and "first answer" not in texts(at)
    assert "2 / 2" in [c.value for c in at.caption]
    assert at.feedback[0].value is None  # the new version is not rated yet
    at.button(key=f"chat_ver_prev_{first.id}").click().run()
    assert "first answer" in texts(at) and "second answer" not in texts(at)
    assert "1 / 2" in [c.value for c in at.caption]
    assert at.feedback[0].value == 1  # the rating stays with the version it was given to


def test_an_edited_question_is_answered_and_the_first_wording_is_kept(app_db, replay_langflow):
    at = ask(logged_in(), "whta is a window function")
    question = saved(app_db)[0]
    at.button(key="chat_edit").click().run()
    at.text_area(key=f"chat_edit_{question.id}").input("what is a window function").run()
    at.button(key="chat_edit_send").click().run()
    assert not at.exception
    assert [(m.role, m.content, m.version, m.current) for m in saved(app_db)] == [
        ("user", "whta is a window function", 1, False), ("assistant", "whta is a window function", 1, False),
        ("user", "what is a window function", 2, True), ("assistant", "what is a window function", 2, True)]
    assert "whta" not in texts(at) and "2 / 2" in [c.value for c in at.caption]
    assert [t for t in at.text_area if t.key.startswith("chat_edit_")] == []  # the box closed
    at.button(key=f"chat_ver_prev_{saved(app_db)[1].id}").click().run()
    assert "whta is a window function" in texts(at)


def test_an_edit_after_paging_back_shows_the_new_answer_not_the_paged_one(app_db, replay_langflow):
    replay_langflow.answer(*answers("first answer", "second answer", "edited answer"))
    at = ask(logged_in(), "Tell me something")
    at.button(key="chat_regenerate").click().run()
    first = next(m for m in saved(app_db) if m.role == "assistant")
    at.button(key=f"chat_ver_prev_{first.id}").click().run()
    at.button(key=f"chat_ver_next_{first.id}").click().run()  # back at 2 / 2, as the analyst paged it
    question = saved(app_db)[0]
    at.button(key="chat_edit").click().run()
    at.text_area(key=f"chat_edit_{question.id}").input("Tell me something else").run()
    at.button(key="chat_edit_send").click().run()
    assert not at.exception
    assert "edited answer" in texts(at) and "first answer" not in texts(at)
    assert "Tell me something else" in texts(at)
    assert "3 / 3" in [c.value for c in at.caption]


def test_a_too_long_edit_is_refused_and_the_edited_text_stays_in_the_box(app_db, replay_langflow, monkeypatch):
    at = ask(logged_in(), "short one")
    monkeypatch.setenv("MAX_MESSAGE_CHARS", "12")
    question = saved(app_db)[0]
    at.button(key="chat_edit").click().run()
    at.text_area(key=f"chat_edit_{question.id}").input("a much longer question").run()
    at.button(key="chat_edit_send").click().run()
    assert any("the limit is 12" in e.value for e in at.error)
    assert at.text_area(key=f"chat_edit_{question.id}").value == "a much longer question"
    assert len(saved(app_db)) == 2


def test_copy_offers_the_markdown_source_of_the_question_and_the_answer(app_db):
    at = ask(logged_in(), "What is a **window** function?")
    answer = saved(app_db)[-1]
    codes = [c.value for c in at.code]
    assert "What is a **window** function?" in codes and answer.content in codes


# -- several flows, agent steps, tweaks (issue #13) ----------------------------------------------

SECOND_FLOW = "support-bot"


def two_flows(monkeypatch, server, *, notes=False):
    """A catalog of the replayed flow (named by Langflow) and an endpoint name Langflow does not know."""
    monkeypatch.setenv("LANGFLOW_FLOWS", json.dumps([{"flow": FLOW_ID}, {"flow": SECOND_FLOW, "label": "Support"}]))
    if not notes:
        monkeypatch.delenv("NOTES_DIR", raising=False)


def test_a_new_chat_picks_its_flow_and_the_conversation_remembers_it(app_db, replay_langflow, monkeypatch):
    two_flows(monkeypatch, replay_langflow, notes=True)
    at = logged_in()
    picker = at.selectbox(key="chat_flow")
    assert picker.options == [FLOW_NAME, "Support (unavailable)", "Notes"]
    picker.set_value("notes").run()
    at = ask(at, "How does autovacuum decide when to run?")
    answer = saved(app_db)[-1]
    assert (answer.engine, answer.status) == ("notes", "complete")
    assert [s for s in at.selectbox if s.key == "chat_flow"] == []  # an open conversation keeps its flow
    assert any("Answering from your notes" in c.value for c in at.caption)
    at = ask(at, "And VACUUM FULL?")
    assert saved(app_db)[-1].engine == "notes" and replay_langflow.requests == []


def test_an_unavailable_flow_says_why_to_an_admin_and_what_to_do_to_an_analyst(app_db, replay_langflow, monkeypatch):
    two_flows(monkeypatch, replay_langflow)
    for user, expected in (("root", "Langflow has no flow 'support-bot'"), ("alice", "tell your admin")):
        at = logged_in(user)
        at.selectbox(key="chat_flow").set_value(SECOND_FLOW).run()
        assert any(expected in shown(w.value) for w in at.warning), [w.value for w in at.warning]


def test_an_agents_steps_show_in_an_expander_under_its_answer(app_db, replay_langflow):
    replay_langflow.answer(recorded_agent)
    at = ask(logged_in(), "What is 12*7+3?")
    [steps] = [e for e in at.expander if e.label == "1 step"]
    assert [shown(m.value) for m in steps.markdown] == [":material/check_circle: **evaluate_expression** · 0 ms"]
    assert [c.value for c in steps.code] == ['{\n "expression": "12*7+3"\n}', '{"result": "87"}']
    assert any(shown(c.value).startswith(f"{FLOW_NAME} · gpt-4o-mini · ") for c in at.caption), [
        c.value for c in at.caption]


def test_an_admin_tries_a_tweak_on_one_question_and_it_is_kept_with_the_answer(app_db, replay_langflow):
    at = logged_in("root")
    at.text_area(key="chat_tweaks_text").input(json.dumps({CHAT_INPUT: {"sender_name": "Tester"}})).run()
    at = ask(at, "with a tweak")
    assert replay_langflow.requests[-1].body["tweaks"] == {CHAT_INPUT: {"sender_name": "Tester"}}
    assert saved(app_db, "root")[-1].tweaks == {CHAT_INPUT: {"sender_name": "Tester"}}
    assert at.text_area(key="chat_tweaks_text").value == ""  # for one question only
    at = ask(at, "without")
    assert "tweaks" not in replay_langflow.requests[-1].body


def test_a_tweak_for_a_component_the_flow_lacks_is_refused_and_the_question_kept_to_copy(app_db, replay_langflow):
    at = logged_in("root")
    at.text_area(key="chat_tweaks_text").input('{"OpenAIModel-typo": {"temperature": 0}}').run()
    at = ask(at, "with a typo")
    assert any("This flow has no component 'OpenAIModel-typo'" in shown(e.value) for e in at.error)
    assert "with a typo" in [c.value for c in at.code] and replay_langflow.requests == []


def test_analysts_have_no_tweaks_panel(app_db, replay_langflow):
    at = logged_in()
    assert [t for t in at.text_area if t.key == "chat_tweaks_text"] == []
    assert not any(e.label.startswith("Advanced") for e in at.expander)
