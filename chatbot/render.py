"""The one sanitizer: text from outside (answers, questions, notes, titles, errors) made safe to show.

- ``safe_html`` renders Markdown with markdown-it-py (CommonMark, tables, strikethrough, bare
  links; raw HTML stays text) and cleans the result with nh3 (the ammonia sanitizer): only
  harmless tags, links only to http(s) and mailto, and images only from the hosts in
  ALLOWED_IMAGE_HOSTS (none by default). Any other image is shown as its alt text and address,
  never loaded: a model told to put a conversation into an image URL cannot send it anywhere.
  Its output is one line of HTML, for ``st.markdown(..., unsafe_allow_html=True)``: on one line,
  the browser's Markdown pass sees a single raw-HTML block and parses nothing inside it again.
- ``plain_text`` escapes every Markdown character, for labels, titles and error texts that
  Streamlit renders as Markdown (button labels even show images).
"""

from __future__ import annotations

import functools
import html
import re
from urllib.parse import urlsplit

import nh3
from markdown_it import MarkdownIt

SAFE_SCHEMES = ("http", "https", "mailto")
TAGS = {
    "p", "br", "hr", "h1", "h2", "h3", "h4", "h5", "h6", "strong", "em", "del", "s", "code", "pre",
    "blockquote", "ul", "ol", "li", "table", "thead", "tbody", "tr", "th", "td", "a", "span", "img",
}
ATTRIBUTES = {
    "a": {"href", "title"}, "img": {"src", "alt", "title"}, "ol": {"start"}, "code": {"class"},
    "th": {"style"}, "td": {"style"}, "span": {"class"},
}
SHOWN_URL_CHARS = 80  # of a blocked image's address, shown as text
# Every ASCII punctuation character may be backslash-escaped in CommonMark; ':' and '$' also
# stop Streamlit's own :icon:, :color[...] and $math$ syntax.
MARKDOWN_PUNCTUATION = re.compile(r"([!\"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~])")


def plain_text(text: str) -> str:
    """``text`` as Markdown that shows exactly these characters: no link, image, HTML or format."""
    return MARKDOWN_PUNCTUATION.sub(r"\\\1", text).replace("\n", " ")


def safe_html(text: str, image_hosts: frozenset[str] = frozenset()) -> str:
    """Markdown as sanitized HTML on one line (see the module docstring)."""
    return _safe_html(text, image_hosts)


@functools.lru_cache(maxsize=2048)  # a transcript is shown again on every rerun
def _safe_html(text: str, image_hosts: frozenset[str]) -> str:
    rendered = _markdown(image_hosts).render(text)
    cleaned = _cleaner(image_hosts).clean(rendered)
    return cleaned.replace("\r", "").replace("\n", "&#10;")


FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")


def live_html(text: str, image_hosts: frozenset[str] = frozenset()) -> str:
    """``safe_html`` for an answer that is still growing, block by block.

    Each block (text between blank lines, a fenced code block whole) is sanitized on its own
    and remembered, so a redraw sanitizes only the last block, the one that is still growing:
    the cost of a redraw does not grow with the answer. (A reference link whose definition sits
    in another block shows as text until the answer is saved.)
    """
    return "".join(_safe_html(block, image_hosts) for block in blocks(text))


def blocks(text: str) -> list[str]:
    """The text cut at blank lines outside fenced code."""
    found, current, fence = [], [], None
    for line in text.split("\n"):
        marker = FENCE.match(line)
        if fence is None and marker:
            fence = marker.group(1)[0] * len(marker.group(1))
        elif fence is not None and line.strip().startswith(fence):
            fence = None
        if fence is None and not line.strip() and current:
            found.append("\n".join(current))
            current = []
        elif line.strip() or current:
            current.append(line)
    if current:
        found.append("\n".join(current))
    return found


def allowed_url(url: str) -> bool:
    """A link anyone may follow: http(s) or mailto (and in-page anchors)."""
    if url.startswith("#"):
        return True
    scheme = urlsplit(url.strip()).scheme.lower()
    return scheme in SAFE_SCHEMES


def allowed_image(url: str, image_hosts: frozenset[str]) -> bool:
    """An image the browser may load: http(s) from one of the allowed hosts."""
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return False
    return parts.scheme.lower() in ("http", "https") and (parts.hostname or "").lower() in image_hosts


@functools.lru_cache(maxsize=8)
def _markdown(image_hosts: frozenset[str]) -> MarkdownIt:
    md = MarkdownIt("gfm-like", {"html": False, "linkify": True, "typographer": False})
    md.validateLink = allowed_url  # an unsafe link stays text (markdown-it's own check is a denylist)

    def image(renderer, tokens, idx, options, env):
        token = tokens[idx]
        src, alt = token.attrGet("src") or "", renderer.renderInlineAsText(token.children or [], options, env)
        if allowed_image(src, image_hosts):
            return renderer.image(tokens, idx, options, env)
        shown = src if len(src) <= SHOWN_URL_CHARS else src[: SHOWN_URL_CHARS - 1] + "…"
        return (f'<span class="blocked-image">[image: {html.escape(alt or "no description")}] '
                f"<code>{html.escape(shown)}</code></span>")

    md.add_render_rule("image", image)
    return md


@functools.lru_cache(maxsize=8)
def _cleaner(image_hosts: frozenset[str]) -> nh3.Cleaner:
    def attribute(tag: str, name: str, value: str) -> str | None:
        if tag == "a" and name == "href":
            return value if allowed_url(value) else None
        if tag == "img" and name == "src":
            return value if allowed_image(value, image_hosts) else None
        if name == "class":
            return value if re.fullmatch(r"(language-[\w+#.-]+|blocked-image)", value) else None
        return value

    return nh3.Cleaner(
        tags=TAGS, attributes=ATTRIBUTES, attribute_filter=attribute, url_schemes=set(SAFE_SCHEMES),
        link_rel="noopener noreferrer nofollow", filter_style_properties={"text-align"},
    )
