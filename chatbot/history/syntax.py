"""The search box's language: words, "phrases", prefix*, -word, OR, and field filters.

``parse`` reads any text without failing. What it cannot use it leaves out and says so in
``Parsed.ignored`` ("the stray quote"), so a typo never fails and never silently matches nothing.
Field filters are the page's other filters written in the box (``tag:billing`` is the Tags
widget holding "billing"); ``Parsed.fields`` holds them by ``HistoryFilter`` field name.

    vacuum "full scan"        both, in one message (words are ANDed)
    vac*                      a word starting with vac (at least two letters before the *)
    vacuum OR analyze         either
    -refund                   no message of the conversation has refund
    user:bob flow:notes tag:billing tag:"needs review" status:error|stopped|interrupted
    fb:up|down|none version:"Notes RAG v7" after:2024-05-01 before:2024-06-01 latency>5s
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from dataclasses import dataclass, field

from chatbot.fulltext import Term, TextQuery, words_of

LAST_DAY = dt.date.max - dt.timedelta(days=1)  # a range ends at the next midnight, which must exist
STATUSES = ("error", "stopped", "interrupted")
FEEDBACK = ("up", "down", "none")
MIN_PREFIX = 2
HINT = ('Words are ANDed · "a phrase" · vac* · -exclude · a OR b · tag: user: flow: version: '
        "status:error fb:down after:2024-05-01 before: latency>5s")
_KEYS = "user|flow|tag|status|fb|version|before|after"
_TOKEN = re.compile(
    rf'(?P<field>-?\b(?:{_KEYS}):(?:"[^"]*"?|[^\s"]*))'
    r"|(?P<latency>\blatency\s*[<>]=?\s*[^\s\"]*)"
    r'|(?P<phrase>-?"[^"]*"?\*?)'
    r'|(?P<word>[^\s"]+)',
    re.IGNORECASE,
)
_LATENCY = re.compile(r"latency\s*>=?\s*(\d+(?:\.\d+)?)\s*(ms|s|m)?$", re.IGNORECASE)
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, None: 1000}


@dataclass(frozen=True)
class Parsed:
    """A search read: the full-text query, the field filters, and what was left out (as words)."""

    query: TextQuery
    fields: dict = field(default_factory=dict)
    ignored: tuple[str, ...] = ()


def flow_and_version(label: str) -> tuple[str, str] | None:
    """('Notes RAG', 'v7') from 'Notes RAG v7' (``store.version_label``'s text); None when it has
    no version. A version is one word ("v7", "v7+"); a flow's name may have spaces."""
    flow, _, version = label.rpartition(" ")
    return (flow, version) if flow.strip() and version else None


@functools.lru_cache(maxsize=1024)
def parse(text: str) -> Parsed:
    """Read a search; never raises."""
    reader = _Reader()
    for match in _TOKEN.finditer(text):
        kind = match.lastgroup
        getattr(reader, kind)(match.group(kind))
    return reader.done()


class _Reader:
    def __init__(self) -> None:
        self.groups: list[list[Term]] = [[]]
        self.excluded: list[Term] = []
        self.fields: dict = {}
        self.ignored: list[str] = []
        self.pending_or = False

    # -- text --------------------------------------------------------------------------------
    def word(self, token: str) -> None:
        if token == "OR":
            if self.groups[-1] and not self.pending_or:
                self.pending_or = True
            else:
                self._ignore("a lone OR")
            return
        excluded = token.startswith("-") and len(token) > 1
        body = token[1:] if excluded else token
        prefix = body.endswith("*")
        self._term(words_of(body), prefix=prefix, excluded=excluded, shown=token)

    def phrase(self, token: str) -> None:
        excluded = token.startswith("-")
        body = token[1:] if excluded else token
        prefix = body.endswith("*") and len(body) > 1 and body[-2] == '"'
        body = body[:-1] if prefix else body
        closed = len(body) > 1 and body.endswith('"')
        if not closed:
            self._ignore("the stray quote")
        self._term(words_of(body), prefix=prefix, excluded=excluded, shown=token)

    def _term(self, words: str, *, prefix: bool, excluded: bool, shown: str) -> None:
        if not words:
            if shown.strip('"') or shown == '""':
                self._ignore(f"“{shown}”" if shown.strip('"') else "an empty phrase")
            return
        if prefix and " " in words:
            self._ignore(f"the * after the phrase “{words}”")
            prefix = False
        if prefix and len(words) < MIN_PREFIX:
            self._ignore(f"the * after “{words}” (at least {MIN_PREFIX} letters)")
            prefix = False
        term = Term(words, prefix)
        if excluded:
            if term not in self.excluded:
                self.excluded.append(term)
            return
        if self.pending_or:
            self.groups.append([])
            self.pending_or = False
        if term not in self.groups[-1]:
            self.groups[-1].append(term)

    # -- fields ------------------------------------------------------------------------------
    def field(self, token: str) -> None:
        if token.startswith("-"):
            self._ignore(f"the minus before {token[1:]} (field filters cannot be excluded)")
            token = token[1:]
        key, _, value = token.partition(":")
        key = key.lower()
        quoted = value.startswith('"')
        value = value.strip('"').strip()
        if quoted and not token.endswith('"') or quoted and len(token) - len(key) - 1 < 2:
            self._ignore("the stray quote")
        if not value:
            self._ignore(f"{key}: without a value")
            return
        getattr(self, f"_{key}")(value, shown=token)

    def _user(self, value: str, *, shown: str) -> None:
        self.fields["user"] = value.lower()

    def _flow(self, value: str, *, shown: str) -> None:
        self.fields["engine"] = value

    def _tag(self, value: str, *, shown: str) -> None:
        tag = " ".join(value.split()).lower()[:60]
        self.fields.setdefault("tags", ())
        if tag not in self.fields["tags"]:
            self.fields["tags"] = tuple(sorted({*self.fields["tags"], tag}))

    def _status(self, value: str, *, shown: str) -> None:
        if value.lower() in STATUSES:
            self.fields["status"] = value.lower()
        else:
            self._ignore(f"{shown} (status is {', '.join(STATUSES)})")

    def _fb(self, value: str, *, shown: str) -> None:
        aliases = {"👍": "up", "👎": "down"}
        value = aliases.get(value, value.lower())
        if value in FEEDBACK:
            self.fields["feedback"] = value
        else:
            self._ignore(f"{shown} (fb is up, down or none)")

    def _version(self, value: str, *, shown: str) -> None:
        if flow_and_version(value):
            self.fields["version"] = value
        else:
            self._ignore(f'{shown} (a version names its flow: version:"Notes RAG v7")')

    def _before(self, value: str, *, shown: str) -> None:
        day = self._day(value, shown)
        if day is not None:
            if day <= dt.date.min:
                self._ignore(f"{shown} (too early)")
            else:
                self.fields["until"] = day - dt.timedelta(days=1)

    def _after(self, value: str, *, shown: str) -> None:
        day = self._day(value, shown)
        if day is not None:
            self.fields["since"] = day

    def _day(self, value: str, shown: str) -> dt.date | None:
        try:
            day = dt.date.fromisoformat(value)
        except ValueError:
            self._ignore(f"{shown} (dates are written 2024-05-01)")
            return None
        if day > LAST_DAY:
            self._ignore(f"{shown} (too late)")
            return None
        return day

    def latency(self, token: str) -> None:
        found = _LATENCY.match(token.strip())
        if found is None:
            self._ignore(f"{token} (write latency>5s or latency>500ms)")
            return
        number, unit = found.groups()
        ms = int(float(number) * _UNIT_MS[unit.lower() if unit else None])
        if ms > 10**9:
            self._ignore(f"{token} (too long)")
            return
        self.fields["latency_over_ms"] = ms

    # -- the end -----------------------------------------------------------------------------
    def _ignore(self, what: str) -> None:
        if what not in self.ignored:
            self.ignored.append(what)

    def done(self) -> Parsed:
        if self.pending_or:
            self._ignore("a lone OR")
        groups = tuple(tuple(group) for group in self.groups if group)
        since, until = self.fields.get("since"), self.fields.get("until")
        if since and until and since > until:
            self._ignore(f"before:{until + dt.timedelta(days=1)} (it is before after:{since})")
            del self.fields["until"]
        return Parsed(TextQuery(groups, tuple(self.excluded)), self.fields, tuple(self.ignored))
