"""The SQL a call runs, each statement's time, and its query plan: why a figure is what it is."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from sqlalchemy import Engine, event


@dataclass
class Statement:
    sql: str
    parameters: object
    seconds: float


@dataclass
class Recorder:
    statements: list[Statement] = field(default_factory=list)


@contextlib.contextmanager
def recording(engine: Engine) -> Iterator[Recorder]:
    """Record every statement ``engine`` runs inside the block, with its execution time."""
    recorder = Recorder()

    def before(conn, cursor, statement, parameters, context, executemany):
        conn.info.setdefault("bench_started", []).append(time.perf_counter())

    def after(conn, cursor, statement, parameters, context, executemany):
        started = conn.info["bench_started"].pop()
        recorder.statements.append(Statement(statement, parameters, time.perf_counter() - started))

    event.listen(engine, "before_cursor_execute", before)
    event.listen(engine, "after_cursor_execute", after)
    try:
        yield recorder
    finally:
        event.remove(engine, "before_cursor_execute", before)
        event.remove(engine, "after_cursor_execute", after)


def explain(engine: Engine, statement: Statement) -> str:
    """The plan of a recorded statement: EXPLAIN QUERY PLAN on SQLite, EXPLAIN ANALYZE on PostgreSQL."""
    sqlite = engine.dialect.name == "sqlite"
    prefix = "EXPLAIN QUERY PLAN " if sqlite else "EXPLAIN (ANALYZE, BUFFERS) "
    with engine.connect() as connection:
        rows = connection.exec_driver_sql(prefix + statement.sql, statement.parameters).all()
        connection.rollback()
    if sqlite:  # (id, parent, notused, detail): indent by depth
        depth: dict[int, int] = {0: -1}
        lines = []
        for node, parent, _, detail in rows:
            depth[node] = depth.get(parent, -1) + 1
            lines.append("  " * depth[node] + detail)
        return "\n".join(lines)
    return "\n".join(row[0] for row in rows)


def profile(engine: Engine, calls: list[Recorder], *, with_plans: bool) -> list[dict]:
    """Per statement of a repeated call: its SQL, median time in ms, and (when asked) its plan."""
    if not calls:
        return []
    profiled = []
    for position, first in enumerate(calls[0].statements):
        times = sorted(c.statements[position].seconds for c in calls if len(c.statements) > position)
        entry = {"sql": " ".join(first.sql.split()), "parameters": repr(first.parameters),
                 "median_ms": round(times[len(times) // 2] * 1000, 2)}  # fmt: skip
        if with_plans and first.sql.lstrip().upper().startswith("SELECT"):
            entry["plan"] = explain(engine, first)
        profiled.append(entry)
    return profiled
