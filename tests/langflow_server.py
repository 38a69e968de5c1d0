"""Pytest plugin and command line: a real Langflow 1.13 server with offline flows built at run time.

As a plugin (``pytest_plugins = ["tests.langflow_server"]``) it provides the session fixture
``langflow`` (a running server with the ``echo``, ``model``, ``failing``, ``two_outputs``,
``agent``, ``file`` and ``versioned`` flows, plus the OpenAI stub the model flows call) and
``langflow_disposable`` (a private server a test may kill). ``starter_flow`` saves one of
Langflow's own starter projects, pointed at the stub. As a command
(``python -m tests.langflow_server build-flows --url ... --key ...``) it creates the echo and
notes flows on any running Langflow; ``scripts/dev-langflow.sh`` uses that.

The flows are built from the running server's own component templates (``GET /api/v1/all``),
so they stay valid for the installed version instead of going stale as exported JSON.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from tests.conftest import unavailable
from tests.openai_stub import OpenAIStub

log = logging.getLogger(__name__)

LANGFLOW_VERSION = "1.13.0"
REPO = Path(__file__).resolve().parents[1]
INSTALL_SCRIPT = REPO / "scripts" / "install-langflow.sh"
DEFAULT_VENV = Path.home() / ".cache" / "chatbot-test" / f"langflow-{LANGFLOW_VERSION}"
# Seconds to wait for a start: 80-160 s measured on 2 cores shared with other jobs (load 6-14),
# most of it imports and building the component catalog ("Types cached in 30 s").
START_TIMEOUT = float(os.environ.get("LANGFLOW_START_TIMEOUT", "240"))
INSTALL_TIMEOUT = 1800.0
STOP_TIMEOUT = 20.0
LITELLM_TOKENIZERS = "litellm/litellm_core_utils/tokenizers"  # holds tiktoken's cl100k_base file

FAILING_MESSAGE = "the failing test component broke on purpose"
FAILING_CODE = f'''
from lfx.custom.custom_component.component import Component
from lfx.io import MessageTextInput, Output
from lfx.schema.message import Message


class FailingComponent(Component):
    display_name = "Failing Component"
    description = "Raises an error, for tests of how a failed run is reported."
    name = "FailingComponent"

    inputs = [MessageTextInput(name="input_value", display_name="Input")]
    outputs = [Output(display_name="Message", name="message", method="fail")]

    def fail(self) -> Message:
        raise RuntimeError("{FAILING_MESSAGE}")
'''

DEFAULT_OPENAI_BASE = "https://api.openai.com/v1"
NOTES_PROMPT = (
    "Answer the question using only the notes below. If the notes do not contain the "
    "answer, say so.\n\nNotes:\n{notes}\n\nQuestion: {question}"
)


class LangflowUnavailableError(RuntimeError):
    """Langflow could not be installed or started here; the message says why."""


# --------------------------------------------------------------------------- the server


@dataclass
class LangflowServer:
    """A Langflow process we started, its settings, and the ids of the flows built on it."""

    base_url: str
    api_key: str
    process: subprocess.Popen
    workdir: Path
    stub: OpenAIStub | None = None
    flows: dict[str, str] = field(default_factory=dict)

    @property
    def echo_flow(self) -> str:
        return self.flows["echo"]

    @property
    def model_flow(self) -> str:
        return self.flows["model"]

    @property
    def failing_flow(self) -> str:
        return self.flows["failing"]

    @property
    def two_output_flow(self) -> str:
        return self.flows["two_outputs"]

    @property
    def agent_flow(self) -> str:
        """Chat Input -> Agent (OpenAI via the stub, the Calculator as its tool) -> Chat Output."""
        return self.flows["agent"]

    @property
    def file_flow(self) -> str:
        """Read File + Chat Input -> Prompt -> OpenAI -> Chat Output; give it a file by a tweak on
        ``file_component``: ``{"<file_component>": {"path": ["<path from POST /api/v2/files>"]}}``."""
        return self.flows["file"]

    @property
    def file_component(self) -> str:
        """The id of the file flow's Read File component, the key of its ``path`` tweak."""
        return self.component_id(self.file_flow, "File")

    @property
    def versioned_flow(self) -> str:
        """A flow with two saved versions (see ``VERSION_ANSWERS``); the current one is version 2."""
        return self.flows["versioned"]

    def builder(self) -> FlowBuilder:
        return FlowBuilder(self.base_url, self.api_key)

    def component_id(self, flow_id: str, component: str) -> str:
        """The id of the first node of a component type (``File``, ``Agent``, ...) in a saved flow."""
        flow = self.builder().get_flow(flow_id)
        return next(node["id"] for node in flow["data"]["nodes"] if node["data"].get("type") == component)

    def starter_flow(self, name: str, values: dict[str, dict] | None = None) -> str:
        """Save Langflow's starter project ``name`` (e.g. "Memory Chatbot"), pointed at the stub; its id.
        ``values`` sets fields by component type (see ``starter_flow``)."""
        builder = self.builder()
        return builder.save(starter_flow(builder, name, self.stub.url, values=values))

    @property
    def log_path(self) -> Path:
        return self.workdir / "langflow.log"

    def log_tail(self, lines: int = 60) -> str:
        """The end of the server's output, for error messages."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def kill(self) -> None:
        """Stop the server abruptly (SIGKILL to its process group), as a crash would."""
        _signal_group(self.process, signal.SIGKILL)
        self.process.wait(STOP_TIMEOUT)

    def stop(self) -> None:
        """Stop the server and its workers: SIGTERM to the group, SIGKILL if it lingers."""
        if self.process.poll() is None:
            _signal_group(self.process, signal.SIGTERM)
            try:
                self.process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.kill()
        _signal_group(self.process, signal.SIGKILL)  # stray workers of a dead master


def _signal_group(process: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(process.pid, sig)  # started with start_new_session: pgid == pid
    except ProcessLookupError:
        pass


def langflow_venv() -> Path:
    return Path(os.environ.get("LANGFLOW_VENV") or DEFAULT_VENV)


def ensure_langflow() -> Path:
    """The ``langflow`` executable, installed by ``scripts/install-langflow.sh`` if missing."""
    executable = langflow_venv() / "bin" / "langflow"
    if executable.exists():
        return executable
    log.warning("Langflow is not installed in %s: installing (several minutes)", executable.parent.parent)
    env = {**os.environ, "LANGFLOW_VENV": str(langflow_venv()), "LANGFLOW_VERSION": LANGFLOW_VERSION}
    try:
        result = subprocess.run(
            ["bash", str(INSTALL_SCRIPT)], env=env, capture_output=True, text=True, timeout=INSTALL_TIMEOUT
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        raise LangflowUnavailableError(f"installing Langflow failed: {error}") from error
    if result.returncode != 0 or not executable.exists():
        tail = "\n".join(result.stderr.splitlines()[-20:])
        raise LangflowUnavailableError(f"installing Langflow into {executable.parent.parent} failed:\n{tail}")
    return executable


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_env(workdir: Path, api_key: str) -> dict[str, str]:
    """The environment of a private, offline, key-protected Langflow keeping its state in workdir."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("LANGFLOW_", "OPENAI_"))}
    env.update(
        LANGFLOW_CONFIG_DIR=str(workdir / "config"),
        LANGFLOW_DATABASE_URL=f"sqlite:///{workdir / 'langflow.db'}",
        LANGFLOW_AUTO_LOGIN="false",
        LANGFLOW_SUPERUSER="admin",
        LANGFLOW_SUPERUSER_PASSWORD=secrets.token_urlsafe(16),  # anything but the default "langflow"
        LANGFLOW_API_KEY_SOURCE="env",
        LANGFLOW_API_KEY=api_key,
        LANGFLOW_DO_NOT_TRACK="true",
        DO_NOT_TRACK="true",
        LANGFLOW_SSRF_ALLOWED_HOSTS="127.0.0.1",  # the OpenAI stub
        LANGFLOW_CREATE_STARTER_PROJECTS="false",  # faster start, and nothing we do not use
        LANGFLOW_WORKERS="1",
        LANGFLOW_PRETTY_LOGS="false",  # rich tracebacks take seconds to render per failed run
        LITELLM_LOCAL_MODEL_COST_MAP="true",  # offline: skip three failing fetches at start
    )
    # Knowledge-base ingest counts tokens with tiktoken, which downloads cl100k_base on first
    # use; litellm (a Langflow dependency) ships that file under its cache name.
    for tokenizers in langflow_venv().glob(f"lib/python3*/site-packages/{LITELLM_TOKENIZERS}"):
        env["TIKTOKEN_CACHE_DIR"] = str(tokenizers)
    return env


def start_langflow(workdir: Path, *, api_key: str, port: int | None = None) -> LangflowServer:
    """Start ``langflow run --backend-only`` on 127.0.0.1 and wait until it is healthy."""
    executable = ensure_langflow()
    port = port or free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    command = [str(executable), "run", "--host", "127.0.0.1", "--port", str(port), "--backend-only"]
    with (workdir / "langflow.log").open("wb") as output:
        process = subprocess.Popen(
            command,
            env=server_env(workdir, api_key),
            cwd=workdir,
            stdout=output,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own process group, so that stop() reaches the workers
        )
    server = LangflowServer(f"http://127.0.0.1:{port}", api_key, process, workdir)
    try:
        wait_until_healthy(server, port, START_TIMEOUT)
    except BaseException:
        server.stop()
        raise
    return server


def wait_until_healthy(server: LangflowServer, port: int, timeout: float) -> None:
    """Wait for Langflow's banner naming our port and a healthy ``/health_check``.

    Langflow silently moves to the next port when its own is taken, so a healthy answer on
    our port alone could come from someone else: the banner must name the port too.
    """
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if server.process.poll() is not None:
            raise LangflowUnavailableError(
                f"Langflow exited with {server.process.returncode}:\n{server.log_tail()}"
            )
        announced = announced_ports(server)
        if announced - {port}:
            raise LangflowUnavailableError(
                f"Langflow bound port {sorted(announced)} instead of {port} (taken?)"
            )
        if port in announced and _healthy(server.base_url):
            log.info("Langflow ready on %s after %.1f s", server.base_url, time.monotonic() - started)
            return
        time.sleep(0.5)
    raise LangflowUnavailableError(f"Langflow not healthy after {timeout:.0f} s:\n{server.log_tail()}")


# The start banner: "Open Langflow → http://localhost:7860" (and uvicorn/gunicorn lines, if shown).
_ANNOUNCED_PORT = re.compile(
    r"(?:Listening at|Uvicorn running on|Open Langflow).*?https?://[\w.\[\]:-]+?:(\d+)"
)


def announced_ports(server: LangflowServer) -> set[int]:
    try:
        text = server.log_path.read_text(errors="replace")
    except OSError:
        return set()
    return {int(found) for found in _ANNOUNCED_PORT.findall(text)}


def _healthy(base_url: str) -> bool:
    try:
        response = requests.get(f"{base_url}/health_check", timeout=2)
        return response.status_code == 200 and response.json().get("status") == "ok"
    except (requests.RequestException, ValueError):
        return False


# --------------------------------------------------------------------------- the flows


class FlowBuilder:
    """Builds flow JSON from a running server's component templates, and saves it there."""

    def __init__(self, base_url: str, api_key: str, *, http: requests.Session | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.http = http or requests.Session()
        self.http.headers["x-api-key"] = api_key
        self._templates: dict[str, dict] | None = None

    def templates(self) -> dict[str, dict]:
        """Component templates by catalog key and by component name (``OpenAIModel``, ...)."""
        if self._templates is None:
            catalog = self._request("GET", "/api/v1/all")
            self._templates = {}
            for key, template in _catalog_entries(catalog):
                self._templates[key] = template
                self._templates.setdefault(template.get("name") or key, template)
        return self._templates

    def node(self, component: str, values: dict | None = None, *, template: dict | None = None) -> dict:
        """A flow node for a component, with some field values set."""
        frontend_node = json.loads(json.dumps(template or self.templates()[component]))
        for name, value in (values or {}).items():
            frontend_node["template"][name]["value"] = value
        kind = frontend_node.get("name") or component
        node_id = f"{kind.replace(' ', '')}-{secrets.token_hex(3)}"
        return {
            "id": node_id,
            "type": "genericNode",
            "position": {"x": 0, "y": 0},
            "data": {"id": node_id, "type": kind, "node": frontend_node},
        }

    def tool_node(self, component: str, values: dict | None = None) -> dict:
        """A node in tool mode (output ``component_as_tool``), as the editor's Tool Mode switch makes it:
        the server rebuilds the template with the tool's actions (``tools_metadata``)."""
        template = self.templates()[component]
        body = {
            "code": template["template"]["code"]["value"],
            "template": template["template"],
            "field": "tool_mode",
            "field_value": True,
            "tool_mode": True,
        }
        built = self._request("POST", "/api/v1/custom_component/update", json=body)
        built.setdefault("name", template.get("name") or component)
        return self.node(component, values, template=built)

    def custom_node(self, code: str) -> dict:
        """A node for a custom component: the server compiles the code into a template."""
        built = self._request("POST", "/api/v1/custom_component", json={"code": code})
        return self.node(built["type"], template=built["data"])

    def prompt_node(self, template_text: str) -> dict:
        """A Prompt node whose ``{variables}`` are inputs, as the editor would add them."""
        node = self.node("Prompt Template", {"template": template_text})
        variables = re.findall(r"{(\w+)}", template_text)
        fields = node["data"]["node"]["template"]
        for name in variables:
            fields[name] = _prompt_variable_field(name)
        node["data"]["node"]["custom_fields"] = {"template": variables}
        return node

    def flow(self, name: str, nodes: list[dict], edges: list[dict]) -> dict:
        return {
            "id": str(uuid.uuid4()),
            "name": name,
            "description": f"Built by tests/langflow_server.py for Langflow {LANGFLOW_VERSION}",
            "data": {"nodes": nodes, "edges": edges, "viewport": {"x": 0, "y": 0, "zoom": 1}},
        }

    def save(self, flow: dict, *, upsert: bool = False) -> str:
        """Create the flow (``POST /api/v1/flows/``) or create-or-replace it by id (PUT)."""
        if upsert:
            saved = self._request("PUT", f"/api/v1/flows/{flow['id']}", json=flow)
        else:
            saved = self._request("POST", "/api/v1/flows/", json=flow)
        return saved["id"]

    def get_flow(self, flow_id: str) -> dict:
        return self._request("GET", f"/api/v1/flows/{flow_id}")

    def update(self, flow_id: str, **fields) -> dict:
        """Change a saved flow (``PATCH /api/v1/flows/{id}``): ``data``, ``name``, ``endpoint_name``, ..."""
        return self._request("PATCH", f"/api/v1/flows/{flow_id}", json=fields)

    def snapshot(self, flow_id: str, description: str) -> dict:
        """Save the flow as it is now as a new version (``POST /api/v1/flows/{id}/versions/``)."""
        return self._request("POST", f"/api/v1/flows/{flow_id}/versions/", json={"description": description})

    def versions(self, flow_id: str) -> dict:
        """``{"entries": [...newest first], "max_entries": 50}`` from ``GET /api/v1/flows/{id}/versions/``."""
        return self._request("GET", f"/api/v1/flows/{flow_id}/versions/")

    def activate(self, flow_id: str, version_id: str, *, save_draft: bool = True) -> dict:
        """Make a saved version the current flow; with ``save_draft`` the replaced one is saved first."""
        params = {"save_draft": str(save_draft).lower()}
        return self._request("POST", f"/api/v1/flows/{flow_id}/versions/{version_id}/activate", params=params)

    def knowledge_base(self, name: str, files: dict[str, str], *, timeout: float = 60.0) -> str:
        """Create a knowledge base embedded with OpenAI (the stub, through ``OPENAI_BASE_URL``),
        ingest ``files`` (name -> text) and wait until it is ready; returns its name.

        Ingest runs as a background job: ``POST .../ingest`` answers ``{"id", "href"}`` at once.
        """
        body = {"name": name, "embedding_provider": "OpenAI", "embedding_model": "text-embedding-3-small"}
        created = self._request("POST", "/api/v1/knowledge_bases/", json=body)
        files_field = [("files", (file_name, text, "text/plain")) for file_name, text in files.items()]
        self._request("POST", f"/api/v1/knowledge_bases/{created['dir_name']}/ingest", files=files_field)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = self._request("GET", f"/api/v1/knowledge_bases/{created['dir_name']}")
            if state["status"] == "ready":
                return created["dir_name"]
            if state["status"] == "failed":
                raise RuntimeError(f"ingesting into {name} failed: {state['failure_reason']}")
            time.sleep(0.3)
        raise RuntimeError(f"knowledge base {name} not ready after {timeout:.0f} s")

    def set_variable(self, name: str, value: str, *, kind: str = "Generic") -> None:
        """Create or change one of the API key owner's global variables (``/api/v1/variables/``)."""
        existing = {v["name"]: v["id"] for v in self._request("GET", "/api/v1/variables/")}
        if name in existing:
            body = {"id": existing[name], "value": value}
            self._request("PATCH", f"/api/v1/variables/{existing[name]}", json=body)
        else:
            body = {"name": name, "value": value, "type": kind, "default_fields": []}
            self._request("POST", "/api/v1/variables/", json=body)

    def _request(self, method: str, path: str, **kwargs) -> dict:
        for _ in range(5):
            response = self.http.request(method, f"{self.base_url}{path}", timeout=60, **kwargs)
            # SQLite busy: e.g. activating a version just after a run answers 503 with Retry-After: 1.
            if response.status_code != 503 or "retry-after" not in response.headers:
                break
            time.sleep(float(response.headers["retry-after"]))
        if not response.ok:
            raise RuntimeError(f"{method} {path} -> {response.status_code}: {response.text[:500]}")
        return response.json()


def _catalog_entries(catalog: dict):
    """(key, template) for every component of ``GET /api/v1/all`` (category -> key -> template).

    Extension components have namespaced keys (``ext:openai:OpenAIModelComponent@official``)
    and carry their component name in the template's ``name``.
    """
    for category, components in catalog.items():
        if category == "component_display_names" or not isinstance(components, dict):
            continue
        for key, template in components.items():
            if isinstance(template, dict) and "template" in template:
                yield key, template


def _prompt_variable_field(name: str) -> dict:
    return {
        "name": name,
        "display_name": name,
        "type": "str",
        "field_type": "str",
        "input_types": ["Message"],
        "value": "",
        "show": True,
        "advanced": False,
        "dynamic": False,
        "multiline": True,
        "required": False,
        "list": False,
        "load_from_db": False,
        "placeholder": "",
        "info": "",
        "title_case": False,
        "fileTypes": [],
        "file_path": "",
    }


def edge(source: dict, output: str, target: dict, field_name: str) -> dict:
    """An edge from ``source``'s output to ``target``'s input field, with both handle forms."""
    out = next(o for o in source["data"]["node"]["outputs"] if o["name"] == output)
    target_field = target["data"]["node"]["template"][field_name]
    source_handle = {
        "dataType": source["data"]["type"],
        "id": source["id"],
        "name": output,
        "output_types": [out.get("selected") or out["types"][0]],
    }
    target_handle = {
        "fieldName": field_name,
        "id": target["id"],
        "inputTypes": target_field.get("input_types"),
        "type": target_field.get("type"),
    }
    return {
        "id": f"reactflow__edge-{source['id']}-{target['id']}-{field_name}",
        "source": source["id"],
        "target": target["id"],
        "sourceHandle": _handle_string(source_handle),
        "targetHandle": _handle_string(target_handle),
        "data": {"sourceHandle": source_handle, "targetHandle": target_handle},
    }


def _handle_string(handle: dict) -> str:
    """The editor's string form of a handle: compact JSON with œ for the quotes."""
    return json.dumps(handle, separators=(",", ":")).replace('"', "œ")


def echo_flow(builder: FlowBuilder) -> dict:
    """Chat Input -> Chat Output: answers with the question."""
    chat_in, chat_out = builder.node("ChatInput"), builder.node("ChatOutput")
    return builder.flow("echo", [chat_in, chat_out], [edge(chat_in, "message", chat_out, "input_value")])


def model_flow(
    builder: FlowBuilder, openai_base: str, *, api_key: str = "sk-stub", model: str = "gpt-4o-mini"
) -> dict:
    """Chat Input + Message History -> OpenAI (streaming) -> Chat Output.

    The session's history goes into the system message, so the model sees earlier turns
    of the same conversation, and only those.
    """
    chat_in, memory, chat_out = builder.node("ChatInput"), builder.node("Memory"), builder.node("ChatOutput")
    llm = openai_node(builder, openai_base, api_key=api_key, model=model)
    edges = [
        edge(chat_in, "message", llm, "input_value"),
        edge(memory, "messages_text", llm, "system_message"),
        edge(llm, "text_output", chat_out, "input_value"),
    ]
    return builder.flow("model", [chat_in, memory, llm, chat_out], edges)


def openai_node(builder: FlowBuilder, openai_base: str, *, api_key: str | None, model: str) -> dict:
    """The OpenAI model component, streaming, without retries.

    ``api_key=None`` uses Langflow's global variable ``OPENAI_API_KEY`` (which Langflow fills
    from its own environment); Langflow refuses to send such a server-side key anywhere but
    api.openai.com, so a custom ``openai_base`` needs a literal key.
    """
    values = {"openai_api_base": openai_base, "model_name": model, "stream": True, "max_retries": 0}
    node = builder.node("OpenAIModel", {**values, "api_key": api_key or "OPENAI_API_KEY"})
    node["data"]["node"]["template"]["api_key"]["load_from_db"] = api_key is None
    return node


FIRST_MODEL, SECOND_MODEL = "stub-first", "stub-second"  # the two models of the two-output flow


def two_output_flow(builder: FlowBuilder, openai_base: str) -> dict:
    """Chat Input -> two OpenAI models (streaming) -> a Chat Output each, named "Summary" and "Details".

    Both outputs stream at once, so their tokens interleave (as in the "Text Sentiment
    Analysis" starter); configure the stub's ``answers`` by model to tell them apart.
    """
    chat_in = builder.node("ChatInput")
    nodes, edges = [chat_in], []
    for model, title in ((FIRST_MODEL, "Summary"), (SECOND_MODEL, "Details")):
        llm = openai_node(builder, openai_base, api_key="sk-stub", model=model)
        chat_out = builder.node("ChatOutput")
        chat_out["data"]["node"]["display_name"] = title
        nodes += [llm, chat_out]
        edges += [edge(chat_in, "message", llm, "input_value"), edge(llm, "text_output", chat_out, "input_value")]
    return builder.flow("two outputs", nodes, edges)


def failing_flow(builder: FlowBuilder) -> dict:
    """Chat Input -> a custom component that raises ``FAILING_MESSAGE`` -> Chat Output."""
    chat_in, chat_out = builder.node("ChatInput"), builder.node("ChatOutput")
    failing = builder.custom_node(FAILING_CODE)
    edges = [
        edge(chat_in, "message", failing, "input_value"),
        edge(failing, "message", chat_out, "input_value"),
    ]
    return builder.flow("failing", [chat_in, failing, chat_out], edges)


def notes_flow(
    builder: FlowBuilder, notes_dir: str, openai_base: str, *, api_key: str | None, model: str
) -> dict:
    """Directory (the notes) -> Parser -> Prompt <- Chat Input; Prompt -> OpenAI -> Chat Output."""
    chat_in, chat_out = builder.node("ChatInput"), builder.node("ChatOutput")
    directory = builder.node("Directory", {"path": notes_dir, "recursive": True})
    parser = builder.node("ParserComponent", {"pattern": "{file_path}:\n{text}\n"})
    prompt = builder.prompt_node(NOTES_PROMPT)
    llm = openai_node(builder, openai_base, api_key=api_key, model=model)
    edges = [
        edge(directory, "dataframe", parser, "input_data"),
        edge(parser, "parsed_text", prompt, "notes"),
        edge(chat_in, "message", prompt, "question"),
        edge(prompt, "prompt", llm, "input_value"),
        edge(llm, "text_output", chat_out, "input_value"),
    ]
    return builder.flow("notes Q&A", [chat_in, directory, parser, prompt, llm, chat_out], edges)


def openai_model_selection(model: str = "gpt-4o-mini") -> list[dict]:
    """The value of a ``model`` field (Agent, Language Model) that selects an OpenAI model."""
    metadata = {
        "api_key_param": "api_key",
        "context_length": 128000,
        "max_tokens_field_name": "max_tokens",
        "model_class": "ChatOpenAI",
        "model_name_param": "model",
    }
    selection = {"name": model, "provider": "OpenAI", "icon": "OpenAI", "category": "OpenAI"}
    return [{**selection, "metadata": metadata}]


def use_openai_base(builder: FlowBuilder, openai_base: str) -> None:
    """Point the Agent and Language Model components (provider OpenAI) at ``openai_base``.

    They have no base URL field: they read the global variable ``OPENAI_BASE_URL``. In a
    container (``/.dockerenv``, or "docker" in /proc/self/cgroup) Langflow rewrites
    ``localhost`` and ``127.0.0.1`` in that URL to the Docker host
    (``lfx.utils.util.transform_localhost_url``; no setting turns this off), so loopback is
    spelled ``127.1``, which the rewrite misses and which still resolves to 127.0.0.1 (and
    passes ``LANGFLOW_SSRF_ALLOWED_HOSTS=127.0.0.1``, which checks the resolved address).
    """
    builder.set_variable("OPENAI_BASE_URL", openai_base.replace("://127.0.0.1:", "://127.1:"))


def use_openai_key(builder: FlowBuilder, api_key: str) -> None:
    """Give the API key owner an ``OPENAI_API_KEY`` credential: knowledge-base ingest and
    retrieval embed with the user's provider key, and have no key field of their own."""
    builder.set_variable("OPENAI_API_KEY", api_key, kind="Credential")


def _literal_api_key(node: dict, api_key: str) -> None:
    field = node["data"]["node"]["template"]["api_key"]
    field["value"], field["load_from_db"] = api_key, False


AGENT_PROMPT = "You are a helpful assistant. Use the calculator for arithmetic."


def agent_flow(builder: FlowBuilder, *, api_key: str = "sk-stub", model: str = "gpt-4o-mini") -> dict:
    """Chat Input -> Agent (OpenAI ``model``, the Calculator connected as its tool) -> Chat Output.

    The Agent reaches the stub through ``OPENAI_BASE_URL`` (see ``use_openai_base``). Make the
    stub call the tool with ``configure(tool_call=("evaluate_expression", {"expression": "12*7+3"}))``.
    The system prompt is short to keep the recorded streams small (its ``log`` events repeat it).
    """
    chat_in, chat_out = builder.node("ChatInput"), builder.node("ChatOutput")
    calculator = builder.tool_node("CalculatorComponent")
    values = {
        "model": openai_model_selection(model),
        "system_prompt": AGENT_PROMPT,
        "add_calculator_tool": False,  # the connected Calculator is the one tool
        "add_current_date_tool": False,
    }
    agent = builder.node("Agent", values)
    _literal_api_key(agent, api_key)
    edges = [
        edge(chat_in, "message", agent, "input_value"),
        edge(calculator, "component_as_tool", agent, "tools"),
        edge(agent, "response", chat_out, "input_value"),
    ]
    return builder.flow("agent", [chat_in, calculator, agent, chat_out], edges)


FILE_PROMPT = "Answer from this document:\n{document}\n\nQuestion: {question}"


def file_flow(builder: FlowBuilder, openai_base: str) -> dict:
    """Read File (``message``) + Chat Input -> Prompt -> OpenAI (streaming) -> Chat Output.

    The stub's default answer echoes the prompt, so the file's text shows in the answer.
    Without a file in the ``path`` tweak the run fails with "No files to process.".
    """
    chat_in, chat_out, read_file = builder.node("ChatInput"), builder.node("ChatOutput"), builder.node("File")
    prompt = builder.prompt_node(FILE_PROMPT)
    llm = openai_node(builder, openai_base, api_key="sk-stub", model="gpt-4o-mini")
    edges = [
        edge(read_file, "message", prompt, "document"),
        edge(chat_in, "message", prompt, "question"),
        edge(prompt, "prompt", llm, "input_value"),
        edge(llm, "text_output", chat_out, "input_value"),
    ]
    return builder.flow("file Q&A", [chat_in, read_file, prompt, llm, chat_out], edges)


# What each saved version of the versioned flow answers to a question; version 2 is current.
VERSION_ANSWERS = {1: "{question}", 2: "Version 2 says: {question}"}


def versioned_flow(builder: FlowBuilder) -> str:
    """Save a flow with two versions that answer differently (``VERSION_ANSWERS``); returns its id.

    Version 1 is the echo flow; version 2 puts the question into a Prompt. Versions are
    explicit snapshots (``POST /api/v1/flows/{id}/versions/``): saving the flow makes none.
    """
    flow = echo_flow(builder)
    flow["name"] = "versioned"
    flow_id = builder.save(flow)
    builder.snapshot(flow_id, "echo")
    chat_in, chat_out = builder.node("ChatInput"), builder.node("ChatOutput")
    prompt = builder.prompt_node(VERSION_ANSWERS[2])
    edges = [edge(chat_in, "message", prompt, "question"), edge(prompt, "prompt", chat_out, "input_value")]
    builder.update(flow_id, data=builder.flow("versioned", [chat_in, prompt, chat_out], edges)["data"])
    builder.snapshot(flow_id, "prefix")
    return flow_id


def starter_projects_dir() -> Path:
    """Langflow's starter projects (``<name>.json``) inside the installed package."""
    found = sorted(langflow_venv().glob("lib/python3*/site-packages/langflow/initial_setup/starter_projects"))
    if not found:
        raise LangflowUnavailableError(f"no starter_projects folder under {langflow_venv()}")
    return found[-1]


def starter_flow(
    builder: FlowBuilder,
    name: str,
    openai_base: str,
    *,
    api_key: str = "sk-stub",
    values: dict[str, dict] | None = None,
) -> dict:
    """Langflow's starter project ``name`` as shipped, with a fresh id, its models on the stub.

    Each Agent / Language Model gets an OpenAI model when it has none selected (a starter
    ships with an empty selection: the editor fills it in) and a literal API key; each
    OpenAI component gets ``openai_base``. Agents and Language Models reach the stub through
    the ``OPENAI_BASE_URL`` variable, which ``build_test_flows`` sets (see ``use_openai_base``).
    ``values`` sets fields by component type, as a user would: e.g. the knowledge base of
    "Document Q&A", ``{"Knowledge": {"knowledge_base": "launch_notes"}}``.
    """
    flow = json.loads((starter_projects_dir() / f"{name}.json").read_text())
    flow["id"] = str(uuid.uuid4())
    for node in flow["data"]["nodes"]:
        fields = node["data"].get("node", {}).get("template", {})
        for field_name, value in (values or {}).get(node["data"].get("type"), {}).items():
            fields[field_name]["value"] = value
        if fields.get("model", {}).get("type") == "model":
            fields["model"]["value"] = fields["model"].get("value") or openai_model_selection()
            _literal_api_key(node, api_key)
        if "openai_api_base" in fields:
            fields["openai_api_base"]["value"] = openai_base
            _literal_api_key(node, api_key)
    return flow


def build_test_flows(builder: FlowBuilder, openai_base: str) -> dict[str, str]:
    """Create the offline flows the integration tests use; returns their ids by name."""
    use_openai_base(builder, openai_base)
    use_openai_key(builder, "sk-stub")
    flows = {
        "echo": echo_flow(builder),
        "model": model_flow(builder, openai_base),
        "failing": failing_flow(builder),
        "two_outputs": two_output_flow(builder, openai_base),
        "agent": agent_flow(builder),
        "file": file_flow(builder, openai_base),
    }
    ids = {name: builder.save(flow) for name, flow in flows.items()}
    ids["versioned"] = versioned_flow(builder)
    return ids


# --------------------------------------------------------------------------- pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "langflow: needs a real Langflow server (slow; the langflow fixture)")


def launch(workdir: Path, stub: OpenAIStub) -> LangflowServer:
    """A server with the test flows, or the reason it cannot be had, as LangflowUnavailableError."""
    server = start_langflow(workdir, api_key=f"sk-test-{secrets.token_hex(16)}")
    server.stub = stub
    try:
        server.flows = build_test_flows(FlowBuilder(server.base_url, server.api_key), stub.url)
    except Exception as error:
        server.stop()
        raise LangflowUnavailableError(
            f"building the test flows failed: {error}\n{server.log_tail()}"
        ) from error
    except BaseException:  # Ctrl-C: still stop the server
        server.stop()
        raise
    return server


def server_or_unavailable(workdir: Path, stub: OpenAIStub) -> LangflowServer:
    """``launch``, or skip the test when Langflow cannot start (fail under CI=true: ``unavailable``)."""
    try:
        return launch(workdir, stub)
    except LangflowUnavailableError as error:
        unavailable(f"Langflow is not available: {error}")


@pytest.fixture(scope="session")
def openai_stub():
    """The OpenAI-compatible stub the model flows call; reset its behaviour in your test."""
    with OpenAIStub() as stub:
        yield stub


@pytest.fixture(scope="session")
def langflow(tmp_path_factory: pytest.TempPathFactory, openai_stub: OpenAIStub):
    """A shared Langflow server: ``base_url``, ``api_key``, ``stub``, the flow ids ``echo_flow``,
    ``model_flow``, ``failing_flow``, ``two_output_flow``, ``agent_flow``, ``file_flow`` (with
    ``file_component``) and ``versioned_flow``, and ``starter_flow(name)``. Do not stop it; use
    ``langflow_disposable`` for that."""
    server = server_or_unavailable(tmp_path_factory.mktemp("langflow"), openai_stub)
    yield server
    server.stop()


@pytest.fixture
def langflow_disposable(tmp_path: Path, openai_stub: OpenAIStub):
    """A private Langflow server for one test, which may kill it (slow: a full start)."""
    server = server_or_unavailable(tmp_path / "langflow", openai_stub)
    yield server
    server.stop()


@pytest.fixture
def model_stub(openai_stub: OpenAIStub):
    """The OpenAI stub behind the model flows, at its default behaviour before and after the test."""
    openai_stub.reset()
    yield openai_stub
    openai_stub.reset()


# --------------------------------------------------------------------------- command line


def stable_flow_id(name: str) -> str:
    """The same id on every run, so that re-running replaces the flow instead of adding one.

    A version-4 UUID: Langflow refuses UUID5 flow ids (reserved for its public execution histories).
    """
    digest = uuid.uuid5(uuid.NAMESPACE_URL, f"chatbot-dev-flow:{name}").bytes
    return str(uuid.UUID(bytes=digest, version=4))


def main(argv: list[str] | None = None) -> int:
    """``build-flows``: create (or replace) the echo and notes flows on a running Langflow."""
    parser = argparse.ArgumentParser(prog="python -m tests.langflow_server")
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser("build-flows", help="create or replace the dev flows; prints name=id lines")
    build.add_argument("--url", required=True, help="Langflow base URL, e.g. http://127.0.0.1:7860")
    build.add_argument("--key", required=True, help="Langflow API key (x-api-key)")
    build.add_argument("--notes-dir", default=str(Path.cwd() / "notes"), help="folder the notes flow reads")
    build.add_argument("--openai-base", default=DEFAULT_OPENAI_BASE)
    build.add_argument("--openai-key", help="literal key; default: Langflow's OPENAI_API_KEY variable")
    build.add_argument("--model", default="gpt-4o-mini")
    args = parser.parse_args(argv)
    builder = FlowBuilder(args.url, args.key)
    flows = {
        "echo": echo_flow(builder),
        "notes": notes_flow(
            builder, args.notes_dir, args.openai_base, api_key=args.openai_key, model=args.model
        ),
    }
    for name, flow in flows.items():
        flow["id"] = stable_flow_id(name)
        sys.stdout.write(f"{name}={builder.save(flow, upsert=True)}\n")
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    sys.exit(main())
