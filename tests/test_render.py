"""Model output shown as Markdown never becomes live HTML and links only to http(s) or mailto."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chatbot.render import escape_html, safe_markdown


@pytest.mark.parametrize(("payload", "shown"), [
    ("<script>alert(1)</script>", "&lt;script&gt;alert(1)&lt;/script&gt;"),
    ('<img src=x onerror="alert(1)">', '&lt;img src=x onerror="alert(1)"&gt;'),
    ('<iframe src="https://evil.example"></iframe>', '&lt;iframe src="https://evil.example"&gt;&lt;/iframe&gt;'),
    ("[click me](javascript:alert(1))", "click me"),
    ("[x](JaVaScRiPt:alert(1))", "x"),
    ("![pic](data:image/svg+xml;base64,PHN2Zz4=)", "pic"),
    ("[mail](mailto:a@b.c) [web](https://example.com/a_(b))", "[mail](mailto:a@b.c) [web](https://example.com/a_(b))"),
    ("<a href='javascript:alert(1)'>x</a>", "&lt;a href='javascript:alert(1)'&gt;x&lt;/a&gt;"),
    ("![x][r]\n\n[r]: data:text/html;base64,PHNjcmlwdD4=", "![x][r]\n\n"),
    ("[go][j]\n  [j]: <JavaScript:alert(1)> 'title'", "[go][j]\n"),
    ("[ok][w]\n[w]: https://example.com", "[ok][w]\n[w]: https://example.com"),
    ("> ![x][e]\n>\n> [e]: data:text/html;base64,PHNj", "> ![x][e]\n>\n"),
])
def test_html_and_unsafe_links_are_inert(payload, shown):
    assert safe_markdown(payload) == shown


def test_code_keeps_its_characters_and_quotes_stay_quotes():
    text = "> quoted\n\n`a<b>` and\n```html\n<div>&amp;</div>\n```\nx -> y"
    assert safe_markdown(text) == "> quoted\n\n`a<b>` and\n```html\n<div>&amp;</div>\n```\nx -&gt; y"


@given(st.text())
def test_no_tag_survives_outside_code(text):
    rendered = safe_markdown(text.replace("`", "").replace("~~~", ""))
    assert "<" not in rendered


def test_questions_are_plain_text():
    assert escape_html("<b>bold?</b> & more") == "&lt;b&gt;bold?&lt;/b&gt; &amp; more"
