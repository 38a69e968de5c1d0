"""live_render: one redraw at the end of a 10 MB streaming answer costs ≤ 1.5 × one at 20 KB.

A redraw is what the chat page does 20 times a second while an answer streams: take the text
so far from the Turn (chatbot.chat.Turn.live_outputs, the newest LIVE_CHARS of each output)
and sanitize it block by block (chatbot.render.live_html). Each answer is a Turn fed with Markdown tokens of a
few words, as a model sends them; one more token arrives before each timed redraw, so the
sanitizer's cache never answers for it. Before the fix every redraw re-sanitized the whole
text: 87 s to show a 10 MB answer.
"""

from __future__ import annotations

from bench.context import Context
from bench.report import Figure
from bench.timing import time_pairs
from chatbot.chat import Turn
from chatbot.live import LIVE_CHARS
from chatbot.render import live_html

SMALL, LARGE = LIVE_CHARS, 10_000_000  # characters of answer so far: a full live view, and 10 MB
LIMIT = 1.5
TOKEN_TEXT = ("The **vacuum** step frees dead rows; see `pg_stat_user_tables` and [the docs](https://www.postgresql.org). ",
              "| table | dead |\n|---|---|\n| orders | 12 |\n\n", "- one item\n- another item\n\n")


def run(ctx: Context) -> list[Figure]:
    small, large = _turn(SMALL), _turn(LARGE)
    small_stats, large_stats = time_pairs(lambda: _redraw(small), lambda: _redraw(large), pairs=20 if ctx.quick else 60)
    ratio = large_stats.median / small_stats.median
    ctx.log("live_render: redraw at %d chars %.2f ms, at %d chars %.2f ms (%.2f×)", SMALL, small_stats.median * 1000,
            LARGE, large_stats.median * 1000, ratio)  # fmt: skip
    return [Figure(
        name="live_render", value=large_stats.median * 1000, unit="ms",
        target=f"a redraw at {LARGE:,} characters ≤ {LIMIT:g} × one at {SMALL:,}", met=ratio <= LIMIT,
        baseline=small_stats.median * 1000, baseline_label=f"a redraw at {SMALL:,} characters",
        details={"small_ms": small_stats.summary(), "large_ms": large_stats.summary(), "live_chars": LIVE_CHARS},
    )]  # fmt: skip


def _turn(size: int) -> Turn:
    turn = Turn(db=None, actor=None, conversation_id=0, session_id="bench", question="q", question_id=0, backend=None)
    tokens, length, n = [], 0, 0
    while length < size:
        for word in TOKEN_TEXT[n % len(TOKEN_TEXT)].split(" "):
            tokens.append(word + " ")
            length += len(word) + 1
        n += 1
    turn._live[""] = tokens
    turn._lengths[""] = length
    return turn


def _redraw(turn: Turn) -> None:
    turn._live[""].append("more ")  # a new token, as between two redraws of a live answer
    turn._lengths[""] += 5
    for text, _length in turn.live_outputs(tail=LIVE_CHARS):
        if _length > len(text):  # as ui.live_answer does
            text = text.partition("\n\n")[2] or text
        live_html(text + " ▌")
