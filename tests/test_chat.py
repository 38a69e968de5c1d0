"""A turn: the question is saved first, the answer streams, and whatever happens it is saved."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest

from chatbot import chat, live, store
from chatbot.engine import Attachment
from chatbot.errors import InputError, LangflowFlowError
from chatbot.flows import FlowDirectory, Route
from chatbot.langflow import LangflowClient
from chatbot.notes import NotesEngine, NotesIndex
from tests.replay_server import (
    CHAT_INPUT,
    FILE_COMPONENT,
    FLOW_ID,
    FLOW_NAME,
    ReplayServer,
    echo_flow,
    failed_run,
    flow_api,
    flow_graph,
    json_reply,
    stream_reply,
    streamed_run,
)

NOTES = Path(__file__).resolve().parent.parent / "notes"


@pytest.fixture
def notes():
    return NotesEngine(NotesIndex.build(NOTES))


@pytest.fixture
def langflow():
    with ReplayServer(default=functools.partial(echo_flow, tokens=True)) as server:
        yield server


def client(server) -> LangflowClient:
    return LangflowClient(base_url=server.url, flow_id=FLOW_ID, api_key="sk-test-key", timeout=5)


def messages(db, actor, conversation_id):
    with db.begin() as session:
        return [(m.role, m.content, m.status) for m in store.list_messages(session, actor, conversation_id)]


def test_question_is_saved_before_the_engine_is_called(db, users, notes):
    turn = chat.ask(db, users["alice"], None, "  How do I vacuum?  ", notes, max_chars=100)
    assert messages(db, users["alice"], turn.conversation_id) == [("user", "How do I vacuum?", "complete")]


def test_streamed_answer_is_saved_complete_with_its_metadata(db, users, langflow):
    turn = chat.ask(db, users["alice"], None, "echo these words", client(langflow), max_chars=100)
    chunks = list(turn.chunks())
    assert chunks == ["echo ", "these ", "words"]
    assert (turn.status, turn.text, turn.error) == ("complete", "echo these words", None)
    with db.begin() as session:
        answer = store.list_messages(session, users["alice"], turn.conversation_id)[-1]
    assert (answer.role, answer.content, answer.engine, answer.flow_id) == (
        "assistant", "echo these words", "langflow", FLOW_ID)
    assert answer.latency_ms is not None and answer.ttft_ms is not None and answer.ttft_ms <= answer.latency_ms


def test_langflow_gets_the_conversations_own_session_id(db, users, langflow):
    first = chat.ask(db, users["alice"], None, "one", client(langflow), max_chars=100)
    list(first.chunks())
    again = chat.ask(db, users["alice"], first.conversation_id, "two", client(langflow), max_chars=100)
    list(again.chunks())
    other = chat.ask(db, users["alice"], None, "three", client(langflow), max_chars=100)
    list(other.chunks())
    sent = [r.body["session_id"] for r in langflow.requests]
    assert sent[0] == sent[1] == first.session_id and sent[2] == other.session_id != first.session_id


def test_a_failed_flow_keeps_the_question_and_saves_the_partial_answer(db, users, langflow):
    def half_then_error(request):
        session_id = request.body["session_id"]
        events = streamed_run(["Half an "], session_id=session_id)[:-1] + failed_run("model overloaded", session_id=session_id)
        return stream_reply(events)

    langflow.answer(half_then_error)
    turn = chat.ask(db, users["alice"], None, "long question", client(langflow), max_chars=100)
    assert "".join(turn.chunks()) == "Half an "
    assert turn.status == "error" and isinstance(turn.error, LangflowFlowError)
    assert "model overloaded" in str(turn.error)
    assert messages(db, users["alice"], turn.conversation_id) == [
        ("user", "long question", "complete"), ("assistant", "Half an ", "error")]


def test_leaving_mid_answer_saves_it_as_interrupted(db, users, langflow):
    turn = chat.ask(db, users["alice"], None, "one two three four", client(langflow), max_chars=100)
    stream = turn.chunks()
    assert next(stream) == "one "
    stream.close()  # what the page does when Streamlit stops the run
    assert turn.status == "interrupted"
    with db.begin() as session:
        answer = store.list_messages(session, users["alice"], turn.conversation_id)[-1]
    assert (answer.content, answer.status, answer.error) == (
        "one ", "interrupted", "The answer was interrupted before it finished.")


def test_the_answer_is_in_the_database_while_it_streams(db, users, langflow):
    """A server killed mid-answer leaves the text that had arrived, marked interrupted."""
    turn = chat.ask(db, users["alice"], None, "one two three four", client(langflow), max_chars=100)
    turn.save_every = 0
    stream = turn.chunks()
    assert [next(stream), next(stream)] == ["one ", "two "]
    assert messages(db, users["alice"], turn.conversation_id) == [
        ("user", "one two three four", "complete"), ("assistant", "one two ", "interrupted")]
    assert list(stream) == ["three ", "four"]
    assert messages(db, users["alice"], turn.conversation_id)[-1] == ("assistant", "one two three four", "complete")


def test_an_engine_that_fails_before_any_token_leaves_one_error_answer(db, users, langflow):
    langflow.answer(lambda r: stream_reply(failed_run("no model", session_id=r.body["session_id"])))
    turn = chat.ask(db, users["alice"], None, "hello", client(langflow), max_chars=100)
    assert list(turn.chunks()) == []
    with db.begin() as session:
        conversation = store.get_conversation(session, users["alice"], turn.conversation_id)
        answer = store.list_messages(session, users["alice"], turn.conversation_id)[-1]
    assert (answer.role, answer.status, answer.content) == ("assistant", "error", "")
    assert "no model" in answer.error
    assert (conversation.message_count, conversation.last_status) == (2, "error")


def current(db, actor, conversation_id):
    with db.begin() as session:
        return [(m.role, m.content, m.status, m.version)
                for m in store.list_messages(session, actor, conversation_id, current_only=True)]


def test_retry_replaces_the_failed_answer_and_keeps_it_as_version_1(db, users, langflow):
    langflow.answer(lambda r: stream_reply(failed_run("down", session_id=r.body["session_id"])))
    turn = chat.ask(db, users["alice"], None, "are you there", client(langflow), max_chars=100)
    list(turn.chunks())
    retried = chat.regenerate(db, users["alice"], turn.conversation_id, client(langflow))
    list(retried.chunks())
    assert current(db, users["alice"], turn.conversation_id) == [
        ("user", "are you there", "complete", 1), ("assistant", "are you there", "complete", 2)]
    assert messages(db, users["alice"], turn.conversation_id) == [
        ("user", "are you there", "complete"), ("assistant", "", "error"),
        ("assistant", "are you there", "complete")]


def test_regenerate_keeps_every_version_and_feedback_stays_on_its_version(db, users, notes):
    alice = users["alice"]
    turn = chat.ask(db, alice, None, "How do I vacuum?", notes, max_chars=100)
    list(turn.chunks())
    with db.begin() as session:
        store.set_feedback(session, alice, turn.message_id, score=0, comment="too short")
    for _ in range(2):
        again = chat.regenerate(db, alice, turn.conversation_id, notes)
        list(again.chunks())
    assert [m[3] for m in current(db, alice, turn.conversation_id)] == [1, 3]
    with db.begin() as session:
        first, asked = store.answer_version(session, alice, again.message_id, 1)
        feedback = store.feedback_for(session, alice, [first.id, again.message_id])
    assert (first.id, asked.content) == (turn.message_id, "How do I vacuum?")
    assert {k: (f.score, f.comment) for k, f in feedback.items()} == {turn.message_id: (0, "too short")}


def test_an_edited_question_gets_a_new_answer_and_the_old_turn_is_kept(db, users, langflow):
    alice = users["alice"]
    turn = chat.ask(db, alice, None, "whta is SQL", client(langflow), max_chars=100)
    list(turn.chunks())
    edited = chat.edit(db, alice, turn.conversation_id, "what is SQL", client(langflow), max_chars=100)
    assert current(db, alice, turn.conversation_id)[-1][:3] == ("assistant", "", "interrupted")
    list(edited.chunks())
    assert current(db, alice, turn.conversation_id) == [
        ("user", "what is SQL", "complete", 2), ("assistant", "what is SQL", "complete", 2)]
    with db.begin() as session:
        old, asked = store.answer_version(session, alice, edited.message_id, 1)
    assert (old.content, asked.content) == ("whta is SQL", "whta is SQL")


def test_an_empty_or_too_long_edit_changes_nothing(db, users, notes):
    alice = users["alice"]
    turn = chat.ask(db, alice, None, "How do I vacuum?", notes, max_chars=100)
    list(turn.chunks())
    before = messages(db, alice, turn.conversation_id)
    assert chat.edit(db, alice, turn.conversation_id, "  ", notes, max_chars=100) is None
    with pytest.raises(InputError, match="limit is 100"):
        chat.edit(db, alice, turn.conversation_id, "x" * 101, notes, max_chars=100)
    assert messages(db, alice, turn.conversation_id) == before


def test_empty_and_whitespace_questions_are_ignored(db, users, notes):
    assert chat.ask(db, users["alice"], None, " \n\t ", notes, max_chars=100) is None
    with db.begin() as session:
        assert store.list_conversations(session, users["alice"]) == []


def test_too_long_questions_are_refused_before_anything_is_saved(db, users, langflow):
    with pytest.raises(InputError, match="101 characters long; the limit is 100"):
        chat.ask(db, users["alice"], None, "x" * 101, client(langflow), max_chars=100)
    with db.begin() as session:
        assert store.list_conversations(session, users["alice"]) == []
    assert langflow.requests == []


def test_control_characters_are_dropped_and_unicode_kept(db, users, notes):
    turn = chat.ask(db, users["alice"], None, "nul\x00 bell\x07 🧪 שלום 𝔘", notes, max_chars=100)
    assert messages(db, users["alice"], turn.conversation_id) == [("user", "nul bell 🧪 שלום 𝔘", "complete")]


def test_notes_answers_cite_their_files(db, users, notes):
    turn = chat.ask(db, users["alice"], None, "How does autovacuum work?", notes, max_chars=200)
    "".join(turn.chunks())
    assert turn.status == "complete" and "postgres-vacuum.md" in turn.text
    assert turn.metadata["engine"] == "notes" and turn.metadata["flow_id"] is None


# -- several outputs, stop, and answers that stream on their own (issues #13, #14) --------------


def test_both_outputs_of_a_two_output_flow_are_saved_and_shown_apart(db, users, langflow):
    """Issue #13: the second output's answer was lost and its tokens mixed into the first's."""
    from tests.test_langflow_client import RECORDED_SESSION, recorded_two_outputs

    langflow.answer(stream_reply(recorded_two_outputs()))
    turn = chat.ask(db, users["alice"], None, "hi", client(langflow), max_chars=100)
    turn.session_id = RECORDED_SESSION  # the recording's own session
    list(turn.chunks())
    assert sorted(text for text, _ in turn.live_outputs()) == ["Alpha beta gamma delta", "One two three four five"]
    with db.begin() as session:
        answer = store.list_messages(session, users["alice"], turn.conversation_id)[-1]
    assert answer.status == "complete" and answer.total_tokens == 11
    assert [(o["label"], o["text"]) for o in answer.outputs] == [
        ("Summary", "Alpha beta gamma delta"), ("Details", "One two three four five")]
    assert "One two three four five" in answer.content and "Alpha beta gamma delta" in answer.content


def slow_words(request, words=20, delay=0.05):
    run = streamed_run([f"w{n} " for n in range(words)], session_id=request.body["session_id"])
    return stream_reply(run, delay=delay)


def test_stop_saves_the_partial_answer_as_stopped_and_drops_the_connection(db, users, langflow):
    langflow.answer(slow_words)
    turn = chat.ask(db, users["alice"], None, "count slowly", client(langflow), max_chars=100)
    stream = turn.chunks()
    assert next(stream) == "w0 "
    turn.stop()
    assert list(stream) == []
    assert langflow.disconnected.wait(3), "Langflow's run was not cancelled"
    assert messages(db, users["alice"], turn.conversation_id)[-1] == ("assistant", "w0 ", "stopped")
    with db.begin() as session:
        assert store.list_messages(session, users["alice"], turn.conversation_id)[-1].error == chat.STOPPED


def test_a_live_answer_goes_on_when_nobody_watches_and_is_saved_complete(db, users, langflow):
    """Issue #14: a rerun ended the stream. Now the answer streams in its own thread; a page
    that goes away (a rerun, a closed tab) leaves it running to the end."""
    langflow.answer(functools.partial(slow_words, words=10, delay=0.02))
    turn = chat.ask(db, users["alice"], None, "count", client(langflow), max_chars=100)
    streaming = live.start(turn)
    assert live.running(db, users["alice"], turn.conversation_id) is streaming
    assert live.running(db, users["bob"], turn.conversation_id) is None  # only its owner sees it
    assert messages(db, users["alice"], turn.conversation_id)[-1][2] == "interrupted"  # saved from the start
    assert streaming.wait(10)
    assert messages(db, users["alice"], turn.conversation_id)[-1] == (
        "assistant", "".join(f"w{n} " for n in range(10)), "complete")
    assert live.running(db, users["alice"], turn.conversation_id) is None


def test_a_live_answer_stops_when_asked(db, users, langflow):
    langflow.answer(functools.partial(slow_words, words=200, delay=0.02))
    turn = chat.ask(db, users["alice"], None, "count", client(langflow), max_chars=100)
    streaming = live.start(turn)
    while not streaming.outputs():
        streaming.wait(0.01)
    streaming.stop()
    assert streaming.wait(5)
    role, content, status = messages(db, users["alice"], turn.conversation_id)[-1]
    assert status == "stopped" and content.startswith("w0 ") and "w199" not in content


def test_the_live_view_shows_the_newest_text_of_a_long_answer(db, users, langflow):
    langflow.answer(lambda r: stream_reply(streamed_run(["x" * 1000] * 50 + ["END"], session_id=r.body["session_id"])))
    turn = chat.ask(db, users["alice"], None, "long", client(langflow), max_chars=100)
    list(turn.chunks())
    [(text, length)] = turn.live_outputs(tail=5000)
    assert length == 50_003 and text.endswith("END") and 5000 <= len(text) <= 6003


def test_a_surrogate_pair_split_over_two_tokens_is_joined_and_a_lone_one_replaced(db, users, langflow):
    """Issue #18: Langflow can send "\\ud83d" and "\\ude00" as two token events (JSON escapes)."""
    def split_emoji(request):
        session_id = request.body["session_id"]
        return stream_reply(streamed_run(["smile ", "\ud83d", "\ude00", " lone \udc00"], session_id=session_id,
                                         final_text="smile \ud83d\ude00 lone \udc00"))

    langflow.answer(split_emoji)
    turn = chat.ask(db, users["alice"], None, "emoji", client(langflow), max_chars=100)
    list(turn.chunks())
    assert turn.live_outputs() == [("smile 😀 lone \ufffd", 14)]
    assert messages(db, users["alice"], turn.conversation_id)[-1] == ("assistant", "smile 😀 lone \ufffd", "complete")


# -- a flow's provenance, agent steps, tweaks and files (issue #13) -----------------------------------

RECORDINGS = Path(__file__).resolve().parent / "recorded"


def routed(server, *, file_input: bool = False, tweaks=None, versions=None) -> Route:
    """The route a conversation with the replayed flow takes: the flow, its catalog tweaks, a directory."""
    server.api.update(flow_api(file_input=file_input, versions=versions))
    directory = FlowDirectory(lambda key: client(server))
    return Route(client(server), FLOW_ID, directory, tweaks=tweaks or {})


def saved_answer(db, actor, conversation_id):
    with db.begin() as session:
        return store.list_messages(session, actor, conversation_id)[-1]


def test_an_answer_keeps_which_flow_version_and_model_answered_and_its_run(db, users, langflow):
    graph = flow_graph()
    route = routed(langflow, versions=[{"id": "v-7", "version_number": 7, "data": graph}])
    turn = chat.ask(db, users["alice"], None, "hello there", route, max_chars=100)
    list(turn.chunks())
    answer = saved_answer(db, users["alice"], turn.conversation_id)
    assert (answer.flow_name, answer.flow_version, answer.tweaks) == (FLOW_NAME, "v7", None)
    with db.begin() as session:
        conversation = store.get_conversation(session, users["alice"], turn.conversation_id)
    assert (conversation.flow, conversation.last_version) == (FLOW_ID, f"{FLOW_NAME} v7")


def recorded_agent(request):
    """The agent run recorded from Langflow 1.13, replayed for the session the request names."""
    body = (RECORDINGS / "agent_stream.jsonl").read_bytes().replace(b'"s-agent"', f'"{request.body["session_id"]}"'.encode())
    return stream_reply([chunk + b"\n\n" for chunk in body.split(b"\n\n") if chunk.strip()])


def test_an_agents_steps_model_and_run_id_are_saved_with_its_answer(db, users, langflow):
    langflow.answer(recorded_agent)
    turn = chat.ask(db, users["alice"], None, "What is 12*7+3?", routed(langflow), max_chars=100)
    list(turn.chunks())
    answer = saved_answer(db, users["alice"], turn.conversation_id)
    assert answer.steps == [{"name": "evaluate_expression", "input": {"expression": "12*7+3"},
                             "output": '{"result": "87"}', "status": "success", "duration_ms": 0, "error": None}]
    assert (answer.model, answer.run_id) == ("gpt-4o-mini", "cb1c0aeb-ec6b-42df-ac4b-54fa9191a699")


def test_a_stopped_agent_keeps_the_steps_it_took(db, users, langflow):
    langflow.answer(recorded_agent)
    turn = chat.ask(db, users["alice"], None, "What is 12*7+3?", routed(langflow), max_chars=100)
    for _chunk in turn.chunks():
        turn.stop()  # at the first token: the tool had run
    answer = saved_answer(db, users["alice"], turn.conversation_id)
    assert answer.status == "stopped"
    assert [(step["name"], step["status"]) for step in answer.steps] == [("evaluate_expression", "success")]


def test_catalog_tweaks_and_an_admins_tweak_are_sent_and_kept_with_the_answer(db, users, langflow):
    route = routed(langflow, tweaks={CHAT_INPUT: {"sender_name": "Analyst"}})
    turn = chat.ask(db, users["root"], None, "tweak me", route, max_chars=100, tweaks={CHAT_INPUT: {"sender": "User"}})
    list(turn.chunks())
    sent = {CHAT_INPUT: {"sender_name": "Analyst", "sender": "User"}}
    assert langflow.requests[-1].body["tweaks"] == sent
    assert saved_answer(db, users["root"], turn.conversation_id).tweaks == sent


def test_an_attached_file_is_uploaded_sent_to_the_read_file_component_and_kept_on_the_question(db, users, langflow):
    route = routed(langflow, file_input=True)
    document = Attachment("launch-notes.txt", "text/plain", b"The launch code is 4711.")
    turn = chat.ask(db, users["alice"], None, "What is the code?", route, max_chars=100, attachments=(document,))
    with db.begin() as session:  # saved before anything is uploaded: the names, not yet where
        question = store.list_messages(session, users["alice"], turn.conversation_id)[0]
        assert question.files == [{"name": "launch-notes.txt", "size": 24, "type": "text/plain", "path": None}]
    list(turn.chunks())
    assert langflow.requests[-1].body["tweaks"] == {FILE_COMPONENT: {"path": ["user-1/launch-notes.txt"]}}
    with db.begin() as session:
        question = store.list_messages(session, users["alice"], turn.conversation_id)[0]
    assert question.files[0]["path"] == "user-1/launch-notes.txt"

    again = chat.regenerate(db, users["alice"], turn.conversation_id, route)
    list(again.chunks())
    assert langflow.requests[-1].body["tweaks"] == {FILE_COMPONENT: {"path": ["user-1/launch-notes.txt"]}}
    assert len([r for r in langflow.api_requests if r.path == "/api/v2/files"]) == 1  # not uploaded twice


def test_a_failed_upload_keeps_the_question_and_its_file_name_and_says_why(db, users, langflow):
    langflow.api[("POST", "/api/v2/files")] = json_reply({"detail": "Storage is full."}, status=500)
    route = routed(langflow, file_input=True)
    document = Attachment("notes.pdf", "application/pdf", b"%PDF-1.4")
    turn = chat.ask(db, users["alice"], None, "Summarize this", route, max_chars=100, attachments=(document,))
    list(turn.chunks())
    with db.begin() as session:
        question, answer = store.list_messages(session, users["alice"], turn.conversation_id)
    assert (question.content, question.files[0]["name"], question.files[0]["path"]) == (
        "Summarize this", "notes.pdf", None)
    assert (answer.status, answer.error) == ("error", "The flow failed: Storage is full.")
    assert langflow.requests == []  # the flow was not run without its file


@pytest.mark.parametrize(("attachment", "message"), [
    (Attachment("big.pdf", "application/pdf", b"x" * (1024 * 1024 + 1)), "'big.pdf' is 1.0 MB; the limit is 1 MB"),
    (Attachment("run.exe", "application/octet-stream", b"MZ"), "'run.exe' is not a file type this app takes"),
])
def test_a_file_past_the_limits_is_refused_and_nothing_is_saved(db, users, langflow, attachment, message):
    limits = chat.FileLimits(max_mb=1, types=("pdf", "txt"))
    with pytest.raises(InputError, match=message):
        chat.ask(db, users["alice"], None, "Read this", routed(langflow, file_input=True), max_chars=100,
                 attachments=(attachment,), limits=limits)
    with db.begin() as session:
        assert store.list_conversations(session, users["alice"]) == []
