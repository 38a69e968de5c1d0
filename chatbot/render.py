"""Model output made safe to show as Markdown: HTML stays text, links only http(s) and mailto."""

from __future__ import annotations

import re

# Fenced code blocks and inline code spans: their text is never parsed as HTML, so it is kept.
CODE = re.compile(r"(```.*?(?:```|\Z)|~~~.*?(?:~~~|\Z)|`[^`\n]+`)", re.DOTALL)
# [text](url "title") and ![alt](url): the url is checked, the rest kept.
LINK = re.compile(r"(!?\[[^\]]*\])\(\s*<?((?:[^()\s<>]|\([^()\s]*\))*)>?([^)]*)\)")
# [label]: url "title" — a reference definition, used by [text][label] and ![alt][label].
# It may stand in a quote or a list ("> [x]: url"), hence any run of blanks and '>' before it.
REFERENCE = re.compile(r"^([ \t>]*\[[^\]]+\]:[ \t]*)<?([^\s>]*)>?(.*)$", re.MULTILINE)
SAFE_SCHEMES = ("http://", "https://", "mailto:")
ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}


def escape_html(text: str) -> str:
    """Turn every HTML tag and entity into visible text (keeps Markdown block quotes working)."""
    escaped = re.sub(r"[&<]", lambda m: ENTITIES[m.group()], text)
    # '>' only needs escaping inside a line; at a line start it is a Markdown quote.
    return re.sub(r"(?<=\S)>", "&gt;", escaped)


def _safe_link(match: re.Match) -> str:
    label, url, rest = match.group(1), match.group(2), match.group(3)
    if url.lower().startswith(SAFE_SCHEMES) or url.startswith("#"):
        return f"{label}({url}{rest})"
    return label.lstrip("!")[1:-1]  # an unsafe link or image becomes its plain text


def _safe_reference(match: re.Match) -> str:
    url = match.group(2)
    if url.lower().startswith(SAFE_SCHEMES) or url.startswith("#"):
        return match.group(0)
    return ""  # the definition goes; [text][label] then shows as plain text


def safe_markdown(text: str) -> str:
    """Markdown in which no HTML is live and no link or image uses another scheme."""
    parts = CODE.split(text)
    for i in range(0, len(parts), 2):  # even parts are outside code
        parts[i] = REFERENCE.sub(_safe_reference, LINK.sub(_safe_link, escape_html(parts[i])))
    return "".join(parts)
