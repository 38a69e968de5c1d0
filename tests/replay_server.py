"""A local stand-in for Langflow's POST /api/v1/run: answers as told and records what it received."""

from __future__ import annotations

import contextlib
import json
import logging
import select
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

log = logging.getLogger(__name__)

FLOW_ID = "3fa85f64-5717-4562-b3fc-2c963f66afa6"
RUN_PREFIX = "/api/v1/run/"
CHAT_OUTPUT = "ChatOutput-k3Xq9"
CHAT_INPUT = "ChatInput-Jm2aP"
EVENT_STREAM = "text/event-stream; charset=utf-8"  # what Langflow (Starlette) sends; the body is not SSE


# -- what the server is told to answer ----------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    """One answer: a whole ``body``, or ``chunks`` sent with chunked transfer encoding (as Langflow does).

    ``cut_after`` / ``hang_after`` count chunks sent first: 0 means before the status line. To cut is
    to close the socket without finishing; to hang is to send nothing more until the client leaves.
    """

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    chunks: tuple[bytes, ...] | None = None
    delay: float = 0.0  # seconds before each chunk
    cut_after: int | None = None
    hang_after: int | None = None


@dataclass(frozen=True)
class Received:
    """A request as the server saw it; ``headers`` keys are lower-case, ``body`` is decoded JSON or None."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: object
    raw: bytes
    at: float  # time.monotonic() on arrival


Responder = Callable[[Received], Reply]


def json_reply(payload: object, *, status: int = 200, headers: dict[str, str] | None = None) -> Reply:
    """A JSON answer, e.g. a run result or FastAPI's ``{"detail": ...}``."""
    body = json.dumps(payload).encode()
    return Reply(status=status, headers={"Content-Type": "application/json", **(headers or {})}, body=body)


def text_reply(text: str, *, status: int = 200, content_type: str = "text/html") -> Reply:
    """A non-JSON answer, e.g. a proxy's HTML error page."""
    return Reply(status=status, headers={"Content-Type": content_type}, body=text.encode())


def stream_reply(
    chunks: Iterable[bytes],
    *,
    delay: float = 0.0,
    cut_after: int | None = None,
    hang_after: int | None = None,
) -> Reply:
    """A streamed answer, one HTTP chunk per item (Langflow writes one event per chunk)."""
    return Reply(
        headers={"Content-Type": EVENT_STREAM},
        chunks=tuple(chunks),
        delay=delay,
        cut_after=cut_after,
        hang_after=hang_after,
    )


def hang() -> Reply:
    """Accept the request and never answer (until the client gives up)."""
    return Reply(hang_after=0)


def cut() -> Reply:
    """Accept the request and close the connection without answering."""
    return Reply(cut_after=0)


# -- Langflow's shapes ---------------------------------------------------------------------------


def message(
    text: str,
    *,
    session_id: str,
    flow_id: str = FLOW_ID,
    sender: str = "Machine",
    state: str = "complete",
    message_id: str | None = None,
    usage: dict | None = None,
    error: bool = False,
) -> dict:
    """A message dict as in ``add_message`` events and ``results.message``."""
    return {
        "timestamp": "2025-11-26 17:38:00 UTC",
        "sender": sender,
        "sender_name": "AI" if sender == "Machine" else "User",
        "session_id": session_id,
        "text": text,
        "files": [],
        "error": error,
        "edit": False,
        "properties": {
            "text_color": "",
            "background_color": "",
            "edited": False,
            "source": {"id": CHAT_OUTPUT if sender == "Machine" else CHAT_INPUT, "display_name": None},
            "icon": "",
            "allow_markdown": False,
            "positive_feedback": None,
            "state": state,
            "targets": [],
            "usage": usage,
        },
        "category": "error" if error else "message",
        "content_blocks": [],
        "id": message_id or str(uuid.uuid4()),
        "flow_id": flow_id,
        "duration": None,
    }


def run_result(
    text: str,
    *,
    session_id: str,
    question: str = "",
    flow_id: str = FLOW_ID,
    usage: dict | None = None,
    message_id: str | None = None,
) -> dict:
    """The non-streaming answer (and a stream's ``end.result``), with every place the text appears."""
    chat = message(text, session_id=session_id, flow_id=flow_id, usage=usage, message_id=message_id)
    component = {
        "results": {"message": {**chat, "text_key": "text", "data": dict(chat), "default_value": ""}},
        "artifacts": {
            "message": text,
            "sender": "Machine",
            "sender_name": "AI",
            "files": [],
            "type": "object",
        },
        "outputs": {"message": {"message": text, "type": "text"}},
        "logs": {"message": []},
        "messages": [
            {
                "message": text,
                "sender": "Machine",
                "sender_name": "AI",
                "session_id": session_id,
                "stream_url": None,
                "component_id": CHAT_OUTPUT,
                "files": [],
                "type": "text",
            }
        ],
        "timedelta": None,
        "duration": None,
        "component_display_name": "Chat Output",
        "component_id": CHAT_OUTPUT,
        "used_frozen_result": False,
    }
    return {
        "session_id": session_id,
        "outputs": [{"inputs": {"input_value": question}, "outputs": [component]}],
    }


def flow_error_detail(reason: str) -> dict:
    """The HTTP 500 body of a failed component: ``detail`` is a JSON-encoded string."""
    inner = {"message": reason, "traceback": "Traceback (most recent call last): ...", "code": None}
    return {"detail": json.dumps(inner)}


def event(kind: str, data: object) -> bytes:
    """One stream event on the wire: a JSON object on one line, then a blank line."""
    return (json.dumps({"event": kind, "data": data}) + "\n\n").encode()


def token_event(chunk: str, message_id: str) -> bytes:
    return event("token", {"chunk": chunk, "id": message_id})


def streamed_run(
    tokens: Iterable[str],
    *,
    session_id: str,
    question: str = "Hello",
    final_text: str | None = None,
    usage: dict | None = None,
    flow_id: str = FLOW_ID,
) -> list[bytes]:
    """A model that streams: the user's message, the AI message (partial), tokens, complete, ``end``."""
    tokens = list(tokens)
    text = "".join(tokens) if final_text is None else final_text
    ai_id = str(uuid.uuid4())
    ai = dict(session_id=session_id, flow_id=flow_id, message_id=ai_id)
    return [
        event("add_message", message(question, sender="User", session_id=session_id, flow_id=flow_id)),
        event("add_message", message("", state="partial", **ai)),
        *(token_event(token, ai_id) for token in tokens),
        event("add_message", message(text, usage=usage, **ai)),
        event(
            "end",
            {
                "result": run_result(
                    text,
                    session_id=session_id,
                    question=question,
                    usage=usage,
                    flow_id=flow_id,
                    message_id=ai_id,
                )
            },
        ),
    ]


def unstreamed_run(
    text: str, *, session_id: str, question: str = "Hello", flow_id: str = FLOW_ID
) -> list[bytes]:
    """A flow whose components do not stream: messages and ``end``, no ``token`` events."""
    streamed = streamed_run([], session_id=session_id, question=question, final_text=text, flow_id=flow_id)
    return [streamed[0], streamed[2], streamed[3]]


def failed_run(
    reason: str, *, session_id: str, question: str = "Hello", flow_id: str = FLOW_ID
) -> list[bytes]:
    """A component that fails: an error message dict, then ``{"error": ...}``, and no ``end``."""
    failure = message(reason, session_id=session_id, flow_id=flow_id, error=True)
    return [
        event("add_message", message(question, sender="User", session_id=session_id, flow_id=flow_id)),
        event("error", failure),
        event("error", {"error": reason}),
    ]


def echo_flow(request: Received, *, tokens: bool = False) -> Reply:
    """Chat Input -> Chat Output: the question comes back; with ``tokens``, streamed word by word."""
    body = request.body if isinstance(request.body, dict) else {}
    question = str(body.get("input_value", ""))
    session_id = str(body.get("session_id") or FLOW_ID)
    if request.query.get("stream") != ["true"]:
        return json_reply(run_result(question, session_id=session_id, question=question))
    if tokens:
        words = [word + " " for word in question.split(" ")]
        words[-1] = words[-1][:-1]
        return stream_reply(streamed_run(words, session_id=session_id, question=question))
    return stream_reply(unstreamed_run(question, session_id=session_id, question=question))


# -- the rest of the API: the flow, its versions, files -------------------------------------------

FLOW_NAME = "Replay flow"
FILE_COMPONENT = "File-Rp1aY"


def flow_graph(*, file_input: bool = False) -> dict:
    """A flow's ``data`` as ``GET /api/v1/flows/{id}`` gives it: Chat Input -> Chat Output (and a
    Read File component with ``file_input``)."""
    nodes = [{"id": CHAT_INPUT, "data": {"type": "ChatInput", "node": {"template": {}}}},
             {"id": CHAT_OUTPUT, "data": {"type": "ChatOutput", "node": {"template": {}}}}]
    if file_input:
        nodes.append({"id": FILE_COMPONENT, "data": {"type": "File", "node": {"template": {"path": {"value": []}}}}})
    return {"nodes": nodes, "edges": []}


def flow_api(*, name: str = FLOW_NAME, file_input: bool = False, versions: list[dict] | None = None,
             token: str = "token-1") -> dict[tuple[str, str], Reply]:
    """Answers for the flow ``FLOW_ID``: itself, its version token, its saved versions (each
    ``{"id", "version_number", "data"}``), and the flows list; for ``ReplayServer.api``."""
    graph = flow_graph(file_input=file_input)
    flow = {"id": FLOW_ID, "name": name, "endpoint_name": "replay-flow", "data": graph, "version_token": token}
    listed = [{k: v for k, v in version.items() if k != "data"} for version in versions or []]
    routes = {
        ("GET", f"/api/v1/flows/{FLOW_ID}"): json_reply(flow),
        ("GET", f"/api/v1/flows/{FLOW_ID}/version-state"): json_reply({"version_token": token}),
        ("GET", f"/api/v1/flows/{FLOW_ID}/versions/"): json_reply({"entries": listed, "max_entries": 50}),
        ("GET", "/api/v1/flows/"): json_reply([{k: v for k, v in flow.items() if k != "data"}]),
    }
    for version in versions or []:
        routes[("GET", f"/api/v1/flows/{FLOW_ID}/versions/{version['id']}")] = json_reply(version)
    return routes


def stored_file(request: Received) -> Reply:
    """``POST /api/v2/files``: the file "stored" under a user folder, as Langflow 1.13 answers."""
    name = request.raw.split(b'filename="', 1)[-1].split(b'"', 1)[0].decode() or "upload"
    stem = name.rsplit(".", 1)[0]
    return json_reply({"id": str(uuid.uuid4()), "name": stem, "path": f"user-1/{name}", "size": len(request.raw),
                       "provider": None}, status=201)


# -- the server ----------------------------------------------------------------------------------


class ReplayServer:
    """Threaded HTTP server on 127.0.0.1 (a free port unless ``port``); use ``with ReplayServer() as server:``."""

    def __init__(self, *, default: Responder = echo_flow, port: int = 0, nodelay: bool = False) -> None:
        self.requests: list[Received] = []  # the runs
        self.api_requests: list[Received] = []  # everything else: the flow, its versions, files
        self.default = default  # answers when nothing is queued
        # Answers to the rest of the API by (method, path): the flow FLOW_ID, and file uploads.
        self.api: dict[tuple[str, str], Reply | Responder] = {**flow_api(), ("POST", "/api/v2/files"): stored_file}
        self.disconnected = threading.Event()  # set when a client left in the middle of an answer
        self.stopping = threading.Event()
        self._queue: deque[Reply | Responder] = deque()
        self._lock = threading.Lock()
        self.connections: set[socket.socket] = set()  # open keep-alive connections, closed on stop
        # nodelay: TCP_NODELAY on every connection, as Langflow's server (uvicorn on asyncio) sets it.
        handler = type("_NoDelayHandler", (_Handler,), {"disable_nagle_algorithm": True}) if nodelay else _Handler
        self._httpd = ThreadingHTTPServer(("127.0.0.1", port), handler)
        self._httpd.daemon_threads = True
        self._httpd.replay = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, args=(0.02,), name="replay-server", daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> ReplayServer:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop listening and hang up every open connection: a stopped server answers nothing,
        not even on a keep-alive connection a client pooled (a later server on the port would
        otherwise find its requests answered by this one's handler threads)."""
        self.stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        with self._lock:
            connections, self.connections = list(self.connections), set()
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def answer(self, *replies: Reply | Responder) -> None:
        """Queue answers for the next requests, in order; each is used once."""
        with self._lock:
            self._queue.extend(replies)

    def next_reply(self, request: Received) -> Reply:
        with self._lock:
            self.requests.append(request)
            reply = self._queue.popleft() if self._queue else self.default
        return reply if isinstance(reply, Reply) else reply(request)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive and chunked encoding, like uvicorn

    @property
    def replay(self) -> ReplayServer:
        return self.server.replay  # type: ignore[attr-defined]

    def setup(self) -> None:
        super().setup()
        with self.replay._lock:
            self.replay.connections.add(self.connection)

    def finish(self) -> None:
        with self.replay._lock:
            self.replay.connections.discard(self.connection)
        super().finish()

    def handle(self) -> None:
        try:
            super().handle()
        except (ConnectionResetError, BrokenPipeError):  # the client hung up between requests
            self.close_connection = True

    def log_message(self, format: str, *args: object) -> None:
        log.debug("replay server: " + format, *args)

    def do_GET(self) -> None:
        if urlsplit(self.path).path == "/health_check":
            self._send(json_reply({"status": "ok", "chat": "ok", "db": "ok"}))
        else:
            self._send(self._api_reply(self._receive()))

    def do_POST(self) -> None:
        request = self._receive()
        if request.path.startswith(RUN_PREFIX):
            self._send(self.replay.next_reply(request))
        else:
            self._send(self._api_reply(request))

    def _api_reply(self, request: Received) -> Reply:
        self.replay.api_requests.append(request)
        reply = self.replay.api.get((request.method, request.path))
        if reply is None:
            return json_reply({"detail": "Not Found"}, status=404)
        return reply if isinstance(reply, Reply) else reply(request)

    def _receive(self) -> Received:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        parts = urlsplit(self.path)
        headers = {name.lower(): value for name, value in self.headers.items()}
        return Received(self.command, parts.path, parse_qs(parts.query), headers, body, raw, time.monotonic())

    def _send(self, reply: Reply) -> None:
        if self._interrupt(reply, 0):
            return
        self.send_response(reply.status)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        if reply.chunks is None:
            self.send_header("Content-Length", str(len(reply.body)))
            self.end_headers()
            self._write(reply.body)
        else:
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self._send_chunks(reply)

    def _send_chunks(self, reply: Reply) -> None:
        for index, chunk in enumerate(reply.chunks or ()):
            if index and self._interrupt(reply, index):
                return
            if reply.delay and self._client_left(reply.delay):
                return
            if not self._write(b"%x\r\n%s\r\n" % (len(chunk), chunk)):
                return
        if not self._interrupt(reply, len(reply.chunks or ())):
            self._write(b"0\r\n\r\n")

    def _interrupt(self, reply: Reply, sent: int) -> bool:
        """Cut or hang here if told to; True if the answer stops."""
        if reply.cut_after == sent:
            self.close_connection = True
            return True
        if reply.hang_after == sent:
            self.close_connection = True
            while not self.replay.stopping.is_set() and not self._client_left(0.05):
                pass
            return True
        return False

    def _write(self, data: bytes) -> bool:
        try:
            self.wfile.write(data)
            self.wfile.flush()
        except OSError:  # the client hung up
            self._note_disconnect()
            return False
        return True

    def _client_left(self, wait: float) -> bool:
        """Wait up to ``wait`` seconds; True if the client closed its end meanwhile."""
        readable, _, _ = select.select([self.connection], [], [], wait)
        if not readable:
            return False
        try:
            left = self.connection.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            left = True
        if left:
            self._note_disconnect()
        else:
            time.sleep(wait)  # bytes of a next request: not a disconnect
        return left

    def _note_disconnect(self) -> None:
        self.close_connection = True
        self.replay.disconnected.set()
