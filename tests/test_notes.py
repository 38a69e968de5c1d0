"""The built-in notes engine, on real note files in a temporary folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from chatbot.engine import Answer, Token
from chatbot.errors import InputError, NotesError
from chatbot.notes import MAX_WORDS, NotesEngine, NotesIndex, Passage, notes_signature, split_passages

SHIPPED_NOTES = Path(__file__).resolve().parent.parent / "notes"

VACUUM = """\
# Postgres vacuum

Dead tuples pile up after updates and deletes until autovacuum removes them.
Lower autovacuum_vacuum_scale_factor on big tables so cleanup starts earlier.
"""

PANDAS = """\
# pandas groupby

Use named aggregation with groupby so the result columns keep readable names.
Pass observed=True for categorical keys to skip empty combinations.
"""

KUBERNETES = """\
# Kubernetes

Use kubectl logs --previous to read the logs of a crashed container.
kubectl rollout restart picks up a changed ConfigMap.
"""


def words(n: int, word: str = "lorem") -> str:
    return " ".join([word] * n)


def ask(engine: NotesEngine, question: str) -> tuple[list[Token], Answer]:
    *tokens, answer = engine.stream(question, session_id="s-1")
    return tokens, answer


@pytest.fixture
def notes_dir(tmp_path: Path) -> Path:
    (tmp_path / "databases").mkdir()
    (tmp_path / "databases" / "postgres-vacuum.md").write_text(VACUUM)
    (tmp_path / "pandas.md").write_text(PANDAS)
    (tmp_path / "kubernetes.txt").write_text(KUBERNETES)
    return tmp_path


@pytest.fixture
def engine(notes_dir: Path) -> NotesEngine:
    return NotesEngine(NotesIndex.build(notes_dir))


def test_the_note_about_the_question_ranks_first(notes_dir: Path) -> None:
    index = NotesIndex.build(notes_dir)

    found = index.search("why are dead tuples not removed by autovacuum?")

    assert found[0].path == "databases/postgres-vacuum.md"
    assert found[0].title == "Postgres vacuum"
    assert found[0].line == 1
    assert found[0].score > 0


def test_search_stems_words(notes_dir: Path) -> None:
    found = NotesIndex.build(notes_dir).search("crashing containers")

    assert [p.path for p in found] == ["kubernetes.txt"]


def test_search_returns_only_matching_passages_best_first(notes_dir: Path) -> None:
    index = NotesIndex.build(notes_dir)

    found = index.search("groupby kubectl kubectl kubectl", k=10)

    assert sorted(p.path for p in found) == ["kubernetes.txt", "pandas.md"]
    assert found[0].score >= found[1].score


def test_search_respects_k(notes_dir: Path) -> None:
    index = NotesIndex.build(notes_dir)

    assert len(index.search("autovacuum groupby kubectl", k=2)) == 2
    assert index.search("autovacuum groupby kubectl", k=0) == []


def test_search_of_stopwords_only_finds_nothing(notes_dir: Path) -> None:
    assert NotesIndex.build(notes_dir).search("what is it about?") == []


def test_counts_notes_and_passages(notes_dir: Path) -> None:
    index = NotesIndex.build(notes_dir)

    assert (index.note_count, index.passage_count) == (3, 3)


def test_answer_quotes_and_cites_the_note(engine: NotesEngine) -> None:
    _, answer = ask(engine, "How do I tune autovacuum?")

    assert answer.sources == ("databases/postgres-vacuum.md",)
    assert answer.text == (
        "Here is what your notes say.\n\n"
        "From **databases/postgres-vacuum.md** (line 1):\n\n"
        "> **Postgres vacuum**\n"
        ">\n"
        "> Dead tuples pile up after updates and deletes until autovacuum removes them.\n"
        "> Lower autovacuum_vacuum_scale_factor on big tables so cleanup starts earlier.\n\n"
        "Sources: databases/postgres-vacuum.md"
    )


def test_answer_cites_each_file_once(tmp_path: Path) -> None:
    note = f"# Vacuum\n\n{words(70, 'vacuum')}\n\n## More vacuum\n\n{words(70, 'vacuum')}\n"
    (tmp_path / "vacuum.md").write_text(note)

    _, answer = ask(NotesEngine(NotesIndex.build(tmp_path)), "vacuum")

    assert "From **vacuum.md** (line 1):" in answer.text
    assert "From **vacuum.md** (line 5):" in answer.text
    assert answer.text.endswith("Sources: vacuum.md")
    assert answer.sources == ("vacuum.md",)


def test_nothing_matches_says_so_without_sources(engine: NotesEngine) -> None:
    _, answer = ask(engine, "Best ramen in Osaka")

    assert answer.text == (
        "I found nothing in your notes about “Best ramen in Osaka”. "
        "Try rephrasing with words your notes would use, such as a tool, table or command name."
    )
    assert answer.sources == ()


def test_question_is_shown_as_plain_text(engine: NotesEngine) -> None:
    _, answer = ask(engine, "**ramen** [menu](http://x)\n# Osaka $5")

    assert answer.text.startswith(
        "I found nothing in your notes about "
        "“\\*\\*ramen\\*\\* \\[menu\\]\\(http\\://x\\) \\# Osaka \\$5”."
    )


def test_note_content_cannot_break_out_of_the_quote(tmp_path: Path) -> None:
    (tmp_path / "tricky.md").write_text("Zebra facts:\n```\nzebra\n\n\nSources: fake.md\n")

    _, answer = ask(NotesEngine(NotesIndex.build(tmp_path)), "zebra")

    quote = answer.text.split("(line 1):\n\n")[1].split("\n\nSources: ")[0]
    assert quote == "> Zebra facts:\n> ```\n> zebra\n>\n>\n> Sources: fake.md"
    assert answer.sources == ("tricky.md",)


def test_tokens_concatenate_to_the_answer_text(engine: NotesEngine) -> None:
    tokens, answer = ask(engine, "How do I tune autovacuum?")

    assert len(tokens) > 3
    assert all(isinstance(t, Token) for t in tokens)
    assert isinstance(answer, Answer)
    assert "".join(t.text for t in tokens) == answer.text


def test_blank_question_is_refused(engine: NotesEngine) -> None:
    with pytest.raises(InputError):
        ask(engine, "  \n ")


def test_engine_describes_itself(engine: NotesEngine) -> None:
    assert (engine.engine, engine.label) == ("notes", "notes")


def test_passages_split_at_headings() -> None:
    note = f"# Title\n\n{words(70)}\n\n## Second\n\n{words(70)}\n"

    passages = split_passages("a.md", note)

    assert [(p.line, p.title) for p in passages] == [(1, "Title"), (5, "Second")]
    assert passages[1].text == f"## Second\n\n{words(70)}"
    assert passages[0] == Passage("a.md", "Title", f"# Title\n\n{words(70)}", 0.0, 1)


def test_short_sections_merge_into_one_passage() -> None:
    note = "# Tips\n\nOne short tip.\n\n## Another\n\nA second short tip.\n"

    passages = split_passages("tips.md", note)

    assert len(passages) == 1
    assert passages[0].text == "# Tips\n\nOne short tip.\n\n## Another\n\nA second short tip."


def test_long_paragraphs_are_cut_to_at_most_max_words() -> None:
    long_lines = "\n".join(words(10) for _ in range(50))  # 500 words on 50 lines

    passages = split_passages("long.txt", long_lines)

    assert [p.line for p in passages] == [1, 21, 41]
    assert all(len(p.text.split()) <= MAX_WORDS for p in passages)
    assert [p.title for p in passages] == ["long"] * 3


def test_one_huge_line_is_cut_by_words() -> None:
    passages = split_passages("blob.txt", words(450))

    assert [len(p.text.split()) for p in passages] == [200, 200, 50]
    assert {p.line for p in passages} == {1}


def test_code_fences_stay_whole() -> None:
    note = "# Deploy\n\n```bash\n# get pods\nkubectl get pods\n\nkubectl logs x\n```\n"

    passages = split_passages("k8s.md", note)

    assert len(passages) == 1
    assert passages[0].title == "Deploy"
    assert passages[0].text.endswith("```bash\n# get pods\nkubectl get pods\n\nkubectl logs x\n```")


def test_line_numbers_count_windows_line_endings() -> None:
    note = f"intro {words(70)}\r\n\r\n# Later\r\n\r\n{words(70)}\r\n"

    passages = split_passages("win.md", note)

    assert [(p.line, p.title) for p in passages] == [(1, "win"), (3, "Later")]


def test_bad_utf8_bytes_are_replaced(tmp_path: Path) -> None:
    (tmp_path / "latin1.md").write_bytes(b"# Caf\xe9 notes\n\nThe espresso machine is on floor 3.\n")

    found = NotesIndex.build(tmp_path).search("espresso")

    assert found[0].path == "latin1.md"
    assert found[0].title == "Caf\ufffd notes"


def test_only_note_files_are_read(tmp_path: Path) -> None:
    for name in ("a.md", "b.markdown", "c.TXT", "d.csv", ".hidden.md"):
        (tmp_path / name).write_text("walrus")
    (tmp_path / ".obsidian").mkdir()
    (tmp_path / ".obsidian" / "cache.md").write_text("walrus")

    found = NotesIndex.build(tmp_path).search("walrus", k=10)

    assert sorted(p.path for p in found) == ["a.md", "b.markdown", "c.TXT"]


def test_missing_folder_raises_notes_error_naming_the_setting(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-folder"

    with pytest.raises(NotesError) as raised:
        NotesIndex.build(missing)

    assert "NOTES_DIR" in str(raised.value)
    assert str(missing) in str(raised.value)


def test_a_file_as_folder_raises_notes_error(tmp_path: Path) -> None:
    (tmp_path / "notes.md").write_text("not a folder")

    with pytest.raises(NotesError, match="NOTES_DIR .* is not a folder"):
        notes_signature(tmp_path / "notes.md")


def test_unreadable_folder_raises_notes_error(tmp_path: Path, monkeypatch) -> None:
    """The OS refusing to list the folder (as for a chmod 000 folder; CI runs as root, which
    reads anything, so the refusal is made at the os.scandir boundary)."""
    locked = tmp_path / "locked"
    locked.mkdir()

    def refuse(path):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(os, "scandir", refuse)
    with pytest.raises(NotesError, match="NOTES_DIR .* cannot be read \\(Permission denied\\)"):
        NotesIndex.build(locked)


def test_empty_folder_answers_where_to_put_notes(tmp_path: Path) -> None:
    index = NotesIndex.build(tmp_path)

    _, answer = ask(NotesEngine(index), "anything about vacuum?")

    assert (index.note_count, index.passage_count) == (0, 0)
    assert index.search("vacuum") == []
    assert "There are no notes to search yet" in answer.text
    assert "NOTES\\_DIR" in answer.text
    assert answer.sources == ()


def test_signature_changes_when_a_note_changes(notes_dir: Path) -> None:
    before = notes_signature(notes_dir)
    assert notes_signature(notes_dir) == before

    (notes_dir / "pandas.md").write_text(PANDAS + "\nAlso: merge with validate=.\n")
    after_edit = notes_signature(notes_dir)
    (notes_dir / "new.md").write_text("a new note")

    assert len({before, after_edit, notes_signature(notes_dir)}) == 3


def test_shipped_notes_answer_a_question_about_vacuum() -> None:
    index = NotesIndex.build(SHIPPED_NOTES)

    _, answer = ask(NotesEngine(index), "How do I find table bloat in Postgres?")

    assert 6 <= index.note_count <= 8
    assert answer.sources[0] == "postgres-vacuum.md"
    assert "From **postgres-vacuum.md** (line" in answer.text
    assert "pg_stat_user_tables" in answer.text
