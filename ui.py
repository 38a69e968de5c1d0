"""Streamlit pieces shared by the pages: a message bubble, an error box. Pages stay thin."""

from __future__ import annotations

import datetime as dt
import json
import logging
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from urllib.parse import urlparse
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import streamlit as st

from chatbot import export, resources
from chatbot.engine import Progress
from chatbot.errors import ChatbotError
from chatbot.history import MAX_SEARCH_CHARS
from chatbot.render import live_html, plain_text, safe_html
from chatbot.store import Actor, version_label

logger = logging.getLogger("chatbot.ui")
ROLE_LABEL = {"user": "You", "assistant": "Assistant"}
# Query values carried through the login go back into a URL: a few KB at most. Longer than any
# value a page accepts (a search), so the page still sees that a value was cut and says so.
MAX_PARAM_CHARS = 2 * MAX_SEARCH_CHARS


def require_actor() -> Actor:
    """The logged-in user. A page reached without app.py's login gate goes to app.py.

    That happens only on a fresh server: until some run calls st.navigation, Streamlit
    serves files in pages/ directly (its legacy multipage mode), skipping app.py.
    """
    actor = st.session_state.get("actor")
    if actor is None:
        st.session_state["app_asked_for"] = asked_for()  # app.py opens this page after login
        st.switch_page("app.py", query_params=bounded_params(st.query_params.to_dict()))
    return actor


def asked_for() -> tuple[str, dict]:
    """The path and query of the page the browser asked for (st.context.url names it only
    until st.navigation or st.switch_page has picked a page)."""
    return urlparse(st.context.url or "").path, bounded_params(st.query_params.to_dict())


def bounded_params(params: Mapping[str, str]) -> dict[str, str]:
    """The query parameters with each value cut to MAX_PARAM_CHARS."""
    return {key: value[:MAX_PARAM_CHARS] for key, value in params.items()}


def show_error(exc: ChatbotError, *, doing: str) -> None:
    """The one place an error becomes UI: a message to act on, details only in the log."""
    logger.warning("%s failed: %s", doing, exc.detail)
    st.error(plain_text(f"{doing[:1].upper()}{doing[1:]} failed. {exc}"), icon=":material/error:")


def markdown(text: str) -> None:
    """Outside Markdown (an answer, a question, a note) through the one sanitizer."""
    st.markdown(safe_html(text, resources.settings().allowed_image_hosts), unsafe_allow_html=True)


def word_diff(diff_markdown: str, *, key: str) -> None:
    """A word diff whose every word is escaped (chatbot.replays.compare.diff_markdown), through the
    sanitizer; app.css colours its insertions (strong) and deletions (s) inside this container."""
    with st.container(key=f"diff_{key}"):
        markdown(diff_markdown)


def download(write: Callable, *, audit: Callable, db, read) -> Callable[[], bytes]:
    """A download made when it is clicked: ``audit(session)`` first in a transaction of its own (an
    admin's export of what is not theirs is noted even if writing then fails), then ``write(session,
    out)`` into a spooled temporary file, in a ``read`` session."""
    def generate() -> bytes:
        with db.begin() as session:
            audit(session)
        with tempfile.TemporaryFile() as spool, read.begin() as session:
            write(session, spool)
            spool.seek(0)
            return spool.read()

    return generate


DATE_GROUPS = ("Today", "Yesterday", "Previous 7 days", "Older")


def date_group(when: dt.datetime, today: dt.date, zone: dt.tzinfo) -> str:
    """Which sidebar group a conversation last active at ``when`` falls in, in the user's time zone."""
    day = (when if when.tzinfo else when.replace(tzinfo=dt.UTC)).astimezone(zone).date()
    age = (today - day).days
    return DATE_GROUPS[0] if age <= 0 else DATE_GROUPS[1] if age == 1 else DATE_GROUPS[2] if age < 7 else DATE_GROUPS[3]


def browser_zone() -> dt.tzinfo:
    try:
        return ZoneInfo(st.context.timezone or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return dt.UTC


def by_date(conversations) -> list[tuple[str, list]]:
    """The conversations (newest first) under Today, Yesterday, Previous 7 days and Older."""
    zone = browser_zone()
    today = dt.datetime.now(zone).date()
    groups: dict[str, list] = {}
    for c in conversations:
        groups.setdefault(date_group(c.updated_at, today, zone), []).append(c)
    return [(name, groups[name]) for name in DATE_GROUPS if name in groups]


duration = export.duration  # '850 ms', '1.2 s': the same words on the page and in the exports


def message_caption(message) -> str:
    """'Notes RAG v7 · gpt-4o-mini · 3.4 s · first token 610 ms · 50 tokens' for an answer: what
    answered (the flow's name and version, else its id, else the engine), the model, the timing
    and the tokens. Outside text: plain_text it."""
    source = getattr(message, "flow_name", None) or message.flow_id or message.engine or ""
    parts = [version_label(source, getattr(message, "flow_version", None)), getattr(message, "model", None)]
    if message.latency_ms is not None:
        parts.append(duration(message.latency_ms))
    if message.ttft_ms is not None:
        parts.append(f"first token {duration(message.ttft_ms)}")
    if message.total_tokens:
        parts.append(f"{message.total_tokens} tokens")
    return " · ".join(p for p in parts if p)


STEP_ICONS = {"success": ":material/check_circle:", "error": ":material/error:", "running": ":material/pending:"}
STEP_TEXT_CHARS = 4_000  # of a tool's input or output shown; the export has it whole


def agent_steps(steps: list[dict] | None, *, running: bool = False) -> None:
    """An agent's tool calls, as Langflow's Playground shows them: a collapsed "N steps" under the
    answer, each call with its input, output and duration."""
    if not steps:
        return
    label = f"{len(steps)} step{'s' if len(steps) != 1 else ''}" + (" so far" if running else "")
    with st.expander(label, icon=":material/construction:"):
        for step in steps:
            took = f" · {duration(step['duration_ms'])}" if step.get("duration_ms") is not None else ""
            status = step.get("status") or "success"
            st.markdown(f"{STEP_ICONS.get(status, '')} **{plain_text(step.get('name') or 'tool')}**{took}")
            for title, value in (("Input", step.get("input")), ("Output", step.get("error") or step.get("output"))):
                if value not in (None, "", {}):
                    st.caption(title)
                    st.code(step_text(value), language=None, wrap_lines=True)


def step_text(value) -> str:
    """A tool's input or output as text: JSON for structures, cut past STEP_TEXT_CHARS."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, indent=1, default=str)
    return text if len(text) <= STEP_TEXT_CHARS else text[:STEP_TEXT_CHARS] + f" … ({len(text):,} characters)"


def attached_files(files: list[dict] | None) -> None:
    """The files attached to a question: name, size and type (the bytes are in Langflow)."""
    if files:
        names = ", ".join(f"{f.get('name')} ({file_size(f.get('size'))})" for f in files)
        st.caption(plain_text(f"Attached: {names}"))


def file_size(size: int | None) -> str:
    return export.file_size(size) or "size unknown"


def question_body(text: str) -> None:
    long_text(text, key="question")


def long_text(text: str, *, key: str) -> None:
    """Markdown, or for a text past MAX_PREVIEW_CHARS its beginning and a download of the whole."""
    limit = resources.settings().max_preview_chars
    if len(text) <= limit:
        markdown(text)
        return
    markdown(text[:limit])
    st.caption(f"This text is {len(text):,} characters long; the preview shows the first {limit:,}.")
    st.download_button("Download the whole text", data=text, file_name="answer.md", mime="text/markdown",
                       key=f"long_{key}", on_click="ignore", icon=":material/download:")


ANALYST_ERROR = ("The assistant could not answer this time; your question is saved. "
                 "Press Retry in a minute, or tell your admin if it keeps failing.")


def message_body(message, *, admin: bool = True) -> None:
    """A saved message: its text (each output on its own when a flow had several), and its status.

    A failed answer tells an analyst what to do; an admin also sees the technical cause
    (Langflow's message, the setting to check).
    """
    outputs = getattr(message, "outputs", None) or []
    if message.role == "assistant" and len(outputs) > 1:
        for n, output in enumerate(outputs, 1):
            with st.container(border=True, key=f"output_{message.id}_{n}"):
                st.caption(plain_text(output.get("label") or f"Output {n}"))
                long_text(output.get("text") or "", key=f"{message.id}_{n}")
    elif message.content:
        long_text(message.content, key=str(message.id))
    if message.role == "user":
        attached_files(getattr(message, "files", None))
    else:
        agent_steps(getattr(message, "steps", None))
    if message.status == "error":
        cause = message.error or "the engine failed."
        st.error(plain_text(f"No answer: {cause}" if admin else ANALYST_ERROR), icon=":material/error:")
    elif message.status == "interrupted":
        st.warning(plain_text(f"Interrupted: {message.error or 'the answer did not finish.'}"),
                   icon=":material/pause_circle:")
    elif message.status == "stopped":
        st.info(plain_text(message.error or "Stopped."), icon=":material/stop_circle:")


def copy_button(message) -> None:
    """Copy: the message's Markdown source in a code box, whose own button copies it. A text
    past MAX_PREVIEW_CHARS has its download button instead (the box would carry it all)."""
    if not message.content or len(message.content) > resources.settings().max_preview_chars:
        return
    with st.popover("Copy", icon=":material/content_copy:", help="The text as Markdown, to copy"):
        st.code(message.content, language="markdown", wrap_lines=True)


def live_answer(slot, outputs: list[tuple[str, int]], progress: Progress, *, stopping: bool) -> None:
    """The answer while it streams: one block per output, its newest part past a few pages; an
    agent's steps so far; before any text, the step running now instead of a bare "Thinking…"."""
    with slot.container():
        if not outputs:
            st.status("Stopping…" if stopping else plain_text(progress.doing) or "Thinking…", state="running")
        for n, (text, length) in enumerate(outputs, 1):
            if len(outputs) > 1:
                st.caption(f"Output {n}")
            if length > len(text):
                st.caption(f"Streaming: {length:,} characters so far; the newest are shown.")
                text = text.partition("\n\n")[2] or text  # from a block's start: blocks stay the same
            st.markdown(live_html(text + " ▌", resources.settings().allowed_image_hosts), unsafe_allow_html=True)
        agent_steps([step.stored() for step in progress.steps], running=True)
        if stopping and outputs:
            st.caption("Stopping…")


CLOSE_SIDEBAR = (Path(__file__).resolve().parent / "assets" / "close-sidebar.js").read_text(encoding="utf-8")
RERUN_ON_RECONNECT = (Path(__file__).resolve().parent / "assets" / "rerun-on-reconnect.js").read_text(encoding="utf-8")


def rerun_on_reconnect() -> None:
    """Rerun the page when the browser reconnects, e.g. to another replica after one died.

    Streamlit reconnects without a rerun, so the page stayed as the dead replica left it (a
    streaming answer frozen, a login form the new server does not know) until the next click.
    The login cookie component's reruns used to hide that; now a script watching Streamlit's
    connection state clicks this hidden button once connected again (allowed by its hash in
    the security policy, like close_sidebar_on_mobile's, and like it kept out of the sidebar).
    """
    with st.container(key="app_reconnect"):  # hidden (app.css)
        st.button("Reconnected", key="app_reconnect_rerun")
        st.html(f"<script>{RERUN_ON_RECONNECT}</script>", unsafe_allow_javascript=True)


def close_sidebar_on_mobile(nonce: int) -> None:
    """Close the sidebar on a narrow screen, as st.navigation does after a pick. The script is
    allowed by its hash in the security policy (chatbot.headers); ``nonce`` makes each pick a new
    element, so the script runs again."""
    with st.container(key="chat_sidebar_closer"):  # in the main area, hidden (app.css): no script in the sidebar
        st.html(f"<script>{CLOSE_SIDEBAR}</script><span data-pick='{int(nonce)}'></span>", unsafe_allow_javascript=True)
