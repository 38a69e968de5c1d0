"""The Langflow HTTP client: run or stream a flow over /api/v1/run, raising typed errors."""

from __future__ import annotations

import email.utils
import json
import logging
import math
import re
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from http.cookiejar import DefaultCookiePolicy
from urllib.parse import quote

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import ReadTimeoutError
from urllib3.util.retry import Retry

from chatbot.engine import Answer, Output, Progress, Step, Token, combined_text, summed_usage
from chatbot.errors import (
    InputError,
    LangflowAuthError,
    LangflowBadResponse,
    LangflowError,
    LangflowFlowError,
    LangflowNotFound,
    LangflowRateLimited,
    LangflowRejected,
    LangflowTimeout,
    LangflowUnavailable,
    LangflowUnreachable,
)

logger = logging.getLogger(__name__)

MAX_RETRY_WAIT = 5.0  # seconds: a 429 asking to wait longer is reported, not waited out
_SNIPPET = 300  # characters of a response body kept in messages and details
_MIN_REDACTED = 6  # shortest API key that is scrubbed from error texts
_END_WAIT = 0.2  # seconds the body's closing chunk may take to follow the `end` event
_END_BYTES = 65_536  # more than this after `end`, and the connection is dropped, not drained

# Where each documented answer shape keeps the text, in the order the doc prescribes.
_TEXT_PATHS = (
    ("results", "message", "text"),
    ("artifacts", "message"),
    ("outputs", "message", "message"),
    ("messages", 0, "message"),
)
_USAGE_PATH = ("results", "message", "properties", "usage")
_SOURCE_PATH = ("results", "message", "properties", "source")
_BLOCKS_PATHS = (("results", "message", "data", "content_blocks"), ("results", "message", "content_blocks"))

# Substrings of urllib3/OpenSSL/socket errors, and the words a user can act on.
_TRANSPORT_REASONS = (
    ("refused", "connection refused"),
    ("resolution", "host name not found"),
    ("not known", "host name not found"),
    ("getaddrinfo", "host name not found"),
    ("certificate", "TLS certificate not trusted"),
    ("ssl", "TLS handshake failed"),
    ("remote end closed", "the server closed the connection without answering"),
    ("reset by peer", "connection reset by the server"),
    ("unreachable", "network unreachable"),
)


def make_http_session(pool_maxsize: int = 20) -> requests.Session:
    """A pooled Session that retries only connections that failed before the request was sent."""
    retry = Retry(total=2, connect=2, read=0, status=0, other=0, backoff_factor=0.2, raise_on_status=False)
    adapter = HTTPAdapter(pool_connections=4, pool_maxsize=pool_maxsize, max_retries=retry)
    session = requests.Session()
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    # One session serves every user of the app: never carry cookies from one call to the next.
    session.cookies.set_policy(DefaultCookiePolicy(allowed_domains=[]))
    return session


class LangflowClient:
    """Asks one Langflow flow; holds no per-call state, so one instance serves all threads."""

    engine = "langflow"

    def __init__(
        self,
        *,
        base_url: str,
        flow_id: str,
        api_key: str | None,
        timeout: float = 120.0,
        connect_timeout: float = 5.0,
        http: requests.Session | None = None,
    ) -> None:
        self._base_url = base_url.rstrip("/")
        self._flow_id = flow_id
        self._api_key = api_key or None
        self._timeout = (connect_timeout, timeout)
        self._http = http or make_http_session()
        self._url = f"{self._base_url}/api/v1/run/{quote(flow_id, safe='')}"

    def __repr__(self) -> str:
        return f"LangflowClient(base_url={self._base_url!r}, flow_id={self._flow_id!r})"

    @property
    def label(self) -> str:
        """What the page shows as the answer's source: the flow id."""
        return self._flow_id

    def run(self, question: str, *, session_id: str, tweaks: dict | None = None) -> Answer:
        """Ask the flow and wait for its whole answer."""
        with self._redacting():
            response = self._post(question, session_id=session_id, stream=False, tweaks=tweaks)
            with response:
                payload = self._json(response)
            return read_answer(payload, session_id=session_id)

    def stream(
        self, question: str, *, session_id: str, tweaks: dict | None = None
    ) -> Iterator[Token | Progress | Answer]:
        """Yield Tokens as the flow writes them (and Progress while an agent works), then one
        Answer; closing early cancels the run."""
        with self._redacting():
            response = self._post(question, session_id=session_id, stream=True, tweaks=tweaks)
            try:
                if _content_type(response).startswith("application/json"):
                    # A server or proxy that ignored ?stream=true: the whole answer at once.
                    yield from _answer_as_stream(read_answer(self._json(response), session_id=session_id))
                else:
                    chunks = self._chunks(response)
                    yield from _stream_answer(
                        parse_stream(chunks), session_id=session_id, at_end=lambda: _read_to_end(response, chunks)
                    )
            finally:
                response.close()  # before `end` this drops the connection, and Langflow cancels the run

    # -- the flow itself, its versions, files ---------------------------------------------------

    def get_flow(self, flow_id: str) -> dict:
        """``GET /api/v1/flows/{id}`` (a UUID): the flow with its graph. The graph may hold API
        keys in clear: never log or store it."""
        return self._get_json(f"/api/v1/flows/{quote(flow_id, safe='')}")

    def list_flows(self) -> list[dict]:
        """The flows the API key's user can run, without their graphs (to resolve an endpoint name)."""
        flows = self._get_json("/api/v1/flows/", params={"header_flows": "true"})
        return [flow for flow in flows if isinstance(flow, dict)] if isinstance(flows, list) else []

    def version_state(self, flow_id: str) -> dict:
        """``{"version_token", "updated_at", ...}``: changes whenever the flow is saved or a version activated."""
        return self._get_json(f"/api/v1/flows/{quote(flow_id, safe='')}/version-state")

    def list_versions(self, flow_id: str) -> list[dict]:
        """The flow's saved versions, newest first (``version_number``, ``id``, ``created_at``); [] on a
        Langflow without version history (before 1.12)."""
        try:
            listed = self._get_json(f"/api/v1/flows/{quote(flow_id, safe='')}/versions/", params={"limit": 50})
        except LangflowNotFound:
            return []
        entries = listed.get("entries") if isinstance(listed, dict) else None
        return [entry for entry in entries if isinstance(entry, dict)] if isinstance(entries, list) else []

    def get_version(self, flow_id: str, version_id: str) -> dict:
        """One saved version with its graph (API keys stripped by Langflow)."""
        return self._get_json(f"/api/v1/flows/{quote(flow_id, safe='')}/versions/{quote(version_id, safe='')}")

    def upload(self, name: str, data: bytes, mime: str) -> str:
        """Store a file in Langflow (``POST /api/v2/files``, documents and images alike) and return
        the path a flow's tweak takes."""
        with self._redacting():
            response = self._call("POST", "/api/v2/files", files={"file": (name, data, mime or "application/octet-stream")})
            with response:
                stored = self._json(response)
        path = stored.get("path") if isinstance(stored, dict) else None
        if not isinstance(path, str) or not path:
            raise LangflowBadResponse(f"Langflow stored {name!r} but did not say where.", detail=_snippet(stored))
        return path

    def _get_json(self, path: str, **kwargs) -> object:
        with self._redacting():
            response = self._call("GET", path, **kwargs)
            with response:
                return self._json(response)

    def _call(self, method: str, path: str, **kwargs) -> requests.Response:
        """One request to the Langflow API (not a run): a 2xx response, or the error a user can act on."""
        headers = {"Accept": "application/json"} | ({"x-api-key": self._api_key} if self._api_key else {})
        try:
            response = self._http.request(method, f"{self._base_url}{path}", headers=headers, timeout=self._timeout,
                                          allow_redirects=False, **kwargs)
        except requests.RequestException as exc:
            raise self._transport_error(exc) from exc
        if not 200 <= response.status_code < 300:
            with response:
                raise self._status_error(response)
        return response

    # -- HTTP ---------------------------------------------------------------------------------

    def _post(self, question: str, *, session_id: str, stream: bool, tweaks: dict | None) -> requests.Response:
        """POST the question; answer a 2xx response or raise. A short 429 is waited out once."""
        body = _request_body(question, session_id, tweaks)
        response = self._send(body, stream=stream)
        wait = _retry_after(response.headers.get("Retry-After")) if response.status_code == 429 else None
        if wait is not None and wait <= MAX_RETRY_WAIT:
            response.close()
            logger.info("Langflow rate-limited the request; retrying once in %.1f s", wait)
            time.sleep(wait)
            response = self._send(body, stream=stream)
        if not 200 <= response.status_code < 300:
            with response:
                raise self._status_error(response)
        return response

    def _send(self, body: dict, *, stream: bool) -> requests.Response:
        logger.debug("POST %s stream=%s session_id=%s", self._url, stream, body["session_id"])
        try:
            return self._http.post(
                self._url,
                params={"stream": "true"} if stream else None,
                json=body,
                headers=self._headers(stream=stream),
                timeout=self._timeout,
                stream=stream,
                allow_redirects=False,  # a redirect would carry x-api-key to wherever it points
            )
        except requests.RequestException as exc:
            raise self._transport_error(exc) from exc

    def _headers(self, *, stream: bool) -> dict[str, str]:
        headers = {"Accept": "text/event-stream" if stream else "application/json"}
        if self._api_key is not None:
            headers["x-api-key"] = self._api_key
        return headers

    def _chunks(self, response: requests.Response) -> Iterator[bytes]:
        """The body as it arrives; the read timeout applies between chunks."""
        try:
            yield from response.iter_content(chunk_size=None)
        except requests.RequestException as exc:
            raise self._transport_error(exc) from exc

    def _json(self, response: requests.Response) -> object:
        try:
            return response.json()
        except (ValueError, RecursionError):  # requests' JSONDecodeError is a ValueError too
            raise LangflowBadResponse(
                f"Langflow's answer is not JSON ({_content_type(response) or 'no content type'}). "
                "Check that LANGFLOW_URL points at Langflow itself.",
                detail=f"HTTP {response.status_code} from {self._url}: {_snippet(_body_text(response))}",
            ) from None
        except requests.RequestException as exc:  # the body failed mid-read
            raise self._transport_error(exc) from exc

    # -- errors -------------------------------------------------------------------------------

    def _transport_error(self, exc: requests.RequestException) -> LangflowError:
        """Map a requests failure (no usable HTTP answer) to the error a user can act on."""
        sent = exc.request if isinstance(exc.request, requests.PreparedRequest) else None
        detail = f"{type(exc).__name__} on {sent.method if sent else 'POST'} {sent.url if sent else self._url}: {exc}"
        connect, read = self._timeout
        if isinstance(exc, requests.ConnectTimeout):
            return LangflowTimeout(
                f"Cannot reach Langflow at {self._base_url}: no connection within {connect:g} s. "
                "Check LANGFLOW_URL and that the server is running.",
                detail=detail,
            )
        if isinstance(exc, requests.Timeout) or _wraps_read_timeout(exc):
            return LangflowTimeout(
                f"Langflow at {self._base_url} sent nothing for {read:g} s; the flow may be stuck "
                "or slow. Try again, or ask an administrator to raise the timeout.",
                detail=detail,
            )
        if isinstance(exc, requests.exceptions.ChunkedEncodingError):
            return LangflowBadResponse(
                "Langflow closed the connection before the answer was complete. Try again.", detail=detail
            )
        return LangflowUnreachable(
            f"Cannot reach Langflow at {self._base_url}: {_transport_reason(exc)}. "
            "Check LANGFLOW_URL and that the server is running.",
            detail=detail,
        )

    def _status_error(self, response: requests.Response) -> LangflowError:
        """Map a non-2xx answer to the error a user can act on."""
        status = response.status_code
        reason = _langflow_reason(response)
        sent = response.request if isinstance(response.request, requests.PreparedRequest) else None
        detail = (f"HTTP {status} from {sent.method if sent else 'POST'} {response.url or self._url}: "
                  f"{_snippet(_body_text(response))}")
        if status == 422 and _tweaks_refused(response):
            return LangflowRejected(f"Langflow refused the tweaks: {_sentence(reason or 'a field is protected')}",
                                    detail=detail)
        if status == 413:
            return LangflowRejected(f"Langflow refused the file: {_sentence(reason or 'it is too large')}",
                                    detail=detail)
        if status in (401, 403):
            return LangflowAuthError(self._auth_message(reason), detail=detail)
        if status == 404:
            return LangflowNotFound(
                f"Langflow has no flow '{self._flow_id}' ({reason or 'not found'}). "
                "Check LANGFLOW_FLOW_ID (or LANGFLOW_FLOWS), and that LANGFLOW_URL points at Langflow.",
                detail=detail,
            )
        if status == 429:
            return _rate_limited(response, detail=detail)
        if status == 500:
            return LangflowFlowError(
                f"The flow failed: {_sentence(reason or 'Langflow reported an internal error')}", detail=detail
            )
        if status >= 500:
            return LangflowUnavailable(
                f"Langflow at {self._base_url} is unavailable right now (HTTP {status}). "
                "Try again in a minute; if it persists, check the server.",
                detail=detail,
            )
        if 300 <= status < 400:
            return LangflowBadResponse(
                f"Langflow at {self._base_url} redirected the request to "
                f"{response.headers.get('Location') or 'another address'}. Set LANGFLOW_URL to the final address.",
                detail=detail,
            )
        return LangflowRejected(
            f"Langflow refused the request (HTTP {status}): {_sentence(reason or 'no reason given')}", detail=detail
        )

    def _auth_message(self, reason: str | None) -> str:
        if self._api_key is None:
            return f"Langflow needs an API key ({reason or 'access denied'}). Set LANGFLOW_API_KEY."
        return f"Langflow refused the API key ({reason or 'access denied'}). Check LANGFLOW_API_KEY."

    @contextmanager
    def _redacting(self) -> Iterator[None]:
        """Make sure no error leaving the client repeats the API key (a proxy may echo headers)."""
        try:
            yield
        except LangflowError as exc:
            if self._api_key:
                exc.args = tuple(_redact(str(arg), self._api_key) for arg in exc.args)
                exc.detail = _redact(exc.detail, self._api_key)
            logger.debug("Langflow call failed: %s", exc.detail)
            raise


# -- request and answer shapes ----------------------------------------------------------------


def _request_body(question: str, session_id: str, tweaks: dict | None = None) -> dict:
    """The documented body; Langflow silently runs an empty request for an invalid one."""
    if not isinstance(question, str) or not question.strip():
        raise InputError("Type a question before sending.")
    if not isinstance(session_id, str) or not session_id.strip():
        raise InputError("This conversation has no session id; start a new conversation.")
    body = {"input_value": question, "input_type": "chat", "output_type": "chat", "session_id": session_id}
    if tweaks:
        if not isinstance(tweaks, dict) or not all(isinstance(k, str) and isinstance(v, dict) for k, v in tweaks.items()):
            raise InputError('Tweaks are a JSON object of objects keyed by component id, e.g. {"OpenAIModel-x1y2z": '
                             '{"temperature": 0.2}}.')
        body["tweaks"] = tweaks
    return body


def read_answer(payload: dict, *, session_id: str | None = None) -> Answer:
    """The final text and token usage of a run answer (or of a stream's ``end.result``)."""
    if not isinstance(payload, dict):
        raise LangflowBadResponse(
            "Langflow's answer has an unexpected shape.",
            detail=f"expected an object, got {_snippet(payload)}",
        )
    if session_id is not None and payload.get("session_id") != session_id:
        raise LangflowBadResponse(
            "Langflow answered for another conversation (session id mismatch), so the answer was discarded. "
            "Try again; if it persists, check that the server runs a supported Langflow version.",
            detail=f"sent session_id {session_id!r}, answer has {payload.get('session_id')!r}",
        )
    results = [result for result in _component_results(payload) if _first_text(result) is not None]
    outputs = [
        Output(text=_first_text(result), label=_label(result), component_id=str(result.get("component_id") or ""),
               usage=_usage(result))
        for result in results
    ]
    provenance = {
        "steps": tuple(step for result in results for step in _block_steps(_first_list(result, _BLOCKS_PATHS))),
        "model": ", ".join(dict.fromkeys(m for r in results if (m := _model(r)))) or None,
        "run_id": next((run for r in results if (run := _run_id(r))), None),
    }
    if len(outputs) == 1:
        return Answer(text=outputs[0].text, usage=outputs[0].usage, **provenance)
    if outputs:  # a flow with several Chat Outputs: every one is kept, and all their usage counts
        return Answer(text=combined_text(outputs), usage=summed_usage([o.usage for o in outputs]),
                      outputs=tuple(outputs), **provenance)
    raise LangflowBadResponse(
        "Langflow's answer holds no chat message. Check that the flow ends with a Chat Output component.",
        detail=f"no text in {_snippet(payload)}",
    )


def _component_results(payload: dict) -> list[dict]:
    runs = payload.get("outputs")
    first = runs[0] if isinstance(runs, list) and runs else None
    results = first.get("outputs") if isinstance(first, dict) else None
    return [result for result in results if isinstance(result, dict)] if isinstance(results, list) else []


def _first_text(result: dict) -> str | None:
    for path in _TEXT_PATHS:
        text = _dig(result, path)
        if isinstance(text, str):
            return text
    return None


def _label(result: dict) -> str:
    """The output component's display name (what the flow's author called it), else its id."""
    for key in ("component_display_name", "component_id"):
        if isinstance(result.get(key), str) and result[key].strip():
            return result[key].strip()
    return ""


def _model(result: dict) -> str | None:
    """The model that wrote an output: ``properties.source.source`` when it names something else
    than the component itself (a flow without a model names its last component there)."""
    source = _dig(result, _SOURCE_PATH)
    model = source.get("source") if isinstance(source, dict) else None
    return model if isinstance(model, str) and model and model != source.get("display_name") else None


def _run_id(result: dict) -> str | None:
    message = _dig(result, ("results", "message"))
    for path in (("run_id",), ("data", "run_id"), ("session_metadata", "graph_run_id")):
        if isinstance(run := _dig(message, path), str) and run:
            return run
    return None


def _first_list(result: dict, paths: tuple[tuple, ...]) -> list:
    """The first non-empty list at one of ``paths`` (Langflow repeats an item in the second one)."""
    return next((found for path in paths if isinstance(found := _dig(result, path), list) and found), [])


def _block_steps(blocks: object) -> list[Step]:
    """An agent's tool calls from a message's ``content_blocks`` (``tool_use`` items), in order."""
    steps = []
    for block in blocks if isinstance(blocks, list) else []:
        for item in block.get("contents") or [] if isinstance(block, dict) else []:
            if isinstance(item, dict) and item.get("type") == "tool_use":
                steps.append(_tool_use_step(item))
    return steps


def _tool_use_step(item: dict) -> Step:
    output = item.get("output")
    error = item.get("error") if isinstance(item.get("error"), str) and item.get("error") else None
    content = output.get("content") if isinstance(output, dict) else output
    if error:
        status = "error"
    elif output is None:
        status = "running"
    else:
        status = output.get("status") if isinstance(output, dict) and output.get("status") in ("success", "error") \
            else "success"
    duration = item.get("duration") if isinstance(item.get("duration"), int) and status != "running" else None
    return Step(name=str(item.get("name") or "tool"), input=item.get("tool_input"), output=content,
                status=status, duration_ms=duration, error=error)


def _usage(result: dict) -> dict | None:
    usage = _dig(result, _USAGE_PATH)
    return dict(usage) if isinstance(usage, dict) and usage else None


def _dig(value: object, path: tuple[str | int, ...]) -> object:
    for key in path:
        if isinstance(key, int):
            value = value[key] if isinstance(value, list) and len(value) > key else None
        else:
            value = value.get(key) if isinstance(value, dict) else None
    return value


# -- streaming --------------------------------------------------------------------------------


def parse_stream(chunks: Iterable[bytes]) -> Iterator[dict]:
    """Langflow's stream as event dicts: one JSON object per line, however the bytes are chunked."""
    pending = bytearray()
    for chunk in chunks:
        if not pending and chunk.endswith(b"\n"):  # whole lines, as Langflow sends them: no copy
            lines = chunk.split(b"\n")
        else:
            searched = len(pending)  # no newline before this point
            pending += chunk
            last = pending.rfind(b"\n", searched)
            if last < 0:
                continue
            lines, pending = pending[:last].split(b"\n"), pending[last + 1 :]
        for line in lines:
            if line.strip():
                yield _parse_event(line)
    if pending.strip():
        yield _parse_event(pending)


def _parse_event(line: bytes | bytearray) -> dict:
    try:
        event = json.loads(line.decode("utf-8"))
    except (ValueError, RecursionError):
        event = None
    if not isinstance(event, dict) or not isinstance(event.get("event"), str):
        raise LangflowBadResponse(
            "Langflow sent a stream line that is not an event. Check that LANGFLOW_URL points at Langflow "
            "itself and that any proxy passes the stream through unchanged.",
            detail=f"stream line: {_snippet(bytes(line))}",
        )
    return event


def _stream_answer(
    events: Iterator[dict], *, session_id: str, at_end: Callable[[], None] = lambda: None
) -> Iterator[Token | Progress | Answer]:
    """Tokens as they come (and Progress while an agent works), then the Answer from ``end``;
    an ``error`` event or no ``end`` raises.

    ``at_end`` runs once the answer is read, before it is yielded.
    """
    messages: dict[str, dict] = {}  # add_message upserted by id: the latest state of each message
    agent = _AgentSteps()
    streamed = False
    for event in events:
        kind, data = event["event"], event.get("data")
        if kind == "token" and (chunk := _token_chunk(data)):
            streamed = True
            yield Token(chunk, output=str(data.get("id") or ""))
        elif kind == "add_message" and isinstance(data, dict):
            messages[str(data.get("id"))] = data
            if agent.blocks(messages):
                yield agent.progress()
        elif kind in ("log", "build_start") and isinstance(data, dict) and agent.event(kind, data):
            yield agent.progress()
        elif kind == "error":
            reason = _event_reason(data)
            if reason.startswith("Refused tweak"):  # a refused tweak arrives streamed as a lone error event
                raise LangflowRejected(f"Langflow refused the tweaks: {_sentence(reason)}", detail=_snippet(data))
            raise LangflowFlowError(f"The flow failed: {_sentence(reason)}", detail=f"error event: {_snippet(data)}")
        elif kind == "end":
            answer = read_answer(
                data.get("result") if isinstance(data, dict) else None, session_id=session_id
            )
            at_end()
            if not streamed and answer.text:  # the flow did not stream: show its text now
                yield Token(answer.text)
            yield replace(answer, steps=agent.final(answer.steps))
            return
    raise LangflowBadResponse(
        "Langflow's stream ended before the answer was complete. Try again.",
        detail=f"no end event; {len(messages)} message(s), last text: {_snippet(_last_text(messages))}",
    )


class _AgentSteps:
    """An agent's tool calls while a stream runs.

    Langflow tells them twice: ``log`` events (``Tool Start`` / ``Tool End``, no timing) as they
    happen, and ``content_blocks`` on the agent's messages (with the tool's run time) a little
    later. Both list the calls in the order they ran, so the blocks' steps come first and the
    logged calls the blocks do not cover yet follow them.
    """

    def __init__(self) -> None:
        self._logged: dict[str, Step] = {}  # by the tool run's id
        self._started: dict[str, float] = {}
        self._from_blocks: tuple[Step, ...] = ()
        self._components: list[str] = []  # the components whose chains started, in order
        self._doing = ""

    def event(self, kind: str, data: dict) -> bool:
        """Take a ``log`` or ``build_start`` event; True when what is shown changed."""
        if kind == "build_start":  # a component starts; a tool's own component says less than its call
            component = str(data.get("id") or "").split("-", 1)[0].removesuffix("Component")
            if not component or any(step.status == "running" for step in self._logged.values()):
                return False
            self._doing = f"Running {component}…"
            return True
        message = data.get("message")
        if data.get("name") == "Chain Start":  # an agent at work: say which, in a chain of several
            return self._working(str(data.get("component_id") or ""))
        if data.get("name") not in ("Tool Start", "Tool End") or not isinstance(message, dict):
            return False  # components' own log lines
        run = str(message.get("run_id") or message.get("tool_call_id") or len(self._logged))
        if data["name"] == "Tool Start":
            name = _dig(message, ("serialized", "name")) or _dig(message, ("metadata", "display_name")) or "tool"
            self._logged[run] = Step(name=str(name), input=message.get("inputs") or message.get("input_str"))
            self._started[run] = time.monotonic()
            self._doing = f"Calling {name}…"
        elif run in self._logged:
            output = message.get("output")
            status = output.get("status") if isinstance(output, dict) else None
            took = round((time.monotonic() - self._started.get(run, time.monotonic())) * 1000)
            self._logged[run] = replace(
                self._logged[run], output=output.get("content") if isinstance(output, dict) else output,
                status=status if status in ("success", "error") else "success", duration_ms=took,
            )
            self._doing = "Working…"
        return True

    def _working(self, component_id: str) -> bool:
        if not component_id or component_id in self._components:
            return False
        self._components.append(component_id)
        if any(step.status == "running" for step in self._logged.values()):
            return False
        kind = component_id.split("-", 1)[0].removesuffix("Component")
        count = len(self._components)
        self._doing = f"Running {kind}…" + (f" (step {count})" if count > 1 else "")
        return True

    def blocks(self, messages: dict[str, dict]) -> bool:
        """Take the messages' ``content_blocks``; True when the steps they show changed."""
        steps = tuple(step for message in messages.values() for step in _block_steps(message.get("content_blocks")))
        changed = steps != self._from_blocks
        self._from_blocks = steps
        return changed

    def steps(self) -> tuple[Step, ...]:
        return self.final(self._from_blocks)

    def progress(self) -> Progress:
        return Progress(doing=self._doing, steps=self.steps())

    def final(self, told: tuple[Step, ...]) -> tuple[Step, ...]:
        """``told`` (steps from content blocks) with the logged calls they do not hold (an inner
        agent's), and with the end of a call the blocks do not show yet (they lag the logs)."""
        logged = tuple(self._logged.values())
        merged = tuple(
            replace(step, status=log.status, output=log.output, duration_ms=log.duration_ms)
            if step.status == "running" and n < len(logged) and (log := logged[n]).status != "running" else step
            for n, step in enumerate(told)
        )
        return merged + logged[len(told):]


def _read_to_end(response: requests.Response, chunks: Iterator[bytes]) -> None:
    """Read what follows ``end`` (the body's closing chunk), so that ``close()`` returns the
    connection to the pool instead of dropping it.

    Best effort and brief: a body that goes on, or does not end within ``_END_WAIT``, is left
    unread, and ``close()`` drops the connection as it would have anyway.
    """
    sock = getattr(getattr(response.raw, "connection", None), "sock", None)
    if sock is None:  # already released, or not a socket we can bound
        return
    sock.settimeout(_END_WAIT)  # urllib3 sets its own timeout again when it reuses the connection
    left = _END_BYTES
    try:
        for chunk in chunks:
            left -= len(chunk)
            if left < 0:
                return
    except LangflowError as exc:
        logger.debug("the stream went on after its answer; dropping the connection: %s", exc.detail)


def _token_chunk(data: object) -> str:
    chunk = data.get("chunk") if isinstance(data, dict) else None
    return chunk if isinstance(chunk, str) else ""


def _last_text(messages: dict[str, dict]) -> str:
    texts = [message.get("text") for message in messages.values()]
    return next((text for text in reversed(texts) if isinstance(text, str)), "")


def _answer_as_stream(answer: Answer) -> Iterator[Token | Answer]:
    """A flow that does not stream: its whole text as one Token, then the Answer."""
    if answer.text:
        yield Token(answer.text)
    yield answer


def _tweaks_refused(response: requests.Response) -> bool:
    try:
        detail = response.json().get("detail")
    except (ValueError, AttributeError, requests.RequestException):
        return False
    return isinstance(detail, dict) and detail.get("code") == "TWEAKS_REFUSED"


def _event_reason(data: object) -> str:
    """Langflow's reason in an ``error`` event: a message dict's ``text``, or ``{"error": ...}``."""
    if isinstance(data, dict):
        for key in ("text", "error"):
            if isinstance(data.get(key), str) and data[key].strip():
                return _detail_text(data[key]) or data[key].strip()
    return "Langflow reported an error without a reason"


# -- error helpers ----------------------------------------------------------------------------


def _langflow_reason(response: requests.Response) -> str | None:
    """The reason Langflow gives in ``detail``, made readable; None for a non-JSON body."""
    try:
        payload = response.json()
    except (ValueError, RecursionError, requests.RequestException):
        return None
    return _detail_text(payload.get("detail") if isinstance(payload, dict) else payload)


# '500: {"message": ...}': a status Langflow put before the JSON it wraps.
_STATUS_PREFIX = re.compile(r"^\d{3}:\s*(?=[\[{])")
# What a database error of Langflow's own appends: the statement and its parameters are no
# reason a person can act on, and may quote what someone else asked.
_DATABASE_INTERNALS = re.compile(r"\s*(\[SQL: |\[parameters: |\(Background on this error at: ).*", re.DOTALL)


def _detail_text(detail: object) -> str | None:
    """FastAPI ``detail`` as text: a string, a JSON-encoded object (HTTP 500, perhaps after its
    status), a dict or a list; a database error without its SQL."""
    if isinstance(detail, str):
        text = _STATUS_PREFIX.sub("", detail.strip())
        decoded = _loads_or_none(text)
        if isinstance(decoded, (dict, list)):
            return _detail_text(decoded)
        text = _DATABASE_INTERNALS.sub("", text).strip()
        return _clip(text) if text else None
    if isinstance(detail, dict):
        for key in ("message", "detail", "error", "msg", "description", "code"):
            if text := _detail_text(detail.get(key)):
                return text
        return None
    if isinstance(detail, list):
        texts = [_validation_text(item) for item in detail]
        return _clip("; ".join(text for text in texts if text)) or None
    return None


def _validation_text(item: object) -> str | None:
    """One FastAPI validation entry, e.g. ``body.input_value: Field required``."""
    if isinstance(item, dict) and isinstance(item.get("msg"), str):
        location = ".".join(str(part) for part in item.get("loc") or ())
        return f"{location}: {item['msg']}" if location else item["msg"]
    return _detail_text(item)


def _rate_limited(response: requests.Response, *, detail: str) -> LangflowRateLimited:
    wait = _retry_after(response.headers.get("Retry-After"))
    when = f"in {math.ceil(wait)} seconds" if wait is not None else "in a moment"
    return LangflowRateLimited(
        f"Langflow is receiving too many requests. Try again {when}.", retry_after=wait, detail=detail
    )


def _retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (seconds or an HTTP date); None if absent or unreadable."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        seconds = _seconds_until(value)
    return max(0.0, seconds) if seconds is not None and math.isfinite(seconds) else None


def _seconds_until(http_date: str) -> float | None:
    try:
        when = email.utils.parsedate_to_datetime(http_date)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return (when - datetime.now(UTC)).total_seconds()


def _transport_reason(exc: Exception) -> str:
    if isinstance(
        exc,
        (
            requests.exceptions.InvalidURL,
            requests.exceptions.InvalidSchema,
            requests.exceptions.MissingSchema,
        ),
    ):
        return "not a valid http(s) address"
    text = str(exc).lower()
    for needle, reason in _TRANSPORT_REASONS:
        if needle in text:
            return reason
    return "connection failed"


def _wraps_read_timeout(exc: Exception) -> bool:
    """requests reports a read timeout while streaming as ConnectionError(ReadTimeoutError)."""
    return bool(exc.args) and isinstance(exc.args[0], ReadTimeoutError)


def _body_text(response: requests.Response) -> str:
    """The body of an error answer, or "" if even that cannot be read."""
    try:
        return response.text
    except requests.RequestException:
        return ""


def _content_type(response: requests.Response) -> str:
    return response.headers.get("Content-Type", "").lower()


def _loads_or_none(text: str) -> object:
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return None


def _snippet(value: object) -> str:
    """At most a few hundred characters of a body or payload, for logs and details."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return _clip(text)


def _clip(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _SNIPPET else text[: _SNIPPET - 1] + "…"


def _redact(text: str, secret: str) -> str:
    # A key of a few characters would match ordinary words; real Langflow keys are long.
    return text.replace(secret, "[redacted]") if len(secret) >= _MIN_REDACTED else text


def _sentence(text: str) -> str:
    """Langflow's reason as the end of our sentence: one full stop, never two."""
    text = text.strip()
    return text if text.endswith((".", "!", "?")) else f"{text}."
