"""Streamlit pieces shared by the pages: a message bubble, an error box. Pages stay thin."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from urllib.parse import urlparse

import streamlit as st

from chatbot.errors import ChatbotError
from chatbot.history import MAX_SEARCH_CHARS
from chatbot.render import escape_html, safe_markdown
from chatbot.store import Actor

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
    st.error(f"{doing[:1].upper()}{doing[1:]} failed. {exc}", icon=":material/error:")


def duration(ms: int) -> str:
    return f"{ms} ms" if ms < 1000 else f"{ms / 1000:.1f} s"


def message_caption(message) -> str:
    """'flow-id · 1.2 s · first token 300 ms · 51 tokens' for an answer."""
    parts = [message.flow_id or message.engine or ""]
    if message.latency_ms is not None:
        parts.append(duration(message.latency_ms))
    if message.ttft_ms is not None:
        parts.append(f"first token {duration(message.ttft_ms)}")
    if message.total_tokens:
        parts.append(f"{message.total_tokens} tokens")
    return " · ".join(p for p in parts if p)


def message_body(message) -> None:
    """The text of a message: questions as plain text, answers as safe Markdown."""
    if message.role == "user":
        st.markdown(escape_html(message.content))
    elif message.content:
        st.markdown(safe_markdown(message.content))
    if message.status == "error":
        st.error(f"No answer: {message.error or 'the engine failed.'}", icon=":material/error:")
    elif message.status == "interrupted":
        st.warning(f"Interrupted: {message.error or 'the answer did not finish.'}", icon=":material/pause_circle:")
