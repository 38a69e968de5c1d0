"""The flow catalog's directory and a question's route, against a local stand-in for Langflow's API."""

from __future__ import annotations

import pytest

from chatbot.config import FlowEntry, load_settings
from chatbot.engine import Attachment
from chatbot.errors import InputError, LangflowNotFound
from chatbot.flows import FlowDirectory, Route, fingerprint, label_of, merged_tweaks, parse_tweaks
from chatbot.langflow import LangflowClient
from tests.replay_server import (
    CHAT_INPUT,
    FILE_COMPONENT,
    FLOW_ID,
    FLOW_NAME,
    ReplayServer,
    flow_api,
    flow_graph,
    json_reply,
)

KEY = "sk-test-9f8e7d6c5b4a"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def langflow():
    with ReplayServer() as server:
        yield server


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def directory(langflow, clock):
    return FlowDirectory(lambda key: client(langflow, key), clock=clock)


def client(server: ReplayServer, key: str = FLOW_ID) -> LangflowClient:
    return LangflowClient(base_url=server.url, flow_id=key, api_key=KEY, timeout=5, connect_timeout=1)


def version(number: int, graph: dict) -> dict:
    return {"id": f"version-{number}", "version_number": number, "data": graph}


def edited(graph: dict) -> dict:
    """The graph with one setting changed, as an edit in Langflow's editor makes it."""
    changed = {**graph, "nodes": [dict(n) for n in graph["nodes"]]}
    changed["nodes"][0] = {"id": CHAT_INPUT, "data": {"type": "ChatInput", "node": {"template": {
        "input_value": {"value": "changed"}}}}}
    return changed


def test_a_flow_is_known_by_its_name_and_inputs(directory):
    info = directory.info(FLOW_ID)
    assert (info.id, info.name, info.version, info.chat_input, info.documents) == (
        FLOW_ID, FLOW_NAME, None, CHAT_INPUT, None)
    assert info.accepts("png") and not info.accepts("pdf")


def test_a_flow_with_a_read_file_component_takes_documents(langflow, directory):
    langflow.api.update(flow_api(file_input=True))
    info = directory.info(FLOW_ID)
    assert info.documents == FILE_COMPONENT and info.accepts("pdf")


def test_the_running_version_is_the_saved_one_whose_graph_it_runs(langflow, directory):
    graph = flow_graph()
    langflow.api.update(flow_api(versions=[version(2, edited(graph)), version(1, graph)]))
    assert directory.info(FLOW_ID).version == "v1"  # v1 activated again after v2


def test_a_flow_edited_since_its_last_version_is_that_version_plus(langflow, directory):
    graph = flow_graph()
    langflow.api.update(flow_api(versions=[version(3, edited(graph))]))
    langflow.api[("GET", f"/api/v1/flows/{FLOW_ID}/versions/version-3")] = json_reply(version(3, edited(graph)))
    assert directory.info(FLOW_ID).version == "v3+"


def test_secrets_langflow_strips_from_versions_do_not_make_a_version_differ():
    graph = flow_graph()
    graph["nodes"][1]["data"]["node"]["template"]["api_key"] = {"value": "sk-real", "password": True}
    stripped = flow_graph()
    stripped["nodes"][1]["data"]["node"]["template"]["api_key"] = {"value": None, "password": True}
    assert fingerprint(graph) == fingerprint(stripped)
    assert fingerprint(graph) != fingerprint(edited(graph))


def test_the_version_is_worked_out_again_only_when_the_flow_changes(langflow, directory):
    graph = flow_graph()
    langflow.api.update(flow_api(versions=[version(1, graph)]))
    directory.info(FLOW_ID)
    langflow.api_requests.clear()
    assert directory.info(FLOW_ID).version == "v1"
    assert [r.path for r in langflow.api_requests] == [f"/api/v1/flows/{FLOW_ID}/version-state"]
    langflow.api.update(flow_api(versions=[version(2, edited(graph)), version(1, graph)], token="token-2"))
    langflow.api[("GET", f"/api/v1/flows/{FLOW_ID}")] = json_reply(
        {"id": FLOW_ID, "name": FLOW_NAME, "data": edited(graph)})
    assert directory.info(FLOW_ID).version == "v2"


def test_an_endpoint_name_is_resolved_to_its_flow(directory):
    assert directory.info("replay-flow").id == FLOW_ID


def test_an_unknown_flow_is_a_problem_with_its_reason_and_the_reason_is_kept_a_while(langflow, directory, clock):
    assert "Langflow has no flow 'no-such-flow'" in directory.problem("no-such-flow")
    with pytest.raises(LangflowNotFound):
        directory.info("no-such-flow")
    asked = len(langflow.api_requests)
    assert directory.problem("no-such-flow") is not None
    assert len(langflow.api_requests) == asked  # the picker does not ask again on every rerun
    clock.now += 60
    directory.problem("no-such-flow")
    assert len(langflow.api_requests) > asked


def test_an_unreachable_langflow_is_a_problem_not_a_crash(clock):
    with ReplayServer() as server:
        url = server.url
    gone = FlowDirectory(lambda key: LangflowClient(base_url=url, flow_id=key, api_key=KEY, timeout=1,
                                                    connect_timeout=0.5), clock=clock)
    assert "Cannot reach Langflow" in gone.problem(FLOW_ID)


def test_a_route_uploads_files_and_sends_each_to_its_component(langflow, directory):
    langflow.api.update(flow_api(file_input=True))
    route = Route(client(langflow), FLOW_ID, directory, tweaks={CHAT_INPUT: {"should_store_message": True}})
    prepared = route.prepare((Attachment("notes.pdf", "application/pdf", b"%PDF-1.4"),
                              Attachment("chart.png", "image/png", b"\x89PNG")))
    assert prepared.tweaks == {
        CHAT_INPUT: {"should_store_message": True, "files": ["user-1/chart.png"]},
        FILE_COMPONENT: {"path": ["user-1/notes.pdf"]},
    }
    assert [(f["name"], f["size"], f["path"]) for f in prepared.files] == [
        ("notes.pdf", 8, "user-1/notes.pdf"), ("chart.png", 4, "user-1/chart.png")]
    assert prepared.info.name == FLOW_NAME


def test_a_document_for_a_flow_without_a_read_file_component_is_refused_before_upload(langflow, directory):
    route = Route(client(langflow), FLOW_ID, directory)
    with pytest.raises(InputError, match="This flow takes images, so 'notes.pdf' was not sent"):
        route.prepare((Attachment("notes.pdf", "application/pdf", b"%PDF"),))
    assert [r for r in langflow.api_requests if r.path == "/api/v2/files"] == []


def test_a_regenerated_answer_sends_the_files_already_in_langflow_again(langflow, directory):
    langflow.api.update(flow_api(file_input=True))
    stored = [{"name": "notes.pdf", "size": 8, "type": "application/pdf", "path": "user-1/notes.pdf"},
              {"name": "lost.pdf", "size": 3, "type": "application/pdf", "path": None}]  # its upload failed
    prepared = Route(client(langflow), FLOW_ID, directory).prepare(files=stored)
    assert prepared.tweaks == {FILE_COMPONENT: {"path": ["user-1/notes.pdf"]}}
    assert [r for r in langflow.api_requests if r.path == "/api/v2/files"] == []


def test_an_admin_tweak_wins_over_the_catalog_field_by_field():
    assert merged_tweaks({"M-1": {"temperature": 0.1, "model": "a"}}, None, {"M-1": {"temperature": 0.9}}) == {
        "M-1": {"temperature": 0.9, "model": "a"}}


@pytest.mark.parametrize(("text", "message"), [
    ("{not json", "not valid JSON"),
    ("[1, 2]", "keyed by component id"),
    ('{"M-1": 0.5}', "keyed by component id"),
])
def test_tweaks_typed_wrong_are_refused_with_what_is_wrong(text, message):
    with pytest.raises(InputError, match=message):
        parse_tweaks(text)


def test_a_flow_shows_as_its_label_else_as_langflows_name_for_it(directory, tmp_path):
    settings = load_settings({"LANGFLOW_URL": "http://lf:7860", "LANGFLOW_FLOWS":
                              f'[{{"flow": "{FLOW_ID}"}}, {{"flow": "other", "label": "Other"}}]'}, {})
    assert label_of(settings, "other") == "Other"
    assert label_of(settings, FLOW_ID, directory.info(FLOW_ID)) == FLOW_NAME
    assert label_of(settings, FLOW_ID) == FLOW_ID
    assert settings.flow_entry(None) == FlowEntry(FLOW_ID, FLOW_ID)
