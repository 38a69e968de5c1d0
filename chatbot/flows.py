"""The flows analysts can pick: what Langflow says of each (name, running version, file inputs).

A catalog entry names a flow by id or endpoint name (``config.FlowEntry``). ``FlowDirectory``
resolves it, reads the flow's name and inputs, and works out which saved version is running:
Langflow 1.13 keeps versions as snapshots (``/api/v1/flows/{id}/versions/``) and marks none as
current, so the running graph is compared with each snapshot's, newest first, leaving out the
secrets Langflow strips from snapshots. The result is "v7", "v7+" (edited since v7 was saved),
or None (no snapshots). It is worked out again only when the flow's version token changes, so
a question costs one small request (``version-state``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from chatbot.config import IMAGE_TYPES, NOTES, FlowEntry, Settings
from chatbot.engine import Attachment, ChatBackend
from chatbot.errors import InputError, LangflowError, LangflowNotFound
from chatbot.langflow import LangflowClient

logger = logging.getLogger(__name__)

UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.IGNORECASE)
CHECK_SECONDS = 30.0  # how long the picker trusts what it last learnt of a flow
RESOLVE_SECONDS = 60.0  # how long an endpoint name's flow id is kept


@dataclass(frozen=True)
class FlowInfo:
    """A catalog flow as Langflow has it now."""

    key: str  # the catalog's flow: an id or an endpoint name
    id: str  # the flow's UUID
    name: str  # its name in Langflow
    version: str | None  # "v7", "v7+" (edited since v7), None (no saved versions)
    token: str  # Langflow's version token of the graph this describes
    documents: str | None  # the Read File component that takes documents (its ``path`` tweak)
    chat_input: str | None  # the Chat Input, which takes images (its ``files`` tweak)
    components: frozenset[str]  # every component id, to check tweaks against

    def accepts(self, extension: str) -> bool:
        """Whether a file of this type can go to the flow: an image to its Chat Input, anything
        else to its Read File component."""
        return bool(self.chat_input) if extension in IMAGE_TYPES else bool(self.documents)


class FlowDirectory:
    """What Langflow says of each catalog flow; safe to share between threads and sessions."""

    def __init__(self, client_for: Callable[[str], LangflowClient], *, clock=time.monotonic) -> None:
        self._client_for = client_for  # a catalog flow -> a client for it
        self._clock = clock
        self._lock = threading.Lock()
        self._ids: dict[str, tuple[float, str]] = {}  # endpoint name -> (when, flow id)
        self._infos: dict[str, tuple[float, FlowInfo | LangflowError]] = {}  # catalog flow -> (when, what)
        self._snapshots: dict[str, str] = {}  # version id -> fingerprint of its graph (never changes)

    def info(self, key: str, *, fresh: bool = True) -> FlowInfo:
        """The flow now; ``fresh=False`` trusts an answer up to CHECK_SECONDS old (the picker).

        Raises LangflowError when Langflow cannot be asked or has no such flow.
        """
        with self._lock:
            when, known = self._infos.get(key, (None, None))
        if known is not None and not fresh and self._clock() - when < CHECK_SECONDS:
            if isinstance(known, LangflowError):
                raise known
            return known
        try:
            found = self._read(key, known if isinstance(known, FlowInfo) else None)
        except LangflowError as exc:
            with self._lock:
                self._infos[key] = (self._clock(), exc)
            raise
        with self._lock:
            self._infos[key] = (self._clock(), found)
        return found

    def problem(self, key: str) -> str | None:
        """Why the flow cannot answer now (for the picker), or None when it can."""
        try:
            self.info(key, fresh=False)
        except LangflowError as exc:
            return str(exc)
        return None

    def _read(self, key: str, known: FlowInfo | None) -> FlowInfo:
        client = self._client_for(key)
        flow_id = self._flow_id(client, key)
        token = str(client.version_state(flow_id).get("version_token") or "")
        if known is not None and token and known.token == token and known.id == flow_id:
            return known
        flow = client.get_flow(flow_id)
        graph = flow.get("data") if isinstance(flow.get("data"), dict) else {}
        nodes = [n for n in graph.get("nodes") or [] if isinstance(n, dict)]
        return FlowInfo(
            key=key, id=flow_id, name=str(flow.get("name") or key), token=token,
            version=self._running_version(client, flow_id, graph),
            documents=_first_of(nodes, "File"), chat_input=_first_of(nodes, "ChatInput"),
            components=frozenset(str(n.get("id")) for n in nodes),
        )

    def _flow_id(self, client: LangflowClient, key: str) -> str:
        if UUID.match(key):
            return key
        with self._lock:
            when, flow_id = self._ids.get(key, (None, None))
        if flow_id is not None and self._clock() - when < RESOLVE_SECONDS:
            return flow_id
        found = [f for f in client.list_flows() if key in (f.get("endpoint_name"), f.get("name"))]
        found.sort(key=lambda f: f.get("endpoint_name") != key)  # an endpoint name before a mere name
        if not found:
            raise _no_such_flow(key)
        with self._lock:
            self._ids[key] = (self._clock(), str(found[0]["id"]))
        return str(found[0]["id"])

    def _running_version(self, client: LangflowClient, flow_id: str, graph: dict) -> str | None:
        versions = sorted(client.list_versions(flow_id), key=lambda v: v.get("version_number") or 0, reverse=True)
        if not versions:
            return None
        running = fingerprint(graph)
        for version in versions:
            if self._snapshot(client, flow_id, str(version.get("id"))) == running:
                return f"v{version.get('version_number')}"
        return f"v{versions[0].get('version_number')}+"

    def _snapshot(self, client: LangflowClient, flow_id: str, version_id: str) -> str:
        with self._lock:
            known = self._snapshots.get(version_id)
        if known is None:
            data = client.get_version(flow_id, version_id).get("data")
            known = fingerprint(data if isinstance(data, dict) else {})
            with self._lock:
                self._snapshots[version_id] = known
        return known


def fingerprint(graph: Mapping) -> str:
    """A digest of what a flow graph runs: its components' settings and its edges, leaving out
    secrets (which Langflow strips from saved versions) and where the boxes sit on screen."""
    nodes = []
    for node in graph.get("nodes") or []:
        template = ((node.get("data") or {}).get("node") or {}).get("template") or {}
        settings = {
            name: None if field.get("password") else field.get("value")
            for name, field in template.items() if isinstance(field, dict)
        }
        nodes.append([node.get("id"), settings])
    edges = sorted(str(edge.get("id")) for edge in graph.get("edges") or [] if isinstance(edge, dict))
    text = json.dumps([sorted(nodes, key=lambda n: str(n[0])), edges], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _first_of(nodes: list[dict], kind: str) -> str | None:
    return next((str(n["id"]) for n in nodes if (n.get("data") or {}).get("type") == kind and n.get("id")), None)


def _no_such_flow(key: str) -> LangflowError:
    return LangflowNotFound(f"Langflow has no flow '{key}'. Check LANGFLOW_FLOWS (or LANGFLOW_FLOW_ID).")


# -- tweaks ------------------------------------------------------------------------------------


def merged_tweaks(*layers: Mapping | None) -> dict:
    """Tweaks by component id, later layers winning field by field (the catalog's defaults, then
    the files, then an admin's tweak for one question)."""
    merged: dict[str, dict] = {}
    for layer in layers:
        for component, fields in (layer or {}).items():
            merged.setdefault(component, {}).update(fields)
    return merged


def unknown_components(tweaks: Mapping, info: FlowInfo) -> list[str]:
    """The tweaked components the flow does not have: Langflow ignores those without a word."""
    return sorted(component for component in tweaks if component not in info.components)


def parse_tweaks(text: str) -> dict:
    """An admin's tweaks as typed: a JSON object of objects keyed by component id."""
    try:
        tweaks = json.loads(text) if text.strip() else {}
    except ValueError as exc:
        raise InputError(f"The tweaks are not valid JSON ({exc.msg} at character {exc.pos}).") from None
    if not isinstance(tweaks, dict) or not all(isinstance(v, dict) for v in tweaks.values()):
        raise InputError('Tweaks are a JSON object of objects keyed by component id, e.g. '
                         '{"OpenAIModel-x1y2z": {"temperature": 0.2}}.')
    return tweaks


def admin_tweaks(text: str, info: FlowInfo | None) -> dict | None:
    """An admin's tweaks for one question, as typed; None when there are none. Refused when they
    are not JSON or name a component the flow does not have (Langflow would ignore it silently)."""
    tweaks = parse_tweaks(text or "")
    if not tweaks:
        return None
    if info is not None and (unknown := unknown_components(tweaks, info)):
        raise InputError(f"This flow has no component {unknown[0]!r}; its components are "
                         f"{', '.join(sorted(info.components))}. Nothing was sent.")
    return tweaks


def accepted_types(info: FlowInfo | None, allowed: tuple[str, ...]) -> tuple[str, ...]:
    """The file types a question to this flow may carry: the allowed ones it has somewhere to put."""
    return tuple(kind for kind in allowed if info is not None and info.accepts(kind))


def label_of(settings: Settings, key: str | None, info: FlowInfo | None = None) -> str:
    """What analysts see a catalog flow as: its label, else Langflow's name for it, else its id."""
    if key == NOTES:
        return "Notes"
    entry: FlowEntry | None = settings.flow_entry(key)
    if entry is not None and entry.label != entry.flow:
        return entry.label
    return info.name if info is not None else (entry.flow if entry else key or "")


# -- routing a question ------------------------------------------------------------------------


@dataclass(frozen=True)
class Prepared:
    """What goes with a question to its flow: the flow as it is now, the tweaks, the files."""

    info: FlowInfo | None
    tweaks: dict
    files: list[dict]  # each {"name", "size", "type", "path"}, as the question keeps them


@dataclass(frozen=True)
class Route:
    """Where a conversation's questions go: the engine, and for a Langflow flow the catalog key,
    its default tweaks and the directory that knows the flow."""

    backend: ChatBackend
    key: str = NOTES
    directory: FlowDirectory | None = None
    tweaks: Mapping = field(default_factory=dict, hash=False)

    def prepare(self, attachments: tuple[Attachment, ...] = (), files: list[dict] | None = None,
                extra: Mapping | None = None) -> Prepared:
        """Look the flow up (for the answer's provenance), upload the attachments, and merge the
        tweaks: the catalog's, then the files', then ``extra`` (an admin's, for one question).

        ``files`` are the question's files already in Langflow (a regenerated answer sends them
        again). Provenance is best effort: a flow Langflow cannot describe is still asked.
        """
        info = None
        if self.directory is not None:
            try:
                info = self.directory.info(self.key)
            except LangflowError as exc:
                if attachments:
                    raise
                logger.warning("could not look up flow %s for its provenance: %s", self.key, exc.detail)
        kept = [dict(f) for f in files or [] if f.get("path")]
        for attachment in attachments:
            _check_accepted(attachment.name, info)
            path = self.backend.upload(attachment.name, attachment.data, attachment.type)
            kept.append({"name": attachment.name, "size": attachment.size, "type": attachment.type, "path": path})
        return Prepared(info, merged_tweaks(self.tweaks, _file_tweaks(kept, info), extra), kept)


def extension(name: str) -> str:
    return name.rsplit(".", 1)[-1].lower() if "." in name else ""


def _check_accepted(name: str, info: FlowInfo | None) -> None:
    if info is None or not info.accepts(extension(name)):
        takes = "images" if info and info.chat_input and not info.documents else "no files of this type"
        raise InputError(f"This flow takes {takes}, so {name!r} was not sent. Your question is saved; "
                         "ask it without the file, or pick a flow that reads files.")


def _file_tweaks(files: list[dict], info: FlowInfo | None) -> dict:
    """The files as tweaks: documents to the Read File component's ``path``, images to the Chat
    Input's ``files``."""
    if info is None or not files:
        return {}
    images = [f["path"] for f in files if extension(f["name"]) in IMAGE_TYPES]
    documents = [f["path"] for f in files if extension(f["name"]) not in IMAGE_TYPES]
    tweaks = {}
    if documents and info.documents:
        tweaks[info.documents] = {"path": documents}
    if images and info.chat_input:
        tweaks[info.chat_input] = {"files": images}
    return tweaks
