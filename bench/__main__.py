"""python -m bench: build the data, measure every target against its same-run baseline, write results.

    python -m bench                  the full run (1,000,000 messages): writes bench/results.json
    python -m bench --quick          a tenth of the data, about a minute once the data is cached
    python -m bench --only search export --sqlite-only
    python -m bench --table          the README's Performance table, from bench/results.json
    python -m bench --clean          remove the cached datasets (bench/data/, PostgreSQL schemas)

Only a full run of every target on both databases writes bench/results.json (the committed
figures); any other run writes bench/data/results-<scale>.json unless ``--out`` says otherwise.
The exit status is 1 when a target is missed or a benchmark fails.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import shlex
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

from bench import data
from bench.context import BACKENDS, Context
from bench.report import RESULTS, Figure, code_state, markdown_table, table_from_file, write_results

TARGETS = {
    "append_flat": "bench.append",
    "history_page": "bench.history_page",
    "search": "bench.search",
    "export": "bench.export",
    "client_overhead": "bench.client_overhead",
    "chat_render": "bench.chat_render",
    "live_render": "bench.live_render",
    "chat_sidebar": "bench.chat_sidebar",
    "concurrency": "bench.concurrency",
    "notes_index": "bench.notes_index",
}
# Cheap and dataset-free first, so a broken database setup fails late rather than early.
ORDER = ["client_overhead", "live_render", "notes_index", "append_flat", "concurrency", "chat_render", "chat_sidebar", "history_page", "search", "export"]


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    _configure_logging()
    if args.table:
        print(table_from_file(args.out or RESULTS))
        return 0
    if args.clean:
        for removed in data.clean():
            print(f"removed {removed}")
        return 0
    scale = data.QUICK if args.quick else data.FULL
    chosen = [name for name in ORDER if not args.only or name in args.only]
    backends = ("sqlite",) if args.sqlite_only else BACKENDS
    complete = not args.quick and not args.only and not args.sqlite_only
    out = args.out or (RESULTS if complete else data.DATA_DIR / f"results-{scale.name}.json")
    started, load_before, code_before = time.perf_counter(), os.getloadavg(), code_state()
    figures = _run_all(scale, backends, chosen)
    code_after = code_state()
    changed = code_after["sources_sha256"] != code_before["sources_sha256"]
    if changed:
        logging.getLogger("bench").warning(
            "the sources changed during the run (%s -> %s): the figures mix two versions; run again",
            code_before["sources_sha256"], code_after["sources_sha256"],
        )
    meta = {
        "scale": f"{scale.name}: {scale.messages:,} messages in {scale.conversations:,} conversations of "
                 f"{scale.users} users; {scale.notes:,} notes",
        "command": "python -m bench" + ("".join(f" {shlex.quote(a)}" for a in (argv or sys.argv[1:]))),
        "backends": list(backends),
        **({"postgresql": data.postgres_version()} if "postgresql" in backends else {}),
        "duration_s": round(time.perf_counter() - started, 1),
        # Other work on the machine slows absolute figures; the same-run baselines share it.
        "load_average_1min": {"start": round(load_before[0], 2), "end": round(os.getloadavg()[0], 2)},
        "code": {**code_before, "changed_during_run": changed}
        | ({"sources_sha256_end": code_after["sources_sha256"]} if changed else {}),
    }  # fmt: skip
    results = write_results(Path(out), figures, meta)
    print()
    print(markdown_table(results))
    print(f"\nwrote {out}")
    return 0 if all(f.met is not False for f in figures) else 1


def _run_all(scale: data.Scale, backends: tuple[str, ...], chosen: list[str]) -> list[Figure]:
    data.DATA_DIR.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="run-", dir=data.DATA_DIR))
    ctx = Context(scale=scale, backends=backends, workdir=workdir)
    figures: list[Figure] = []
    try:
        for name in chosen:
            ctx.log("== %s", name)
            began = time.perf_counter()
            try:
                figures += importlib.import_module(TARGETS[name]).run(ctx)
            except Exception as exc:  # one failed benchmark is reported and the others still run
                traceback.print_exc()
                figures.append(Figure(name=name, value=float("nan"), unit="", target="(the benchmark failed)",
                                      met=False, details={"error": f"{type(exc).__name__}: {exc}"}))  # fmt: skip
            ctx.log("== %s took %.0f s", name, time.perf_counter() - began)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return figures


def _configure_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    for noisy in ("alembic", "streamlit", "bm25s", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.ERROR)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="a tenth of the data (about a minute)")
    parser.add_argument("--only", nargs="+", choices=ORDER, metavar="NAME", help=f"run only these: {', '.join(ORDER)}")
    parser.add_argument("--sqlite-only", action="store_true", help="skip PostgreSQL")
    parser.add_argument("--out", type=Path, help="where to write (or, with --table, read) the results")
    parser.add_argument("--table", action="store_true", help="print the Performance table from the results and exit")
    parser.add_argument("--clean", action="store_true", help="remove the cached datasets and exit")
    return parser


if __name__ == "__main__":
    sys.exit(main())
