"""LangflowClient against a real Langflow 1.13 server running offline flows (see tests/langflow_server.py)."""

from __future__ import annotations

import time
import uuid

import pytest
import requests

from chatbot.engine import Answer, Token
from chatbot.errors import (
    LangflowAuthError,
    LangflowError,
    LangflowFlowError,
    LangflowNotFound,
    LangflowTimeout,
    LangflowUnreachable,
)
from chatbot.langflow import LangflowClient
from tests.apps import ask, logged_in, saved
from tests.langflow_server import FAILING_MESSAGE

pytestmark = pytest.mark.langflow

QUESTION = "What did we decide about the Q3 budget?"
ANSWER = "We agreed to move two hires to Q4 and keep the travel budget flat."


def client_for(server, flow_id: str, **options) -> LangflowClient:
    options.setdefault("api_key", server.api_key)
    return LangflowClient(base_url=server.base_url, flow_id=flow_id, **options)


def new_session() -> str:
    return str(uuid.uuid4())


def collect(stream) -> tuple[list[str], Answer]:
    """The texts of the Tokens and the final Answer of a stream, checking its shape."""
    items = list(stream)
    *tokens, answer = items
    assert isinstance(answer, Answer)
    assert all(isinstance(token, Token) for token in tokens)
    return [token.text for token in tokens], answer


def consume(client: LangflowClient, call: str) -> None:
    """Ask the flow with ``run``, or read a whole ``stream``."""
    if call == "stream":
        list(client.stream(QUESTION, session_id=new_session()))
    else:
        client.run(QUESTION, session_id=new_session())


def timed_tokens(stream) -> tuple[list[float], float]:
    """When each Token arrived, and when the stream ended, in seconds from the call."""
    started = time.monotonic()
    arrivals = [time.monotonic() - started for item in stream if isinstance(item, Token)]
    return arrivals, time.monotonic() - started


def stored_texts(server, session_id: str) -> list[str]:
    """The messages Langflow keeps as the memory of one session."""
    response = requests.get(
        f"{server.base_url}/api/v1/monitor/messages",
        params={"session_id": session_id},
        headers={"x-api-key": server.api_key},
        timeout=10,
    )
    response.raise_for_status()
    return [message["text"] for message in response.json()]


# --------------------------------------------------------------------------- answers


def test_run_returns_the_echo_flow_answer(langflow):
    answer = client_for(langflow, langflow.echo_flow).run(QUESTION, session_id=new_session())

    assert (answer.text, answer.outputs, answer.steps, answer.model) == (QUESTION, (), (), None)
    assert answer.run_id  # Langflow's run id, kept with the answer


def test_stream_returns_the_echo_flow_answer(langflow):
    tokens, answer = collect(
        client_for(langflow, langflow.echo_flow).stream(QUESTION, session_id=new_session())
    )

    assert answer.text == QUESTION
    assert "".join(tokens) == QUESTION  # the echo flow does not stream: its whole text as one token


def test_run_returns_the_model_answer(langflow, model_stub):
    model_stub.configure(answer=ANSWER)

    answer = client_for(langflow, langflow.model_flow).run(QUESTION, session_id=new_session())

    assert answer.text == ANSWER
    assert model_stub.requests[-1]["messages"][-1] == {"role": "user", "content": QUESTION}


def test_stream_yields_the_model_tokens_then_the_answer(langflow, model_stub):
    model_stub.configure(answer=ANSWER)

    tokens, answer = collect(
        client_for(langflow, langflow.model_flow).stream(QUESTION, session_id=new_session())
    )

    assert answer.text == ANSWER
    assert tokens == ["We", " agreed", " to", " move", " two", " hires", " to", " Q4", " and", " keep", " the",
                      " travel", " budget", " flat."]  # fmt: skip


def test_tokens_arrive_while_the_model_is_still_writing(langflow, model_stub):
    model_stub.configure(answer="one two three four five six seven eight nine ten", token_delay=0.3)

    arrivals, total = timed_tokens(
        client_for(langflow, langflow.model_flow).stream(QUESTION, session_id=new_session())
    )

    assert len(arrivals) == 10
    assert total >= 10 * 0.3
    assert arrivals[0] < 0.4 * total, f"first token at {arrivals[0]:.2f} s of {total:.2f} s: not streamed"


def test_conversations_keep_separate_memory(langflow, model_stub):
    client = client_for(langflow, langflow.model_flow)
    ada, bob = new_session(), new_session()

    client.run("My name is Ada.", session_id=ada)
    client.run("My name is Bob.", session_id=bob)
    client.run("What is my name?", session_id=ada)

    history = model_stub.requests[-1]["messages"][0]  # the model flow passes the history as system message
    assert history["role"] == "system"
    assert "My name is Ada." in history["content"]
    assert "Bob" not in history["content"]
    assert stored_texts(langflow, bob) == ["My name is Bob.", "You said: My name is Bob."]


def test_model_flow_reports_token_usage(langflow, model_stub):
    model_stub.configure(answer="three word answer")
    client = client_for(langflow, langflow.model_flow)

    ran = client.run(QUESTION, session_id=new_session())
    _, streamed = collect(client.stream(QUESTION, session_id=new_session()))

    for usage in (ran.usage, streamed.usage):
        assert usage["output_tokens"] == 3
        assert usage["input_tokens"] > 0
        assert usage["total_tokens"] == usage["input_tokens"] + 3


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize("call", ["run", "stream"])
def test_wrong_api_key_raises_auth_error(langflow, call):
    client = client_for(langflow, langflow.echo_flow, api_key="sk-wrong-key-0000000000")

    with pytest.raises(LangflowAuthError):
        consume(client, call)


@pytest.mark.parametrize("call", ["run", "stream"])
def test_unknown_flow_raises_not_found(langflow, call):
    client = client_for(langflow, str(uuid.uuid4()))

    with pytest.raises(LangflowNotFound):
        consume(client, call)


@pytest.mark.parametrize("call", ["run", "stream"])
def test_failing_component_raises_flow_error_with_its_message(langflow, call):
    with pytest.raises(LangflowFlowError, match=FAILING_MESSAGE):
        consume(client_for(langflow, langflow.failing_flow), call)


@pytest.mark.parametrize("call", ["run", "stream"])
def test_model_cut_off_mid_answer_raises_flow_error(langflow, model_stub, call):
    model_stub.configure(answer=ANSWER, cut_after=3)

    with pytest.raises(LangflowFlowError):
        consume(client_for(langflow, langflow.model_flow), call)


@pytest.mark.parametrize("call", ["run", "stream"])
def test_model_answering_html_raises_flow_error(langflow, model_stub, call):
    model_stub.configure(html=True)

    with pytest.raises(LangflowFlowError):
        consume(client_for(langflow, langflow.model_flow), call)


@pytest.mark.parametrize("call", ["run", "stream"])
def test_slow_answer_raises_timeout(langflow, model_stub, call):
    model_stub.configure(answer="a slow answer", token_delay=2.0)  # 2 s before each word
    client = client_for(langflow, langflow.model_flow, timeout=0.7)

    started = time.monotonic()
    with pytest.raises(LangflowTimeout):
        consume(client, call)
    assert time.monotonic() - started < 6.0  # gave up well before the whole answer


def test_server_stopped_mid_answer_raises_langflow_error(langflow_disposable, model_stub):
    server = langflow_disposable
    model_stub.configure(answer=ANSWER, token_delay=0.3)
    client = client_for(server, server.model_flow)
    stream = client.stream(QUESTION, session_id=new_session())

    first = next(stream)
    server.kill()

    assert isinstance(first, Token)
    with pytest.raises(LangflowError):
        list(stream)
    with pytest.raises(LangflowUnreachable):
        client.run(QUESTION, session_id=new_session())


# -- the chat page against the real server -----------------------------------------------------


def test_the_chat_page_saves_a_streamed_langflow_answer_with_its_metadata(langflow, model_stub, app_db, monkeypatch):
    monkeypatch.setenv("LANGFLOW_URL", langflow.base_url)
    monkeypatch.setenv("LANGFLOW_FLOW_ID", langflow.model_flow)
    monkeypatch.setenv("LANGFLOW_API_KEY", langflow.api_key)
    model_stub.configure(answer="Vacuum reclaims the space held by dead tuples.", token_delay=0.05)
    at = ask(logged_in(), "What does VACUUM do?")
    [question, answer] = saved(app_db)
    assert question.content == "What does VACUUM do?"
    assert (answer.content, answer.status, answer.engine, answer.flow_id) == (
        "Vacuum reclaims the space held by dead tuples.", "complete", "langflow", langflow.model_flow)
    assert 0 < answer.ttft_ms < answer.latency_ms
    assert answer.total_tokens and answer.output_tokens
    assert "Vacuum reclaims the space held by dead tuples." in "\n".join(m.value for m in at.markdown)
