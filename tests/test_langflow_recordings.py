"""The answers recorded from a real Langflow 1.13 (tests/record_langflow.py) hold what replay tests use.

No server needed: these read tests/recorded/. If a re-recording changes a shape, the failure
names it here before a replay test of the client fails in a less obvious way.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.record_langflow import AGENT_QUESTION, ENDPOINT_NAME, FILE_TEXT

RECORDED = Path(__file__).resolve().parent / "recorded"
AGENT_ANSWER = 'The calculator says {"result": "87"}.'


def stream_events(name: str) -> list[dict]:
    """A recorded stream as its events (each a JSON line, a blank line after it)."""
    return [json.loads(chunk) for chunk in (RECORDED / name).read_text().split("\n\n") if chunk.strip()]


def recorded(name: str):
    return json.loads((RECORDED / name).read_text())


def chat_message(answer: dict) -> dict:
    return answer["outputs"][0]["outputs"][0]["results"]["message"]


@pytest.mark.parametrize("name", ["agent_stream.jsonl", "file_stream.jsonl"])
def test_a_recorded_stream_ends_with_end_and_has_no_error(name):
    events = stream_events(name)

    assert events[-1]["event"] == "end"
    assert "error" not in {event["event"] for event in events}
    # The question's message comes early, but not always first: a Read File may log before it.
    assert [e["data"]["sender"] for e in events if e["event"] == "add_message"][0] == "User"


def test_the_agent_stream_has_its_tool_steps_in_logs_and_content_blocks():
    events = stream_events("agent_stream.jsonl")

    logs = [event["data"] for event in events if event["event"] == "log"]
    tool_logs = {log["name"]: log["message"] for log in logs if log["name"].startswith("Tool")}
    assert set(tool_logs) == {"Tool Start", "Tool End"}
    assert tool_logs["Tool Start"]["input_str"] == "{'expression': '12*7+3'}"
    assert tool_logs["Tool End"]["output"]["content"] == '{"result": "87"}'
    final = [event["data"] for event in events if event["event"] == "add_message"][-1]
    [steps] = final["content_blocks"]
    assert steps["title"] == "Agent Steps"
    tool_use = steps["contents"][0]
    assert (tool_use["type"], tool_use["name"], tool_use["tool_input"]) == (
        "tool_use",
        "evaluate_expression",
        {"expression": "12*7+3"},
    )
    assert isinstance(tool_use["duration"], int)  # milliseconds
    assert final["text"] == AGENT_ANSWER
    source = final["properties"]["source"]
    assert (source["id"].startswith("Agent-"), source["display_name"], source["source"]) == (
        True,
        "Agent",
        "gpt-4o-mini",
    )


def test_the_agent_stream_tokens_belong_to_the_answer_message():
    events = stream_events("agent_stream.jsonl")

    tokens = [event["data"] for event in events if event["event"] == "token"]
    answer = chat_message(events[-1]["data"]["result"])
    assert "".join(token["chunk"] for token in tokens) == AGENT_ANSWER
    assert {token["id"] for token in tokens} == {answer["data"]["id"]}  # results.message has no top-level id


def test_the_agent_run_answer_has_the_question_and_the_steps():
    answer = recorded("agent_run.json")

    assert answer["outputs"][0]["inputs"] == {"input_value": AGENT_QUESTION}
    message = chat_message(answer)
    assert message["text"] == AGENT_ANSWER
    assert message["session_metadata"]["graph_run_id"] == message["run_id"]
    assert [item["type"] for item in message["content_blocks"][0]["contents"]][0] == "tool_use"


def test_the_file_answers_quote_the_uploaded_file():
    for answer in (stream_events("file_stream.jsonl")[-1]["data"]["result"], recorded("file_run.json")):
        assert FILE_TEXT.splitlines()[0] in chat_message(answer)["text"]


def test_the_flow_read_and_its_versions():
    flow, versions = recorded("flow.json"), recorded("flow_versions.json")

    assert (flow["name"], flow["endpoint_name"]) == ("versioned", ENDPOINT_NAME)
    assert [entry["version_number"] for entry in versions["entries"]] == [2, 1]
    assert {entry["flow_id"] for entry in versions["entries"]} == {flow["id"]}


def test_the_recorded_answers_of_the_other_routes():
    answers = recorded("langflow_answers.json")

    assert answers["POST /api/v2/files"]["status"] == 201
    assert set(answers["POST /api/v2/files"]["body"]) == {"id", "name", "path", "size", "provider"}
    assert set(answers["POST /api/v1/files/upload/{flow_id} (image)"]["body"]) == {"flowId", "file_path"}
    assert answers["GET /api/v1/flows/{unknown id}"] == {"status": 404, "body": {"detail": "Flow not found"}}
    assert answers["GET /api/v1/flows/{endpoint name}"]["status"] == 422
    assert answers["POST /api/v1/run (tweak on code)"]["body"]["detail"]["code"] == "TWEAKS_REFUSED"
    assert answers["POST /api/v1/run?stream=true (tweak on code)"]["status"] == 200
    no_file = answers["POST /api/v1/run (file flow without a file)"]
    assert no_file["status"] == 500
    assert json.loads(no_file["body"]["detail"])["message"].endswith("No files to process.")
