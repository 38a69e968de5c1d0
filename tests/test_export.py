"""Export writers: every format is written to a real file, read back, and compared literally."""

from __future__ import annotations

import ast
import dataclasses
import datetime as dt
import json
import re
from pathlib import Path

import openpyxl
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chatbot import export
from chatbot.errors import InputError
from chatbot.export import (
    EXPORT_COLUMNS,
    FORMATS,
    conversation_json,
    conversation_markdown,
    export_csv,
    export_json,
    export_markdown,
    export_parquet,
    export_xlsx,
    json_text,
    neutralize_cell,
    safe_filename,
)

UTC = dt.UTC
T0 = dt.datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
FORMULAS = ["=SUM(A1)", "+1", "-2", "@x", "\tx", "\rx"]
UNICODE = "emoji 😀👍🏽, RTL مرحبا بالعالم שלום, 4-byte 𝄞𠜎, NUL\x00, controls \x01\x1f\x7f, é vs é"


def message(**fields) -> dict:
    row = {
        "conversation_id": 1,
        "conversation_title": "Quarterly numbers",
        "username": "alice",
        "message_id": 1,
        "role": "user",
        "version": 1,
        "current": True,
        "content": "What were Q3 sales?",
        "created_at": T0,
        "status": "complete",
        "error": None,
        "latency_ms": None,
        "ttft_ms": None,
        "engine": None,
        "flow_id": None,
        "flow_name": None,
        "flow_version": None,
        "model": None,
        "run_id": None,
        "input_tokens": None,
        "output_tokens": None,
        "feedback_score": None,
        "feedback_comment": None,
        "tweaks": None,
        "steps": None,
        "files": None,
        "tags": None,
        "note": None,
        "corrected_answer": None,
    }
    return row | fields


def frame(*rows: dict) -> pd.DataFrame:
    return pd.DataFrame(list(rows), columns=EXPORT_COLUMNS)


TWEAKS = {"OpenAIModel-k9": {"temperature": 0.2}}
STEPS = [
    {"name": "search_notes", "input": {"query": "Q3 sales"}, "output": "Q3: 1.2M € (`final`)", "status": "success",
     "duration_ms": 1200, "error": None},
    {"name": "run_sql", "input": "SELECT 1", "output": None, "status": "error", "duration_ms": 85,
     "error": "relation\n\"sales\" does not exist"},
]  # fmt: skip
FILES = [{"name": "q3.pdf", "size": 1_258_291, "type": "application/pdf", "path": "flow-9/a1.pdf"}]
ANSWER = message(
    message_id=2,
    role="assistant",
    content="Q3 sales were **1.2M**.",
    created_at=T0 + dt.timedelta(seconds=4, microseconds=250_000),
    latency_ms=4250,
    ttft_ms=300,
    engine="langflow",
    flow_id="flow-9",
    flow_name="Notes RAG",
    flow_version="v7+",
    model="gpt-4o-mini",
    run_id="run-1",
    input_tokens=12,
    output_tokens=7,
    feedback_score=1,
    feedback_comment="spot on",
    tweaks=export.json_text(TWEAKS),
    steps=export.json_text(STEPS),
)
STEPS_TEXT = (
    '[{"duration_ms":1200,"error":null,"input":{"query":"Q3 sales"},"name":"search_notes",'
    '"output":"Q3: 1.2M € (`final`)","status":"success"},{"duration_ms":85,"error":"relation\\n\\"sales\\" '
    'does not exist","input":"SELECT 1","name":"run_sql","output":null,"status":"error"}]'
)
OTHER = message(
    conversation_id=2,
    conversation_title="Second chat",
    username="bob",
    message_id=3,
    content="hello",
    created_at=T0 + dt.timedelta(days=1),
)
QUESTION = message(files=export.json_text(FILES))
ROWS = [QUESTION, ANSWER, OTHER]


def write(writer, chunks, path: Path) -> int:
    with path.open("wb") as out:
        return writer(chunks, out)


def read_csv(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, encoding="utf-8-sig", dtype=str, keep_default_na=False)


def excel_rows(path: Path) -> list[list]:
    sheet = openpyxl.load_workbook(path).active
    return [[cell.value for cell in row] for row in sheet.iter_rows()]


def excel_decoded(raw: str) -> str:
    """What Excel shows: it decodes OOXML ``_xHHHH_`` escapes, which openpyxl leaves as is."""
    return re.sub(r"_x([0-9A-Fa-f]{4})_", lambda match: chr(int(match.group(1), 16)), raw)


# -- the surface --------------------------------------------------------------------------


def test_export_columns_are_the_documented_list():
    assert EXPORT_COLUMNS == [
        "conversation_id", "conversation_title", "username", "message_id", "role", "version", "current",
        "content", "created_at", "status", "error", "latency_ms", "ttft_ms", "engine", "flow_id",
        "flow_name", "flow_version", "model", "run_id", "input_tokens", "output_tokens", "feedback_score",
        "feedback_comment", "tweaks", "steps", "files", "tags", "note", "corrected_answer",
    ]  # fmt: skip
    assert export.JSON_COLUMNS == ("tweaks", "steps", "files")


def test_json_text_is_compact_with_sorted_keys_and_unicode_as_is():
    assert export.json_text({"b": [1, {"é": "😀"}], "a": None}) == '{"a":null,"b":[1,{"é":"😀"}]}'
    assert export.json_text(STEPS) == STEPS_TEXT
    assert [export.json_text(empty) for empty in (None, [], {})] == [None, None, None]


def test_formats_are_keyed_by_button_label():
    assert {label: (f.label, f.extension, f.mime, f.writer) for label, f in FORMATS.items()} == {
        "CSV": ("CSV", "csv", "text/csv", export_csv),
        "Excel": (
            "Excel",
            "xlsx",
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            export_xlsx,
        ),
        "JSON": ("JSON", "json", "application/json", export_json),
        "Markdown": ("Markdown", "md", "text/markdown", export_markdown),
        "Parquet": ("Parquet", "parquet", "application/vnd.apache.parquet", export_parquet),
    }
    with pytest.raises(dataclasses.FrozenInstanceError):
        FORMATS["CSV"].mime = "text/plain"


def test_export_module_does_not_import_streamlit():
    tree = ast.parse(Path(export.__file__).read_text(encoding="utf-8"))
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert not any(name.split(".")[0] == "streamlit" for name in imported)


@pytest.mark.parametrize("label", list(FORMATS))
def test_chunks_with_wrong_columns_are_refused(label, tmp_path):
    with pytest.raises(InputError):
        write(FORMATS[label].writer, [frame(message()).drop(columns="content")], tmp_path / "out")


@pytest.mark.parametrize("label", ["CSV", "JSON", "Markdown", "Parquet"])
def test_writers_write_each_chunk_before_reading_the_next(label, tmp_path):
    sizes = []

    def chunks(out):
        yield frame(message())
        sizes.append(out.tell())
        yield frame(ANSWER)

    with (tmp_path / "out").open("wb") as out:
        assert FORMATS[label].writer(chunks(out), out) == 2
    assert sizes[0] > 0


@pytest.mark.parametrize("label", list(FORMATS))
def test_writers_return_the_rows_written(label, tmp_path):
    assert write(FORMATS[label].writer, [frame(*ROWS[:2]), frame(), frame(OTHER)], tmp_path / "out") == 3
    assert write(FORMATS[label].writer, [], tmp_path / "empty") == 0


@pytest.mark.parametrize("label", list(FORMATS))
def test_chunks_larger_than_a_batch_give_the_same_file(label, tmp_path, monkeypatch):
    rows = [message(), ANSWER, message(message_id=4), OTHER, OTHER | {"message_id": 5}]
    whole, batched = (tmp_path / f"{name}.{FORMATS[label].extension}" for name in ("whole", "batched"))
    write(FORMATS[label].writer, [frame(*rows)], whole)
    monkeypatch.setattr(export, "_BATCH_ROWS", 2)
    monkeypatch.setattr(export, "_ARROW_ROWS", 2)

    assert write(FORMATS[label].writer, [frame(*rows)], batched) == 5

    if label == "Excel":  # a zip archive records its own write time
        assert excel_rows(batched) == excel_rows(whole)
    else:
        assert batched.read_bytes() == whole.read_bytes()


# -- CSV ----------------------------------------------------------------------------------


def test_csv_round_trips_rows_and_columns(tmp_path):
    path = tmp_path / "messages.csv"
    write(export_csv, [frame(*ROWS)], path)

    table = read_csv(path)

    assert list(table.columns) == EXPORT_COLUMNS
    assert table.iloc[1].tolist() == [
        "1", "Quarterly numbers", "alice", "2", "assistant", "1", "true", "Q3 sales were **1.2M**.",
        "2024-05-01T12:00:04.250000Z", "complete", "", "4250", "300", "langflow", "flow-9",
        "Notes RAG", "v7+", "gpt-4o-mini", "run-1", "12", "7", "1", "spot on",
        '{"OpenAIModel-k9":{"temperature":0.2}}', STEPS_TEXT, "", "", "", "",
    ]  # fmt: skip
    assert table.iloc[0]["files"] == (
        '[{"name":"q3.pdf","path":"flow-9/a1.pdf","size":1258291,"type":"application/pdf"}]')
    assert table["conversation_id"].tolist() == ["1", "1", "2"]  # a number, unquoted (read back as text here)


def test_csv_starts_with_a_bom_and_has_one_header_for_many_chunks(tmp_path):
    path = tmp_path / "messages.csv"
    write(export_csv, [frame(message()), frame(ANSWER), frame(OTHER)], path)

    raw = path.read_bytes()

    assert raw.startswith(b"\xef\xbb\xbfconversation_id,conversation_title,")
    assert raw.count(b"conversation_id,") == 1
    assert read_csv(path)["message_id"].tolist() == ["1", "2", "3"]


@pytest.mark.parametrize("value", FORMULAS)
def test_csv_neutralizes_formula_cells(value, tmp_path):
    path = tmp_path / "messages.csv"
    write(export_csv, [frame(message(content=value, username=value, error=value))], path)

    row = read_csv(path).iloc[0]

    assert (row["content"], row["username"], row["error"]) == ("'" + value,) * 3


def test_csv_keeps_unicode_and_control_characters(tmp_path):
    path = tmp_path / "messages.csv"
    write(export_csv, [frame(message(content=UNICODE, conversation_title="عنوان 😀"))], path)

    row = read_csv(path).iloc[0]

    assert (row["content"], row["conversation_title"]) == (UNICODE, "عنوان 😀")


def test_csv_quotes_text_so_an_empty_string_differs_from_a_missing_value(tmp_path):
    path = tmp_path / "messages.csv"
    write(export_csv, [frame(message(content="", error=None, conversation_title='say "hi", then\r\nleave'))], path)

    line = path.read_bytes().split(b"\r\n", 1)[1]

    assert line.startswith(b'1,"say ""hi"", then\r\nleave","alice",1,"user",1,true,"",')
    assert read_csv(path).iloc[0][["content", "error"]].tolist() == ["", ""]


def test_csv_takes_naive_times_as_utc(tmp_path):
    path = tmp_path / "messages.csv"
    write(export_csv, [frame(message(created_at=dt.datetime(2024, 5, 1, 12, 0)))], path)

    assert read_csv(path)["created_at"].tolist() == ["2024-05-01T12:00:00.000000Z"]


# -- Excel --------------------------------------------------------------------------------


def test_xlsx_round_trips_rows_and_columns(tmp_path):
    path = tmp_path / "messages.xlsx"
    write(export_xlsx, [frame(*ROWS)], path)

    rows = excel_rows(path)

    assert rows[0] == EXPORT_COLUMNS
    assert rows[2] == [
        1, "Quarterly numbers", "alice", 2, "assistant", 1, True, "Q3 sales were **1.2M**.",
        dt.datetime(2024, 5, 1, 12, 0, 4, 250_000), "complete", None, 4250, 300, "langflow",
        "flow-9", "Notes RAG", "v7+", "gpt-4o-mini", "run-1", 12, 7, 1, "spot on",
        '{"OpenAIModel-k9":{"temperature":0.2}}', STEPS_TEXT, None, None, None, None,
    ]  # fmt: skip
    assert rows[1][EXPORT_COLUMNS.index("files")] == export.json_text(FILES)
    assert [row[0] for row in rows] == ["conversation_id", 1, 1, 2]


def test_xlsx_header_is_bold_and_frozen_with_sensible_widths(tmp_path):
    path = tmp_path / "messages.xlsx"
    write(export_xlsx, [frame(message()), frame(ANSWER)], path)

    sheet = openpyxl.load_workbook(path).active

    assert all(cell.font.bold for cell in sheet[1])
    assert not sheet["A2"].font.bold
    assert sheet.freeze_panes == "A2"
    widths = {name: sheet.column_dimensions[chr(ord("A") + i)].width for i, name in enumerate(EXPORT_COLUMNS)}
    assert widths["content"] > 60 and 8 < widths["role"] < 15
    assert [row[0] for row in excel_rows(path)].count("conversation_id") == 1


def test_xlsx_cells_are_only_text_numbers_booleans_and_dates(tmp_path):
    path = tmp_path / "messages.xlsx"
    write(export_xlsx, [frame(*ROWS, message(content="=1+1", error='=HYPERLINK("http://x")'))], path)

    cells = [cell for row in openpyxl.load_workbook(path).active.iter_rows() for cell in row]

    assert {cell.data_type for cell in cells} == {"s", "n", "b", "d"}


@pytest.mark.parametrize("value", FORMULAS)
def test_xlsx_neutralizes_formula_cells(value, tmp_path):
    path = tmp_path / "messages.xlsx"
    write(export_xlsx, [frame(message(content=value, conversation_title=value))], path)

    sheet = openpyxl.load_workbook(path).active
    content, title = sheet["H2"], sheet["B2"]

    assert content.data_type == "s" and title.data_type == "s"
    assert excel_decoded(content.value) == excel_decoded(title.value) == "'" + value


def test_xlsx_keeps_unicode_and_drops_only_what_xml_forbids(tmp_path):
    path = tmp_path / "messages.xlsx"
    text = "a\x00b\x0bc\x1fd\ufffee\uffff|tab\tnewline\ncr\r|_x0041_|" + UNICODE
    write(export_xlsx, [frame(message(content=text))], path)

    cell = openpyxl.load_workbook(path).active["H2"].value

    assert excel_decoded(cell) == "abcde|tab\tnewline\ncr\r|_x0041_|" + UNICODE.replace("\x00", "").replace(
        "\x01\x1f", ""
    )


def test_xlsx_neutralizes_after_dropping_forbidden_characters(tmp_path):
    path = tmp_path / "messages.xlsx"
    write(export_xlsx, [frame(message(content="\x00=SUM(A1)"))], path)

    assert openpyxl.load_workbook(path).active["H2"].value == "'=SUM(A1)"


def test_xlsx_cuts_steps_longer_than_a_cell_holds_and_says_so(tmp_path):
    path = tmp_path / "messages.xlsx"
    steps = export.json_text([{"name": "read_file", "output": "x" * 40_000}])
    write(export_xlsx, [frame(message(role="assistant", steps=steps))], path)

    cell = openpyxl.load_workbook(path).active.cell(2, EXPORT_COLUMNS.index("steps") + 1).value

    assert len(cell) <= 32_767 and cell.startswith('[{"name":"read_file","output":"xxx')
    assert cell.endswith("export CSV or Parquet for the full text]")


def test_xlsx_refuses_more_rows_than_excel_holds(tmp_path, monkeypatch):
    monkeypatch.setattr(export, "EXCEL_MAX_ROWS", 3)
    write(export_xlsx, [frame(*ROWS)], tmp_path / "fits.xlsx")

    with pytest.raises(InputError, match="CSV or Parquet"):
        write(export_xlsx, [frame(*ROWS[:2]), frame(OTHER, OTHER)], tmp_path / "too-many.xlsx")

    assert len(excel_rows(tmp_path / "fits.xlsx")) == 4


def test_xlsx_cuts_text_longer_than_a_cell_holds_and_says_so(tmp_path):
    path = tmp_path / "messages.xlsx"
    write(export_xlsx, [frame(message(content="😀" * 20_000))], path)

    cell = openpyxl.load_workbook(path).active["H2"].value

    assert len(cell.encode("utf-16-le")) // 2 <= 32_767
    assert cell.startswith("😀" * 16_300) and cell.endswith("export CSV or Parquet for the full text]")


# -- JSON ---------------------------------------------------------------------------------


def test_json_round_trips_exactly_without_neutralizing(tmp_path):
    path = tmp_path / "messages.json"
    rows = [message(content=value, message_id=i) for i, value in enumerate(FORMULAS)] + [ANSWER]
    write(export_json, [frame(*rows[:3]), frame(*rows[3:])], path)

    data = json.loads(path.read_text(encoding="utf-8"))

    assert [item["content"] for item in data[:-1]] == FORMULAS
    assert data[-1] == ANSWER | {"created_at": "2024-05-01T12:00:04.250000Z", "tweaks": TWEAKS, "steps": STEPS}
    assert list(data[0]) == EXPORT_COLUMNS


def test_json_nests_steps_tweaks_and_files_as_json_values(tmp_path):
    path = tmp_path / "messages.json"
    write(export_json, [frame(*ROWS)], path)

    question, answer, other = json.loads(path.read_text(encoding="utf-8"))

    assert (question["files"], question["steps"], question["tweaks"]) == (FILES, None, None)
    assert (answer["steps"], answer["tweaks"], answer["files"]) == (STEPS, TWEAKS, None)
    assert (answer["flow_name"], answer["flow_version"], answer["model"], answer["run_id"]) == (
        "Notes RAG", "v7+", "gpt-4o-mini", "run-1")
    assert '"steps": [{"duration_ms": 1200, "error": null, "input": {"query": "Q3 sales"}' in path.read_text()


def test_json_keeps_unicode_unescaped(tmp_path):
    path = tmp_path / "messages.json"
    write(export_json, [frame(message(content=UNICODE))], path)

    assert json.loads(path.read_text(encoding="utf-8"))[0]["content"] == UNICODE
    assert "😀👍🏽" in path.read_text(encoding="utf-8")


def test_json_of_no_rows_is_an_empty_array(tmp_path):
    path = tmp_path / "messages.json"
    write(export_json, [frame()], path)

    assert json.loads(path.read_text(encoding="utf-8")) == []


# -- Parquet ------------------------------------------------------------------------------


def test_parquet_round_trips_exactly_with_a_row_group_per_chunk(tmp_path):
    path = tmp_path / "messages.parquet"
    rows = [message(content=value, message_id=i) for i, value in enumerate(FORMULAS)]
    write(
        export_parquet, [frame(*rows[:4]), frame(), frame(*rows[4:], ANSWER, message(content=UNICODE))], path
    )

    parquet = pq.ParquetFile(path)

    assert parquet.schema_arrow == export.PARQUET_SCHEMA
    assert parquet.schema_arrow.field("created_at").type == pa.timestamp("us", tz="UTC")
    assert [parquet.metadata.row_group(i).num_rows for i in range(parquet.num_row_groups)] == [4, 4]
    data = parquet.read().to_pylist()
    assert [item["content"] for item in data] == [*FORMULAS, ANSWER["content"], UNICODE]
    assert data[6] == ANSWER
    assert data[6]["steps"] == STEPS_TEXT and parquet.schema_arrow.field("steps").type == pa.string()


def test_parquet_of_no_rows_has_the_schema(tmp_path):
    path = tmp_path / "messages.parquet"
    write(export_parquet, [], path)

    assert pq.read_table(path).schema == export.PARQUET_SCHEMA
    assert pq.read_table(path).num_rows == 0


# -- Markdown -----------------------------------------------------------------------------


def test_markdown_groups_messages_by_conversation_with_titles(tmp_path):
    path = tmp_path / "messages.md"
    write(export_markdown, [frame(message(), ANSWER | {"steps": None}), frame(OTHER)], path)

    assert path.read_text(encoding="utf-8") == (
        "# Quarterly numbers\n\n"
        "alice · conversation 1 · started 2024-05-01 12:00:00 UTC\n\n"
        "**You** · 2024-05-01 12:00:00 UTC\n\n"
        "What were Q3 sales?\n\n"
        "**Assistant** · 2024-05-01 12:00:04 UTC · Notes RAG v7+ · gpt-4o-mini · complete\n\n"
        "Q3 sales were **1.2M**.\n\n"
        "Feedback: 👍 “spot on”\n\n"
        "\n# Second chat\n\n"
        "bob · conversation 2 · started 2024-05-02 12:00:00 UTC\n\n"
        "**You** · 2024-05-02 12:00:00 UTC\n\n"
        "hello\n\n"
    )


def test_markdown_shows_attached_files_and_each_step_whole(tmp_path):
    path = tmp_path / "messages.md"
    write(export_markdown, [frame(QUESTION, ANSWER)], path)

    assert path.read_text(encoding="utf-8").split("\n\n", 2)[2] == (
        "**You** · 2024-05-01 12:00:00 UTC\n\n"
        "What were Q3 sales?\n\n"
        "Attached: q3.pdf (1.2 MB, application/pdf)\n\n"
        "**Assistant** · 2024-05-01 12:00:04 UTC · Notes RAG v7+ · gpt-4o-mini · complete\n\n"
        "Q3 sales were **1.2M**.\n\n"
        "Step 1 of 2 · search_notes · 1.2 s · success\n\n"
        "Input:\n\n"
        "```\n{\n  \"query\": \"Q3 sales\"\n}\n```\n\n"
        "Output:\n\n"
        "```\nQ3: 1.2M € (`final`)\n```\n\n"
        "Step 2 of 2 · run_sql · 85 ms · error\n\n"
        "Input:\n\n"
        "```\nSELECT 1\n```\n\n"
        "> Error: relation \"sales\" does not exist\n\n"
        "Feedback: 👍 “spot on”\n\n"
    )


def test_markdown_shows_steps_and_files_of_another_shape_instead_of_failing(tmp_path):
    path = tmp_path / "messages.md"
    odd = [message(files=json_text(["notes.txt", {"size": 2048}])),
           ANSWER | {"steps": json_text({"name": "lookup", "duration_ms": 1500.4}), "tweaks": json_text([1])},
           ANSWER | {"message_id": 3, "steps": json_text(["a bare string"])}]  # fmt: skip
    write(export_markdown, [frame(*odd)], path)

    text = path.read_text(encoding="utf-8")

    assert "Attached: notes.txt, a file (2 KB)\n" in text
    assert "Step 1 of 1 · lookup · 1.5 s\n" in text
    assert "Step 1 of 1 · tool\n\nOutput:\n\n```\na bare string\n```\n" in text


def test_markdown_step_output_cannot_close_its_code_block(tmp_path):
    path = tmp_path / "messages.md"
    output = "before\n```\n# not a heading\n````"
    write(export_markdown, [frame(ANSWER | {"steps": export.json_text([{"name": "t", "output": output}])}, OTHER)],
          path)

    assert "Output:\n\n`````\n" + output + "\n`````\n\n" in path.read_text(encoding="utf-8")


def test_markdown_keeps_a_conversation_split_across_chunks_together(tmp_path):
    path = tmp_path / "messages.md"
    write(export_markdown, [frame(message()), frame(ANSWER)], path)

    text = path.read_text(encoding="utf-8")

    assert text.count("# Quarterly numbers") == 1
    assert text.index("**You**") < text.index("**Assistant**")


def test_markdown_keeps_model_content_as_text(tmp_path):
    path = tmp_path / "messages.md"
    content = "=SUM(A1) <script>alert(1)</script> 😀 مرحبا"
    write(export_markdown, [frame(message(role="assistant", content=content))], path)

    assert "\n\n" + content + "\n\n" in path.read_text(encoding="utf-8")


def test_markdown_shows_errors_and_thumbs_down(tmp_path):
    path = tmp_path / "messages.md"
    failed = message(role="assistant", content="", status="error", error="Langflow timed out\nafter 60 s")
    write(export_markdown, [frame(failed | {"feedback_score": 0})], path)

    text = path.read_text(encoding="utf-8")

    assert "**Assistant** · 2024-05-01 12:00:00 UTC · error\n" in text
    assert "> Error: Langflow timed out after 60 s\n" in text
    assert "Feedback: 👎\n" in text


def test_markdown_closes_a_code_block_an_interrupted_answer_left_open(tmp_path):
    path = tmp_path / "messages.md"
    cut = message(role="assistant", status="interrupted", content="Here:\n```python\nx = 1")
    write(export_markdown, [frame(cut, OTHER)], path)

    assert "```python\nx = 1\n```\n\n\n# Second chat" in path.read_text(encoding="utf-8")


def test_conversation_markdown_is_one_transcript():
    messages = [message(), ANSWER]

    text = conversation_markdown("Renamed  title\n", messages)

    assert text.startswith(
        "# Renamed title\n\nalice · conversation 1 · started 2024-05-01 12:00:00 UTC\n\n"
    )
    assert text.count("# ") == 1
    assert conversation_markdown("", []) == "# Untitled conversation\n"


def test_conversation_json_matches_the_bulk_export(tmp_path):
    path = tmp_path / "messages.json"
    write(export_json, [frame(message(), ANSWER)], path)

    text = conversation_json("Quarterly numbers", [message(), ANSWER])

    assert text == path.read_text(encoding="utf-8")
    assert json.loads(conversation_json("T", [{"role": "user", "content": "hi"}]))[0]["content"] == "hi"


# -- cells and file names -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        *[(value, "'" + value) for value in FORMULAS],
        ("plain", "plain"),
        ("", ""),
        (" =1", " =1"),
        ("a=1", "a=1"),
        ("'quoted", "'quoted"),
    ],
)
def test_neutralize_cell(value, expected):
    assert neutralize_cell(value) == expected


@pytest.mark.parametrize(
    ("title", "expected"),
    [
        ("Quarterly numbers: Q3/Q4", "Quarterly-numbers-Q3-Q4.csv"),
        ("../../etc/passwd", "etc-passwd.csv"),
        ("..\\..\\windows\\system32", "windows-system32.csv"),
        ("..", "conversation.csv"),
        ("", "conversation.csv"),
        ("   \t\n", "conversation.csv"),
        ("\x00\x1f\r\n", "conversation.csv"),
        ("日本語 😀", "conversation.csv"),
        ("Café ☕ crème", "Cafe-creme.csv"),
        ("CON", "CON-conversation.csv"),
        ("lpt1", "lpt1-conversation.csv"),
        ("report.final.v2", "report-final-v2.csv"),
        ("C:\\secrets", "C-secrets.csv"),
    ],
)
def test_safe_filename_refuses_traversal_and_weird_titles(title, expected):
    assert safe_filename(title, "csv") == expected


def test_safe_filename_is_at_most_80_characters():
    name = safe_filename("word " * 100, ".xlsx")

    assert len(name) <= 80 and name.endswith("word.xlsx")


def test_safe_filename_refuses_a_bad_extension():
    with pytest.raises(ValueError):
        safe_filename("title", "../sh")


# -- properties ---------------------------------------------------------------------------

texts = st.text(max_size=40)
formula_texts = st.text(alphabet=st.sampled_from("=+-@\t\r\x00 'a😀"), max_size=6) | texts
counts = st.none() | st.integers(min_value=0, max_value=2**53)
times = st.datetimes(
    min_value=dt.datetime(1970, 1, 1), max_value=dt.datetime(2200, 1, 1), timezones=st.just(UTC)
)


def json_values(text_strategy):
    leaves = st.none() | st.booleans() | counts | st.floats(allow_nan=False, allow_infinity=False) | text_strategy
    return st.recursive(leaves, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text_strategy, inner, max_size=3),
                        max_leaves=6)


def json_objects(text_strategy):
    return st.dictionaries(text_strategy, json_values(text_strategy), max_size=4)


def rows_of(text_strategy):
    row = st.fixed_dictionaries(
        {
            "conversation_id": st.integers(min_value=0, max_value=2**53),
            "conversation_title": text_strategy,
            "username": text_strategy,
            "message_id": st.integers(min_value=0, max_value=2**53),
            "role": st.sampled_from(["user", "assistant"]),
            "version": st.integers(min_value=1, max_value=2**31),
            "current": st.booleans(),
            "content": text_strategy,
            "created_at": times,
            "status": st.sampled_from(["complete", "error", "interrupted"]),
            "error": st.none() | text_strategy,
            "latency_ms": counts,
            "ttft_ms": counts,
            "engine": st.none() | text_strategy,
            "flow_id": st.none() | text_strategy,
            "flow_name": st.none() | text_strategy,
            "flow_version": st.none() | text_strategy,
            "model": st.none() | text_strategy,
            "run_id": st.none() | text_strategy,
            "input_tokens": counts,
            "output_tokens": counts,
            "feedback_score": st.sampled_from([None, 0, 1]),
            "feedback_comment": st.none() | text_strategy,
            "tweaks": st.none() | st.dictionaries(text_strategy, json_values(text_strategy), min_size=1).map(json_text),
            "steps": st.none() | st.lists(json_objects(text_strategy), min_size=1, max_size=3).map(json_text),
            "files": st.none() | st.lists(json_objects(text_strategy), min_size=1, max_size=2).map(json_text),
            "tags": st.none() | text_strategy,
            "note": st.none() | text_strategy,
            "corrected_answer": st.none() | text_strategy,
        }
    )
    return st.lists(row, min_size=1, max_size=4)


PROPERTY = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@PROPERTY
@given(rows=rows_of(texts))
def test_any_unicode_round_trips_through_json_and_parquet(rows, tmp_path):
    chunks = [frame(*rows[:1]), frame(*rows[1:])]
    write(export_json, chunks, tmp_path / "m.json")
    write(export_parquet, chunks, tmp_path / "m.parquet")

    from_json = json.loads((tmp_path / "m.json").read_text(encoding="utf-8"))
    from_parquet = pq.read_table(tmp_path / "m.parquet").to_pylist()

    iso = [row | {"created_at": row["created_at"].strftime("%Y-%m-%dT%H:%M:%S.%fZ")} for row in rows]
    nested = [row | {name: row[name] and json.loads(row[name]) for name in export.JSON_COLUMNS} for row in iso]
    assert from_json == nested
    assert from_parquet == rows


@PROPERTY
@given(rows=rows_of(texts))
def test_any_row_makes_a_markdown_transcript(rows, tmp_path):
    assert write(export_markdown, [frame(*rows)], tmp_path / "m.md") == len(rows)


TEXT_COLUMNS = [
    name for name in EXPORT_COLUMNS if name not in export.INTEGER_COLUMNS | export.BOOLEAN_COLUMNS | {"created_at"}
]


@PROPERTY
@given(rows=rows_of(formula_texts))
def test_no_csv_or_excel_cell_starts_with_a_formula_character(rows, tmp_path):
    write(export_csv, [frame(*rows)], tmp_path / "m.csv")
    write(export_xlsx, [frame(*rows)], tmp_path / "m.xlsx")

    csv_cells = read_csv(tmp_path / "m.csv").to_numpy().tolist()
    excel_cells = [
        list(row) for row in openpyxl.load_workbook(tmp_path / "m.xlsx").active.iter_rows(min_row=2)
    ]

    for written, row in zip(csv_cells, rows, strict=True):
        for name, cell in zip(EXPORT_COLUMNS, written, strict=True):
            assert cell[:1] not in set("=+-@\t\r")
            if name in TEXT_COLUMNS:
                assert cell == neutralize_cell(row[name] or "")
    for written in excel_cells:
        for cell in written:
            assert cell.data_type != "f"
            if isinstance(cell.value, str):
                assert excel_decoded(cell.value)[:1] not in set("=+-@\t\r")


def test_markdown_shows_tags_a_note_and_the_corrected_answer():
    answer = message(role="assistant", content="Run VACUUM FULL.", tags="billing; urgent", note="Too risky",
                     corrected_answer="Run VACUUM.\nLater: FULL, at night.")
    text = export.conversation_markdown("Vacuum", [answer])
    assert "tags: billing; urgent" in text
    assert "Note: Too risky\n\nShould have said:\n\n> Run VACUUM.\n> Later: FULL, at night." in text
