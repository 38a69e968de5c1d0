"""A tiny OpenAI-compatible server on 127.0.0.1 (chat, tool calls, embeddings) for Langflow's models."""

from __future__ import annotations

import base64
import json
import logging
import math
import re
import struct
import threading
import time
import uuid
import zlib
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

log = logging.getLogger(__name__)

MODEL = "stub-model"


@dataclass(frozen=True)
class Behaviour:
    """How the stub answers the next requests; set with ``OpenAIStub.configure``."""

    answer: str | None = None  # None: "You said: <last user message>"
    answers: dict[str, str] = field(default_factory=dict)  # by model name; ``answer`` for the others
    token_delay: float = 0.0  # seconds before each streamed word (and once per word, non-stream)
    # Drop the connection after this many words, without [DONE] (non-stream: half the body).
    cut_after: int | None = None
    html: bool = False  # answer with an HTML error page (like a proxy in front of the model)
    html_status: int = 502
    send_usage: bool = True  # usage in the body / in the final chunk when asked for
    # Tool calls, as an OpenAI model makes them, when the request offers ``tools``: ``(name, arguments)``
    # calls that tool; ``call_tools=True`` calls the first tool offered, each required string argument
    # set to the user's last message. Once a ``role: "tool"`` message follows the last user message,
    # the stub answers with ``tool_answer``, where ``{tool_output}`` stands for that tool message.
    tool_call: tuple[str, dict] | None = None
    call_tools: bool = False
    tool_answer: str = "The tool said: {tool_output}"


@dataclass
class OpenAIStub:
    """The server plus its behaviour and a log of the requests it received."""

    behaviour: Behaviour = field(default_factory=Behaviour)
    requests: list[dict] = field(default_factory=list)  # chat completions
    embedding_requests: list[dict] = field(default_factory=list)
    closed_early: int = 0  # streams whose caller hung up before the end (Langflow cancelled the run)
    _server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        """The base URL to give an OpenAI client: ``http://127.0.0.1:<port>/v1``."""
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    def start(self) -> OpenAIStub:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self._server.stub = self
        threading.Thread(target=self._server.serve_forever, name="openai-stub", daemon=True).start()
        log.info("OpenAI stub listening on %s", self.url)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def configure(self, **changes) -> None:
        """Change the behaviour, e.g. ``configure(answer="Hi there", token_delay=0.2)``."""
        self.behaviour = replace(self.behaviour, **changes)

    def reset(self) -> None:
        """Back to the default behaviour, with an empty request log."""
        self.behaviour = Behaviour()
        self.requests.clear()
        self.embedding_requests.clear()
        self.closed_early = 0

    def __enter__(self) -> OpenAIStub:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def answer_words(behaviour: Behaviour, messages: list[dict], model: str | None = None) -> list[str]:
    """The answer split into tokens: words, each but the first with its leading space."""
    text = behaviour.answers.get(model or "", behaviour.answer)
    output = tool_output(messages)
    if output is not None:
        text = behaviour.tool_answer.replace("{tool_output}", output)
    elif text is None:
        text = f"You said: {_last_user_text(messages)}{_images_note(messages)}"
    words = text.split(" ")
    return [words[0], *(" " + word for word in words[1:])]


def tool_call_for(behaviour: Behaviour, body: dict) -> dict | None:
    """The tool call to answer with, ``{"id", "type", "function": {"name", "arguments"}}``, or None.

    None when the request offers no tools, when the behaviour calls none, or when the tool's
    answer is already there (a ``tool`` message after the last user message).
    """
    tools = body.get("tools") or []
    if not tools or tool_output(body.get("messages", [])) is not None:
        return None
    if behaviour.tool_call is not None:
        name, arguments = behaviour.tool_call
    elif behaviour.call_tools:
        function = tools[0].get("function", {})
        name, arguments = function.get("name", ""), _default_arguments(function, body.get("messages", []))
    else:
        return None
    call = {"name": name, "arguments": json.dumps(arguments)}
    return {"id": f"call_{uuid.uuid4().hex[:12]}", "type": "function", "function": call}


def _default_arguments(function: dict, messages: list[dict]) -> dict:
    schema = function.get("parameters") or {}
    properties = schema.get("properties") or {}
    names = schema.get("required") or list(properties)
    wanted = [name for name in names if properties.get(name, {}).get("type", "string") == "string"]
    return {name: _last_user_text(messages) for name in wanted}


def tool_output(messages: list[dict]) -> str | None:
    """The content of the last ``tool`` message after the last user message, if any."""
    found = None
    for message in messages:
        if message.get("role") == "user":
            found = None
        elif message.get("role") == "tool":
            found = _content_text(message)
    return found


def _last_user_text(messages: list[dict]) -> str:
    users = [message for message in messages if message.get("role") == "user"]
    return _content_text(users[-1]) if users else ""


def usage_for(messages: list[dict], words: list[str]) -> dict:
    """Deterministic token counts: one prompt token per word sent, one per word answered."""
    prompt = sum(len(_content_text(m).split()) for m in messages)
    return {"prompt_tokens": prompt, "completion_tokens": len(words), "total_tokens": prompt + len(words)}


EMBEDDING_SIZE = 64


def embed(item: str | list[int]) -> list[float]:
    """A deterministic unit vector: words (or token ids) hashed into ``EMBEDDING_SIZE`` buckets.

    Texts that share words get close vectors, so a knowledge base built on the stub retrieves
    the chunk that shares the question's words, as a real embedding model would.
    """
    vector = [0.0] * EMBEDDING_SIZE
    units = item if isinstance(item, list) else re.findall(r"\w+", item.lower())
    for unit in units:
        vector[zlib.crc32(str(unit).encode()) % EMBEDDING_SIZE] += 1.0
    norm = math.sqrt(sum(value * value for value in vector)) or 1.0
    return [value / norm for value in vector]


def embeddings_reply(body: dict) -> dict:
    """OpenAI's ``/v1/embeddings`` answer; ``input`` is a text, texts, or token id lists (tiktoken)."""
    inputs = body.get("input", [])
    if isinstance(inputs, str) or (inputs and isinstance(inputs[0], int)):
        inputs = [inputs]
    data = []
    for index, item in enumerate(inputs):
        vector = embed(item)
        if body.get("encoding_format") == "base64":  # what the openai package asks for by default
            vector = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
        data.append({"object": "embedding", "index": index, "embedding": vector})
    tokens = sum(len(item) if isinstance(item, list) else len(item.split()) for item in inputs)
    usage = {"prompt_tokens": tokens, "total_tokens": tokens}
    return {"object": "list", "data": data, "model": body.get("model", MODEL), "usage": usage}


def _images_note(messages: list[dict]) -> str:
    """A note like " (with 1 image)" when the user's last message carries images, so a test sees them."""
    users = [message for message in messages if message.get("role") == "user"]
    content = users[-1].get("content") if users else None
    count = sum(part.get("type") == "image_url" for part in content) if isinstance(content, list) else 0
    return f" (with {count} image{'s' if count > 1 else ''})" if count else ""


def _content_text(message: dict) -> str:
    content = message.get("content") or ""
    if isinstance(content, list):  # [{"type": "text", "text": ...}, {"type": "image_url", ...}]
        return " ".join(part.get("text", "") for part in content if part.get("type") == "text")
    return str(content)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # chunked streams, so that a cut stream is visibly incomplete

    def log_message(self, format, *args):
        log.debug("stub: " + format, *args)

    @property
    def stub(self) -> OpenAIStub:
        return self.server.stub

    def do_GET(self):
        if self.path.rstrip("/") == "/v1/models":
            models = [{"id": MODEL, "object": "model", "owned_by": "stub"}]
            self._send_json(200, {"object": "list", "data": models})
        else:
            self._send_not_found()

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        if self.path.rstrip("/") == "/v1/embeddings":
            self.stub.embedding_requests.append(body)
            self._send_json(200, embeddings_reply(body))
            return
        if self.path.rstrip("/") != "/v1/chat/completions":
            self._send_not_found()
            return
        self.stub.requests.append(body)
        behaviour = self.stub.behaviour  # one snapshot per request
        call = tool_call_for(behaviour, body)
        if behaviour.html:
            self._send_html(behaviour.html_status)
        elif call is not None and body.get("stream"):
            self._stream_tool_call(body, behaviour, call)
        elif call is not None:
            self._complete_tool_call(body, behaviour, call)
        elif body.get("stream"):
            self._stream(body, behaviour)
        else:
            self._complete(body, behaviour)

    def _complete(self, body: dict, behaviour: Behaviour) -> None:
        messages = body.get("messages", [])
        words = answer_words(behaviour, messages, body.get("model"))
        time.sleep(behaviour.token_delay * len(words))
        reply = {
            **_envelope("chat.completion"),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "".join(words)},
                    "finish_reason": "stop",
                }
            ],
        }
        if behaviour.send_usage:
            reply["usage"] = usage_for(messages, words)
        if behaviour.cut_after is not None:
            self._send_truncated(json.dumps(reply).encode())
        else:
            self._send_json(200, reply)

    def _stream(self, body: dict, behaviour: Behaviour) -> None:
        messages = body.get("messages", [])
        words = answer_words(behaviour, messages, body.get("model"))
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        envelope = _envelope("chat.completion.chunk")
        try:
            self._event({**envelope, "choices": [_delta({"role": "assistant", "content": ""})]})
            for word in words[: behaviour.cut_after]:  # all of them when cut_after is None
                time.sleep(behaviour.token_delay)
                self._event({**envelope, "choices": [_delta({"content": word})]})
            if behaviour.cut_after is not None:
                self._cut()
                return
            self._event({**envelope, "choices": [_delta({}, finish_reason="stop")]})
            if behaviour.send_usage and (body.get("stream_options") or {}).get("include_usage"):
                self._event({**envelope, "choices": [], "usage": usage_for(messages, words)})
            self._chunk(b"data: [DONE]\n\n")
            self._chunk(b"")
        except (BrokenPipeError, ConnectionResetError):
            log.info("stub: the caller closed the stream")  # Langflow cancelled the run
            self.stub.closed_early += 1

    def _complete_tool_call(self, body: dict, behaviour: Behaviour, call: dict) -> None:
        message = {"role": "assistant", "content": None, "tool_calls": [call]}
        reply = {
            **_envelope("chat.completion"),
            "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls"}],
        }
        if behaviour.send_usage:
            reply["usage"] = usage_for(body.get("messages", []), [call["function"]["arguments"]])
        self._send_json(200, reply)

    def _stream_tool_call(self, body: dict, behaviour: Behaviour, call: dict) -> None:
        """OpenAI's chunks for a tool call: the id and name first, then the arguments in pieces."""
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        envelope = _envelope("chat.completion.chunk")
        arguments = call["function"]["arguments"]
        opening = {
            "index": 0,
            "id": call["id"],
            "type": "function",
            "function": {"name": call["function"]["name"], "arguments": ""},
        }
        try:
            self._event(
                {
                    **envelope,
                    "choices": [_delta({"role": "assistant", "content": None, "tool_calls": [opening]})],
                }
            )
            for start in range(0, len(arguments), 8):
                piece = {"index": 0, "function": {"arguments": arguments[start : start + 8]}}
                time.sleep(behaviour.token_delay)
                self._event({**envelope, "choices": [_delta({"tool_calls": [piece]})]})
            self._event({**envelope, "choices": [_delta({}, finish_reason="tool_calls")]})
            if behaviour.send_usage and (body.get("stream_options") or {}).get("include_usage"):
                usage = usage_for(body.get("messages", []), [arguments])
                self._event({**envelope, "choices": [], "usage": usage})
            self._chunk(b"data: [DONE]\n\n")
            self._chunk(b"")
        except (BrokenPipeError, ConnectionResetError):
            log.info("stub: the caller closed the stream")
            self.stub.closed_early += 1

    def _event(self, payload: dict) -> None:
        self._chunk(f"data: {json.dumps(payload)}\n\n".encode())

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _cut(self) -> None:
        """Drop the connection mid-body: no [DONE], no final zero-length chunk."""
        self.wfile.flush()
        self.close_connection = True
        self.connection.shutdown(2)

    def _send_truncated(self, data: bytes) -> None:
        """Promise the whole body, send half of it, and drop the connection."""
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data[: len(data) // 2])
        self._cut()

    def _send_not_found(self) -> None:
        error = {"message": f"no route {self.path}", "type": "invalid_request_error"}
        self._send_json(404, {"error": error})

    def _send_json(self, status: int, payload: dict) -> None:
        self._send(status, "application/json", json.dumps(payload).encode())

    def _send_html(self, status: int) -> None:
        page = f"<html><head><title>{status} Bad Gateway</title></head><body><h1>{status}</h1></body></html>"
        self._send(status, "text/html", page.encode())

    def _send(self, status: int, content_type: str, data: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def _envelope(kind: str) -> dict:
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:12]}",
        "object": kind,
        "created": int(time.time()),
        "model": MODEL,
    }


def _delta(delta: dict, *, finish_reason: str | None = None) -> dict:
    return {"index": 0, "delta": delta, "finish_reason": finish_reason}
