"""Driving the real app through AppTest: log in, ask, and read back what was saved."""

from __future__ import annotations

import html
import re
from pathlib import Path

from streamlit.testing.v1 import AppTest

from chatbot import store

ENTRY = str(Path(__file__).resolve().parent / "app_entry.py")


def logged_in(username="alice", password=None) -> AppTest:
    at = AppTest.from_file(ENTRY, default_timeout=30)
    at.run()
    at.text_input[0].input(username)
    at.text_input[1].input(password or f"secret-{username}")
    at.button[0].click().run()
    assert not at.exception, at.exception
    return at


def ask(at: AppTest, question: str) -> AppTest:
    at.chat_input(key="chat_input").set_value(question).run()
    assert not at.exception, at.exception
    return at


def saved(factory, username="alice"):
    with factory.begin() as session:
        actor = store.Actor.of(store.get_user(session, username))
        conversations = store.list_conversations(session, actor)
        return [m for c in conversations for m in store.list_messages(session, actor, c.id)]


def shown(label: str) -> str:
    """A label as the browser shows it: ui.plain_text backslash-escapes its Markdown characters."""
    return re.sub(r"\\(.)", r"\1", label)


def visible(value: str) -> str:
    """What the browser shows of a markdown element: its text, without tags or escapes."""
    if "<" not in value:
        return shown(value)
    return html.unescape(re.sub(r"<[^>]*>", "", value)).strip()


def texts(at: AppTest) -> str:
    return "\n".join(visible(m.value) for m in at.markdown) + "\n".join(shown(str(e.value)) for e in at.error)


