"""notes_index: the notes engine indexes 5,000 notes (about 25 MB) and answers a query.

Ours is ``NotesIndex.build`` on a generated folder of Markdown notes, then ``search`` for
questions that name a topic or two. The baselines, measured in the same run: for the build,
reading every note and cutting it into passages without indexing (the floor the index adds
to); for the query, a scan of every passage counting the question's words (no index).
"""

from __future__ import annotations

import re
from pathlib import Path

from bench import data
from bench.context import Context
from bench.report import Figure
from bench.timing import Stats, time_calls, time_pairs, timed
from bench.vocabulary import TOPICS
from chatbot.notes import NotesIndex, split_passages

BUILD_SECONDS, QUERY_MS = 30.0, 50.0
QUESTIONS = [
    f"What do my notes say about {TOPICS[i % len(TOPICS)]} and {TOPICS[(7 * i + 3) % len(TOPICS)]}?"
    for i in range(40)
]


def run(ctx: Context) -> list[Figure]:
    folder = data.notes_dir(ctx.scale)
    files = sorted(folder.rglob("*.md"))
    size_mb = sum(f.stat().st_size for f in files) / 1e6
    holder: dict = {}
    read_only = Stats.of([timed(lambda: holder.update(passages=read_and_split(folder)))])
    build = time_calls(lambda: holder.update(index=NotesIndex.build(folder)), repeat=1, warmup=0)
    index, passages = holder["index"], holder["passages"]
    questions = iter(QUESTIONS * 4)
    scanned = iter(QUESTIONS * 4)
    query, scan = time_pairs(
        lambda: index.search(next(questions)), lambda: scan_passages(passages, next(scanned)),
        pairs=20 if ctx.quick else 40,
    )
    found = sum(1 for q in QUESTIONS if index.search(q))
    ctx.log("notes_index: build %.1f s (read+split %.1f s), query %.2f ms (scan %.1f ms)",
            build.median, read_only.median, query.median * 1000, scan.median * 1000)  # fmt: skip
    common = {"notes": len(files), "size_mb": round(size_mb, 1), "passages": index.passage_count}
    return [
        Figure(
            name="notes_index.build", value=build.median, unit="s",
            target=f"{ctx.scale.notes:,} notes (~{size_mb:.0f} MB) in ≤ {BUILD_SECONDS:g} s",
            met=build.median <= BUILD_SECONDS, baseline=read_only.median, baseline_label="read + split only",
            details=common,
        ),
        Figure(
            name="notes_index.query", value=query.median * 1000, unit="ms", target=f"median ≤ {QUERY_MS:g} ms",
            met=query.median * 1000 <= QUERY_MS, baseline=scan.median * 1000,
            baseline_label="scan every passage",
            details={**common, "questions": len(QUESTIONS), "answered": found, "query_ms": query.summary(3),
                     "scan_ms": scan.summary(3)},  # fmt: skip
        ),
    ]


def read_and_split(folder: Path) -> list[str]:
    """Every note's passages, as the index reads them, without indexing."""
    texts = []
    for path in sorted(folder.rglob("*.md")):
        texts += [p.text.lower() for p in split_passages(path.relative_to(folder).as_posix(), path.read_text())]
    return texts


def scan_passages(passages: list[str], question: str, k: int = 3) -> list[int]:
    """The ``k`` passages that contain the question's longer words most often."""
    words = [w for w in re.findall(r"\w+", question.lower()) if len(w) > 3]
    scores = [sum(text.count(w) for w in words) for text in passages]
    return sorted(range(len(scores)), key=scores.__getitem__, reverse=True)[:k]
