"""The analysts' workbench on SQLite and PostgreSQL: search syntax, tags, notes, saved views, evaluation sets."""

from __future__ import annotations

import io
import json

import pandas as pd
import pytest

from chatbot import store
from chatbot.errors import InputError, NotFoundError
from chatbot.history import HistoryFilter, evaluation, list_history, notes, tags, views
from chatbot.history.evaluation import EVAL_FIELDS


def chat(db, actor, title, turns, *, down: int | None = None, flow_id: str = "flow-9", **saved) -> tuple[int, list[int]]:
    """A conversation as the chat saves it; the answers' ids. ``down``: the answer (index) rated 👎;
    ``saved``: what each answer is saved with, over the defaults (complete, Support v3, gpt-4o-mini)."""
    answers = []
    saved = {"status": "complete", "flow_name": "Support", "flow_version": "v3", "model": "gpt-4o-mini"} | saved
    with db.begin() as session:
        conversation = store.create_conversation(session, actor, title=title)
        for question, answer in turns:
            asked = store.append_message(session, actor, conversation.id, role="user", content=question)
            begun = store.begin_answer(session, actor, asked.id, engine="langflow", flow_id=flow_id)
            store.update_answer(session, actor, begun.id, content=answer, **saved)
            answers.append(begun.id)
        if down is not None:
            store.set_feedback(session, actor, answers[down], score=0, comment="wrong plan")
    return conversation.id, answers


@pytest.fixture
def desk(db, users) -> dict:
    """alice: billing/vacuum (tagged billing, 👎 on its 2nd answer), billing/refund (tagged billing),
    vacation (untagged); bob: his own vacuum conversation tagged secret-project."""
    alice, bob = users["alice"], users["bob"]
    ids = {}
    ids["vacuum"], ids["vacuum_answers"] = chat(db, alice, "Invoice and vacuum", [
        ("Why is my invoice late?", "Invoices go out on the 1st."),
        ("How do I vacuum the billing table?", "Run VACUUM FULL nightly."),
    ], down=1)
    ids["refund"], _ = chat(db, alice, "Refund and vacuum", [("Can I get a refund after vacuum?", "Yes, within 30 days.")])
    ids["vacation"], _ = chat(db, alice, "Vacation", [("When is my vacation?", "In August.")])
    ids["bob"], _ = chat(db, bob, "Bob's vacuum", [("vacuum the secret tables?", "Ask the DBA.")])
    with db.begin() as session:
        tags.set_tags(session, alice, ids["vacuum"], ["Billing", "urgent"])
        tags.set_tags(session, alice, ids["refund"], ["billing"])
        tags.set_tags(session, bob, ids["bob"], ["secret-project"])
    return ids


def titles(db, actor, search="", **fields) -> list[str]:
    with db.begin() as session:
        frame, _ = list_history(session, actor, HistoryFilter(search=search, **fields), page=0)
    return sorted(frame["title"])


def test_the_checked_by_search_finds_tagged_prefix_matches_without_the_excluded_word(db, users, desk):
    assert titles(db, users["alice"], "tag:billing -refund vac*") == ["Invoice and vacuum"]
    assert titles(db, users["alice"], "vac*") == ["Invoice and vacuum", "Refund and vacuum", "Vacation"]
    assert titles(db, users["alice"], "vac* -refund") == ["Invoice and vacuum", "Vacation"]
    assert titles(db, users["alice"], "-refund") == ["Invoice and vacuum", "Vacation"]


def test_or_phrases_and_field_filters_on_the_database(db, users, desk):
    alice = users["alice"]
    assert titles(db, alice, "august OR refund") == ["Refund and vacuum", "Vacation"]
    assert titles(db, alice, '"vacuum the billing"') == ["Invoice and vacuum"]
    assert titles(db, alice, "fb:down") == ["Invoice and vacuum"]
    assert titles(db, alice, "fb:none tag:billing") == ["Refund and vacuum"]
    assert titles(db, alice, "tag:billing tag:urgent") == ["Invoice and vacuum"]
    assert titles(db, alice, "status:stopped") == []
    assert titles(db, users["root"], "vacuum user:bob") == ["Bob's vacuum"]


def test_tags_are_cleaned_and_set_as_a_whole(db, users, desk):
    with db.begin() as session:
        assert tags.set_tags(session, users["alice"], desk["vacation"], [" Out  of office ", "out of office"]) == [
            "out of office"]
        assert tags.tags_of(session, users["alice"], [desk["vacuum"], desk["vacation"], desk["bob"]]) == {
            desk["vacuum"]: ["billing", "urgent"], desk["vacation"]: ["out of office"]}
        with pytest.raises(InputError):
            tags.set_tags(session, users["alice"], desk["vacation"], ["   "])


def test_an_analyst_neither_sees_nor_sets_tags_on_others_conversations(db, users, desk):
    with db.begin() as session:
        assert tags.vocabulary(session, users["alice"]) == ["billing", "urgent"]
        assert tags.vocabulary(session, users["bob"]) == ["secret-project"]
        assert "secret-project" in tags.vocabulary(session, users["root"])
        assert tags.tags_of(session, users["alice"], [desk["bob"]]) == {}
        with pytest.raises(NotFoundError):
            tags.set_tags(session, users["alice"], desk["bob"], ["mine"])
    assert titles(db, users["alice"], "tag:secret-project") == []


def test_an_admin_renames_and_merges_a_tag_for_everyone(db, users, desk):
    with db.begin() as session:
        with pytest.raises(NotFoundError):
            tags.rename_tag(session, users["alice"], "urgent", "billing")
        assert tags.rename_tag(session, users["root"], "urgent", "billing") == 1  # a merge
        assert tags.rename_tag(session, users["root"], "billing", "invoices") == 2
        assert tags.vocabulary(session, users["alice"]) == ["invoices"]
        assert store.list_audit(session, users["root"])[0][2:] == ("rename tag", "billing → invoices (2 conversations)")


def test_a_note_and_corrected_answer_on_an_answer(db, users, desk):
    answer = desk["vacuum_answers"][1]
    with db.begin() as session:
        notes.set_note(session, users["alice"], answer, note="Never VACUUM FULL by day", corrected_answer="Run VACUUM.")
        with pytest.raises(NotFoundError):
            notes.set_note(session, users["bob"], answer, note="mine")
    with db.begin() as session:
        kept = notes.notes_for(session, users["alice"], [answer])[answer]
        assert (kept.note, kept.corrected_answer) == ("Never VACUUM FULL by day", "Run VACUUM.")
        assert notes.notes_for(session, users["bob"], [answer]) == {}
        assert notes.set_note(session, users["alice"], answer, note=" ", corrected_answer="") is None
        assert notes.notes_for(session, users["alice"], [answer]) == {}


def test_saved_views_are_private_or_shared(db, users, desk):
    alice, bob = users["alice"], users["bob"]
    with db.begin() as session:
        mine = views.save_view(session, alice, "Billing vacuum", HistoryFilter(search="tag:billing -refund vac*"))
        shared = views.save_view(session, alice, "Team", HistoryFilter(feedback="down"), shared=True)
    with db.begin() as session:
        assert [v.name for v in views.list_views(session, alice)] == ["Billing vacuum", "Team"]
        assert [v.label for v in views.list_views(session, bob)] == ["Team (shared by alice)"]
        assert views.get_view(session, alice, mine.id).filters == HistoryFilter(search="vac* -refund", tags=("billing",))
        with pytest.raises(NotFoundError):
            views.get_view(session, bob, mine.id)
        assert views.get_view(session, bob, shared.id).filters.feedback == "down"
        with pytest.raises(NotFoundError):
            views.delete_view(session, bob, shared.id)
        with pytest.raises(InputError):
            views.save_view(session, bob, "  ", HistoryFilter())
        views.save_view(session, alice, "Team", HistoryFilter(feedback="up"), shared=False)  # overwritten
        assert views.list_views(session, bob) == []


def evaluation_records(db, actor, filters, fmt="eval-jsonl"):
    out = io.BytesIO()
    with db.begin() as session:
        written = evaluation.write_evaluation(session, actor, filters, fmt, out)
    if fmt == "eval-jsonl":
        records = [json.loads(line) for line in out.getvalue().decode().splitlines()]
    else:
        records = pd.read_csv(io.BytesIO(out.getvalue()), encoding="utf-8-sig", keep_default_na=False).to_dict("records")
    assert written == len(records)
    return records


def test_the_evaluation_set_holds_the_answered_turns_with_notes_tags_and_context(db, users, desk):
    alice = users["alice"]
    with db.begin() as session:
        notes.set_note(session, alice, desk["vacuum_answers"][1], note="Too risky", corrected_answer="Run VACUUM.")
    records = evaluation_records(db, alice, HistoryFilter(search="tag:billing -refund vac*"))
    assert [list(r) for r in records] == [EVAL_FIELDS, EVAL_FIELDS]
    first, second = records
    assert (first["question"], first["corrected_answer"], first["context"]) == (
        "Why is my invoice late?", None, [])
    assert second == second | {
        "question": "How do I vacuum the billing table?", "answer": "Run VACUUM FULL nightly.",
        "corrected_answer": "Run VACUUM.", "note": "Too risky", "feedback_score": 0, "feedback_comment": "wrong plan",
        "tags": ["billing", "urgent"], "flow": "Support", "flow_version": "v3", "model": "gpt-4o-mini",
        "owner": "alice", "conversation_id": desk["vacuum"], "answer_id": desk["vacuum_answers"][1],
        "context": [{"role": "user", "content": "Why is my invoice late?"},
                    {"role": "assistant", "content": "Invoices go out on the 1st."}],
    }
    rows = evaluation_records(db, alice, HistoryFilter(search="tag:billing -refund vac*"), fmt="eval-csv")
    assert [r["corrected_answer"] for r in rows] == ["", "Run VACUUM."]
    assert rows[1]["tags"] == "billing; urgent" and json.loads(rows[1]["context"])[0]["role"] == "user"
    assert isinstance(rows[1]["answer_id"], int)


def test_the_evaluation_set_never_holds_another_analysts_turns(db, users, desk):
    assert {r["owner"] for r in evaluation_records(db, users["alice"], HistoryFilter(search="vacuum"))} == {"alice"}
    assert evaluation_records(db, users["alice"], HistoryFilter(user="bob")) == []


def test_every_export_carries_tags_notes_and_numeric_ids(db, users, desk):
    from chatbot.history import iter_export_frames

    alice = users["alice"]
    with db.begin() as session:
        notes.set_note(session, alice, desk["vacuum_answers"][1], note="Too risky", corrected_answer="Run VACUUM.")
    with db.begin() as session:
        frame = pd.concat(iter_export_frames(session, alice, HistoryFilter(tags=("billing",))), ignore_index=True)
    noted = frame[frame["message_id"] == desk["vacuum_answers"][1]].iloc[0]
    assert (noted["tags"], noted["note"], noted["corrected_answer"]) == ("billing; urgent", "Too risky", "Run VACUUM.")
    assert set(frame["tags"]) == {"billing; urgent", "billing"}
    assert frame["note"].notna().sum() == 1
    assert frame["conversation_id"].dtype.kind == "i"
