"""A replay's comparison: word diffs, the summary at the top of the page, and its CSV / Excel / JSON files.

Pure functions over ``ReplayItem`` rows (or anything with their attributes), but ``record_export``,
which notes an admin's download of another's replay in the audit log.
The files reuse chatbot/export.py's rules: CSV and Excel cells that a spreadsheet would run as a
formula get a leading ``'`` (``export.neutralize_cell``), Excel drops what XML forbids and cuts a cell
past 32,767 characters (``export.excel_text``); JSON keeps every string exactly.
"""

from __future__ import annotations

import codecs
import csv
import difflib
import io
import json
import re
import tempfile
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import BinaryIO

import pandas as pd
import xlsxwriter
from sqlalchemy.orm import Session

from chatbot import export, store
from chatbot.models import Replay, User
from chatbot.render import plain_text
from chatbot.replays.jobs import changed, replay_label, unjudged
from chatbot.store import Actor, version_label

DIFF_OPS = ("same", "add", "del")
FINISHED = ("complete", "error")  # a replayed question that has its answer (or its error)
COLUMNS = [
    "position", "question", "original_answer", "replayed_answer", "corrected_answer", "original_feedback",
    "original_comment", "verdict", "changed", "original_status", "status", "error", "original_latency_ms",
    "latency_ms", "original_ttft_ms", "ttft_ms", "original_tokens", "tokens", "original_flow", "flow",
    "conversation_id", "answer_id",
]  # fmt: skip
INTEGER_COLUMNS = frozenset({"position", "original_feedback", "original_latency_ms", "latency_ms", "original_ttft_ms",
                             "ttft_ms", "original_tokens", "tokens", "conversation_id", "answer_id"})
_TOKENS = re.compile(r"\s+|\S+")
_EXCEL_WIDTHS = {"question": 50, "original_answer": 70, "replayed_answer": 70, "corrected_answer": 50,
                 "original_comment": 30, "error": 40, "original_flow": 20, "flow": 20}


# -- what changed -------------------------------------------------------------------------------


def word_diff(old: str | None, new: str | None) -> list[tuple[str, str]]:
    """``new`` against ``old`` word by word: [(op, text)] with op "same", "add" or "del", whitespace
    kept, neighbours of one op joined. The "same" and "add" texts put together give ``new`` back."""
    before, after = _TOKENS.findall(old or ""), _TOKENS.findall(new or "")
    pairs: list[tuple[str, str]] = []
    matcher = difflib.SequenceMatcher(None, before, after, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            _append(pairs, "same", "".join(after[j1:j2]))
            continue
        if i2 > i1:
            _append(pairs, "del", "".join(before[i1:i2]))
        if j2 > j1:
            _append(pairs, "add", "".join(after[j1:j2]))
    return pairs


def _append(pairs: list[tuple[str, str]], op: str, text: str) -> None:
    if pairs and pairs[-1][0] == op:
        pairs[-1] = (op, pairs[-1][1] + text)
    else:
        pairs.append((op, text))


def diff_markdown(pairs: Iterable[tuple[str, str]]) -> str:
    """A word diff as Markdown in which every word is escaped (``plain_text``): deletions
    ``~~struck~~``, insertions ``**strong**``, lines kept as hard breaks. For ``ui.markdown``: its
    sanitizer makes the HTML, and the page's CSS colours ``s`` and ``strong`` in a diff."""
    lines: list[str] = [""]
    for op, text in pairs:
        for n, piece in enumerate(text.split("\n")):
            if n:
                lines.append("")
            lines[-1] += _marked(op, piece)
    return "  \n".join(" ".join(line.split()) for line in lines)  # no indent: 4 spaces would be code


def _marked(op: str, piece: str) -> str:
    words = piece.strip()
    if not words or op == "same":
        return plain_text(piece)
    mark = "**" if op == "add" else "~~"
    lead, trail = piece[: len(piece) - len(piece.lstrip())], piece[len(piece.rstrip()):]
    return f"{plain_text(lead)}{mark}{plain_text(words)}{mark}{plain_text(trail)}"


# -- the summary --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Summary:
    """The numbers at the top of a comparison; rates are None when nothing was counted."""

    total: int
    replayed: int  # with an answer or an error
    better: int
    same: int
    worse: int
    unjudged: int
    changed: int
    original_error_rate: float | None
    replay_error_rate: float | None
    original_latency_p50_ms: int | None
    original_latency_p95_ms: int | None
    replay_latency_p50_ms: int | None
    replay_latency_p95_ms: int | None
    original_ttft_p50_ms: int | None
    replay_ttft_p50_ms: int | None

    answered: int  # replayed with an answer (not an error)

    @property
    def changed_share(self) -> float | None:
        """Of the replayed answers, the share that changed."""
        return self.changed / self.answered if self.answered else None


def summarize(items: Sequence) -> Summary:
    """Verdict counts, error rates, latency and time-to-first-token percentiles of both sides."""
    verdicts = Counter(item.verdict for item in items)
    replayed = [item for item in items if item.status in FINISHED]
    originals = [item for item in items if item.original_status]  # a hand-written dataset has none
    return Summary(
        total=len(items), replayed=len(replayed), better=verdicts["better"], same=verdicts["same"],
        worse=verdicts["worse"], unjudged=sum(map(unjudged, items)), changed=sum(map(changed, replayed)),
        answered=sum(1 for item in replayed if item.status == "complete"),
        original_error_rate=_share(originals, lambda item: item.original_status != "complete"),
        replay_error_rate=_share(replayed, lambda item: item.status == "error"),
        original_latency_p50_ms=percentile([item.original_latency_ms for item in items], 50),
        original_latency_p95_ms=percentile([item.original_latency_ms for item in items], 95),
        replay_latency_p50_ms=percentile([item.latency_ms for item in replayed], 50),
        replay_latency_p95_ms=percentile([item.latency_ms for item in replayed], 95),
        original_ttft_p50_ms=percentile([item.original_ttft_ms for item in items], 50),
        replay_ttft_p50_ms=percentile([item.ttft_ms for item in replayed], 50),
    )  # fmt: skip


def _share(items: list, counted) -> float | None:
    return sum(1 for item in items if counted(item)) / len(items) if items else None


def percentile(values: Iterable[int | None], percent: int) -> int | None:
    """Nearest rank, as the history page's usage numbers: the smallest value with at least
    ``percent`` % of the values at or below it; None without values."""
    known = sorted(value for value in values if value is not None)
    if not known:
        return None
    return known[max(1, (len(known) * percent + 99) // 100) - 1]


# -- the files ----------------------------------------------------------------------------------


def comparison_frame(items: Sequence) -> pd.DataFrame:
    """One row per question with ``COLUMNS``: both sides, the verdict, and whether the answer changed."""
    rows = [
        {
            "position": item.position, "question": item.question, "original_answer": item.original_answer,
            "replayed_answer": item.answer, "corrected_answer": item.corrected_answer,
            "original_feedback": item.original_feedback, "original_comment": item.original_comment,
            "verdict": item.verdict, "changed": changed(item), "original_status": item.original_status,
            "status": item.status, "error": item.error, "original_latency_ms": item.original_latency_ms,
            "latency_ms": item.latency_ms, "original_ttft_ms": item.original_ttft_ms, "ttft_ms": item.ttft_ms,
            "original_tokens": item.original_tokens, "tokens": item.tokens, "original_flow": item.original_flow,
            "flow": version_label(item.flow_name, item.flow_version) or None,
            "conversation_id": item.conversation_id, "answer_id": item.answer_id,
        }  # fmt: skip
        for item in items
    ]
    frame = pd.DataFrame.from_records(rows, columns=COLUMNS)
    for name in INTEGER_COLUMNS:
        frame[name] = frame[name].astype("Int64")
    return frame


def _values(frame: pd.DataFrame) -> list[dict]:
    """The rows as Python values: int, bool, str or None."""
    return [
        {name: (None if pd.isna(value) else int(value) if name in INTEGER_COLUMNS else value)
         for name, value in row.items()}
        for row in frame.astype(object).to_dict("records")
    ]


def write_csv(frame: pd.DataFrame, out: BinaryIO) -> int:
    """RFC 4180 CSV, UTF-8 with a BOM (Excel reads the encoding), formulas neutralized; the row count."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    rows = _values(frame)
    for row in rows:
        writer.writerow(["" if v is None else export.neutralize_cell(v) if isinstance(v, str) else v
                         for v in row.values()])
    out.write(codecs.BOM_UTF8 + text.getvalue().encode("utf-8"))
    return len(rows)


def write_xlsx(frame: pd.DataFrame, out: BinaryIO) -> int:
    """One worksheet, "Comparison": text (never a formula), numbers, true/false; bold frozen header."""
    options = {"strings_to_formulas": False, "strings_to_urls": False, "strings_to_numbers": False}
    rows = _values(frame)
    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as tmpdir:
        workbook = xlsxwriter.Workbook(out, options | {"tmpdir": tmpdir, "constant_memory": True})
        sheet = workbook.add_worksheet("Comparison")
        sheet.write_row(0, 0, COLUMNS, workbook.add_format({"bold": True}))
        sheet.freeze_panes(1, 0)
        for col, name in enumerate(COLUMNS):
            sheet.set_column(col, col, _EXCEL_WIDTHS.get(name, 12))
        for number, row in enumerate(rows, 1):
            for col, value in enumerate(row.values()):
                if isinstance(value, bool):
                    sheet.write_boolean(number, col, value)
                elif isinstance(value, int):
                    sheet.write_number(number, col, value)
                elif value is not None:
                    sheet.write_string(number, col, export.excel_text(value))
        sheet.autofilter(0, 0, len(rows), len(COLUMNS) - 1)
        workbook.close()
    return len(rows)


def write_json(frame: pd.DataFrame, out: BinaryIO) -> int:
    """A JSON array of one object per question, keys in ``COLUMNS`` order, strings exactly as stored."""
    rows = _values(frame)
    out.write((json.dumps(rows, ensure_ascii=False, indent=1) + "\n").encode("utf-8"))
    return len(rows)


FORMATS: dict[str, export.ExportFormat] = {
    fmt.label: fmt for fmt in (
        export.ExportFormat("CSV", "csv", "text/csv", write_csv),
        export.ExportFormat("Excel", "xlsx", export.FORMATS["Excel"].mime, write_xlsx),
        export.ExportFormat("JSON", "json", "application/json", write_json),
    )
}  # fmt: skip


def file_name(replay_name: str, extension: str) -> str:
    """'replay-Billing-Notes-RAG-v8.csv': safe on every OS."""
    return export.safe_filename(f"replay {replay_name}", extension)


def record_export(session: Session, actor: Actor, replay_id: int) -> bool:
    """Audit an admin's download of another user's replay ("replay.export"), as history exports
    are; True when it was recorded. Call it in a write transaction before writing the file."""
    replay = session.get(Replay, replay_id) if actor.is_admin else None
    owner = session.get(User, replay.owner_id) if replay is not None else None
    if owner is None or owner.id == actor.id:
        return False
    store.audit(session, actor, "replay.export", replay_label(replay, owner.username))
    return True
