"""python -m chatbot export: every format written to a real file and read back, on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import openpyxl
import pandas as pd
import pyarrow.parquet as pq
import pytest

from chatbot import export, history, store
from chatbot.__main__ import main
from chatbot.errors import StoreError

ROOT = Path(__file__).resolve().parent.parent
MAY = dt.datetime(2024, 5, 1, 9, 0, tzinfo=dt.UTC)


@pytest.fixture
def chats(db, users, database_url, monkeypatch) -> dict[str, int]:
    """alice: 'Sales' on May 1 (👍) and 'Churn' on May 3; bob: '=Forecast' on May 2; one of bob's deleted."""
    monkeypatch.setenv("DATABASE_URL", database_url)
    now = {"t": MAY}
    monkeypatch.setattr(store, "utcnow", lambda: now["t"])

    def converse(actor, title, day, question, answer, feedback=None):
        now["t"] = MAY + dt.timedelta(days=day)
        with db.begin() as session:
            conversation = store.create_conversation(session, actor, title=title)
            conversation.created_at = now["t"]
            store.append_message(session, actor, conversation.id, role="user", content=question)
            now["t"] += dt.timedelta(minutes=1)
            message = store.append_message(session, actor, conversation.id, role="assistant", content=answer,
                                           engine="notes", latency_ms=900, ttft_ms=90)
            if feedback:
                store.set_feedback(session, actor, message.id, score=feedback[0], comment=feedback[1])
            return conversation.id

    ids = {
        "sales": converse(users["alice"], "Sales", 0, "What were Q3 sales?", "1.2M.", feedback=(1, "good")),
        "churn": converse(users["alice"], "Churn", 2, "Churn by region?", "4% in the north."),
        "forecast": converse(users["bob"], "=Forecast", 1, "=1+1 forecast", "Flat."),
        "gone": converse(users["bob"], "Deleted", 1, "secret", "hidden"),
    }
    with db.begin() as session:
        store.delete_conversation(session, users["bob"], ids["gone"])
    return ids


def run(*args: str) -> int:
    return main(["export", *args])


@pytest.fixture
def folder(tmp_path) -> Path:
    """Where exports go (tmp_path also holds the SQLite database)."""
    path = tmp_path / "exports"
    path.mkdir()
    return path


def read_rows(path: Path, fmt: str) -> pd.DataFrame:
    if fmt == "csv":
        return pd.read_csv(path, encoding="utf-8-sig", dtype=str, keep_default_na=False)
    if fmt == "json":
        return pd.DataFrame(json.loads(path.read_text(encoding="utf-8")), dtype=str)
    if fmt == "parquet":
        return pq.read_table(path).to_pandas().astype(str)
    header, *body = openpyxl.load_workbook(path).worksheets[0].iter_rows(values_only=True)
    return pd.DataFrame(body, columns=header).astype(str)


@pytest.mark.parametrize("fmt", ["csv", "xlsx", "json", "parquet"])
def test_export_writes_every_message_in_order_and_reads_back(chats, tmp_path, capsys, fmt):
    out = tmp_path / f"all.{fmt}"
    assert run("--format", fmt, "--out", str(out)) == 0
    assert capsys.readouterr().out == f"exported 6 messages to {out}\n"
    rows = read_rows(out, fmt)
    assert list(rows.columns) == export.EXPORT_COLUMNS
    forecast = "'=Forecast" if fmt in ("csv", "xlsx") else "=Forecast"  # spreadsheets never see a formula
    assert list(zip(rows["conversation_title"], rows["role"])) == [  # last activity first, as the table
        ("Churn", "user"), ("Churn", "assistant"), (forecast, "user"), (forecast, "assistant"),
        ("Sales", "user"), ("Sales", "assistant"),
    ]
    assert rows["username"].tolist() == ["alice", "alice", "bob", "bob", "alice", "alice"]
    assert rows["feedback_comment"].tolist()[5] == "good"


def test_export_sorts_as_asked(chats, tmp_path):
    out = tmp_path / "by-title.csv"
    assert run("--format", "csv", "--sort", "title", "--out", str(out)) == 0
    rows = read_rows(out, "csv")
    assert list(dict.fromkeys(rows["conversation_title"])) == ["'=Forecast", "Churn", "Sales"]


def test_markdown_export_is_one_transcript_per_conversation(chats, tmp_path):
    out = tmp_path / "all.md"
    assert run("--format", "MD", "--out", str(out)) == 0
    text = out.read_text(encoding="utf-8")
    assert [line for line in text.splitlines() if line.startswith("# ")] == ["# Churn", "# =Forecast", "# Sales"]
    assert "Feedback: 👍 “good”" in text and "hidden" not in text


def test_export_says_what_answered_with_steps_and_files(db, users, chats, tmp_path):
    bob = users["bob"]
    steps = [{"name": "calculator", "input": {"expression": "6*7"}, "output": "42", "status": "success",
              "duration_ms": 40, "error": None}]
    with db.begin() as session:
        question = store.append_message(session, bob, chats["forecast"], role="user", content="6*7?",
                                        files=[{"name": "a.txt", "size": 3, "type": "text/plain", "path": "f/a.txt"}])
        answer = store.begin_answer(session, bob, question.id)
        store.update_answer(session, bob, answer.id, content="42", status="complete", flow_name="Agent",
                            flow_version="v2+", model="gpt-4o-mini", run_id="r-1", steps=steps)
    csv, json_file = tmp_path / "bob.csv", tmp_path / "bob.json"
    assert run("--format", "csv", "--user", "bob", "--out", str(csv)) == 0
    assert run("--format", "json", "--user", "bob", "--out", str(json_file)) == 0
    rows = read_rows(csv, "csv")
    assert rows[["flow_name", "flow_version", "model", "run_id"]].values.tolist()[-1] == ["Agent", "v2+", "gpt-4o-mini", "r-1"]
    assert rows["steps"].tolist()[-1] == (
        '[{"duration_ms":40,"error":null,"input":{"expression":"6*7"},"name":"calculator","output":"42",'
        '"status":"success"}]')
    assert rows["files"].tolist()[-2] == '[{"name":"a.txt","path":"f/a.txt","size":3,"type":"text/plain"}]'
    exported = json.loads(json_file.read_text(encoding="utf-8"))
    assert (exported[-1]["steps"], exported[-2]["files"][0]["name"]) == (steps, "a.txt")


def test_user_dates_and_search_narrow_the_export(chats, tmp_path):
    out = tmp_path / "some.json"
    assert run("--format", "json", "--user", "Alice", "--since", "2024-05-02", "--out", str(out)) == 0
    assert [r["content"] for r in json.loads(out.read_text())] == ["Churn by region?", "4% in the north."]
    assert run("--format", "json", "--until", "2024-05-02", "--search", "forecast", "--out", str(out)) == 0
    assert [r["conversation_title"] for r in json.loads(out.read_text())] == ["=Forecast", "=Forecast"]
    assert run("--format", "json", "--search", "nothing-like-this", "--out", str(out)) == 0
    assert json.loads(out.read_text()) == []


def test_the_earliest_and_latest_usable_days_export_everything(chats, tmp_path, capsys):
    out = tmp_path / "all.json"
    assert run("--format", "json", "--since", "0001-01-01", "--until", "9999-12-30", "--out", str(out)) == 0
    assert capsys.readouterr().out == f"exported 6 messages to {out}\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--format", "csv", "--user", "nobody"], "error: No user 'nobody'.\n"),
        (["--format", "csv", "--since", "May 1st"], "error: --since 'May 1st' is not a date: use YYYY-MM-DD.\n"),
        (["--format", "csv", "--until", "9999-12-31"],
         "error: --until '9999-12-31' is too late: use a day up to 9999-12-30.\n"),
        (["--format", "csv", "--since", "9999-12-31"],
         "error: --since '9999-12-31' is too late: use a day up to 9999-12-30.\n"),
        (["--format", "csv", "--since", "2024-02-30"], "error: --since '2024-02-30' is not a date: use YYYY-MM-DD.\n"),
        (["--format", "csv", "--until", "0000-01-01"], "error: --until '0000-01-01' is not a date: use YYYY-MM-DD.\n"),
        (["--format", "csv", "--until", "+10000-01-01"],
         "error: --until '+10000-01-01' is not a date: use YYYY-MM-DD.\n"),
        (["--format", "csv", "--since", ""], "error: --since '' is not a date: use YYYY-MM-DD.\n"),
        (["--format", "csv", "--since", "2024-05-01T09:00"],
         "error: --since '2024-05-01T09:00' is not a date: use YYYY-MM-DD.\n"),
        (["--format", "csv", "--since", "2024-05-03", "--until", "2024-05-01"],
         "error: The start date is after the end date.\n"),
        (["--format", "pdf"], "error: argument --format: invalid choice: 'pdf' (choose from 'csv', 'xlsx', 'json', "
                              "'md', 'parquet', 'eval-jsonl', 'eval-csv') (see python -m chatbot export --help)\n"),
    ],
)
def test_mistakes_print_one_line_exit_2_and_write_nothing(chats, folder, capsys, args, message):
    out = folder / "never.csv"
    try:
        code = run(*args, "--out", str(out))
    except SystemExit as exit_:  # argparse's own mistakes
        code = exit_.code
    assert (code, capsys.readouterr().err) == (2, message)
    assert list(folder.iterdir()) == []


def test_excel_past_its_row_limit_is_refused_and_leaves_no_file(chats, folder, capsys, monkeypatch):
    monkeypatch.setattr(export, "EXCEL_MAX_ROWS", 5)
    out = folder / "big.xlsx"
    assert run("--format", "xlsx", "--out", str(out)) == 2
    assert capsys.readouterr().err == (
        "error: Excel holds at most 5 messages and this export has 6. "
        "Export csv or parquet instead, or narrow it with --since/--until.\n"
    )
    assert list(folder.iterdir()) == []


def test_a_folder_that_does_not_exist_is_one_line(chats, tmp_path, capsys):
    assert run("--format", "csv", "--out", str(tmp_path / "missing" / "x.csv")) == 2
    assert capsys.readouterr().err.startswith(f"error: Cannot write {tmp_path / 'missing' / 'x.csv'}: ")


def test_a_failed_export_keeps_the_previous_file(chats, folder, monkeypatch):
    out = folder / "keep.xlsx"
    out.write_text("previous export")
    monkeypatch.setattr(export, "EXCEL_MAX_ROWS", 5)
    assert run("--format", "xlsx", "--out", str(out)) == 2
    assert out.read_text() == "previous export"
    assert list(folder.iterdir()) == [out]


def make_symlink(path: Path) -> str:
    target = path.parent / "precious.txt"
    target.write_text("not an export")
    path.symlink_to(target)
    return "a symbolic link"


def make_device(path: Path) -> str:
    try:  # the same device as /dev/null, made here so that a failure cannot break the real one
        os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    except PermissionError:
        pytest.skip("creating a device file needs CAP_MKNOD")
    return "a device"


def make_folder(path: Path) -> str:
    path.mkdir()
    return "a folder"


def make_fifo(path: Path) -> str:
    os.mkfifo(path)
    return "a named pipe"


@pytest.mark.parametrize("make", [make_symlink, make_device, make_folder, make_fifo])
def test_an_out_that_is_not_a_regular_file_is_refused_and_left_as_it_was(chats, folder, capsys, make):
    """--out followed a symlink over its target, and (as root) replaced a device with a file."""
    out = folder / "all.csv"
    kind = make(out)
    before = sorted((p.name, p.lstat().st_mode) for p in folder.iterdir())
    assert run("--format", "csv", "--out", str(out)) == 2
    assert capsys.readouterr().err == (
        f"error: Refusing to write {out}: it is {kind}, not a regular file. Choose another --out.\n")
    assert sorted((p.name, p.lstat().st_mode) for p in folder.iterdir()) == before
    if kind == "a symbolic link":
        assert (folder / "precious.txt").read_text() == "not an export"


def test_an_export_that_fails_midway_leaves_neither_a_half_file_nor_its_temporary_file(chats, folder, capsys,
                                                                                       monkeypatch):
    def half_then_fail(session, actor, filters, label, out):
        out.write(b"conversation_id,half a row")
        raise StoreError("The database went away mid-export.")

    monkeypatch.setattr(history, "write_export", half_then_fail)
    out = folder / "all.csv"
    out.write_text("previous export")
    assert run("--format", "csv", "--out", str(out)) == 2
    assert capsys.readouterr().err == "error: The database went away mid-export.\n"
    assert list(folder.iterdir()) == [out] and out.read_text() == "previous export"


def test_an_export_replaces_a_regular_file_with_the_complete_export(chats, folder):
    out = folder / "all.json"
    out.write_text("previous export")
    assert run("--format", "json", "--out", str(out)) == 0
    assert len(json.loads(out.read_text())) == 6 and list(folder.iterdir()) == [out]


def test_python_m_chatbot_export_runs_as_a_command(chats, database_url, tmp_path):
    out = tmp_path / "all.parquet"
    result = subprocess.run(
        [sys.executable, "-m", "chatbot", "export", "--format", "parquet", "--user", "bob", "--out", str(out)],
        capture_output=True, text=True, cwd=ROOT, env={**os.environ, "DATABASE_URL": database_url}, timeout=120,
    )
    assert (result.returncode, result.stdout, result.stderr) == (0, f"exported 2 messages to {out}\n", "")
    assert pq.read_table(out).column("content").to_pylist() == ["=1+1 forecast", "Flat."]


def test_export_writes_an_evaluation_set_with_the_search_syntax(chats, users, db, tmp_path, capsys):
    with db.begin() as session:
        history.tags.set_tags(session, users["alice"], chats["sales"], ["billing"])
    out = tmp_path / "eval.jsonl"
    assert run("--format", "eval-jsonl", "--search", "tag:billing -churn q3", "--out", str(out)) == 0
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["question"], r["answer"], r["tags"], r["feedback_score"]) for r in records] == [
        ("What were Q3 sales?", "1.2M.", ["billing"], 1)]
    assert "exported 1 answered turns" in capsys.readouterr().out
    csv_out = tmp_path / "eval.csv"
    assert run("--format", "eval-csv", "--user", "bob", "--out", str(csv_out)) == 0
    assert pd.read_csv(csv_out, encoding="utf-8-sig")["question"].tolist() == ["'=1+1 forecast"]
