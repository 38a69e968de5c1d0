"""The built-in notes engine: answers from a folder of Markdown / text notes with BM25 search."""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import bm25s
import numpy as np
import Stemmer
from bm25s.stopwords import STOPWORDS_EN_PLUS

from chatbot.engine import Answer, Token
from chatbot.errors import InputError, NotesError

logger = logging.getLogger(__name__)

NOTE_SUFFIXES = (".md", ".markdown", ".txt")
MIN_WORDS = 60  # a passage shorter than this absorbs the next paragraph or section
MAX_WORDS = 200  # ... unless that would make it longer than this
MAX_NOTE_BYTES = 10_000_000  # bigger files are skipped: they are exports, not notes
MAX_QUOTES = 3
RELATIVE_CUTOFF = 0.4  # quote a passage only if it scores at least this share of the best one
WORDS_PER_TOKEN = 6
QUESTION_ECHO_CHARS = 120

# NLTK's English list plus words that every chat question has and no note is about, so
# "what do my notes say about X" is a search for X.
STOPWORDS = tuple(sorted(set(STOPWORDS_EN_PLUS) | {
    "also", "anything", "could", "explain", "know", "note", "notes", "please", "say", "says",
    "something", "tell", "us", "would",
}))

_HEADING = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?[ \t#]*$")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]<>()#+!|~$:&])")


@dataclass(frozen=True)
class Passage:
    """A piece of a note: where it is, what it says, and how well it matched a query."""

    path: str  # relative to the notes folder, with forward slashes
    title: str  # the heading the passage starts under, or the file name before any heading
    text: str
    score: float
    line: int  # 1-based line of the passage's first line in its file


class NotesIndex:
    """A BM25 index over the passages of every note in a folder; safe to share between threads."""

    def __init__(self, notes_dir: Path, passages: list[Passage], note_count: int) -> None:
        """Index ready-made passages; use ``NotesIndex.build`` to read a folder."""
        self.notes_dir = notes_dir
        self._passages = passages
        self._note_count = note_count
        self._retriever: bm25s.BM25 | None = None
        if passages:
            corpus = [_indexed_text(p) for p in passages]
            tokens = bm25s.tokenize(corpus, stopwords=STOPWORDS, stemmer=_stemmer(), show_progress=False)
            self._retriever = bm25s.BM25()
            self._retriever.index(tokens, show_progress=False)

    @classmethod
    def build(cls, notes_dir: Path) -> NotesIndex:
        """Read every note under ``notes_dir`` and index its passages; NotesError if unreadable."""
        started = time.perf_counter()
        notes_dir = Path(notes_dir)
        passages: list[Passage] = []
        note_count = 0
        for path in _note_files(notes_dir):
            text = _read_note(path)
            if text is not None:
                note_count += 1
                passages.extend(split_passages(path.relative_to(notes_dir).as_posix(), text))
        index = cls(notes_dir, passages, note_count=note_count)
        logger.info(
            "Indexed %d passages from %d notes in %s (%.1f s)",
            len(passages), note_count, notes_dir, time.perf_counter() - started,
        )
        return index

    @property
    def note_count(self) -> int:
        return self._note_count

    @property
    def passage_count(self) -> int:
        return len(self._passages)

    def search(self, query: str, k: int = 3) -> list[Passage]:
        """The ``k`` best passages for ``query``, best first; only those with a score above 0."""
        if self._retriever is None or k <= 0:
            return []
        terms = bm25s.tokenize(
            query, stopwords=STOPWORDS, stemmer=_stemmer(), return_ids=False, show_progress=False
        )[0]
        ids = self._retriever.get_tokens_ids(list(dict.fromkeys(terms)))
        if not ids:
            return []
        scores = self._retriever.get_scores_from_ids(ids)
        best = _top_k(scores, k)
        return [replace(self._passages[i], score=float(scores[i])) for i in best]


def notes_signature(notes_dir: Path) -> tuple:
    """A cheap fingerprint of the notes (path, mtime, size of each) that changes when they do."""
    notes_dir = Path(notes_dir)
    signature = []
    for path in _note_files(notes_dir):
        try:
            stat = path.stat()
        except OSError:
            continue  # deleted since the listing: the next call will not list it
        signature.append((path.relative_to(notes_dir).as_posix(), stat.st_mtime_ns, stat.st_size))
    return (str(notes_dir.resolve()), tuple(signature))


class NotesEngine:
    """Answers by quoting the notes' best passages, citing their files (a ``ChatBackend``)."""

    engine = "notes"
    label = "notes"

    def __init__(self, index: NotesIndex) -> None:
        self.index = index

    def stream(self, question: str, *, session_id: str, tweaks: dict | None = None) -> Iterator[Token | Answer]:
        """Yield the answer in word groups, then the whole Answer. ``session_id`` is unused."""
        if not question or not question.strip():
            raise InputError("Type a question to search your notes.")
        text, sources = self._compose(question)
        for piece in _word_groups(text, WORDS_PER_TOKEN):
            yield Token(piece)
        yield Answer(text=text, sources=sources)

    def _compose(self, question: str) -> tuple[str, tuple[str, ...]]:
        if self.index.note_count == 0:
            return _no_notes_text(self.index.notes_dir), ()
        found = self.index.search(question, k=MAX_QUOTES)
        if not found:
            return _nothing_found_text(question), ()
        kept = [p for p in found if p.score >= RELATIVE_CUTOFF * found[0].score]
        sources = tuple(dict.fromkeys(p.path for p in kept))
        quotes = "\n\n".join(_quote(p) for p in kept)
        cited = ", ".join(escape_markdown(s) for s in sources)
        return f"Here is what your notes say.\n\n{quotes}\n\nSources: {cited}", sources


def split_passages(path: str, text: str) -> list[Passage]:
    """Cut a note into passages of about MIN_WORDS–MAX_WORDS words, at headings and blank lines."""
    passages: list[Passage] = []
    current: list[_Block] = []
    for block in _blocks(text):
        words = sum(b.words for b in current)
        has_body = any(b.level == 0 for b in current)
        if has_body and (
            (block.level and words >= MIN_WORDS) or words + block.words > MAX_WORDS
        ):
            passages.append(_passage(path, current))
            current = []
        current.append(block)
    if current:
        passages.append(_passage(path, current))
    return passages


def escape_markdown(text: str) -> str:
    """``text`` shown literally by a Markdown renderer (Streamlit's included): on one line."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", " ".join(text.split()))


@dataclass(frozen=True)
class _Block:
    """A heading line or a paragraph (a fenced code block stays in one paragraph)."""

    line: int
    text: str
    words: int
    level: int  # heading level 1–6, or 0 for a paragraph
    heading: str  # the heading in force at this block ("" before the first one)


def _blocks(text: str) -> list[_Block]:
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    blocks: list[_Block] = []
    heading, fence, start, para = "", "", 0, []

    def flush() -> None:
        while para and not para[-1]:  # blank lines at the end of a fence left open
            para.pop()
        if para:
            blocks.extend(_paragraph_blocks(start, para, heading))
            para.clear()

    for number, raw in enumerate(lines, start=1):
        line = raw.rstrip()
        if fence:
            para.append(line)
            if line.strip().startswith(fence) and not line.strip().strip(fence[0]):
                fence = ""
        elif opening := _FENCE.match(line):
            if not para:
                start = number
            para.append(line)
            fence = opening.group(1)
        elif match := _HEADING.match(line):
            flush()
            heading = (match.group(2) or "").strip()
            level = len(match.group(1))
            blocks.append(_Block(number, line, len(line.split()) - 1, level, heading))
        elif not line.strip():
            flush()
        else:
            if not para:
                start = number
            para.append(line)
    flush()
    return blocks


def _paragraph_blocks(start: int, lines: list[str], heading: str) -> list[_Block]:
    """One block, or several of at most MAX_WORDS words when the paragraph is longer."""
    blocks: list[_Block] = []
    chunk: list[str] = []
    chunk_start, chunk_words = start, 0
    for number, line in enumerate(lines, start=start):
        words = len(line.split())
        if chunk and chunk_words + words > MAX_WORDS:
            blocks.append(_Block(chunk_start, "\n".join(chunk), chunk_words, 0, heading))
            chunk, chunk_words = [], 0
        if not chunk:
            chunk_start = number
        if words > MAX_WORDS:  # one enormous line: cut it by words
            tokens = line.split()
            for at in range(0, len(tokens), MAX_WORDS):
                piece = tokens[at : at + MAX_WORDS]
                blocks.append(_Block(number, " ".join(piece), len(piece), 0, heading))
            continue
        chunk.append(line)
        chunk_words += words
    if chunk:
        blocks.append(_Block(chunk_start, "\n".join(chunk), chunk_words, 0, heading))
    return blocks


def _passage(path: str, blocks: list[_Block]) -> Passage:
    title = blocks[0].heading or Path(path).stem  # text before the first heading: the file's name
    text = "\n\n".join(b.text for b in blocks)
    return Passage(path=path, title=title, text=text, score=0.0, line=blocks[0].line)


def _indexed_text(passage: Passage) -> str:
    """The passage plus its title and file name, so a query naming the topic finds it."""
    name = Path(passage.path).stem.replace("-", " ").replace("_", " ")
    return f"{name}\n{passage.title}\n{passage.text}"


def _note_files(notes_dir: Path) -> list[Path]:
    """Every note under ``notes_dir`` (hidden folders skipped), sorted; NotesError if unreadable."""
    if not notes_dir.is_dir():
        problem = "does not exist" if not notes_dir.exists() else "is not a folder"
        raise NotesError(
            f"NOTES_DIR points to {notes_dir}, which {problem}. "
            "Create the folder and put .md or .txt notes in it, or set NOTES_DIR to your notes folder."
        )
    try:
        os.scandir(notes_dir).close()
    except OSError as error:
        raise NotesError(
            f"NOTES_DIR points to {notes_dir}, which cannot be read ({error.strerror}). "
            "Give the app read access to the folder or set NOTES_DIR to another one.",
            detail=repr(error),
        ) from error
    found = []
    for folder, subfolders, names in os.walk(notes_dir, onerror=_log_walk_error):
        subfolders[:] = sorted(d for d in subfolders if not d.startswith("."))
        found.extend(
            Path(folder, name) for name in names
            if not name.startswith(".") and name.lower().endswith(NOTE_SUFFIXES)
        )
    return sorted(found)


def _log_walk_error(error: OSError) -> None:
    logger.warning("Skipping unreadable notes folder %s: %s", error.filename, error.strerror)


def _read_note(path: Path) -> str | None:
    """The note's text (bad UTF-8 bytes replaced), or None when it cannot be read or is too big."""
    try:
        if path.stat().st_size > MAX_NOTE_BYTES:
            logger.warning("Skipping note %s: larger than %d bytes", path, MAX_NOTE_BYTES)
            return None
        data = path.read_bytes()
    except OSError as error:
        logger.warning("Skipping unreadable note %s: %s", path, error.strerror)
        return None
    return data.decode("utf-8", errors="replace").removeprefix("\ufeff")


def _stemmer() -> Stemmer.Stemmer:
    # A stemmer object is not thread-safe, and making one costs well under a microsecond.
    return Stemmer.Stemmer("english")


def _top_k(scores: np.ndarray, k: int) -> list[int]:
    """Indices of the ``k`` best positive scores, best first; ties go to the earlier passage."""
    candidates = np.flatnonzero(scores > 0)
    if len(candidates) > k:
        kth = np.partition(scores[candidates], len(candidates) - k)[len(candidates) - k]
        candidates = candidates[scores[candidates] >= kth]
    order = np.lexsort((candidates, -scores[candidates]))
    return [int(i) for i in candidates[order][:k]]


HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$")


def _quieter_headings(text: str) -> str:
    """Headings become bold lines: a quoted passage should not shout in the chat."""
    lines, in_code = [], False
    for line in text.split("\n"):
        if line.lstrip().startswith(("```", "~~~")):
            in_code = not in_code
        heading = None if in_code else HEADING.match(line)
        lines.append(f"**{heading.group(1)}**" if heading else line)
    return "\n".join(lines)


def _quote(passage: Passage) -> str:
    lines = _quieter_headings(passage.text).split("\n")
    quoted = "\n".join(f"> {line}" if line else ">" for line in lines)
    return f"From **{escape_markdown(passage.path)}** (line {passage.line}):\n\n{quoted}"


def _nothing_found_text(question: str) -> str:
    asked = " ".join(question.split())
    if len(asked) > QUESTION_ECHO_CHARS:
        asked = asked[:QUESTION_ECHO_CHARS].rstrip() + "…"
    return (
        f"I found nothing in your notes about “{escape_markdown(asked)}”. "
        "Try rephrasing with words your notes would use, such as a tool, table or command name."
    )


def _no_notes_text(notes_dir: Path) -> str:
    return (
        f"There are no notes to search yet. Put .md or .txt files in "
        f"**{escape_markdown(str(notes_dir))}** (the folder set by NOTES\\_DIR) and ask again."
    )


def _word_groups(text: str, size: int) -> Iterator[str]:
    """``text`` in pieces of ``size`` words, whitespace kept, so the pieces join back to it."""
    words = re.findall(r"\s*\S+\s*|\s+", text)
    for at in range(0, len(words), size):
        yield "".join(words[at : at + size])
