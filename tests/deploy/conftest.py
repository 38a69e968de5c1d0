"""Fixtures for the deployment suite: a database of its own, deploy/run-replicas.sh, Chromium, a Langflow stand-in.

Every cluster is what deploy/run-replicas.sh starts: N `streamlit run serve.py` replicas in the
production profile on one PostgreSQL database, and nginx in front of them. A browser context
is pinned to a replica by its routing cookie (see deploy/nginx.conf.template): the suite
probes nginx for a cookie value that lands on the wanted replica, and nginx's X-Upstream
header tells which replica served a response.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests
from playwright.sync_api import Page, expect
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from chatbot.config import setting_names
from tests.conftest import unavailable
from tests.replay_server import Received, ReplayServer, Reply, stream_reply, streamed_run

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "deploy" / "run-replicas.sh"
DEFAULT_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/test"  # as in scripts/test.sh
COOKIE_KEY = "deploy-test-cookie-key-0123456789abcdefghijklmnop"
ROUTE_COOKIE = "chatbot_route"
PASSWORD = "orchid tandem glacier"  # strong enough for the password rules
START_TIMEOUT = 90.0
SLOW = "slowly"  # a question containing this word is answered one word every SLOW_DELAY seconds
SLOW_DELAY = 0.25
SLOW_WORDS = 40  # about ten seconds of answer

expect.set_options(timeout=20_000)


# -- PostgreSQL --------------------------------------------------------------------------------


def _server_url() -> str:
    return os.environ.get("TEST_DATABASE_URL") or DEFAULT_POSTGRES


@contextmanager
def temporary_database() -> Iterator[str]:
    """A PostgreSQL database of its own (deploy_<random>), dropped afterwards."""
    server = make_url(_server_url())
    name = f"deploy_{uuid.uuid4().hex[:10]}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # refused, auth, no CREATEDB: the service is not usable
        admin.dispose()
        unavailable(f"PostgreSQL at {server.render_as_string(hide_password=True)} is not usable: {exc}")
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def database_url() -> Iterator[str]:
    with temporary_database() as url:
        yield url


def add_user(database_url: str, username: str = "alice", password: str = PASSWORD) -> None:
    """Create a user with the command line, as an admin would."""
    subprocess.run(
        [sys.executable, "-m", "chatbot", "users", "add", username, "--password-stdin"],
        input=f"{password}\n", text=True, check=True, capture_output=True, cwd=REPO,
        env={**clean_env(), "DATABASE_URL": database_url},
    )


def clean_env() -> dict[str, str]:
    """This process's environment without app settings: a developer's exports change nothing."""
    names = set(setting_names())
    return {k: v for k, v in os.environ.items() if k not in names and not k.startswith("STREAMLIT_")}


# -- the replicas behind nginx ------------------------------------------------------------------


@dataclass
class Cluster:
    """deploy/run-replicas.sh running: nginx at ``url``, a replica on each of ``ports``."""

    url: str
    ports: list[int]
    run_dir: Path
    process: subprocess.Popen
    stderr: list[str] = field(default_factory=list)

    def pid(self, port: int) -> int:
        return int((self.run_dir / f"replica-{port}.pid").read_text())

    def kill(self, port: int) -> None:
        """Kill a replica the hard way (a crash, an OOM kill): no clean shutdown of any kind."""
        os.kill(self.pid(port), signal.SIGKILL)
        deadline = time.monotonic() + 10
        while _listening(port) and time.monotonic() < deadline:
            time.sleep(0.05)

    def stdout_lines(self, port: int) -> list[str]:
        return (self.run_dir / f"replica-{port}.log").read_text(errors="replace").splitlines()

    def upstream(self, route: str, path: str = "/_stcore/health") -> int:
        """The replica port nginx sends a browser with this routing cookie to."""
        response = requests.get(self.url + path.lstrip("/"), cookies={ROUTE_COOKIE: route}, timeout=5)
        response.raise_for_status()
        return int(response.headers["X-Upstream"].rsplit(":", 1)[1])

    def route_to(self, port: int) -> str:
        """A routing-cookie value that nginx hashes onto the replica at ``port``."""
        for _ in range(200):
            route = uuid.uuid4().hex
            if self.upstream(route) == port:
                return route
        raise AssertionError(f"no routing cookie found for the replica on port {port}")

    def diagnostics(self) -> str:
        parts = ["run-replicas.sh stderr:", *self.stderr[-20:]]
        for port in self.ports:
            for suffix in ("log", "err"):
                path = self.run_dir / f"replica-{port}.{suffix}"
                if path.exists():
                    parts += [f"--- replica-{port}.{suffix}", *path.read_text(errors="replace").splitlines()[-15:]]
        return "\n".join(parts)

    def interrupt(self) -> None:
        """Ctrl-C the script; it must stop nginx and every replica."""
        pids = [self.pid(port) for port in self.ports]
        nginx_pid = self.run_dir / "nginx.pid"
        if nginx_pid.exists():
            pids.append(int(nginx_pid.read_text()))
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=20)
        finally:
            if self.process.poll() is None:
                os.killpg(self.process.pid, signal.SIGKILL)
        left = [pid for pid in pids if _alive(pid)]
        assert not left, f"still running after Ctrl-C: {left}\n{self.diagnostics()}"


def _alive(pid: int) -> bool:
    """Running, and not a zombie (one only waits for its parent to read its exit status)."""
    try:
        return not Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].startswith("Z")
    except (FileNotFoundError, ProcessLookupError):
        return False


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def free_ports(count: int) -> list[int]:
    """``count`` consecutive free ports (run-replicas.sh numbers replicas from the first)."""
    for _ in range(100):
        first = random.randrange(20_000, 32_000)  # below the kernel's ephemeral ports
        ports = list(range(first, first + count))
        if not any(_listening(port) for port in ports) and all(_bindable(port) for port in ports):
            return ports
    raise RuntimeError("no free ports")


def _bindable(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def production_env(database_url: str, langflow_url: str) -> dict[str, str]:
    """The production profile: every setting from the environment, JSON logs."""
    return {
        **clean_env(),
        "PYTHON": sys.executable,
        "DATABASE_URL": database_url,
        "CHATBOT_ENV": "production",
        "AUTH_COOKIE_KEY": COOKIE_KEY,
        "LOG_FORMAT": "json",
        "LANGFLOW_URL": langflow_url,
        "LANGFLOW_FLOW_ID": "deploy-test-flow",
        "LANGFLOW_API_KEY": "deploy-test-key",
        "LANGFLOW_TIMEOUT": "60",
    }


def start_cluster(database_url: str, langflow_url: str, run_dir: Path, replicas: int = 2) -> Cluster:
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(nginx).exists():
        unavailable("nginx is not installed (apt-get install nginx)")
    *ports, proxy_port = free_ports(replicas + 1)
    process = subprocess.Popen(
        ["bash", str(SCRIPT), "--replicas", str(replicas), "--first-port", str(ports[0]),
         "--proxy-port", str(proxy_port), "--run-dir", str(run_dir)],
        cwd=REPO, env={**production_env(database_url, langflow_url), "NGINX_BIN": nginx},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )
    cluster = Cluster(url="", ports=ports, run_dir=run_dir, process=process)
    threading.Thread(target=lambda: cluster.stderr.extend(process.stderr), daemon=True).start()
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.append(process.stdout.readline()), daemon=True)
    reader.start()
    reader.join(START_TIMEOUT)
    if not lines or not lines[0].startswith("http"):
        os.killpg(process.pid, signal.SIGKILL)
        pytest.fail(f"run-replicas.sh did not print its URL\n{cluster.diagnostics()}")
    cluster.url = lines[0].strip()
    return cluster


@pytest.fixture(scope="module")
def langflow() -> Iterator[ReplayServer]:
    """Langflow's run API, streaming ``Answer to: <question>`` word by word."""
    with ReplayServer(default=answer_to) as server:
        yield server


def answer_for(question: str) -> str:
    """What the stand-in answers: slow questions get a long answer, to be interrupted."""
    text = f"Answer to: {question}"
    return text + " and" + " more" * SLOW_WORDS if SLOW in question else text


def answer_to(request: Received) -> Reply:
    body = request.body if isinstance(request.body, dict) else {}
    question = str(body.get("input_value", ""))
    text = answer_for(question)
    words = [f"{word} " for word in text.split(" ")]
    words[-1] = words[-1].rstrip()
    run = streamed_run(words, session_id=str(body.get("session_id")), question=question, final_text=text)
    return stream_reply(run, delay=SLOW_DELAY if SLOW in question else 0.0)


@contextmanager
def running_cluster(database_url: str, langflow_url: str, run_dir: Path, *, users: bool = True) -> Iterator[Cluster]:
    """deploy/run-replicas.sh with two replicas, on a database with one analyst (alice) unless not ``users``."""
    if users:
        add_user(database_url)
    cluster = start_cluster(database_url, langflow_url, run_dir)
    try:
        yield cluster
    finally:
        cluster.interrupt()


@pytest.fixture
def cluster(database_url, langflow, tmp_path) -> Iterator[Cluster]:
    """A cluster of this test's own: for tests that kill a replica."""
    with running_cluster(database_url, langflow.url, tmp_path / "run") as running:
        yield running


@pytest.fixture(scope="module")
def shared_cluster(langflow, tmp_path_factory) -> Iterator[Cluster]:
    """A cluster the module's tests share: for tests that leave every replica running."""
    with temporary_database() as url, running_cluster(url, langflow.url, tmp_path_factory.mktemp("run")) as running:
        yield running


# -- the browser ------------------------------------------------------------------------------




@dataclass
class Visit:
    """One browser context pinned to a replica, and the replicas that answered it."""

    page: Page
    served_by: list[int] = field(default_factory=list)


@pytest.fixture
def open_browser(browser, request):
    """``open_browser(cluster, port)``: a new browser context whose requests nginx routes to ``port``."""
    contexts = []

    def open_on(cluster: Cluster, port: int) -> Visit:
        context = browser.new_context(viewport={"width": 1280, "height": 800})
        contexts.append(context)
        context.add_cookies([{"name": ROUTE_COOKIE, "value": cluster.route_to(port), "url": cluster.url}])
        visit = Visit(context.new_page())
        visit.page.on("response", lambda response: _note_upstream(visit, response))
        return visit

    yield open_on
    for context in contexts:
        context.close()


def _note_upstream(visit: Visit, response) -> None:
    upstream = response.headers.get("x-upstream", "")
    if upstream:  # "127.0.0.1:8501", or "a, b" when nginx tried a dead replica first
        visit.served_by.append(int(upstream.rsplit(":", 1)[1]))


def json_lines(lines: list[str]) -> list[dict]:
    """Every non-empty line parsed as JSON (a line that is not JSON fails the caller's test)."""
    return [json.loads(line) for line in lines if line.strip()]
