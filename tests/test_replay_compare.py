"""A replay's comparison: word diffs, the summary's numbers, and the CSV / Excel / JSON files read back."""

from __future__ import annotations

import csv
import io
import json

import openpyxl

from chatbot import store
from chatbot.models import ReplayItem
from chatbot.render import safe_html
from chatbot.replays import compare, jobs


def item(position=1, *, answer="Q3 sales were 1.2M.", original="Q3 sales were 1.2M.", status="complete",
         verdict=None, **fields) -> ReplayItem:
    values = dict(position=position, question=f"Question {position}?", original_answer=original,
                  original_status="complete", answer=answer, status=status, verdict=verdict)
    return ReplayItem(**(values | fields))


def test_word_diff_marks_the_words_that_changed():
    assert compare.word_diff("The cat sat on the mat.", "The dog sat on the red mat.") == [
        ("same", "The "), ("del", "cat"), ("add", "dog"), ("same", " sat on the "), ("add", "red "),
        ("same", "mat."),
    ]


def test_word_diff_of_nothing_and_of_equal_texts():
    assert compare.word_diff(None, "New answer") == [("add", "New answer")]
    assert compare.word_diff("Same words", "Same words") == [("same", "Same words")]
    assert compare.word_diff("Gone", "") == [("del", "Gone")]


def test_the_diff_keeps_the_new_text():
    old, new = "Line one.\nLine two has *stars*.", "Line one.\n\nLine two had `code`, and more."
    assert "".join(text for op, text in compare.word_diff(old, new) if op != "del") == new


def test_the_diff_markdown_escapes_every_word_and_marks_the_changes():
    pairs = compare.word_diff("Total: 5 <b>units</b>", "Total: 7 <script>alert(1)</script> [x](javascript:y)")
    markdown = compare.diff_markdown(pairs)
    assert markdown == ("Total\\: ~~5~~**7** ~~\\<b\\>units\\<\\/b\\>~~**\\<script\\>alert\\(1\\)\\<\\/script\\> "
                        "\\[x\\]\\(javascript\\:y\\)**")
    assert safe_html(markdown) == ("<p>Total: <s>5</s><strong>7</strong> <s>&lt;b&gt;units&lt;/b&gt;</s><strong>"
                                   "&lt;script&gt;alert(1)&lt;/script&gt; [x](javascript:y)</strong></p>&#10;")


def test_the_diff_markdown_keeps_lines_and_drops_indents():
    assert compare.diff_markdown([("same", "one\n    two"), ("add", " three\n")]) == "one  \ntwo **three**  \n"


def test_changed_ignores_whitespace_and_waits_for_the_answer():
    assert not compare.changed(item(answer="Q3 sales  were\n1.2M."))
    assert compare.changed(item(answer="Q3 sales were 1.3M."))
    assert not compare.changed(item(answer="", status="error", error="Langflow timed out."))
    assert not compare.changed(item(answer=None, status="pending"))


def test_summary_counts_verdicts_errors_and_percentiles():
    latencies = [100, 200, 300, 400, 500, 600, 700, 800, 900, 1000, 1100, 1200, 1300, 1400, 1500, 1600, 1700,
                 1800, 1900, 20000]
    items = [item(n, latency_ms=ms, ttft_ms=ms // 10, original_latency_ms=2 * ms, original_ttft_ms=50,
                  verdict="better" if n <= 3 else "worse" if n == 4 else "same" if n <= 6 else None,
                  answer="Changed." if n % 2 else "Q3 sales were 1.2M.")
             for n, ms in enumerate(latencies, 1)]
    items[4].status, items[4].error, items[4].answer = "error", "timed out", ""
    items[5].original_status = "error"
    items.append(item(21, answer=None, status="pending"))
    summary = compare.summarize(items)
    assert (summary.total, summary.replayed, summary.better, summary.worse, summary.same, summary.unjudged) == (
        21, 20, 3, 1, 2, 14)  # the question still waiting is not 'unjudged'
    assert summary.replay_error_rate == 1 / 20 and summary.original_error_rate == 1 / 21
    assert (summary.replay_latency_p50_ms, summary.replay_latency_p95_ms) == (1000, 1900)
    assert (summary.original_latency_p50_ms, summary.original_latency_p95_ms) == (2000, 3800)
    assert (summary.replay_ttft_p50_ms, summary.original_ttft_p50_ms) == (100, 50)
    assert summary.changed == 9 and summary.changed_share == 9 / 19


def test_summary_of_a_replay_not_started_has_no_rates():
    summary = compare.summarize([item(answer=None, status="pending", original_status=None)])
    assert summary.replay_error_rate is None and summary.original_error_rate is None
    assert summary.replay_latency_p50_ms is None and summary.changed_share is None


def test_percentile_is_nearest_rank():
    assert compare.percentile([300, 100, 200, None], 50) == 200
    assert compare.percentile([5], 95) == 5
    assert compare.percentile(range(1, 101), 95) == 95
    assert compare.percentile([], 50) is None


def rows() -> list[ReplayItem]:
    return [
        item(1, question="=HYPERLINK(\"http://evil\")", original="Old answer.", answer="-1 is the new answer",
             verdict="better", latency_ms=1200, ttft_ms=300, tokens=42, flow_name="Notes RAG", flow_version="v8",
             original_flow="Notes RAG v7", original_feedback=0, original_comment="wrong", corrected_answer="Right.",
             conversation_id=7, answer_id=70),
        item(2, question="Churn?", original="Churn is 4%.", answer="Churn is 4%.", latency_ms=900),
    ]


def test_the_comparison_frame_has_both_sides_and_the_verdict():
    frame = compare.comparison_frame(rows())
    assert list(frame.columns) == compare.COLUMNS
    first = frame.iloc[0]
    assert (first["original_answer"], first["replayed_answer"], first["verdict"]) == (
        "Old answer.", "-1 is the new answer", "better")
    assert (first["flow"], first["original_flow"], bool(first["changed"])) == ("Notes RAG v8", "Notes RAG v7", True)
    assert frame["changed"].tolist() == [True, False]


def test_csv_neutralizes_formulas_and_reads_back():
    out = io.BytesIO()
    assert compare.write_csv(compare.comparison_frame(rows()), out) == 2
    assert out.getvalue().startswith(b"\xef\xbb\xbfposition,question,")
    read = list(csv.DictReader(io.StringIO(out.getvalue().decode("utf-8-sig"))))
    assert read[0]["question"] == "'=HYPERLINK(\"http://evil\")"
    assert read[0]["replayed_answer"] == "'-1 is the new answer"
    assert (read[0]["latency_ms"], read[0]["original_feedback"], read[0]["changed"]) == ("1200", "0", "True")
    assert (read[1]["ttft_ms"], read[1]["verdict"]) == ("", "")


def test_excel_reads_back_with_openpyxl(tmp_path):
    path = tmp_path / "replay.xlsx"
    with path.open("wb") as out:
        assert compare.write_xlsx(compare.comparison_frame(rows()), out) == 2
    sheet = openpyxl.load_workbook(path).active
    values = list(sheet.values)
    assert sheet.title == "Comparison" and list(values[0]) == compare.COLUMNS
    first = dict(zip(compare.COLUMNS, values[1]))
    assert first["question"] == "'=HYPERLINK(\"http://evil\")"
    assert (first["latency_ms"], first["tokens"], first["changed"], first["verdict"]) == (1200, 42, True, "better")
    assert dict(zip(compare.COLUMNS, values[2]))["verdict"] is None


def test_json_keeps_every_string_and_parses_back():
    out = io.BytesIO()
    assert compare.write_json(compare.comparison_frame(rows()), out) == 2
    parsed = json.loads(out.getvalue())
    assert parsed[0]["question"] == "=HYPERLINK(\"http://evil\")"
    assert list(parsed[0]) == compare.COLUMNS
    assert (parsed[0]["latency_ms"], parsed[0]["original_feedback"], parsed[0]["changed"]) == (1200, 0, True)
    assert (parsed[1]["ttft_ms"], parsed[1]["verdict"], parsed[1]["changed"]) == (None, None, False)


def test_file_names_are_safe():
    assert compare.file_name("view “Billing” → Notes RAG", "csv") == "replay-view-Billing-Notes-RAG.csv"


def test_an_admin_downloading_another_users_replay_is_audited(db, users):
    alice, root = users["alice"], users["root"]
    with db.begin() as session:
        question = jobs.Question(conversation_id=None, question_id=None, answer_id=None, question="Churn?")
        replay = jobs.create_replay(session, alice, [question], flow="notes", flow_label="Notes", source="file q.csv")
        assert not compare.record_export(session, alice, replay.id)
        assert compare.record_export(session, root, replay.id)
        mine = jobs.create_replay(session, root, [question], flow="notes", flow_label="Notes", source="file q.csv")
        assert not compare.record_export(session, root, mine.id)
    with db.begin() as session:
        assert store.list_audit(session, root)[0][1:] == (
            "root", "replay.export", f"replay {replay.id} “file q.csv → Notes” of alice")
