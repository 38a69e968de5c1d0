"""Streaming CSV / Excel / JSON / Markdown / Parquet writers for exported messages.

Every writer takes an iterable of DataFrame chunks with exactly ``EXPORT_COLUMNS``
(rows ordered by conversation, then message time), writes to a binary file object one
chunk at a time, never holds the whole export, and returns the number of rows written.
The writers never close ``out``: the caller owns it.

What answered and how: ``flow_name``, ``flow_version`` ("v7", or "v7+" when the flow was
edited since v7 was saved), ``model`` and ``run_id`` are text. ``tweaks`` (the tweaks sent),
``steps`` (an agent's tool calls) and ``files`` (a question's attached files) are JSON: in a
chunk, and in CSV, Excel and Parquet, each is one JSON text per row as ``json_text`` writes it
(compact, keys sorted, non-ASCII kept), missing when there is nothing. The JSON export nests
them as JSON values instead (an object or a list, else null), so a JSON consumer need not parse
a string inside a string. Markdown shows a question's files and an answer's steps.

Fidelity, format by format:

- JSON, Parquet and Markdown keep every string exactly as stored.
- CSV and Excel neutralize formula injection (OWASP): a text cell starting with
  ``= + - @``, a tab or a carriage return gets a leading ``'``. Numbers are written as
  numbers. CSV quotes every text cell, so a missing value (an empty field) and an empty
  string (``""``) differ there; most readers take both as empty.
- Excel (XML inside) cannot hold the characters XML 1.0 forbids (the C0 controls other
  than tab, newline and carriage return, lone surrogates, U+FFFE, U+FFFF): they are
  dropped. A carriage return is stored as Excel's ``_x000D_`` escape, which Excel decodes
  and openpyxl does not. A cell holds at most 32,767 characters; longer text is cut and
  says so (a long ``steps`` cell is then no longer valid JSON: export CSV, JSON or Parquet
  for it whole). ``created_at`` is an Excel date-time in UTC.
"""

from __future__ import annotations

import codecs
import io
import json
import logging
import re
import tempfile
import unicodedata
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import xlsxwriter
from xlsxwriter.format import Format
from xlsxwriter.worksheet import Worksheet

from chatbot.errors import InputError
from chatbot.store import version_label

logger = logging.getLogger(__name__)

PARQUET_SCHEMA = pa.schema(
    [
        ("conversation_id", pa.int64()),
        ("conversation_title", pa.string()),
        ("username", pa.string()),
        ("message_id", pa.int64()),
        ("role", pa.string()),  # "user" or "assistant"
        ("version", pa.int64()),  # of the turn: regenerate and edit add versions 2, 3, …
        ("current", pa.bool_()),  # the version the chat shows; false for the earlier ones
        ("content", pa.string()),
        ("created_at", pa.timestamp("us", tz="UTC")),
        ("status", pa.string()),  # "complete", "error", "interrupted" or "stopped"
        ("error", pa.string()),
        ("latency_ms", pa.int64()),
        ("ttft_ms", pa.int64()),
        ("engine", pa.string()),
        ("flow_id", pa.string()),
        ("flow_name", pa.string()),  # the flow's name in Langflow
        ("flow_version", pa.string()),  # "v7"; "v7+" when edited since v7 was saved
        ("model", pa.string()),
        ("run_id", pa.string()),  # Langflow's run id
        ("input_tokens", pa.int64()),
        ("output_tokens", pa.int64()),
        ("feedback_score", pa.int64()),  # 1 is thumbs up, 0 thumbs down
        ("feedback_comment", pa.string()),
        ("tweaks", pa.string()),  # JSON text (JSON_COLUMNS): {component id: {field: value}}
        ("steps", pa.string()),  # JSON text: [{"name", "input", "output", "status", "duration_ms", "error"}]
        ("files", pa.string()),  # JSON text, on a question: [{"name", "size", "type", "path"}]
        ("tags", pa.string()),  # the conversation's tags, sorted, joined by "; "
        ("note", pa.string()),  # an analyst's note on the answer
        ("corrected_answer", pa.string()),  # what the answer should have said, per that note
    ]
)
EXPORT_COLUMNS = PARQUET_SCHEMA.names  # the columns of every chunk and every format, in order
INTEGER_COLUMNS = frozenset(field.name for field in PARQUET_SCHEMA if pa.types.is_integer(field.type))
BOOLEAN_COLUMNS = frozenset(field.name for field in PARQUET_SCHEMA if pa.types.is_boolean(field.type))
JSON_COLUMNS = ("tweaks", "steps", "files")  # JSON text in a chunk; nested values in the JSON export
TIME_COLUMN = "created_at"

EXCEL_MAX_ROWS = 1_048_575  # 1,048,576 rows per sheet, less the header
EXCEL_MAX_CELL_CHARS = 32_767
_EXCEL_TRUNCATED = "… [cut: an Excel cell holds 32,767 characters; export CSV or Parquet for the full text]"
_EXCEL_WIDTHS = {
    "conversation_id": 14, "conversation_title": 30, "username": 16, "message_id": 11,
    "role": 10, "version": 9, "current": 9, "content": 80, "created_at": 20, "status": 11, "error": 40,
    "latency_ms": 11, "ttft_ms": 10, "engine": 10, "flow_id": 36, "flow_name": 24, "flow_version": 12,
    "model": 16, "run_id": 36, "input_tokens": 13, "output_tokens": 14, "feedback_score": 15,
    "feedback_comment": 40, "tweaks": 30, "steps": 60, "files": 40, "tags": 24, "note": 40, "corrected_answer": 60,
}  # fmt: skip

_BATCH_ROWS = 2_000  # rows made into Python objects at a time, whatever the chunk size
_ARROW_ROWS = 20_000  # rows Arrow turns into CSV text at a time, whatever the chunk size
_FORMULA_START = frozenset("=+-@\t\r")
_FORMULA_PATTERN = r"^[=+\-@\t\r]"  # _FORMULA_START as an RE2 pattern, for whole columns
_CSV_OPTIONS = pacsv.WriteOptions(include_header=False, quoting_style="needed", eol="\r\n")
_XML_FORBIDDEN = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_FENCE = re.compile(r" {0,3}(`{3,}|~{3,})")
_WINDOWS_RESERVED = frozenset(
    {"CON", "PRN", "AUX", "NUL"} | {f"{port}{n}" for port in ("COM", "LPT") for n in range(10)}
)
_MAX_FILENAME = 80
_JSON = json.JSONEncoder(ensure_ascii=False, allow_nan=False)
_JSON_TEXT = json.JSONEncoder(ensure_ascii=False, sort_keys=True, separators=(",", ":"))
_FEEDBACK = {1: "👍", 0: "👎"}
_ROLE_LABELS = {"user": "You", "assistant": "Assistant"}

Writer = Callable[[Iterable[pd.DataFrame], BinaryIO], int]


@dataclass(frozen=True)
class ExportFormat:
    """One download button: its label, file extension, MIME type and writer."""

    label: str
    extension: str
    mime: str
    writer: Writer


def neutralize_cell(value: str) -> str:
    """Prefix ``'`` to text a spreadsheet would run as a formula (OWASP CSV injection)."""
    return "'" + value if value[:1] in _FORMULA_START else value


def tags_text(tags) -> str | None:
    """A conversation's tags as one cell: 'billing; urgent' (None when it has none)."""
    return "; ".join(tags) or None


def json_text(value) -> str | None:
    """A ``JSON_COLUMNS`` value as its export text: compact, keys sorted (the same text whatever
    order they were stored in), non-ASCII as is; None for nothing (None, empty list or object)."""
    if value is None or value == [] or value == {}:
        return None
    return _JSON_TEXT.encode(value)


def safe_filename(title: str, extension: str) -> str:
    """An ASCII file name from a conversation title, safe on every OS; never empty."""
    extension = extension.lstrip(".")
    if not re.fullmatch(r"[A-Za-z0-9]{1,10}", extension):
        raise ValueError(f"not a file extension: {extension!r}")
    ascii_title = unicodedata.normalize("NFKD", title or "").encode("ascii", "ignore").decode()
    # Only letters, digits, "-" and "_" survive, so no separator, dot or control char can.
    stem = re.sub(r"[^A-Za-z0-9_]+", "-", ascii_title).strip("-_")
    stem = stem[: _MAX_FILENAME - len(extension) - 1].rstrip("-_") or "conversation"
    if stem.upper() in _WINDOWS_RESERVED:
        stem = f"{stem}-conversation"
    return f"{stem}.{extension}"


def export_csv(chunks: Iterable[pd.DataFrame], out: BinaryIO) -> int:
    """Write RFC 4180 CSV in UTF-8 with a BOM (so Excel detects the encoding).

    Arrow neutralizes and formats whole columns and writes the text, so no cell becomes a
    Python object.
    """
    out.write(codecs.BOM_UTF8 + (",".join(EXPORT_COLUMNS) + "\r\n").encode("utf-8"))
    rows = 0
    for batch in _batches(chunks, _ARROW_ROWS):
        pacsv.write_csv(_csv_table(batch), out, _CSV_OPTIONS)  # leaves ``out`` open
        rows += len(batch)
    return rows


def export_xlsx(chunks: Iterable[pd.DataFrame], out: BinaryIO) -> int:
    """Write one worksheet of text, numbers and dates (never formulas), bold frozen header."""
    options = {
        "constant_memory": True,
        "strings_to_formulas": False,
        "strings_to_urls": False,
        "strings_to_numbers": False,
    }
    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as tmpdir:
        workbook = xlsxwriter.Workbook(out, options | {"tmpdir": tmpdir})
        sheet = workbook.add_worksheet("Messages")
        date_format = workbook.add_format({"num_format": "yyyy-mm-dd hh:mm:ss"})
        sheet.write_row(0, 0, EXPORT_COLUMNS, workbook.add_format({"bold": True}))
        sheet.freeze_panes(1, 0)
        for col, name in enumerate(EXPORT_COLUMNS):
            sheet.set_column(col, col, _EXCEL_WIDTHS[name])
        # Nothing reaches ``out`` before close(), so a refused export leaves it empty.
        rows = _write_sheet_rows(sheet, _batches(chunks), date_format)
        sheet.autofilter(0, 0, rows, len(EXPORT_COLUMNS) - 1)
        workbook.close()
    return rows


def export_json(chunks: Iterable[pd.DataFrame], out: BinaryIO) -> int:
    """Write a JSON array of one object per message; times are ISO 8601 in UTC."""
    rows = 0
    out.write(b"[")
    for batch in _batches(chunks):
        columns = [_json_values(name, batch[name]) for name in EXPORT_COLUMNS]
        objects = [_json_object(row) for row in zip(*columns)]
        if objects:
            separator = ",\n" if rows else "\n"
            out.write((separator + ",\n".join(objects)).encode("utf-8"))
            rows += len(objects)
    out.write(b"\n]\n" if rows else b"]\n")
    return rows


def export_markdown(chunks: Iterable[pd.DataFrame], out: BinaryIO) -> int:
    """Write one transcript per conversation: title, metadata line, then the messages."""
    rows, current = 0, None
    for batch in _batches(chunks):
        columns = [_plain_values(name, batch[name]) for name in EXPORT_COLUMNS]
        parts = []
        for row in zip(*columns):
            message = dict(zip(EXPORT_COLUMNS, row))
            if rows == 0 or message["conversation_id"] != current:
                parts.append(_markdown_heading(message, first=rows == 0))
                current = message["conversation_id"]
            parts.append(_markdown_message(message))
            rows += 1
        out.write("".join(parts).encode("utf-8"))
    return rows


def export_parquet(chunks: Iterable[pd.DataFrame], out: BinaryIO) -> int:
    """Write Parquet with ``PARQUET_SCHEMA``, one row group per non-empty chunk."""
    rows = 0
    with pq.ParquetWriter(out, PARQUET_SCHEMA, compression="zstd") as writer:
        for chunk in _checked(chunks):
            if len(chunk):
                writer.write_table(_arrow_table(chunk), row_group_size=len(chunk))
                rows += len(chunk)
    return rows


def conversation_markdown(title: str, messages: list[dict]) -> str:
    """The Markdown transcript of one conversation; message keys as in ``EXPORT_COLUMNS``."""
    if not messages:
        return f"# {_heading_text(title)}\n"
    buffer = io.BytesIO()
    export_markdown([_conversation_frame(title, messages)], buffer)
    return buffer.getvalue().decode("utf-8")


def conversation_json(title: str, messages: list[dict]) -> str:
    """One conversation as the same JSON array ``export_json`` writes."""
    buffer = io.BytesIO()
    export_json([_conversation_frame(title, messages)], buffer)
    return buffer.getvalue().decode("utf-8")


FORMATS: dict[str, ExportFormat] = {
    fmt.label: fmt
    for fmt in (
        ExportFormat("CSV", "csv", "text/csv", export_csv),
        ExportFormat(
            "Excel",
            "xlsx",
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            export_xlsx,
        ),
        ExportFormat("JSON", "json", "application/json", export_json),
        ExportFormat("Markdown", "md", "text/markdown", export_markdown),
        ExportFormat("Parquet", "parquet", "application/vnd.apache.parquet", export_parquet),
    )
}


# -- input ---------------------------------------------------------------------------


def _checked(chunks: Iterable[pd.DataFrame]) -> Iterator[pd.DataFrame]:
    """Each chunk with its columns in ``EXPORT_COLUMNS`` order; other columns are refused."""
    for chunk in chunks:
        missing = [name for name in EXPORT_COLUMNS if name not in chunk.columns]
        unexpected = [str(name) for name in chunk.columns if name not in EXPORT_COLUMNS]
        if missing or unexpected:
            raise InputError(
                "The export data has the wrong columns.",
                detail=f"missing {missing}, unexpected {unexpected}",
            )
        yield chunk[EXPORT_COLUMNS]


def _batches(chunks: Iterable[pd.DataFrame], size: int | None = None) -> Iterator[pd.DataFrame]:
    """The rows in slices of at most ``size`` (``_BATCH_ROWS``): the writers that turn rows into
    Python objects and text never hold a whole chunk's worth at once."""
    size = size or _BATCH_ROWS
    for chunk in _checked(chunks):
        for start in range(0, len(chunk), size):
            yield chunk.iloc[start : start + size]


def _utc_times(column: pd.Series) -> pd.Series:
    """Times in UTC to the microsecond; naive times are taken as UTC (SQLite stores no zone)."""
    return pd.to_datetime(column, utc=True).dt.floor("us").dt.as_unit("us")


def _conversation_frame(title: str, messages: list[dict]) -> pd.DataFrame:
    records = [
        {name: message.get(name) for name in EXPORT_COLUMNS} | {"conversation_title": title}
        for message in messages
    ]
    return pd.DataFrame.from_records(records, columns=EXPORT_COLUMNS)


def _plain_values(name: str, column: pd.Series) -> list:
    """Python values: str, int, bool or None; ``created_at`` as ISO 8601 text."""
    if name == TIME_COLUMN:
        return _iso_times(column)
    if name in INTEGER_COLUMNS:
        column = column.astype("Int64")
    elif name in BOOLEAN_COLUMNS:
        column = column.astype("boolean")
    return column.to_numpy(dtype=object, na_value=None).tolist()


def _iso_times(column: pd.Series) -> list[str | None]:
    values = _utc_times(column).dt.tz_localize(None).to_numpy(dtype="datetime64[us]")
    text = np.datetime_as_string(values, unit="us", timezone="UTC").astype(object)
    text[np.isnat(values)] = None
    return text.tolist()


# -- CSV and JSON ----------------------------------------------------------------------


def _csv_table(chunk: pd.DataFrame) -> pa.Table:
    """The chunk as Arrow columns ready to write: text neutralized, times as ISO 8601 in UTC."""
    table = _arrow_table(chunk)
    columns = [_csv_column(field.type, column) for field, column in zip(table.schema, table.columns)]
    return pa.table(columns, names=EXPORT_COLUMNS)


def _csv_column(kind: pa.DataType, column: pa.ChunkedArray) -> pa.ChunkedArray:
    if pa.types.is_timestamp(kind):  # microseconds: "%S" gives "05.250000"
        return pc.strftime(column, format="%Y-%m-%dT%H:%M:%SZ")
    if pa.types.is_string(kind):
        return _neutralized(column)
    return column


def _neutralized(text: pa.ChunkedArray) -> pa.ChunkedArray:
    """``neutralize_cell`` on a whole column: ``'`` before each text a spreadsheet would run."""
    risky = pc.match_substring_regex(text, _FORMULA_PATTERN)
    if not pc.any(risky).as_py():  # most columns have no such cell: left as they are, not copied twice
        return text
    return pc.if_else(risky, pc.binary_join_element_wise("'", text, ""), text)


def _json_values(name: str, column: pd.Series) -> list:
    """``_plain_values``, with the JSON columns' text parsed so the JSON export nests it."""
    values = _plain_values(name, column)
    if name in JSON_COLUMNS:
        return [None if value is None else json.loads(value) for value in values]
    return values


def _json_object(row: tuple) -> str:
    return _JSON.encode(dict(zip(EXPORT_COLUMNS, row)))


# -- Parquet -------------------------------------------------------------------------


def _arrow_table(chunk: pd.DataFrame) -> pa.Table:
    # Text goes to Arrow as it is: no Python string objects are made for it.
    typed = chunk.assign(
        **{TIME_COLUMN: _utc_times(chunk[TIME_COLUMN])},
        **{name: chunk[name].astype("Int64") for name in INTEGER_COLUMNS},
        **{name: chunk[name].astype("boolean") for name in BOOLEAN_COLUMNS},
    )
    return pa.Table.from_pandas(typed, schema=PARQUET_SCHEMA, preserve_index=False)


# -- Excel -----------------------------------------------------------------------------


def _write_sheet_rows(sheet: Worksheet, batches: Iterable[pd.DataFrame], date_format: Format) -> int:
    rows = 0
    for batch in batches:
        if rows + len(batch) > EXCEL_MAX_ROWS:
            raise InputError(
                f"Excel holds at most {EXCEL_MAX_ROWS:,} messages and this export has more. "
                "Export CSV or Parquet instead."
            )
        columns = [_excel_values(name, batch[name]) for name in EXPORT_COLUMNS]
        for row in zip(*columns):
            rows += 1
            for col, (name, value) in enumerate(zip(EXPORT_COLUMNS, row)):
                if value is None:
                    continue
                if name == TIME_COLUMN:
                    sheet.write_datetime(rows, col, value, date_format)
                elif name in INTEGER_COLUMNS:
                    sheet.write_number(rows, col, value)
                elif name in BOOLEAN_COLUMNS:
                    sheet.write_boolean(rows, col, value)
                else:
                    sheet.write_string(rows, col, value)
    return rows


def _excel_values(name: str, column: pd.Series) -> list:
    if name == TIME_COLUMN:
        naive_utc = _utc_times(column).dt.tz_localize(None)
        return naive_utc.to_numpy(dtype=object, na_value=None).tolist()
    values = _plain_values(name, column)
    if name in INTEGER_COLUMNS or name in BOOLEAN_COLUMNS:
        return values
    return [None if value is None else excel_text(value) for value in values]


def excel_text(value: str) -> str:
    """Text as an Excel cell takes it: XML-forbidden characters dropped, formulas neutralized, cut
    (and said so) past 32,767 characters."""
    # Strip before neutralizing: "\x00=1" must not become "=1" after the check.
    text = neutralize_cell(_XML_FORBIDDEN.sub("", value))
    if len(text) * 2 <= EXCEL_MAX_CELL_CHARS or _utf16_len(text) <= EXCEL_MAX_CELL_CHARS:
        return text
    keep = EXCEL_MAX_CELL_CHARS - len(_EXCEL_TRUNCATED)
    # Excel counts UTF-16 units; a pair cut in half is dropped by errors="ignore".
    cut = text.encode("utf-16-le")[: 2 * keep].decode("utf-16-le", errors="ignore")
    logger.warning("Excel export cut a cell of %d characters to %d", len(text), len(cut))
    return cut + _EXCEL_TRUNCATED


def _utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


# -- Markdown --------------------------------------------------------------------------


def _heading_text(title: str | None) -> str:
    return " ".join((title or "").split()) or "Untitled conversation"


def _markdown_heading(message: dict, *, first: bool) -> str:
    details = [
        message["username"],
        message["conversation_id"] and f"conversation {message['conversation_id']}",
        message["created_at"] and f"started {_display_time(message['created_at'])}",
        message.get("tags") and f"tags: {_one_line(message['tags'])}",
    ]
    metadata = " · ".join(detail for detail in details if detail)
    heading = f"# {_heading_text(message['conversation_title'])}\n\n"
    return ("" if first else "\n") + heading + (f"{metadata}\n\n" if metadata else "")


def _markdown_message(message: dict) -> str:
    role = message["role"] or "unknown"
    header = [f"**{_ROLE_LABELS.get(role, role.title())}**"]
    if message["created_at"]:
        header.append(_display_time(message["created_at"]))
    if message["flow_name"]:
        header.append(_one_line(version_label(message["flow_name"], message["flow_version"])))
    if message["model"]:
        header.append(_one_line(message["model"]))
    if role != "user" and message["status"]:
        header.append(message["status"])
    if (message["version"] or 1) > 1 or message["current"] is False:
        header.append(f"version {message['version']}" + ("" if message["current"] is not False else ", replaced"))
    content = message["content"] or ""
    lines = [" · ".join(header), "", content]
    fence = _unclosed_fence(content)
    if fence:  # an interrupted answer must not swallow the rest of the transcript
        lines.append(fence)
    if message["files"]:
        lines += ["", _markdown_files(_records(json.loads(message["files"]), "name"))]
    if message["steps"]:
        lines += _markdown_steps(_records(json.loads(message["steps"]), "output"))
    if message["error"]:
        lines += ["", f"> Error: {_one_line(message['error'])}"]
    if message["feedback_score"] is not None or message["feedback_comment"]:
        score = _FEEDBACK.get(message["feedback_score"], "")
        comment = _one_line(message["feedback_comment"] or "")
        lines += ["", " ".join(part for part in ("Feedback:", score, comment and f"“{comment}”") if part)]
    if message.get("note"):
        lines += ["", f"Note: {_one_line(message['note'])}"]
    if message.get("corrected_answer"):
        lines += ["", "Should have said:", ""] + [f"> {line}" for line in message["corrected_answer"].splitlines()]
    return "\n".join(lines) + "\n\n"


def _records(value, key: str) -> list[dict]:
    """``value`` as the list of objects it should be; anything else is shown rather than refused
    (a lone object as a list of one, a bare value as the object ``{key: value}``)."""
    items = value if isinstance(value, list) else [value]
    return [item if isinstance(item, dict) else {key: item} for item in items]


def _markdown_files(files: list[dict]) -> str:
    """'Attached: q3.pdf (1.2 MB, application/pdf), notes.txt (12 KB)'."""
    described = []
    for attached in files:
        details = ", ".join(part for part in (file_size(attached.get("size")), attached.get("type")) if part)
        described.append(_one_line(str(attached.get("name") or "a file")) + (f" ({_one_line(details)})" if details else ""))
    return "Attached: " + ", ".join(described)


def _markdown_steps(steps: list[dict]) -> list[str]:
    """An agent's tool calls, each a line ('Step 1 of 2 · search_notes · 1.2 s · success') and its
    input and output whole, in code blocks that nothing inside can close."""
    lines = []
    for number, step in enumerate(steps, 1):
        took = step.get("duration_ms")
        head = [f"Step {number} of {len(steps)}", _one_line(str(step.get("name") or "tool"))]
        head += [duration(round(took)) if isinstance(took, int | float) else "", _one_line(str(step.get("status") or ""))]
        lines += ["", " · ".join(part for part in head if part)]
        for label, value in (("Input", step.get("input")), ("Output", step.get("output"))):
            if value not in (None, "", [], {}):
                lines += ["", f"{label}:", "", *_code_block(_step_text(value))]
        if step.get("error"):
            lines += ["", f"> Error: {_one_line(str(step['error']))}"]
    return lines


def _step_text(value) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, indent=2)


def _code_block(text: str) -> list[str]:
    """A fenced block longer than any run of backticks in ``text``, so ``text`` cannot end it."""
    runs = [len(run) for run in re.findall("`+", text)]
    fence = "`" * max(3, max(runs, default=0) + 1)
    return [fence, text, fence]


def _one_line(text: str) -> str:
    return " ".join(text.split())


def duration(ms: int) -> str:
    """As the app shows it: '850 ms', '1.2 s'."""
    return f"{ms} ms" if ms < 1000 else f"{ms / 1000:.1f} s"


def file_size(size) -> str:
    """'850 B', '12 KB', '3.4 MB'; '' for a size not known."""
    if not isinstance(size, int):
        return ""
    return f"{size} B" if size < 1024 else f"{size / 1024:.0f} KB" if size < 1024**2 else f"{size / 1024**2:.1f} MB"


def _display_time(iso: str) -> str:
    """'2024-05-01T12:00:05.123456Z' -> '2024-05-01 12:00:05 UTC'."""
    return f"{iso[:10]} {iso[11:19]} UTC"


def _unclosed_fence(text: str) -> str | None:
    """The fence that closes a code block left open at the end of ``text``, if any."""
    if "```" not in text and "~~~" not in text:
        return None
    open_fence = None
    for line in text.splitlines():
        match = _FENCE.match(line)
        if not match:
            continue
        fence = match.group(1)
        if open_fence is None:
            open_fence = fence
        elif fence[0] == open_fence[0] and len(fence) >= len(open_fence) and not line[match.end() :].strip():
            open_fence = None
    return open_fence
