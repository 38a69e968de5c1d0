"""Record what a real Langflow 1.13 answers, into tests/recorded/, for the client's replay tests.

``python -m tests.record_langflow [--out tests/recorded]`` starts a private Langflow with the
test flows (tests/langflow_server.py) and the OpenAI stub, runs the agent and file flows
(streamed and not), and saves the answers of the flow, version and upload routes as they
came: nothing is edited, ids and timestamps included. Takes a minute or two (the start).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import uuid
from pathlib import Path

import requests

from tests.documents import PNG_1X1
from tests.langflow_server import LangflowServer, launch
from tests.openai_stub import OpenAIStub

log = logging.getLogger(__name__)

OUT = Path(__file__).resolve().parent / "recorded"
AGENT_QUESTION = "What is 12*7+3?"
AGENT_TOOL_CALL = ("evaluate_expression", {"expression": "12*7+3"})
AGENT_TOOL_ANSWER = "The calculator says {tool_output}."
FILE_QUESTION = "What is the launch code?"
FILE_NAME = "launch-notes.txt"
FILE_TEXT = "The launch code is PINEAPPLE-42.\nThe meeting moved to Thursday.\n"
ENDPOINT_NAME = "versioned-bot"


def record(server: LangflowServer, stub: OpenAIStub, out: Path) -> list[Path]:
    """Run the flows and save the answers; returns the files written."""
    http = requests.Session()
    http.headers["x-api-key"] = server.api_key
    base = server.base_url
    written: list[Path] = []

    def save(name: str, content: str | bytes) -> None:
        path = out / name
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
        written.append(path)

    def run(flow: str, question: str, session_id: str, *, stream: bool = False, **body) -> requests.Response:
        payload = {
            "input_value": question,
            "input_type": "chat",
            "output_type": "chat",
            "session_id": session_id,
        }
        params = {"stream": "true"} if stream else None
        return http.post(f"{base}/api/v1/run/{flow}", params=params, json={**payload, **body}, timeout=120)

    stub.reset()
    stub.configure(tool_call=AGENT_TOOL_CALL, tool_answer=AGENT_TOOL_ANSWER)
    save("agent_stream.jsonl", _ok(run(server.agent_flow, AGENT_QUESTION, "s-agent", stream=True)).content)
    save("agent_run.json", _pretty(_ok(run(server.agent_flow, AGENT_QUESTION, "s-agent-2"))))

    stub.reset()  # three agents in a chain; the stub calls no tool: only their chains' logs come first
    multi_agent = server.starter_flow("Multi Agent Flow")
    save("multi_agent_stream.jsonl", _ok(run(multi_agent, "Plan a trip", "s-multi", stream=True)).content)

    stub.reset()
    upload = _ok(http.post(f"{base}/api/v2/files", files={"file": (FILE_NAME, FILE_TEXT, "text/plain")}))
    tweaks = {server.file_component: {"path": [upload.json()["path"]]}}
    save(
        "file_stream.jsonl",
        _ok(run(server.file_flow, FILE_QUESTION, "s-file", stream=True, tweaks=tweaks)).content,
    )
    save("file_run.json", _pretty(_ok(run(server.file_flow, FILE_QUESTION, "s-file-2", tweaks=tweaks))))
    image = http.post(
        f"{base}/api/v1/files/upload/{server.file_flow}", files={"file": ("dot.png", PNG_1X1, "image/png")}
    )

    flow_id = server.versioned_flow
    _ok(http.patch(f"{base}/api/v1/flows/{flow_id}", json={"endpoint_name": ENDPOINT_NAME}))
    save("flow.json", _pretty(_ok(http.get(f"{base}/api/v1/flows/{flow_id}"))))
    save("flow_versions.json", _pretty(_ok(http.get(f"{base}/api/v1/flows/{flow_id}/versions/"))))

    refused = {server.file_component: {"code": "print('not allowed')"}}
    streamed_refusal = run(server.file_flow, FILE_QUESTION, "s-refused-2", stream=True, tweaks=refused)
    answers = {
        "POST /api/v2/files": _answer(upload),
        "POST /api/v1/files/upload/{flow_id} (image)": _answer(image),
        "GET /api/v1/flows/{id}/version-state": _answer(
            http.get(f"{base}/api/v1/flows/{flow_id}/version-state")
        ),
        "GET /api/v1/flows/{unknown id}": _answer(http.get(f"{base}/api/v1/flows/{uuid.uuid4()}")),
        "GET /api/v1/flows/{endpoint name}": _answer(http.get(f"{base}/api/v1/flows/{ENDPOINT_NAME}")),
        "GET /api/v1/flows/?header_flows=true": _answer(
            http.get(f"{base}/api/v1/flows/", params={"header_flows": "true"})
        ),
        "POST /api/v1/run (tweak on code)": _answer(
            run(server.file_flow, FILE_QUESTION, "s-refused", tweaks=refused)
        ),
        "POST /api/v1/run?stream=true (tweak on code)": {
            "status": streamed_refusal.status_code,
            "body": streamed_refusal.text,
        },
        "POST /api/v1/run (file flow without a file)": _answer(
            run(server.file_flow, FILE_QUESTION, "s-no-file")
        ),
    }
    save("langflow_answers.json", json.dumps(answers, indent=1, ensure_ascii=False) + "\n")
    return written


def _answer(response: requests.Response) -> dict:
    return {"status": response.status_code, "body": response.json()}


def _ok(response: requests.Response) -> requests.Response:
    if not response.ok:
        raise RuntimeError(
            f"{response.request.method} {response.url} -> {response.status_code}: {response.text[:500]}"
        )
    return response


def _pretty(response: requests.Response) -> str:
    return json.dumps(response.json(), indent=1, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.record_langflow")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    with OpenAIStub() as stub, tempfile.TemporaryDirectory(prefix="record-langflow-") as workdir:
        server = launch(Path(workdir), stub)
        try:
            for path in record(server, stub, args.out):
                sys.stdout.write(f"{path} ({path.stat().st_size} bytes)\n")
        finally:
            server.stop()
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    sys.exit(main())
