"""Measure one replica for sizing: memory per browser session and PostgreSQL connections.

    DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:5432/postgres \\
        .venv/bin/python deploy/measure.py --sessions 20

Creates a scratch database next to the one in DATABASE_URL (dropped afterwards), starts one
replica behind nginx with deploy/run-replicas.sh (built-in notes engine, production profile),
then opens SESSIONS logged-in Chromium sessions that each ask two questions, and reports the
replica's RSS before and after, and the connections it holds in pg_stat_activity.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

from playwright.sync_api import Page, expect, sync_playwright
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

REPO = Path(__file__).resolve().parent.parent
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
QUESTIONS = ("How do I vacuum a big table?", "Which window function ranks without gaps?")
PASSWORD = "measure-password"
FORM_CAME_BACK = "() => document.querySelector('input[aria-label=\"Username\"]')?.value === ''"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--port", type=int, default=28_501, help="the replica's port; nginx takes port + 1")
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args()
    server = make_url(os.environ["DATABASE_URL"])
    name = f"measure_{uuid.uuid4().hex[:8]}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        report = measure(server.set(database=name).render_as_string(hide_password=False), name, args)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
    sys.stdout.write(json.dumps(report, indent=2) + "\n")
    return 0


def measure(database_url: str, database: str, args) -> dict:
    env = {**os.environ, "DATABASE_URL": database_url, "CHATBOT_ENV": "production", "LOG_FORMAT": "json",
           "AUTH_COOKIE_KEY": uuid.uuid4().hex * 2, "NOTES_DIR": "notes"}
    for name in [name for name in env if name.startswith("LANGFLOW_")]:
        del env[name]  # the built-in notes engine answers
    subprocess.run([sys.executable, "-m", "chatbot", "users", "add", "alice", "--password-stdin"],
                   input=f"{PASSWORD}\n", text=True, check=True, capture_output=True, cwd=REPO, env=env)
    with tempfile.TemporaryDirectory(prefix="chatbot-measure-") as run_dir:
        return _measure_replica(env, Path(run_dir), database_url, database, args)


def _measure_replica(env: dict, run_dir: Path, database_url: str, database: str, args) -> dict:
    script = subprocess.Popen(
        ["bash", "deploy/run-replicas.sh", "--replicas", "1", "--first-port", str(args.port),
         "--proxy-port", str(args.port + 1), "--run-dir", str(run_dir)],
        cwd=REPO, env=env, stdout=subprocess.PIPE, text=True, start_new_session=True,
    )
    try:
        url = script.stdout.readline().strip()
        pid = int((run_dir / f"replica-{args.port}.pid").read_text())
        engine = create_engine(database_url)
        report = {"sessions": args.sessions, "rss_mb": {"started": rss_mb(pid)}}
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=args.chromium, args=CHROMIUM_ARGS)
            warm = open_session(browser, url, QUESTIONS)  # imports, caches, the notes index
            report["rss_mb"]["one_session"] = rss_mb(pid)
            report["connections_one_session"] = connections(engine, database)
            pages = [open_session(browser, url, QUESTIONS) for _ in range(args.sessions)]
            time.sleep(2)
            report["rss_mb"]["all_sessions"] = rss_mb(pid)
            report["connections_idle"] = connections(engine, database)
            cpu_before = cpu_seconds(pid)
            report["burst"] = burst(pages, engine, database)
            report["burst"]["replica_cpu_s"] = round(cpu_seconds(pid) - cpu_before, 2)
            report["rss_mb"]["after_burst"] = rss_mb(pid)
            grown = report["rss_mb"]["all_sessions"] - report["rss_mb"]["one_session"]
            report["rss_mb_per_session"] = round(grown / args.sessions, 1)
            for page in [warm, *pages]:
                page.context.close()
            browser.close()
        engine.dispose()
        return report
    finally:
        os.killpg(script.pid, signal.SIGINT)
        script.wait(30)


def open_session(browser, url: str, questions) -> Page:
    page = browser.new_context().new_page()
    page.goto(url)
    box = page.get_by_placeholder("Ask a question")
    for _ in range(3):  # the first session of a fresh replica loses its first login
        settle(page)
        page.get_by_label("Username").fill("alice")
        page.get_by_label("Password", exact=True).fill(PASSWORD)
        page.get_by_role("button", name="Login").click()
        while not box.is_visible() and not page.evaluate(FORM_CAME_BACK):
            page.wait_for_timeout(100)
        if box.is_visible():
            break
    page.get_by_role("button", name="New chat").click()  # else it opens the latest conversation
    expect(page.get_by_test_id("stChatMessage")).to_have_count(0)
    for question in questions:
        count = page.get_by_test_id("stChatMessage").count()
        box.fill(question)
        box.press("Enter")
        expect(page.get_by_test_id("stChatMessage")).to_have_count(count + 2, timeout=30_000)
        expect(page.get_by_test_id("stChatMessage").last.get_by_role("radio", name="Thumbs up")).to_be_visible(timeout=30_000)
    return page


def settle(page: Page, quiet: float = 1.0) -> None:
    """Wait until the app is connected, not running, and unchanged for ``quiet`` seconds."""
    probe = """() => { const app = document.querySelector('[data-testid="stApp"]');
        return [app && app.dataset.testScriptState, app && app.dataset.testConnectionState,
                document.body.innerText.length]; }"""
    state, since = None, time.monotonic()
    while True:
        now = page.evaluate(probe)
        if now != state:
            state, since = now, time.monotonic()
        elif state[:2] == ["notRunning", "CONNECTED"] and time.monotonic() - since >= quiet:
            return
        page.wait_for_timeout(50)


def burst(pages: list[Page], engine, database: str) -> dict:
    """Every session asks at once; sample the replica's connections until all are answered."""
    peak = {"total": 0, "active": 0}
    done = threading.Event()

    def sample():
        while not done.is_set():
            now = connections(engine, database)
            peak["total"] = max(peak["total"], sum(now.values()))
            peak["active"] = max(peak["active"], now.get("active", 0))
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.monotonic()
    counts = [page.get_by_test_id("stChatMessage").count() for page in pages]
    for page in pages:
        page.get_by_placeholder("Ask a question").fill("What does ANALYZE do after a bulk load?")
    for page in pages:
        page.get_by_placeholder("Ask a question").press("Enter")
    for page, count in zip(pages, counts):
        expect(page.get_by_test_id("stChatMessage")).to_have_count(count + 2, timeout=120_000)
        expect(page.get_by_test_id("stChatMessage").last.get_by_role("radio", name="Thumbs up")).to_be_visible(timeout=120_000)
    elapsed = time.monotonic() - started
    done.set()
    sampler.join()
    return {"questions": len(pages), "all_answered_s": round(elapsed, 1), "peak_connections": peak}


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    raise RuntimeError(f"no VmRSS for {pid}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def connections(engine, database: str) -> dict[str, int]:
    """The replica's connections by state (the measuring connection is not counted)."""
    query = text(
        "SELECT state, count(*) FROM pg_stat_activity WHERE datname = :db "
        "AND application_name LIKE 'chatbot-%' GROUP BY state"
    )
    with engine.connect() as connection:
        return {state or "none": count for state, count in connection.execute(query, {"db": database})}


if __name__ == "__main__":
    sys.exit(main())
