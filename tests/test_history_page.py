"""The history page through AppTest: a real database (SQLite file and PostgreSQL), what each user sees."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

import ui
from chatbot import export, history, store
from tests.apps import shown, visible

PAGE = str(Path(__file__).resolve().parent.parent / "pages" / "history.py")
MAY = dt.datetime(2024, 5, 1, 9, 0, tzinfo=dt.UTC)
FORMATS = ["CSV", "Excel", "JSON", "Markdown", "Parquet", "Evaluation JSONL", "Evaluation CSV"]


@pytest.fixture
def page_db(db, database_url, monkeypatch):
    """The page's settings pointed at the test database; Streamlit's caches cleared around each test."""
    for name in ("LANGFLOW_URL", "LANGFLOW_FLOW_ID", "LANGFLOW_API_KEY", "CHATBOT_ENV"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DATABASE_URL", database_url)
    st.cache_resource.clear()
    yield db
    st.cache_resource.clear()


@pytest.fixture
def chats(page_db, users, monkeypatch) -> dict[str, int]:
    """alice: 'Quarterly sales' (👍 "spot on") and 'Churn dashboard' (a failed answer); bob: 'Forecast'."""
    now = {"t": MAY}
    monkeypatch.setattr(store, "utcnow", lambda: now["t"])

    def converse(actor, title, day, question, answer, **fields):
        now["t"] = MAY + dt.timedelta(days=day)
        feedback = fields.pop("feedback", None)
        with page_db.begin() as session:
            conversation = store.create_conversation(session, actor, title=title)
            conversation.created_at = now["t"]
            store.append_message(session, actor, conversation.id, role="user", content=question)
            now["t"] += dt.timedelta(minutes=1)
            message = store.append_message(session, actor, conversation.id, role="assistant", content=answer,
                                           engine="notes", latency_ms=1200, ttft_ms=300, **fields)
            if feedback:
                store.set_feedback(session, actor, message.id, score=feedback[0], comment=feedback[1])
            return conversation.id

    return {
        "sales": converse(users["alice"], "Quarterly sales", 0, "What were Q3 sales?", "Q3 sales were **1.2M**.",
                          feedback=(1, "spot on")),
        "churn": converse(users["alice"], "Churn dashboard", 2, "Show churn by region", "",
                          status="error", error="Langflow timed out."),
        "bob": converse(users["bob"], "Forecast", 1, "What is the sales forecast?", "Flat."),
    }


def open_page(actor, **query) -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=30)
    at.session_state["actor"] = actor
    at.query_params.update(query)
    at.run()
    assert not at.exception, at.exception
    return at


def rerun(at: AppTest) -> AppTest:
    at.run()
    assert not at.exception, at.exception
    return at


def table(at: AppTest) -> list[str]:
    return at.dataframe(key="history_table").value["title"].tolist()


def shown_columns(at: AppTest) -> list[str]:
    return list(at.dataframe(key="history_table").proto.column_order)


def captions(at: AppTest) -> list[str]:
    return [shown(c.value) for c in at.caption]


def select_row(at: AppTest, row: int) -> AppTest:
    at.session_state["history_table"] = {"selection": {"rows": [row], "columns": [], "cells": []}}
    return rerun(at)


def test_analyst_sees_only_own_conversations_without_an_owner_column(users, chats):
    at = open_page(users["alice"])
    assert table(at) == ["Churn dashboard", "Quarterly sales"]
    assert "2 conversations match" in captions(at)
    assert shown_columns(at) == ["title", "started", "last_activity", "messages", "thumbs_up", "thumbs_down",
                                 "last_status", "engine", "flow_version", "tags"]
    assert "history_user" not in [w.key for w in at.selectbox]


def test_admin_sees_everyone_with_the_owner_column(users, chats):
    at = open_page(users["root"])
    frame = at.dataframe(key="history_table").value
    assert list(zip(frame["title"], frame["owner"])) == [
        ("Churn dashboard", "alice"), ("Forecast", "bob"), ("Quarterly sales", "alice")]
    assert "3 conversations match" in captions(at)
    assert shown_columns(at)[:2] == ["title", "owner"]
    assert at.selectbox(key="history_user").options == ["Everyone", "alice", "bob", "root"]


def test_filters_are_read_from_the_query_string(users, chats):
    at = open_page(users["root"], history_search="sales", history_feedback="👍", history_user="alice")
    assert table(at) == ["Quarterly sales"]
    assert "1 conversation matches" in captions(at)
    assert at.text_input(key="history_search").value == "sales"
    assert at.selectbox(key="history_feedback").value == "up"
    assert at.selectbox(key="history_user").value == "alice"


def test_date_and_error_filters_from_the_query_string(users, chats):
    assert table(open_page(users["alice"], history_from="2024-05-02")) == ["Churn dashboard"]
    assert table(open_page(users["alice"], history_to="2024-05-02")) == ["Quarterly sales"]
    assert table(open_page(users["alice"], history_errors="true")) == ["Churn dashboard"]


def test_an_analyst_cannot_reach_another_user_through_the_query_string(users, chats):
    at = open_page(users["alice"], history_user="bob", history_search="forecast")
    assert table(at) == []
    assert "0 conversations match" in captions(at)


def test_typing_a_search_filters_the_table(users, chats):
    at = open_page(users["alice"])
    at.text_input(key="history_search").input("region")
    rerun(at)
    assert table(at) == ["Churn dashboard"]
    assert "1 conversation matches" in captions(at)


def test_dates_the_wrong_way_round_are_explained(users, chats):
    at = open_page(users["alice"], history_from="2024-05-03", history_to="2024-05-01")
    assert [shown(e.value) for e in at.error] == ["Filtering failed. The start date is after the end date."]


def test_download_buttons_are_the_export_formats(users, chats):
    at = open_page(users["alice"])
    assert [b.label for b in at.download_button] == FORMATS
    assert not any(b.disabled for b in at.download_button)
    assert "Download the 4 messages of these conversations:" in captions(at)


def test_the_matching_questions_can_be_replayed_when_something_matches(users, chats):
    assert "history_replay" in [b.key for b in open_page(users["alice"]).button]
    assert "history_replay" not in [b.key for b in open_page(users["alice"], history_search="nothing-like-it").button]


def test_excel_is_refused_past_its_row_limit(users, chats, monkeypatch):
    monkeypatch.setattr(export, "EXCEL_MAX_ROWS", 3)
    at = open_page(users["alice"])
    assert [b.label for b in at.download_button if b.disabled] == ["Excel"]
    assert "download CSV or Parquet instead" in at.warning[0].value


def test_selecting_a_row_shows_the_whole_transcript(users, chats):
    at = select_row(open_page(users["alice"]), 1)
    assert [m.name for m in at.chat_message] == ["user", "assistant"]
    texts = [visible(m.value) for m in at.markdown]
    assert "What were Q3 sales?" in texts and "Q3 sales were 1.2M." in texts
    assert any("<strong>1.2M</strong>" in m.value for m in at.markdown)
    assert "2024-05-01 09:01:00 UTC · notes · 1.2 s · first token 300 ms · complete · 👍 “spot on”" in captions(at)
    assert [b.label for b in at.download_button][-2:] == ["Transcript (Markdown)", "Transcript (JSON)"]
    assert [b.key for b in at.button if b.key == "history_purge"] == []


def test_a_failed_answer_tells_the_analyst_what_to_do_in_the_transcript(users, chats):
    at = select_row(open_page(users["alice"]), 0)
    assert [shown(e.value) for e in at.error] == [ui.ANALYST_ERROR]
    assert any(c.endswith("· error") for c in captions(at))


def test_a_retried_answer_shows_both_versions_in_the_transcript(page_db, users, chats):
    alice = users["alice"]
    with page_db.begin() as session:
        conversation = store.create_conversation(session, alice, title="Retried")
        question = store.append_message(session, alice, conversation.id, role="user", content="Churn?")
        for status, text in (("error", ""), ("complete", "Churn is 4%.")):
            answer = store.begin_answer(session, alice, question.id)
            store.update_answer(session, alice, answer.id, content=text, status=status, error="timed out")
    at = open_page(alice)
    at = select_row(at, table(at).index("Retried"))
    details = [c for c in captions(at) if "· version" in c]
    assert [d.rsplit(" · ", 2)[-2:] for d in details] == [
        ["error", "version 1 (replaced by a later one)"], ["complete", "version 2"]]


STEPS = [{"name": "search_notes", "input": {"query": "churn"}, "output": "4 % in the north", "status": "success",
          "duration_ms": 850, "error": None}]


@pytest.fixture
def versioned(page_db, users, chats, monkeypatch) -> dict[str, int]:
    """alice's 'Agent churn' (Notes RAG v7, two tool calls, a file attached) and bob's 'Bob v8' (Notes RAG v8)."""
    monkeypatch.setattr(store, "utcnow", lambda: MAY + dt.timedelta(days=5))
    ids = {}
    for name, actor, title, version in (("agent", users["alice"], "Agent churn", "v7"), ("bob", users["bob"], "Bob v8", "v8")):
        with page_db.begin() as session:
            conversation = store.create_conversation(session, actor, title=title)
            files = [{"name": "q3.pdf", "size": 12_288, "type": "application/pdf", "path": "f/q3.pdf"}]
            question = store.append_message(session, actor, conversation.id, role="user", content="Churn?", files=files)
            answer = store.begin_answer(session, actor, question.id, engine="langflow", flow_id="flow-9")
            store.update_answer(session, actor, answer.id, content="4 %.", status="complete", flow_name="Notes RAG",
                                flow_version=version, model="gpt-4o-mini", latency_ms=1200, steps=STEPS * 2)
            ids[name] = conversation.id
    return ids


def test_the_table_shows_the_flow_version_and_filters_by_it(users, versioned):
    at = open_page(users["alice"])
    frame = at.dataframe(key="history_table").value
    assert dict(zip(frame["title"], frame["flow_version"].fillna(""))) == {
        "Agent churn": "Notes RAG v7", "Churn dashboard": "", "Quarterly sales": ""}
    assert at.selectbox(key="history_version").options == ["All", "Notes RAG v7"]  # not bob's v8
    at.selectbox(key="history_version").select("Notes RAG v7")
    rerun(at)
    assert table(at) == ["Agent churn"]


def test_a_linked_flow_version_filters_and_another_users_version_is_not_an_option(users, versioned):
    assert table(open_page(users["alice"], history_version="Notes RAG v7")) == ["Agent churn"]
    at = open_page(users["alice"], history_version="Notes RAG v8")
    assert "Bob v8" not in table(at)
    assert table(open_page(users["root"], history_version="Notes RAG v8")) == ["Bob v8"]


def test_the_flow_versions_are_read_once_a_minute_not_on_every_click(users, versioned, monkeypatch):
    reads = []
    monkeypatch.setattr(history, "flow_versions", lambda session, actor: reads.append(actor.username) or ["X v1"])
    at = open_page(users["root"])
    at.selectbox(key="history_feedback").select("up")
    rerun(at)
    assert reads == ["root"] and at.selectbox(key="history_version").options == ["All", "X v1"]


def test_the_transcript_shows_what_answered_the_steps_and_the_files(users, versioned):
    at = open_page(users["alice"])
    at = select_row(at, table(at).index("Agent churn"))
    assert "2024-05-06 09:00:00 UTC · Notes RAG v7 · gpt-4o-mini · 1.2 s · complete" in captions(at)
    assert "Attached: q3.pdf (12 KB)" in captions(at)
    assert [e.label for e in at.expander if not e.label.startswith("Filters")] == ["2 steps"]


def test_analyst_deletes_a_conversation_after_confirming(page_db, users, chats):
    at = select_row(open_page(users["alice"]), 1)
    at.button(key="history_delete").click()
    rerun(at)
    assert "Delete this conversation?" in at.warning[0].value
    at.button(key="history_confirm_yes").click()
    rerun(at)
    assert table(at) == ["Churn dashboard"]
    assert "Download the 2 messages of these conversations:" in captions(at)
    with page_db.begin() as session:
        assert [c.title for c in store.list_conversations(session, users["alice"])] == ["Churn dashboard"]


def test_admin_purges_a_deleted_conversation(page_db, users, chats):
    with page_db.begin() as session:
        store.delete_conversation(session, users["bob"], chats["bob"])
    at = open_page(users["root"], history_deleted="true")
    assert table(at) == ["Forecast"]
    select_row(at, 0)
    assert [b.key for b in at.button if b.key == "history_delete"] == []  # not root's to delete
    at.button(key="history_purge").click()
    rerun(at)
    at.button(key="history_confirm_yes").click()
    rerun(at)
    assert table(at) == []
    with page_db.begin() as session:
        assert [entry[2:] for entry in store.list_audit(session, users["root"])] == [
            ("purge", f"conversation {chats['bob']} “Forecast” of bob"),
            ("view", f"conversation {chats['bob']} “Forecast” of bob")]


def test_paging_goes_forward_and_back(page_db, users, chats):
    with page_db.begin() as session:
        for n in range(50):
            conversation = store.create_conversation(session, users["bob"], title=f"Extra {n:02d}")
            store.append_message(session, users["bob"], conversation.id, role="user", content="more")
    at = open_page(users["bob"])
    assert (len(table(at)), at.button(key="history_prev").disabled) == (50, True)
    assert "Page 1 of 2" in captions(at)
    at.button(key="history_next").click()
    rerun(at)
    assert table(at) == ["Forecast"]
    assert "Page 2 of 2" in captions(at) and at.button(key="history_next").disabled
    at.button(key="history_prev").click()
    rerun(at)
    assert len(table(at)) == 50


def test_a_search_with_more_hits_than_it_reads_says_at_least_how_many_match(page_db, users, chats, monkeypatch):
    monkeypatch.setattr(history.page, "_COUNTED_HITS", 2)
    with page_db.begin() as session:
        for n in range(104):
            conversation = store.create_conversation(session, users["bob"], title=f"Vacuum {n:03d}")
            store.append_message(session, users["bob"], conversation.id, role="user", content="vacuum")
    at = open_page(users["bob"], history_search="vacuum")
    assert "102+ conversations match" in captions(at) and "Page 1 of 3+" in captions(at)
    at.button(key="history_next").click()
    rerun(at)
    assert "104 conversations match" in captions(at) and "Page 2 of 3" in captions(at)
    assert (table(at)[0], table(at)[-1]) == ("Vacuum 053", "Vacuum 004")


def test_usage_tab_for_an_analyst(users, chats):
    at = open_page(users["alice"], history_tab="Usage")
    metrics = {m.label: m.value for m in at.metric}
    assert metrics == {
        "Questions": "2", "Answer latency p50": "1.2 s", "Answer latency p95": "1.2 s",
        "Time to first token p50": "300 ms", "Error rate": "50.0%", "👍 rate": "50.0%", "👎 rate": "0.0%",
        "Time to first token p95": "300 ms",
    }
    assert len(at.dataframe) == 0  # no per-user breakdown (and the conversations tab did not run)


def test_usage_tab_for_an_admin_has_a_per_user_breakdown(users, chats):
    at = open_page(users["root"], history_tab="Usage")
    assert {m.label: m.value for m in at.metric}["Questions"] == "3"
    [per_user] = [d.value for d in at.dataframe]  # only the open tab runs: no conversations table
    assert list(zip(per_user["user"], per_user["questions"])) == [("alice", 2), ("bob", 1)]


def test_admin_audit_log_shows_who_read_what(users, chats):
    at = select_row(open_page(users["root"]), 1)  # bob's
    assert [m.name for m in at.chat_message] == ["user", "assistant"]
    [audit] = [d.value for d in open_page(users["root"], history_tab="Audit log").dataframe]
    assert audit[["Admin", "Action", "What"]].values.tolist() == [
        ["root", "view", f"conversation {chats['bob']} “Forecast” of bob"]]


def test_analysts_have_no_audit_log_tab(users, chats):
    at = open_page(users["alice"], history_tab="Audit log")
    assert [t.label for t in at.tabs] == ["Conversations", "Usage"]


def linked_search(at: AppTest) -> str:
    value = at.query_params.get("history_search", "")
    return value[-1] if isinstance(value, list) else value


def test_a_long_search_in_a_link_is_shortened_said_so_and_the_url_holds_the_short_one(users, chats):
    """A 1 MB search went into the URL and the page never loaded again."""
    long_search = "region " + "x" * 100_000  # Streamlit ignores a whole query string past 512 Ki characters
    at = open_page(users["alice"], history_search=long_search)
    assert [w.value for w in at.warning] == [
        "The search in this link was 100,007 characters long; it was shortened to its first 500."]
    assert at.text_input(key="history_search").value == long_search[:history.MAX_SEARCH_CHARS]
    assert linked_search(at) == long_search[:history.MAX_SEARCH_CHARS]
    assert not at.error and "0 conversations match" in captions(at)


def test_a_search_longer_than_the_limit_from_the_browser_is_cut_and_said_so(users, chats):
    at = open_page(users["alice"])
    box = at.text_input(key="history_search")
    assert box.max_chars == history.MAX_SEARCH_CHARS  # the browser stops typing (and the URL) there
    box.set_value("region " + "y" * 1_000_000)  # what a client ignoring max_chars could send
    rerun(at)
    assert len(at.text_input(key="history_search").value) == history.MAX_SEARCH_CHARS
    assert [w.value for w in at.warning] == ["A search holds at most 500 characters: the rest was cut."]
    assert not at.error


def test_query_values_carried_through_the_login_are_a_few_kb_at_most():
    params = ui.bounded_params({"history_search": "x" * 1_000_000, "history_sort": "Title"})
    assert params == {"history_search": "x" * ui.MAX_PARAM_CHARS, "history_sort": "Title"}
    assert history.MAX_SEARCH_CHARS < ui.MAX_PARAM_CHARS <= 4 * 1024  # the page still sees a cut search


# -- the workbench (issue #16) -------------------------------------------------------------


def test_a_field_filter_typed_in_the_box_moves_to_its_widget(users, chats):
    at = open_page(users["alice"], history_search="fb:up sales")
    assert at.text_input(key="history_search").value == "sales"
    assert at.selectbox(key="history_feedback").value == "up"
    assert table(at) == ["Quarterly sales"]
    assert "Searched for sales" in captions(at)


def test_a_stray_quote_is_ignored_and_said(users, chats):
    at = open_page(users["alice"], history_search='"sales')
    assert table(at) == ["Quarterly sales"]
    assert "Searched for sales; ignored the stray quote" in captions(at)


def test_nothing_matching_says_what_was_searched_and_offers_no_downloads(users, chats):
    at = open_page(users["alice"], history_search="vac* -vacuum")
    assert [shown(i.value) for i in at.info] == ["No conversations match vac*, -vacuum"]
    assert at.download_button.len == 0
    assert "0 conversations match" in captions(at)


def test_clear_filters_empties_the_box_and_the_widgets(users, chats):
    at = open_page(users["alice"], history_search="sales", history_feedback="👍")
    at.button(key="history_clear_top").click()
    rerun(at)
    assert at.text_input(key="history_search").value == ""
    assert at.selectbox(key="history_feedback").value == "any"
    assert table(at) == ["Churn dashboard", "Quarterly sales"]


def test_an_analyst_tags_a_conversation_and_notes_an_answer(page_db, users, chats):
    at = select_row(open_page(users["alice"]), 1)  # Quarterly sales
    at.multiselect(key=f"history_chat_tags_{chats['sales']}").set_value(["billing", "q3"])
    rerun(at)
    at.text_area(key=f"history_note_{answer_of(page_db, users['alice'], chats['sales'])}").set_value("Round it")
    fix_key = f"history_fix_{answer_of(page_db, users['alice'], chats['sales'])}"
    at.text_area(key=fix_key).set_value("About 1.2 million.")
    at.button[[b.label for b in at.button].index("Save note")].click()
    rerun(at)
    assert any("Note: Round it" in shown(i.value) for i in at.info)
    assert any("Should have said: About 1.2 million." in shown(s.value) for s in at.success)
    with page_db.begin() as session:
        assert history.tags.tags_of(session, users["alice"], [chats["sales"]]) == {chats["sales"]: ["billing", "q3"]}
    at = open_page(users["alice"], history_search="tag:billing")
    assert table(at) == ["Quarterly sales"] and at.multiselect(key="history_tags").value == ["billing"]


def answer_of(page_db, actor, conversation_id) -> int:
    with page_db.begin() as session:
        return [m.id for m in store.list_messages(session, actor, conversation_id) if m.role == "assistant"][0]


def test_a_saved_view_opens_from_its_link_for_another_analyst_when_shared(page_db, users, chats):
    at = open_page(users["alice"], history_search="sales", history_feedback="👍")
    at.text_input(key="history_view_name").set_value("Good sales")
    at.checkbox(key="history_view_shared").check()
    at.button(key="history_view_save").click()
    rerun(at)
    view_id = at.query_params["view"]
    view_id = view_id[-1] if isinstance(view_id, list) else view_id
    again = open_page(users["alice"], view=view_id)
    assert again.text_input(key="history_search").value == "sales"
    assert again.selectbox(key="history_feedback").value == "up" and table(again) == ["Quarterly sales"]
    bob = open_page(users["bob"], view=view_id)
    assert [b.label for b in bob.button if b.key.startswith("history_view_")][:1] == ["Good sales \\(shared by alice\\)"]
    assert table(bob) == []  # bob's own conversations, through alice's filters


def test_a_private_view_does_not_open_for_another_analyst(page_db, users, chats):
    with page_db.begin() as session:
        view = history.views.save_view(session, users["alice"], "Mine", history.HistoryFilter(search="sales"))
    at = open_page(users["bob"], view=str(view.id))
    assert [shown(e.value) for e in at.error] == ["Opening the saved view failed. This saved view does not exist or is private."]


def test_an_admin_renames_a_tag_for_everyone(page_db, users, chats):
    with page_db.begin() as session:
        history.tags.set_tags(session, users["alice"], chats["sales"], ["billing"])
        history.tags.set_tags(session, users["bob"], chats["bob"], ["invoices"])
    at = open_page(users["root"], history_tab="Audit log")
    at.selectbox(key="history_tag_old").select("billing")
    at.text_input(key="history_tag_new").set_value("invoices")
    at.button[[b.label for b in at.button].index("Rename")].click()
    rerun(at)
    with page_db.begin() as session:
        assert history.tags.vocabulary(session, users["root"]) == ["invoices"]
    assert table(open_page(users["root"], history_search="tag:invoices")) == ["Forecast", "Quarterly sales"]


def test_an_analyst_deletes_their_open_view(page_db, users, chats):
    with page_db.begin() as session:
        view = history.views.save_view(session, users["alice"], "Old", history.HistoryFilter(search="sales"))
    at = open_page(users["alice"], view=str(view.id))
    at.button(key="history_view_delete").click()
    rerun(at)
    with page_db.begin() as session:
        assert history.views.list_views(session, users["alice"]) == []
    assert "view" not in at.query_params
    assert [b.key for b in open_page(users["bob"]).button if b.key == "history_view_delete"] == []


def test_a_search_whose_canonical_form_would_not_fit_the_box_is_left_as_typed(users, chats):
    words = [f"x{i},y" for i in range(84)]  # each reads as the phrase "x1 y": two quotes longer
    typed = " ".join(words)
    assert len(typed) <= history.MAX_SEARCH_CHARS < len(history.HistoryFilter(search=typed).search)
    at = open_page(users["alice"], history_search=typed)
    assert at.text_input(key="history_search").value == typed
    assert table(at) == []
