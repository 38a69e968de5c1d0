"""Replays on SQLite and PostgreSQL: their questions, who sees them, and the worker that runs them."""

from __future__ import annotations

import dataclasses
import functools
import io
import json
import os
import socket
import subprocess
import sys
import threading
import time
from datetime import timedelta

import pytest
import streamlit as st
from sqlalchemy import func, select, update

from chatbot import resources, store
from chatbot.errors import ConfigError, InputError, NotFoundError
from chatbot.flows import FlowDirectory, Route
from chatbot.history import HistoryFilter, evaluation, notes, views
from chatbot.langflow import LangflowClient
from chatbot.models import AuditEntry, Conversation, Message, Replay, ReplayItem, utcnow
from chatbot.notes import NotesEngine, NotesIndex
from chatbot.replays import jobs
from chatbot.replays.worker import ReplayWorker, beat, claim_item, save_result, worker_name
from tests.conftest import NOTES
from tests.replay_server import FLOW_ID, ReplayServer, echo_flow, json_reply
from tests.test_cli import ROOT
from tests.test_workbench import chat as workbench_chat


def chat(db, actor, title, turns, *, down: int | None = None, status: str = "complete") -> tuple[int, list[int]]:
    """A conversation as the chat saves it (tests.test_workbench's), with the timing and tokens a
    replay compares; the answers' ids."""
    return workbench_chat(db, actor, title, turns, down=down, flow_id="flow-a", status=status, model=None,
                          latency_ms=1200, ttft_ms=300, total_tokens=42)


@pytest.fixture
def desk(db, users) -> dict:
    """alice: a two-turn billing conversation (👎 on its 2nd answer, corrected) and a one-turn one;
    bob: one conversation of his own."""
    alice, bob = users["alice"], users["bob"]
    ids = {}
    ids["billing"], ids["billing_answers"] = chat(db, alice, "Billing", [
        ("Why is my invoice late?", "Invoices go out on the 1st."),
        ("How do I vacuum the billing table?", "Run VACUUM FULL nightly."),
    ], down=1)
    ids["vacation"], ids["vacation_answers"] = chat(db, alice, "Vacation", [("When is my vacation?", "In August.")])
    ids["bob"], ids["bob_answers"] = chat(db, bob, "Bob's", [("What is the secret plan?", "Ask the DBA.")])
    with db.begin() as session:
        notes.set_note(session, alice, ids["billing_answers"][1], note="too harsh",
                       corrected_answer="Run VACUUM (not FULL) nightly.")
    return ids


def plan(db, actor, *, limit=100, **filters) -> list[jobs.Question]:
    with db.begin() as session:
        return jobs.questions_from_filters(session, actor, HistoryFilter(**filters), limit=limit)


def make(db, actor, questions, **options) -> int:
    options = {"flow": "notes", "flow_label": "Notes", "source": "history filters"} | options
    with db.begin() as session:
        return jobs.create_replay(session, actor, questions, **options).id


# -- the questions ------------------------------------------------------------------------------


def test_questions_from_filters_carry_the_original_turn_and_its_context(db, users, desk):
    questions = plan(db, users["alice"], search="vacuum")
    assert [q.question for q in questions] == ["Why is my invoice late?", "How do I vacuum the billing table?"]
    second = questions[1]
    assert second.context == [{"role": "user", "content": "Why is my invoice late?"},
                              {"role": "assistant", "content": "Invoices go out on the 1st."}]
    assert (second.original_answer, second.original_status, second.original_flow) == (
        "Run VACUUM FULL nightly.", "complete", "Support v3")
    assert (second.original_latency_ms, second.original_ttft_ms, second.original_tokens) == (1200, 300, 42)
    assert (second.original_feedback, second.original_comment) == (0, "wrong plan")
    assert second.corrected_answer == "Run VACUUM (not FULL) nightly."
    assert second.answer_id == desk["billing_answers"][1] and second.conversation_id == desk["billing"]


def test_an_analyst_cannot_replay_anothers_conversations_and_an_admin_can(db, users, desk):
    assert "What is the secret plan?" not in [q.question for q in plan(db, users["alice"])]
    with pytest.raises(InputError, match="No answered questions match"):
        plan(db, users["alice"], user="bob")
    assert [q.question for q in plan(db, users["root"], user="bob")] == ["What is the secret plan?"]


def test_failed_answers_are_replayed_too(db, users):
    chat(db, users["alice"], "Broken", [("Does it fail?", "")], status="error")
    assert [q.original_status for q in plan(db, users["alice"])] == ["error"]


def test_more_questions_than_the_limit_are_refused_with_the_count(db, users, desk):
    with pytest.raises(InputError) as refused:
        plan(db, users["alice"], limit=2)
    assert str(refused.value) == ("These filters match 3 questions; a replay takes at most 2 (REPLAY_MAX_QUESTIONS). "
                                  "Narrow them (a date range, a tag) and try again.")


def file_of(*records) -> bytes:
    return "".join(json.dumps(record) + "\n" for record in records).encode()


def test_a_file_replays_what_the_actor_can_see_and_hand_written_records(db, users, desk):
    data = file_of(
        {"answer_id": desk["billing_answers"][1], "question": "edited in the file", "answer": "edited too"},
        {"answer_id": desk["bob_answers"][0], "conversation_id": desk["bob"], "question": "What is the secret plan?"},
        {"question": "Hand-written?", "answer": "Yes.", "corrected_answer": "Yes!",
         "context": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]},
    )
    with db.begin() as session:
        questions, notices = jobs.questions_from_file(session, users["alice"], "eval.jsonl", data, limit=10)
    assert notices == ["1 question belongs to conversations you cannot see; they were left out."]
    stored, written = questions
    assert (stored.question, stored.original_answer) == ("How do I vacuum the billing table?", "Run VACUUM FULL nightly.")
    assert stored.context[0] == {"role": "user", "content": "Why is my invoice late?"}
    assert stored.corrected_answer == "Run VACUUM (not FULL) nightly." and stored.original_feedback == 0
    assert (written.answer_id, written.question, written.original_answer, written.corrected_answer) == (
        None, "Hand-written?", "Yes.", "Yes!")
    assert written.context == [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]


def test_an_evaluation_csv_is_read_like_the_jsonl(db, users, desk):
    out = io.BytesIO()
    with db.begin() as session:
        evaluation.write_evaluation(session, users["alice"], HistoryFilter(search="vacuum"), "eval-csv", out)
        questions, notices = jobs.questions_from_file(session, users["alice"], "eval.csv", out.getvalue(), limit=10)
        assert notices == [] and [q.answer_id for q in questions] == desk["billing_answers"]
        with pytest.raises(InputError, match="2 questions belong to conversations you cannot see"):
            jobs.questions_from_file(session, users["bob"], "eval.csv", out.getvalue(), limit=10)
    assert questions == plan(db, users["alice"], search="vacuum")


def test_a_bad_file_line_is_named(db, users):
    with db.begin() as session, pytest.raises(InputError, match="eval.jsonl line 2 is not valid JSON"):
        jobs.questions_from_file(session, users["alice"], "eval.jsonl", b'{"question": "a"}\n{oops\n', limit=10)
    with db.begin() as session, pytest.raises(InputError, match="eval.jsonl line 1 has no question"):
        jobs.questions_from_file(session, users["alice"], "eval.jsonl", b'{"answer": "a"}\n', limit=10)
    with db.begin() as session, pytest.raises(InputError, match="at most 1 "):
        jobs.questions_from_file(session, users["alice"], "e.jsonl", file_of({"question": "a"}, {"question": "b"}),
                                 limit=1)


# -- the replays -----------------------------------------------------------------------------------


def test_create_list_get_and_progress_are_scoped_to_the_owner(db, users, desk):
    alice, bob, root = users["alice"], users["bob"], users["root"]
    replay_id = make(db, alice, plan(db, alice), flow="flow-b", flow_label="Flow B", mode="context")
    with db.begin() as session:
        replay = jobs.get_replay(session, alice, replay_id)
        assert (replay.name, replay.status, replay.total, replay.mode) == ("history filters → Flow B", "queued", 3,
                                                                          "context")
        assert [row.name for row in jobs.list_replays(session, alice)] == ["history filters → Flow B"]
        assert jobs.list_replays(session, bob) == []
        assert [(r.owner, r.total, r.done) for r in jobs.list_replays(session, root)] == [("alice", 3, 0)]
        assert [i.position for i in jobs.items(session, alice, replay_id)] == [1, 2, 3]
        progress = jobs.progress(session, alice, replay_id)
        assert (progress.status, progress.total, progress.done, progress.fraction) == ("queued", 3, 0, 0.0)
        for attempt in (jobs.get_replay, jobs.progress, jobs.items, jobs.cancel_replay, jobs.delete_replay):
            with pytest.raises(NotFoundError, match="This replay does not exist or is not yours."):
                attempt(session, bob, replay_id)


def test_the_notes_engine_is_replayed_questions_only(db, users, desk):
    replay_id = make(db, users["alice"], plan(db, users["alice"]), mode="context")
    with db.begin() as session:
        assert session.get(Replay, replay_id).mode == "questions"


def test_an_admin_opening_anothers_replay_is_audited(db, users, desk):
    replay_id = make(db, users["alice"], plan(db, users["alice"]), name="Billing check")
    with db.begin() as session:
        jobs.get_replay(session, users["alice"], replay_id)
        jobs.get_replay(session, users["root"], replay_id)
    with db.begin() as session:
        entries = session.execute(select(AuditEntry.action, AuditEntry.target)).all()
    assert entries == [("replay.view", f"replay {replay_id} “Billing check” of alice")]


def test_cancel_cancels_the_waiting_questions(db, users, desk):
    replay_id = make(db, users["alice"], plan(db, users["alice"]))
    with db.begin() as session:
        jobs.cancel_replay(session, users["root"], replay_id)
    with db.begin() as session:
        replay = session.get(Replay, replay_id)
        assert replay.status == "cancelled" and replay.finished_at is not None
        assert jobs.progress(session, users["alice"], replay_id).done == 3
        statuses = session.scalars(select(ReplayItem.status).where(ReplayItem.replay_id == replay_id)).all()
    assert statuses == ["cancelled"] * 3


def test_verdicts_are_set_cleared_and_filtered(db, users, desk):
    alice = users["alice"]
    replay_id = make(db, alice, plan(db, alice))
    with db.begin() as session:
        first, second, third = jobs.items(session, alice, replay_id)
        with pytest.raises(InputError, match="not been replayed yet"):
            jobs.set_verdict(session, alice, first.id, "better")
    ReplayWorker(db, notes_route, name="w").run_until_idle()
    with db.begin() as session:
        jobs.set_verdict(session, alice, first.id, "better")
        jobs.set_verdict(session, users["root"], second.id, "worse")
        with pytest.raises(NotFoundError):
            jobs.set_verdict(session, users["bob"], third.id, "same")
        with pytest.raises(InputError, match="Unknown verdict"):
            jobs.set_verdict(session, alice, third.id, "great")
    with db.begin() as session:
        assert [i.position for i in jobs.items(session, alice, replay_id, show="better")] == [1]
        assert [i.position for i in jobs.items(session, alice, replay_id, show="worse")] == [2]
        assert [i.position for i in jobs.items(session, alice, replay_id, show="unjudged")] == [3]
        assert [i.question for i in jobs.items(session, alice, replay_id, show="original_down")] == [
            "How do I vacuum the billing table?"]
        item = session.get(ReplayItem, first.id)
        assert (item.verdict_by, item.verdict_at is not None) == (alice.id, True)
        jobs.set_verdict(session, alice, first.id, None)
        assert session.get(ReplayItem, first.id).verdict is None


def test_delete_removes_the_replay_and_its_items(db, users, desk):
    replay_id = make(db, users["alice"], plan(db, users["alice"]))
    with db.begin() as session:
        jobs.delete_replay(session, users["alice"], replay_id)
    with db.begin() as session:
        assert session.scalar(select(func.count()).select_from(ReplayItem)) == 0
        assert session.get(Replay, replay_id) is None
        # the originals are untouched
        assert session.scalar(select(func.count()).select_from(Conversation)) == 3
        assert session.scalar(select(func.count()).select_from(Message)) == 8


# -- the worker ------------------------------------------------------------------------------------


def notes_route(_key: str) -> Route:
    return Route(NotesEngine(NotesIndex.build(NOTES)))


def langflow_route(server: ReplayServer, *, directory: bool = False):
    """Routes to the local Langflow-wire server, through the real client (and flow directory)."""

    def client(key: str) -> LangflowClient:
        return LangflowClient(base_url=server.url, flow_id=key, api_key="sk-test-key-123", timeout=20)

    flows = FlowDirectory(client) if directory else None
    return lambda key: Route(client(key), key, flows)


def questions(n: int) -> list[jobs.Question]:
    return [jobs.Question(conversation_id=None, question_id=None, answer_id=None, question=f"question {i} vacuum")
            for i in range(1, n + 1)]


def item_rows(db, replay_id) -> list[ReplayItem]:
    with db.begin() as session:
        return list(session.scalars(select(ReplayItem).where(ReplayItem.replay_id == replay_id)
                                    .order_by(ReplayItem.position)))


def replay_row(db, replay_id) -> Replay:
    with db.begin() as session:
        return session.get(Replay, replay_id)


def wait_for(condition, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_the_worker_replays_every_question_with_the_notes_engine_and_ends_done(db, users, desk):
    alice = users["alice"]
    replay_id = make(db, alice, plan(db, alice))
    with db.begin() as session:
        messages_before = session.scalar(select(func.count()).select_from(Message))
    ReplayWorker(db, notes_route, concurrency=2).run_until_idle()
    replay, rows = replay_row(db, replay_id), item_rows(db, replay_id)
    assert (replay.status, replay.started_at is not None, replay.finished_at is not None) == ("done", True, True)
    assert [row.status for row in rows] == ["complete"] * 3
    assert all(row.answer and row.latency_ms is not None and row.attempts == 1 for row in rows)
    vacuum = next(row for row in rows if row.question.startswith("How do I vacuum"))
    assert "postgres-vacuum.md" in vacuum.answer and vacuum.flow_name == "notes"
    assert len({row.session_id for row in rows}) == 3
    with db.begin() as session:
        assert session.scalar(select(func.count()).select_from(Message)) == messages_before
        assert jobs.progress(session, alice, replay_id).fraction == 1.0


def test_context_mode_asks_the_earlier_turns_first_in_a_fresh_session(db, users, desk, replay_langflow):
    alice = users["alice"]
    vacuum = [q for q in plan(db, alice) if q.question.startswith("How do I vacuum")]
    replay_id = make(db, alice, vacuum, flow=FLOW_ID, flow_label="Replay flow", mode="context")
    ReplayWorker(db, langflow_route(replay_langflow, directory=True)).run_until_idle()
    asked = [(r.body["input_value"], r.body["session_id"]) for r in replay_langflow.requests]
    [row] = item_rows(db, replay_id)
    assert asked == [("Why is my invoice late?", row.session_id), ("How do I vacuum the billing table?", row.session_id)]
    assert (row.status, row.answer, row.flow_name) == ("complete", "How do I vacuum the billing table?", "Replay flow")
    assert row.ttft_ms is not None and row.conversation_id == desk["billing"]


def test_a_flow_that_cannot_be_asked_fails_the_replay(db, users):
    def nowhere(key):
        raise ConfigError("LANGFLOW_URL", "is not set.")

    replay_id = make(db, users["alice"], questions(3), flow="gone", flow_label="Gone")
    ReplayWorker(db, nowhere, concurrency=1).run_until_idle()
    replay = replay_row(db, replay_id)
    assert (replay.status, replay.error) == ("failed", "LANGFLOW_URL: is not set.")
    assert [row.status for row in item_rows(db, replay_id)] == ["error", "cancelled", "cancelled"]


def test_an_engine_error_is_the_items_error_and_the_replay_still_ends_done(db, users, replay_langflow):
    replay_langflow.answer(json_reply({"detail": "flow exploded"}, status=500))
    replay_id = make(db, users["alice"], questions(2), flow=FLOW_ID, flow_label="Replay flow")
    ReplayWorker(db, langflow_route(replay_langflow), concurrency=1).run_until_idle()
    rows = item_rows(db, replay_id)
    assert [row.status for row in rows] == ["error", "complete"] and rows[0].error
    assert replay_row(db, replay_id).status == "done"


def age(db, replay_id, *, worker: str, seconds: float = 3600) -> None:
    """Make the items ``worker`` claimed look abandoned: their heartbeat long ago."""
    with db.begin() as session:
        session.execute(update(ReplayItem).where(ReplayItem.replay_id == replay_id, ReplayItem.worker == worker)
                        .values(heartbeat_at=utcnow() - timedelta(seconds=seconds)))


def test_a_killed_workers_questions_are_run_once_by_the_next_worker(db, users, replay_langflow):
    replay_id = make(db, users["alice"], questions(5), flow=FLOW_ID, flow_label="Replay flow")
    with db.begin() as session:  # the dead worker had taken two questions when it was killed
        dead = [claim_item(session, "dead", limit=2, stale_seconds=30) for _ in range(2)]
    age(db, replay_id, worker="dead")
    ReplayWorker(db, langflow_route(replay_langflow), concurrency=2, name="alive").run_until_idle()
    rows = item_rows(db, replay_id)
    assert [row.status for row in rows] == ["complete"] * 5 and replay_row(db, replay_id).status == "done"
    assert sorted(r.body["input_value"] for r in replay_langflow.requests) == [q.question for q in questions(5)]
    assert [row.attempts for row in rows] == [2, 2, 1, 1, 1] and {row.worker for row in rows} == {"alive"}
    with db.begin() as session:  # the dead worker wakes up: its results are dropped
        assert not save_result(session, dead[0], status="complete", answer="stale answer")
    assert item_rows(db, replay_id)[0].answer == "question 1 vacuum"


def test_an_app_restarted_mid_replay_takes_its_questions_back_at_once(db, users):
    """Workers of this machine that are gone (their process exited, or this process before a restart)
    hand their questions over without waiting for a stale heartbeat; another machine's do not."""
    replay_id = make(db, users["alice"], questions(4))
    host = socket.gethostname()
    gone = [f"{host}:{_exited_pid()}:aaaaaa", f"{host}:{os.getpid()}:bbbbbb"]
    with db.begin() as session:
        for name in [*gone, "elsewhere:1:cccccc"]:
            assert claim_item(session, name, limit=3, stale_seconds=30) is not None
    with db.begin() as session:  # all three beat just now; two are gone, one may be alive
        taken = [claim_item(session, worker_name(), limit=3, stale_seconds=30) for _ in range(3)]
    assert [claim is not None for claim in taken] == [True, True, False]
    assert {row.worker: row.attempts for row in item_rows(db, replay_id)}["elsewhere:1:cccccc"] == 1


def _exited_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def test_a_worker_presumed_dead_cannot_overwrite_the_rerun(db, users):
    replay_id = make(db, users["alice"], questions(1))
    with db.begin() as session:
        first = claim_item(session, "slow", limit=2, stale_seconds=30)
    with db.begin() as session:  # alive and beating: nobody else may take it
        assert claim_item(session, "other", limit=2, stale_seconds=30) is None
        assert beat(session, first)
    age(db, replay_id, worker="slow")
    with db.begin() as session:
        second = claim_item(session, "other", limit=2, stale_seconds=30)
    assert (second.item_id, second.attempts) == (first.item_id, 2)
    with db.begin() as session:
        assert not beat(session, first)
        assert save_result(session, second, status="complete", answer="the re-run")
    with db.begin() as session:
        assert not save_result(session, first, status="complete", answer="the slow one")
    [row] = item_rows(db, replay_id)
    assert (row.answer, row.worker, row.attempts, row.status) == ("the re-run", "other", 2, "complete")
    assert replay_row(db, replay_id).status == "done"


def test_two_workers_finishing_the_last_questions_at_once_end_the_replay(db, users):
    """Regression: on PostgreSQL each saw the other's question still running, and the replay
    stayed 'running' with every question done (the command line waited for it forever)."""
    replay_id = make(db, users["alice"], questions(2))
    with db.begin() as session:
        first, second = (claim_item(session, name, limit=2, stale_seconds=30) for name in ("a", "b"))
    with db() as session:
        session.begin()
        assert save_result(session, first, status="complete", answer="a")
        other = threading.Thread(target=lambda: _save(db, second))
        other.start()
        time.sleep(0.3)  # let the second worker reach its save while the first has not committed
        session.commit()
    other.join(30)
    replay = replay_row(db, replay_id)
    assert (replay.status, [row.status for row in item_rows(db, replay_id)]) == ("done", ["complete", "complete"])


def _save(db, claim) -> None:
    with db.begin() as session:
        assert save_result(session, claim, status="complete", answer="b")


class Gauge:
    """A slow flow that notes how many questions it answers at once."""

    def __init__(self, seconds: float) -> None:
        self.seconds, self.now, self.most, self.calls = seconds, 0, 0, 0
        self.lock = threading.Lock()

    def __call__(self, request):
        with self.lock:
            self.now, self.calls = self.now + 1, self.calls + 1
            self.most = max(self.most, self.now)
        time.sleep(self.seconds)
        with self.lock:
            self.now -= 1
        return echo_flow(request, tokens=True)


def test_two_workers_together_respect_the_concurrency_limit(db, users):
    gauge = Gauge(0.3)
    with ReplayServer(default=gauge) as server:
        replay_id = make(db, users["alice"], questions(8), flow=FLOW_ID, flow_label="Replay flow")
        workers = [ReplayWorker(db, langflow_route(server), concurrency=2, name=f"w{n}") for n in (1, 2)]
        threads = [threading.Thread(target=worker.run_until_idle) for worker in workers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    assert [row.status for row in item_rows(db, replay_id)] == ["complete"] * 8
    assert gauge.calls == 8 and gauge.most == 2


def test_cancel_stops_the_replay_within_one_question(db, users):
    slow = functools.partial(echo_flow, tokens=True)
    words = " ".join(f"w{n}" for n in range(200))  # 200 tokens, 0.05 s apart: ten seconds an answer

    def responder(request):
        reply = slow(request)
        return dataclasses.replace(reply, delay=0.05)

    with ReplayServer(default=responder) as server:
        many = [jobs.Question(None, None, None, f"{n} {words}") for n in range(4)]
        replay_id = make(db, users["alice"], many, flow=FLOW_ID, flow_label="Replay flow")
        worker = ReplayWorker(db, langflow_route(server), concurrency=1)
        runner = threading.Thread(target=worker.run_until_idle)
        runner.start()
        wait_for(lambda: len(server.requests) == 1)
        with db.begin() as session:
            jobs.cancel_replay(session, users["alice"], replay_id)
        cancelled = time.monotonic()
        runner.join(30)
        assert time.monotonic() - cancelled < 5  # the answer alone takes ten
    rows = item_rows(db, replay_id)
    assert [row.status for row in rows] == ["cancelled"] * 4 and len(server.requests) == 1
    assert replay_row(db, replay_id).status == "cancelled"
    with db.begin() as session:
        assert jobs.progress(session, users["alice"], replay_id).done == 4


def test_a_stopping_worker_gives_its_question_back(db, users):
    gauge = Gauge(1.0)
    with ReplayServer(default=gauge) as server:
        replay_id = make(db, users["alice"], questions(1), flow=FLOW_ID, flow_label="Replay flow")
        worker = ReplayWorker(db, langflow_route(server), concurrency=1).start()
        wait_for(lambda: gauge.calls == 1)
        worker.stop()
    [row] = item_rows(db, replay_id)
    assert (row.status, row.worker, row.attempts) == ("pending", None, 1)


# -- the command line ----------------------------------------------------------------------------


@pytest.fixture
def cli(database_url, db):
    """``python -m chatbot`` in a subprocess against the test database, the repository's notes, no Langflow."""

    def run(*args, **env):
        values = {k: v for k, v in os.environ.items() if not k.startswith("LANGFLOW_")}
        values |= {"DATABASE_URL": database_url, "NOTES_DIR": str(NOTES), **env}
        return subprocess.run([sys.executable, "-m", "chatbot", *args], capture_output=True, text=True,
                              cwd=ROOT, env=values, timeout=120)

    return run


def save_view(db, actor, name, *, shared=False, **filters) -> None:
    with db.begin() as session:
        views.save_view(session, actor, name, HistoryFilter(**filters), shared=shared)


def test_the_command_line_replays_a_saved_view_in_the_foreground(cli, db, users, desk):
    save_view(db, users["alice"], "Billing", search="vacuum")
    result = cli("replay", "--view", "Billing", "--flow", "notes", "--user", "alice")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "replay 1 “view \"Billing\" → Notes”: 2 questions"
    assert lines[-1] == "done: 2 complete, 0 failed, 0 cancelled, of 2"
    replay = replay_row(db, 1)
    assert (replay.status, replay.owner_id, replay.mode, replay.filters) == (
        "done", users["alice"].id, "questions", {"history_search": "vacuum"})
    assert [row.status for row in item_rows(db, 1)] == ["complete", "complete"]


def test_the_command_line_asks_a_catalog_flow_by_its_label(cli, db, users, desk, replay_langflow):
    save_view(db, users["alice"], "Billing", search="vacuum")
    catalog = json.dumps([{"flow": FLOW_ID, "label": "Flow B"}])
    result = cli("replay", "--view", "Billing", "--flow", "flow b", "--user", "alice", "--mode", "context",
                 LANGFLOW_URL=replay_langflow.url, LANGFLOW_FLOWS=catalog, LANGFLOW_API_KEY="sk-test-key-123")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "done: 2 complete, 0 failed, 0 cancelled, of 2"
    assert [r.body["input_value"] for r in replay_langflow.requests].count("Why is my invoice late?") == 2
    assert len(replay_langflow.requests) == 3  # the second question asked its earlier turn first
    assert replay_row(db, 1).flow_label == "Flow B"


@pytest.mark.parametrize(("args", "message"), [
    (("--view", "Billing", "--flow", "notes", "--user", "nobody"), "error: No user 'nobody'."),
    (("--view", "Nope", "--flow", "notes", "--user", "alice"),
     "error: alice has no saved view 'Nope' (views they can open: 'Billing')."),
    (("--view", "Billing", "--flow", "Flow B", "--user", "alice"),
     "error: No flow 'Flow B' in the catalog; pick one of: notes."),
    (("--view", "Billing", "--flow", "notes", "--user", "bob"), "error: No answered questions match"),
    (("--view", "Billing", "--user", "alice"), "error: replay needs --flow"),
    (("--view", "Billing", "--flow", "notes", "--user", "alice", "--tweaks", "{"), "error: The tweaks are not valid"),
])
def test_command_line_mistakes_are_one_line_and_make_no_replay(cli, db, users, desk, args, message):
    save_view(db, users["alice"], "Billing", shared=True, search="vacuum")  # bob sees none of it
    result = cli("replay", *args)
    assert result.returncode == 2 and result.stderr.startswith(message), result.stderr
    with db.begin() as session:
        assert session.scalar(select(func.count()).select_from(Replay)) == 0


def test_the_worker_command_runs_the_queued_replays_once(cli, db, users, desk):
    replay_id = make(db, users["alice"], plan(db, users["alice"]))
    result = cli("replay", "worker", "--once")
    assert (result.returncode, result.stdout.splitlines()[-1]) == (0, "ran 3 questions; none waits"), result.stderr
    assert replay_row(db, replay_id).status == "done"


# -- the app's worker --------------------------------------------------------------------------------


def test_the_app_runs_queued_replays_in_one_worker_that_a_cleared_cache_stops(app_db):
    url = os.environ["DATABASE_URL"]
    with app_db.begin() as session:
        alice = store.Actor.of(store.get_user(session, "alice"))
    replay_id = make(app_db, alice, questions(2))
    assert resources.replay_worker(url, enabled=False) is None
    worker = resources.replay_worker(url)
    assert resources.replay_worker(url) is worker  # one per process, however many page loads
    wait_for(lambda: replay_row(app_db, replay_id).status == "done")  # routed by resources.route, off-script
    assert [row.status for row in item_rows(app_db, replay_id)] == ["complete", "complete"]
    st.cache_resource.clear()
    assert worker._stopping.is_set() and not worker._threads
