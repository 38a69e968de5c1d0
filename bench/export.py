"""export: every message to CSV and Parquet, and Excel for 100,000 rows, streamed to a file.

Each export runs in its own subprocess (``python -m bench.export ...``), which reports its wall
time and its peak memory growth: the kernel's high-water mark (VmHWM) is reset to the current
RSS just before the export starts (``/proc/self/clear_refs``), and growth is VmHWM at the end
minus VmRSS at the start; a sampling thread also reports how much of the peak was heap
(RssAnon) and how much file pages mapped into memory (RssFile: SQLite's ``mmap_size``). Ours is ``history.iter_export_frames`` into the ``chatbot.export``
writer; the baseline, run alternately with it, is ``pandas.read_sql`` of the same rows then
``to_csv`` / ``to_parquet`` / ``to_excel``.
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import pandas as pd
from sqlalchemy import Text, and_, cast, func, select

from bench import data
from bench.context import Context
from bench.report import Figure
from chatbot import db as database
from chatbot import export, history, store
from chatbot.models import AnswerNote, Conversation, ConversationTag, Feedback, Message, User

ROOT = Path(__file__).resolve().parent.parent
WRITERS = {"csv": export.export_csv, "parquet": export.export_parquet, "xlsx": export.export_xlsx}
SECONDS = {"csv": 20.0, "parquet": 20.0, "xlsx": 30.0}
MEMORY_MB, MEMORY_SHARE = 200.0, 1 / 3


def run(ctx: Context) -> list[Figure]:
    figures = []
    repeats = 1 if ctx.quick else 2
    for backend in ctx.backends:
        url = ctx.dataset(backend)
        for fmt in ("csv", "parquet"):
            ours, pandas = _alternate(ctx, url, fmt, repeats=repeats)
            figures += _full_figures(ctx, backend, fmt, ours, pandas)
        ours, pandas = _alternate(ctx, url, "xlsx", repeats=1, rows=ctx.scale.excel_rows)
        figures.append(_excel_figure(ctx, backend, ours, pandas))
    return figures


def _alternate(ctx: Context, url: str, fmt: str, *, repeats: int, rows: int | None = None) -> tuple[dict, dict]:
    """Ours and pandas, alternately (AB, BA, ...), each summarized."""
    ours, pandas = [], []
    for i in range(repeats):
        order = [("ours", ours), ("pandas", pandas)]
        for how, runs in order if i % 2 == 0 else order[::-1]:
            runs.append(_in_subprocess(ctx, url, how, fmt, rows))
            ctx.log("export %s %s: %s", fmt, how, runs[-1])
    return _summarize(ours), _summarize(pandas)


def _summarize(runs: list[dict]) -> dict:
    """Median wall and CPU time over the runs, and the worst peak memory growth."""
    return {
        "rows": runs[0]["rows"], "seconds": round(statistics.median(r["seconds"] for r in runs), 2),
        "cpu_seconds": round(statistics.median(r["cpu_seconds"] for r in runs), 2),
        "growth_mb": max(r["growth_mb"] for r in runs),
        "anon_growth_mb": max(r["anon_growth_mb"] for r in runs),
        "file_growth_mb": max(r["file_growth_mb"] for r in runs), "file_mb": runs[0]["file_mb"], "runs": runs,
    }  # fmt: skip


def _in_subprocess(ctx: Context, url: str, how: str, fmt: str, rows: int | None) -> dict:
    out = ctx.workdir / f"export-{how}.{fmt}"
    command = [sys.executable, "-m", "bench.export", "--url", url, "--how", how, "--format", fmt, "--out", str(out)]
    if rows:
        command += ["--rows", str(rows)]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"export worker failed ({' '.join(command[3:])}):\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["file_mb"] = round(out.stat().st_size / 1e6, 1)
    out.unlink()
    return result


def _full_figures(ctx: Context, backend: str, fmt: str, ours: dict, pandas: dict) -> list[Figure]:
    limit = SECONDS[fmt]
    memory_met = ours["growth_mb"] <= MEMORY_MB and ours["growth_mb"] <= MEMORY_SHARE * pandas["growth_mb"]
    details = {"rows": ours["rows"], "ours": ours, "pandas": pandas}
    return [
        Figure(
            name=f"export.{fmt}.time.{backend}", value=ours["seconds"], unit="s", target=f"≤ {limit:g} s",
            met=ours["seconds"] <= limit, baseline=pandas["seconds"], baseline_label="pandas read_sql + to_" + fmt,
            details=details,
        ),
        Figure(
            name=f"export.{fmt}.memory.{backend}", value=ours["growth_mb"], unit="MB",
            target=f"peak growth ≤ {MEMORY_MB:g} MB and ≤ 1/3 of pandas", met=memory_met,
            baseline=pandas["growth_mb"], baseline_label="pandas read_sql + to_" + fmt, details=details,
        ),
    ]


def _excel_figure(ctx: Context, backend: str, ours: dict, pandas: dict) -> Figure:
    limit = SECONDS["xlsx"]
    return Figure(
        name=f"export.xlsx.time.{backend}", value=ours["seconds"], unit="s",
        target=f"{ctx.scale.excel_rows:,} rows in ≤ {limit:g} s", met=ours["seconds"] <= limit,
        baseline=pandas["seconds"], baseline_label="pandas read_sql + to_excel",
        details={"rows": ours["rows"], "ours": ours, "pandas": pandas},
    )


# -- the worker: one export in this process ------------------------------------------------------


def _status_kb(field: str) -> int:
    return _status()[field]


def _status() -> dict[str, int]:
    """The kB figures of /proc/self/status (VmRSS, VmHWM, RssAnon, RssFile, ...)."""
    figures = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if value.strip().endswith(" kB"):
            figures[name] = int(value.split()[0])
    return figures


class _RssSampler(threading.Thread):
    """Peaks of anonymous (heap) and file-backed (mmap, e.g. SQLite's mmap_size) RSS, every 5 ms.

    VmHWM is the kernel's exact peak of their sum; this says what the peak was made of.
    """

    FIELDS = ("RssAnon", "RssFile")

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.start_kb = {f: _status_kb(f) for f in self.FIELDS}
        self.peak_kb = dict(self.start_kb)
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.wait(0.005):
            self._sample()

    def _sample(self) -> None:
        now = _status()
        for field in self.FIELDS:
            self.peak_kb[field] = max(self.peak_kb[field], now[field])

    def finish(self) -> dict[str, float]:
        self._done.set()
        self.join()
        self._sample()
        return {f"{f.removeprefix('Rss').lower()}_growth_mb": round((self.peak_kb[f] - self.start_kb[f]) * 1024 / 1e6, 1)
                for f in self.FIELDS}  # fmt: skip


def _cpu_seconds() -> float:
    """User plus system CPU time of this process: less sensitive to a busy machine than wall time."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _reset_peak() -> None:
    """Make VmHWM equal the current RSS (Linux: write 5 to clear_refs)."""
    Path("/proc/self/clear_refs").write_text("5")


def export_rows_query(rows: int | None):
    """Every message an admin's unfiltered export holds, in export order (the pandas baseline's rows),
    with each conversation's tags joined by '; ' and each answer's note, as ours writes them."""
    tagged = (
        select(ConversationTag.conversation_id, func.aggregate_strings(ConversationTag.tag, "; ").label("tags"))
        .group_by(ConversationTag.conversation_id).subquery()
    )
    query = (
        select(
            Conversation.id, Conversation.title, User.username, Message.id, Message.role, Message.version,
            Message.current, Message.content, Message.created_at, Message.status, Message.error, Message.latency_ms,
            Message.ttft_ms, Message.engine, Message.flow_id, Message.flow_name, Message.flow_version, Message.model,
            Message.run_id, Message.input_tokens, Message.output_tokens, Feedback.score, Feedback.comment,
            *(cast(getattr(Message, name), Text) for name in export.JSON_COLUMNS),  # as stored: a baseline parses nothing
            tagged.c.tags, AnswerNote.note, AnswerNote.corrected_answer,
        )
        .select_from(Conversation)
        .join(User, User.id == Conversation.owner_id)
        .join(Message, Message.conversation_id == Conversation.id)
        .outerjoin(Feedback, and_(Feedback.message_id == Message.id, Feedback.user_id == Conversation.owner_id))
        .outerjoin(tagged, tagged.c.conversation_id == Conversation.id)
        .outerjoin(AnswerNote, AnswerNote.message_id == Message.id)
        .where(Conversation.deleted.is_(False))
        .order_by(Message.conversation_id, Message.id)
    )  # fmt: skip
    return query.limit(rows) if rows else query


def _first_rows(frames: Iterable[pd.DataFrame], rows: int) -> Iterator[pd.DataFrame]:
    left = rows
    for frame in frames:
        yield frame.iloc[:left]
        left -= min(left, len(frame))
        if not left:
            return


def _ours(engine, admin: store.Actor, fmt: str, out: Path, rows: int | None) -> int:
    with database.readonly_factory(engine)() as session, out.open("wb") as file:
        frames = history.iter_export_frames(session, admin, history.HistoryFilter())
        return WRITERS[fmt](_first_rows(frames, rows) if rows else frames, file)


def _pandas(engine, fmt: str, out: Path, rows: int | None) -> int:
    with engine.execution_options(readonly=True).connect() as connection:
        frame = pd.read_sql(export_rows_query(rows), connection)
    frame.columns = export.EXPORT_COLUMNS
    if fmt == "csv":
        frame.to_csv(out, index=False)
    elif fmt == "parquet":
        frame.to_parquet(out, index=False)
    else:  # Excel refuses time zones
        frame["created_at"] = pd.to_datetime(frame["created_at"], utc=True).dt.tz_localize(None)
        frame.to_excel(out, index=False)
    return len(frame)


def worker(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.export", description="one export, measured")
    parser.add_argument("--url", required=True)
    parser.add_argument("--how", choices=("ours", "pandas"), required=True)
    parser.add_argument("--format", choices=tuple(WRITERS), required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--rows", type=int)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    engine = database.make_engine(args.url, pool_size=1)
    with database.readonly_factory(engine)() as session:
        admin = store.Actor.of(store.require_user(session, data.admin_username()))
    _reset_peak()
    before_kb = _status_kb("VmRSS")
    sampler = _RssSampler()
    sampler.start()
    cpu_before = _cpu_seconds()
    started = time.perf_counter()
    if args.how == "ours":
        rows = _ours(engine, admin, args.format, args.out, args.rows)
    else:
        rows = _pandas(engine, args.format, args.out, args.rows)
    seconds = time.perf_counter() - started
    cpu = _cpu_seconds() - cpu_before
    peak_kb = _status_kb("VmHWM")
    parts = sampler.finish()
    engine.dispose()
    print(json.dumps({
        "how": args.how, "format": args.format, "rows": rows, "seconds": round(seconds, 2),
        "cpu_seconds": round(cpu, 2), "rss_before_mb": round(before_kb * 1024 / 1e6, 1), "peak_mb": round(peak_kb * 1024 / 1e6, 1),
        "growth_mb": round((peak_kb - before_kb) * 1024 / 1e6, 1), **parts,
    }))  # fmt: skip


if __name__ == "__main__":
    worker()
