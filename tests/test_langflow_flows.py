"""Issue #13 on a real Langflow 1.13: agent steps, files, versions, tweaks and starter projects.

Plain HTTP (``requests``), not the app's client: these tests pin what the server does, so
that the client can be built against it. The flows are built in tests/langflow_server.py.
"""

from __future__ import annotations

import json
import uuid

import pytest
import requests

from tests.documents import PNG_1X1, minimal_pdf
from tests.langflow_server import (
    VERSION_ANSWERS,
    LangflowUnavailableError,
    server_or_unavailable,
    versioned_flow,
)

pytestmark = pytest.mark.langflow

SUM = ("evaluate_expression", {"expression": "12*7+3"})
LAUNCH_NOTES = "The launch code is PINEAPPLE-42.\nThe meeting moved to Thursday.\n"


@pytest.fixture
def http(langflow) -> requests.Session:
    """A session that sends the server's API key."""
    session = requests.Session()
    session.headers["x-api-key"] = langflow.api_key
    return session


def run_body(question: str, **body) -> dict:
    """A /run body with a fresh session, so that no test sees another's chat memory."""
    session = str(uuid.uuid4())
    return {
        "input_value": question,
        "input_type": "chat",
        "output_type": "chat",
        "session_id": session,
        **body,
    }


def run(http, server, flow: str, question: str, **body) -> requests.Response:
    return http.post(f"{server.base_url}/api/v1/run/{flow}", json=run_body(question, **body), timeout=120)


def stream(http, server, flow: str, question: str, **body) -> list[dict]:
    """The events of a streamed run: one JSON object per line, blank lines between."""
    url = f"{server.base_url}/api/v1/run/{flow}"
    response = http.post(url, params={"stream": "true"}, json=run_body(question, **body), timeout=120)
    assert response.status_code == 200, response.text
    return [json.loads(line) for line in response.text.split("\n") if line.strip()]


def message_of(answer: dict) -> dict:
    return answer["outputs"][0]["outputs"][0]["results"]["message"]


def tool_uses(message: dict) -> list[dict]:
    return [
        item
        for block in message["content_blocks"]
        for item in block["contents"]
        if item["type"] == "tool_use"
    ]


def upload(http, server, name: str, content: bytes | str, content_type: str = "text/plain") -> dict:
    response = http.post(f"{server.base_url}/api/v2/files", files={"file": (name, content, content_type)})
    assert response.status_code == 201, response.text
    return response.json()


# --------------------------------------------------------------------------- the agent


def test_agent_stream_shows_the_tool_steps_and_the_answer(langflow, model_stub, http):
    model_stub.configure(tool_call=SUM, tool_answer="The calculator says {tool_output}.")

    events = stream(http, langflow, langflow.agent_flow, "What is 12*7+3?")

    logs = {event["data"]["name"]: event["data"]["message"] for event in events if event["event"] == "log"}
    assert logs["Tool Start"]["type"] == "tool_start"
    assert logs["Tool Start"]["input_str"] == "{'expression': '12*7+3'}"
    assert logs["Tool End"]["output"]["content"] == '{"result": "87"}'
    [end] = [event["data"]["result"] for event in events if event["event"] == "end"]
    assert message_of(end)["text"] == 'The calculator says {"result": "87"}.'
    last_message = [event["data"] for event in events if event["event"] == "add_message"][-1]
    [step] = tool_uses(last_message)
    assert (step["name"], step["tool_input"]) == ("evaluate_expression", {"expression": "12*7+3"})
    assert step["output"]["content"] == '{"result": "87"}'
    assert step["header"] == {"title": "Executed **evaluate_expression**", "icon": "Hammer"}


def test_agent_answer_carries_its_steps_model_and_usage(langflow, model_stub, http):
    model_stub.configure(tool_call=SUM, tool_answer="It is 87.")

    response = run(http, langflow, langflow.agent_flow, "What is 12*7+3?")

    assert response.status_code == 200, response.text
    message = message_of(response.json())
    assert message["text"] == "It is 87."
    assert [step["output"]["content"] for step in tool_uses(message)] == ['{"result": "87"}']
    assert message["properties"]["source"]["source"] == "gpt-4o-mini"
    assert message["properties"]["usage"]["output_tokens"] > 0


def test_agent_offers_the_calculator_and_returns_its_result_to_the_model(langflow, model_stub, http):
    model_stub.configure(tool_call=SUM)

    run(http, langflow, langflow.agent_flow, "What is 12*7+3?").raise_for_status()

    first, second = model_stub.requests[-2:]
    assert [tool["function"]["name"] for tool in first["tools"]] == ["evaluate_expression"]
    assert second["messages"][-1]["role"] == "tool"
    assert second["messages"][-1]["content"] == '{"result": "87"}'


def test_agent_without_a_tool_call_answers_directly(langflow, model_stub, http):
    response = run(http, langflow, langflow.agent_flow, "Hello")

    message = message_of(response.json())
    assert message["text"] == "You said: Hello"
    assert tool_uses(message) == []


# --------------------------------------------------------------------------- files


@pytest.mark.parametrize(
    ("name", "content", "content_type", "expected"),
    [
        ("notes.txt", LAUNCH_NOTES, "text/plain", "The launch code is PINEAPPLE-42."),
        ("notes.md", "# Notes\n\nMarkdown says BANANA-7.\n", "text/markdown", "Markdown says BANANA-7."),
        (
            "notes.pdf",
            minimal_pdf(["The PDF code is MANGO-9."]),
            "application/pdf",
            "The PDF code is MANGO-9.",
        ),
    ],
)
def test_file_flow_answers_from_an_uploaded_document(
    langflow, model_stub, http, name, content, content_type, expected
):
    stored = upload(http, langflow, name, content, content_type)
    tweaks = {langflow.file_component: {"path": [stored["path"]]}}

    events = stream(http, langflow, langflow.file_flow, "What is the code?", tweaks=tweaks)

    [end] = [event["data"]["result"] for event in events if event["event"] == "end"]
    assert expected in message_of(end)["text"]
    assert "Question: What is the code?" in message_of(end)["text"]


def test_v2_upload_answers_with_the_stored_path(langflow, http):
    stored = upload(http, langflow, "upload-shape.txt", "hello")

    assert set(stored) == {"id", "name", "path", "size", "provider"}
    assert stored["name"] == "upload-shape"
    assert stored["path"].endswith("/upload-shape.txt")
    assert stored["size"] == 5


def test_file_uploaded_for_the_flow_can_be_read_too(langflow, model_stub, http):
    response = http.post(
        f"{langflow.base_url}/api/v1/files/upload/{langflow.file_flow}",
        files={"file": ("flow-notes.txt", LAUNCH_NOTES, "text/plain")},
    )
    assert response.status_code == 201, response.text
    stored = response.json()
    assert stored["flowId"] == langflow.file_flow
    assert stored["file_path"].startswith(f"{langflow.file_flow}/")

    answer = run(
        http,
        langflow,
        langflow.file_flow,
        "Code?",
        tweaks={langflow.file_component: {"path": [stored["file_path"]]}},
    )

    assert "PINEAPPLE-42" in message_of(answer.json())["text"]


def test_file_flow_without_a_file_fails_with_no_files_to_process(langflow, http):
    response = run(http, langflow, langflow.file_flow, "What is the code?")

    assert response.status_code == 500
    assert json.loads(response.json()["detail"])["message"].endswith("No files to process.")


def test_an_image_reaches_the_model_through_the_chat_input_files_tweak(langflow, model_stub, http):
    response = http.post(
        f"{langflow.base_url}/api/v1/files/upload/{langflow.model_flow}",
        files={"file": ("dot.png", PNG_1X1, "image/png")},
    )
    assert response.status_code == 201, response.text
    chat_input = langflow.component_id(langflow.model_flow, "ChatInput")

    answer = run(
        http,
        langflow,
        langflow.model_flow,
        "What colour?",
        tweaks={chat_input: {"files": [response.json()["file_path"]]}},
    )

    assert message_of(answer.json())["text"] == "You said: What colour? (with 1 image)"
    image = model_stub.requests[-1]["messages"][-1]["content"][1]
    assert image["image_url"]["url"].startswith("data:image/png;base64,")


# --------------------------------------------------------------------------- versions


def test_versioned_flow_lists_its_versions_newest_first(langflow, http):
    response = http.get(f"{langflow.base_url}/api/v1/flows/{langflow.versioned_flow}/versions/")

    assert response.status_code == 200
    listing = response.json()
    assert [(v["version_number"], v["version_tag"], v["description"]) for v in listing["entries"]] == [
        (2, "v2", "prefix"),
        (1, "v1", "echo"),
    ]
    assert listing["max_entries"] == 50
    assert "data" not in listing["entries"][0]


def test_the_current_flow_answers_and_activating_a_version_changes_the_answer(langflow, http):
    builder = langflow.builder()
    flow_id = versioned_flow(builder)  # its own copy: activating changes the flow
    [v2, v1] = builder.versions(flow_id)["entries"]
    before = builder.get_flow(flow_id)

    assert message_of(run(http, langflow, flow_id, "hi").json())["text"] == VERSION_ANSWERS[2].format(
        question="hi"
    )
    activated = builder.activate(flow_id, v1["id"])

    assert message_of(run(http, langflow, flow_id, "hi").json())["text"] == VERSION_ANSWERS[1].format(
        question="hi"
    )
    assert activated["version_token"] != before["version_token"]
    assert activated["updated_at"] >= before["updated_at"]
    newest = builder.versions(flow_id)["entries"][0]
    assert (newest["version_number"], newest["description"]) == (3, "Auto-saved before activating v1")


def test_saving_a_flow_makes_no_version(langflow):
    builder = langflow.builder()
    flow_id = versioned_flow(builder)

    builder.update(flow_id, name="renamed")

    assert len(builder.versions(flow_id)["entries"]) == 2


# --------------------------------------------------------------------------- reading flows


def test_flow_read_gives_its_name_endpoint_name_and_version_token(langflow, http):
    builder = langflow.builder()
    flow_id = builder.save(builder.flow("readable", [], []))
    builder.update(flow_id, endpoint_name=f"readable-{flow_id[:8]}")

    flow = http.get(f"{langflow.base_url}/api/v1/flows/{flow_id}").json()

    assert (flow["id"], flow["name"], flow["endpoint_name"]) == (
        flow_id,
        "readable",
        f"readable-{flow_id[:8]}",
    )
    assert {"updated_at", "version_token", "description", "data", "folder_id", "user_id"} <= set(flow)


def test_flow_read_refuses_an_unknown_id_and_an_endpoint_name(langflow, http):
    unknown = http.get(f"{langflow.base_url}/api/v1/flows/{uuid.uuid4()}")
    by_name = http.get(f"{langflow.base_url}/api/v1/flows/versioned-bot")

    assert (unknown.status_code, unknown.json()) == (404, {"detail": "Flow not found"})
    assert by_name.status_code == 422
    assert by_name.json()["detail"][0]["type"] == "uuid_parsing"


def test_an_endpoint_name_resolves_through_the_flow_list(langflow, http):
    builder = langflow.builder()
    flow_id = builder.save(builder.flow("named", [], []))
    builder.update(flow_id, endpoint_name=f"named-{flow_id[:8]}")

    flows = http.get(f"{langflow.base_url}/api/v1/flows/", params={"header_flows": "true"}).json()

    assert [f["id"] for f in flows if f["endpoint_name"] == f"named-{flow_id[:8]}"] == [flow_id]


# --------------------------------------------------------------------------- tweaks


def test_a_tweak_on_code_is_refused(langflow, http):
    chat_input = langflow.component_id(langflow.echo_flow, "ChatInput")

    response = run(http, langflow, langflow.echo_flow, "hi", tweaks={chat_input: {"code": "x = 1"}})

    assert response.status_code == 422
    assert response.json() == {
        "detail": {
            "error": "Refused tweaks",
            "code": "TWEAKS_REFUSED",
            "message": "The field is protected and keeps the value set by the flow author.",
            "fields": ["code"],
        }
    }


def test_a_streamed_run_refuses_a_tweak_on_code_with_an_error_event(langflow, http):
    chat_input = langflow.component_id(langflow.echo_flow, "ChatInput")

    events = stream(http, langflow, langflow.echo_flow, "hi", tweaks={chat_input: {"code": "x = 1"}})

    assert events == [
        {
            "event": "error",
            "data": {
                "error": "Refused tweak keys ['code']: "
                "The field is protected and keeps the value set by the flow author."
            },
        }
    ]


def test_a_tweak_for_a_component_not_in_the_flow_is_ignored(langflow, http):
    response = run(
        http, langflow, langflow.echo_flow, "hi", tweaks={"NoSuchComponent-abc12": {"input_value": "x"}}
    )

    assert response.status_code == 200
    assert message_of(response.json())["text"] == "hi"


# --------------------------------------------------------------------------- starter projects


@pytest.mark.parametrize("name", ["Basic Prompting", "Memory Chatbot", "Simple Agent"])
def test_starter_project_runs_offline_against_the_stub(langflow, model_stub, http, name):
    flow_id = langflow.starter_flow(name)

    response = run(http, langflow, flow_id, "Hello there")

    assert response.status_code == 200, response.text
    assert message_of(response.json())["text"] == "You said: Hello there"
    assert model_stub.requests[-1]["model"] == "gpt-4o-mini"


def test_the_document_qa_starter_answers_from_a_knowledge_base(langflow, model_stub, http):
    name = langflow.builder().knowledge_base(f"launch_{uuid.uuid4().hex[:8]}", {"launch.txt": LAUNCH_NOTES})
    flow_id = langflow.starter_flow("Document Q&A", {"Knowledge": {"knowledge_base": name}})

    response = run(http, langflow, flow_id, "What is the launch code?")

    assert response.status_code == 200, response.text
    answer = message_of(response.json())["text"]
    assert "The launch code is PINEAPPLE-42." in answer  # the retrieved chunk, in the prompt the stub echoes
    assert model_stub.embedding_requests  # the question was embedded to search the knowledge base


# --------------------------------------------------------------------------- the fixture


def test_the_langflow_fixture_fails_in_ci_when_langflow_cannot_start(monkeypatch, tmp_path):
    def cannot_start(workdir, stub):
        raise LangflowUnavailableError("no Langflow here")

    monkeypatch.setattr("tests.langflow_server.launch", cannot_start)
    monkeypatch.setattr("tests.conftest.IN_CI", True)

    with pytest.raises(pytest.fail.Exception, match="CI=true"):
        server_or_unavailable(tmp_path, stub=None)
