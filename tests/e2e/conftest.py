"""Fixtures for the browser suite: the real app under `streamlit run`, Chromium, and login helpers.

The app runs as it does in production: `streamlit run serve.py` on a free port, a fresh SQLite
file, users made with the command line, and no secrets file, so a developer's
`.streamlit/secrets.toml` or exported LANGFLOW_* variables cannot change what is tested.
Tests share one server (a start costs seconds) and tell their data apart by what they ask.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests
from playwright.sync_api import Browser, BrowserContext, Locator, Page, expect
from playwright.sync_api import Error as PlaywrightError

from chatbot.config import setting_names

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"
VIEWPORT = {"width": 1280, "height": 800}
START_TIMEOUT = 60.0  # a cold `streamlit run` takes about 5 s on 2 cores
COOKIE_KEY = "e2e-only-cookie-key-0123456789abcdefghijklmnopqrstuvwxyz"
USERS = {"alice": "analyst", "bob": "analyst", "root": "admin"}
# Strong enough for the password rules (12+ characters, not the user name, zxcvbn score 3+).
PASSWORDS = {"alice": "violet harbor staple", "bob": "copper meadow lantern", "root": "granite willow ember"}
QUESTION_BOX = "Ask a question about your notes"
GRID_ROW_PX, GRID_MARKER_PX = 35, 32  # st.dataframe's row height and row-checkbox column width
UI_TIMEOUT_MS = 20_000  # reruns are quick, but a loaded CI machine is not
QUIET_MS = 300  # how long the app must stay idle to count as settled

# A note whose text is the attack: the notes engine quotes it verbatim, as a model could.
PAYLOAD_WORD = "quokka"
PAYLOAD_NOTE = f"""# {PAYLOAD_WORD.title()} payloads

Notes about the {PAYLOAD_WORD} incident: untrusted model output that must render as text.

<script>window.__pwned = "script"</script>

<img src=x onerror="window.__pwned = 'img onerror'">

<svg onload="window.__pwned = 'svg onload'"><circle r="4"/></svg>

[click me](javascript:window.__pwned='link')

[CLICK ME](JaVaScRiPt:window.__pwned='mixed-case link')

[reference link][evil]

![x](data:text/html;base64,PHNjcmlwdD5wYXJlbnQuX19wd25lZD0iZGF0YS11cmwiPC9zY3JpcHQ+)

<iframe src="javascript:parent.__pwned='iframe'"></iframe>

<a href="javascript:window.__pwned='raw anchor'">raw anchor</a>

<details open ontoggle="window.__pwned='details'">{PAYLOAD_WORD} details</details>

[evil]: javascript:window.__pwned='reference'

![reference image][evil-image]

[evil-image]: data:text/html;base64,PHNjcmlwdD5wYXJlbnQuX19wd25lZD0iZGF0YS11cmwiPC9zY3JpcHQ+
"""

# Records anything executable that appears in a chat message or the sidebar (where titles are
# shown) at any moment, while the answer streams included. Component iframes (the login
# cookie) live elsewhere in the page and are not watched.
WATCH_MESSAGES = """
(() => {
  if (window.top !== window) return;
  window.__unsafe = [];
  const watched = '[data-testid="stChatMessage"], [data-testid="stSidebar"]';
  const badUrl = /^\\s*(javascript|vbscript|data):/i;
  const parsed = (value) => { try { return new URL(value, location.href); } catch { return null; } };
  const otherScheme = (value) => {
    const url = parsed(value);
    return url !== null && !["http:", "https:", "mailto:", "blob:"].includes(url.protocol);
  };
  const sameOrigin = (value) => { const url = parsed(value); return url === null || url.origin === location.origin || url.protocol === "data:"; };
  const inspect = (node) => {
    if (!(node instanceof Element)) return;
    for (const el of [node, ...node.querySelectorAll("*")]) {
      if (!el.closest(watched)) continue;
      const tag = el.tagName.toLowerCase();
      if (["script", "iframe", "frame", "object", "embed"].includes(tag)) window.__unsafe.push(`element ${tag}`);
      for (const attr of el.attributes) {
        if (attr.name.startsWith("on")) window.__unsafe.push(`handler ${tag}[${attr.name}]`);
        if (["href", "src", "xlink:href", "action", "formaction"].includes(attr.name) && badUrl.test(attr.value))
          window.__unsafe.push(`url ${tag}[${attr.name}=${attr.value.slice(0, 30)}]`);
        if (["href", "src"].includes(attr.name) && otherScheme(attr.value))
          window.__unsafe.push(`scheme ${tag}[${attr.name}=${attr.value.slice(0, 30)}]`);
        if (tag === "img" && attr.name === "src" && !sameOrigin(attr.value))
          window.__unsafe.push(`remote image ${attr.value.slice(0, 60)}`);
      }
    }
  };
  new MutationObserver((records) => records.forEach((r) => {
    r.addedNodes.forEach(inspect);
    if (r.type === "attributes") inspect(r.target);
  })).observe(document, { subtree: true, childList: true, attributes: true });
})();
"""

DATA_IMAGE = re.compile(r"url img\[src=data:")

expect.set_options(timeout=UI_TIMEOUT_MS)


# -- the app server ----------------------------------------------------------------------------


@dataclass
class AppServer:
    """A `streamlit run serve.py` we started, its environment and its log."""

    base_url: str
    workdir: Path
    process: subprocess.Popen
    env: dict[str, str] = field(repr=False, default_factory=dict)
    command: list[str] = field(repr=False, default_factory=list)  # how it was started, for restart()

    @property
    def log_path(self) -> Path:
        return self.workdir / "streamlit.log"

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def url(self, path: str = "/") -> str:
        return f"{self.base_url}{path}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)

    def restart(self, *, kill: bool = False) -> None:
        """Stop the app (SIGTERM, as a deployment's rollout does; SIGKILL with ``kill``, as a crash)
        and start it again with the same command, environment, database and port.

        The port may be held for a moment after the old process exits: the start is tried again
        until START_TIMEOUT runs out.
        """
        if kill:
            self.process.kill()
            self.process.wait(10)
        self.stop()
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            self.process = _launch(self.command, self.workdir, self.env)
            if wait_until_healthy(self):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"streamlit did not start again on {self.base_url}:\n{self.log_tail()}")
            time.sleep(0.5)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def app_env(workdir: Path, extra: dict[str, str]) -> dict[str, str]:
    """The test's settings and nothing from the developer's: every setting variable is replaced."""
    env = {key: value for key, value in os.environ.items() if key not in setting_names()}
    env.update(
        DATABASE_URL=f"sqlite:///{workdir / 'chatbot.db'}",
        AUTH_COOKIE_KEY=COOKIE_KEY,
        LOG_LEVEL="INFO",
        PYTHONPATH=str(REPO),
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


def add_users(env: dict[str, str], workdir: Path, users: Iterable[str]) -> None:
    """Create users the way an operator does: `python -m chatbot users add NAME --password-stdin`."""
    for name in users:
        result = subprocess.run(
            [sys.executable, "-m", "chatbot", "users", "add", name, "--role", USERS[name], "--password-stdin"],
            input=f"{PASSWORDS[name]}\n", env=env, cwd=workdir, capture_output=True, text=True, timeout=60,
        )
        assert result.returncode == 0, f"users add {name} failed: {result.stderr}"


def start_app(workdir: Path, *, extra_env: dict[str, str] | None = None,
              users: Iterable[str] = tuple(USERS), secrets: str = "", port: int | None = None) -> AppServer:
    """Create the users, start the app on a free port and wait until /_stcore/health answers.

    The app runs in ``workdir`` as in a deployment's folder: the repository's
    .streamlit/config.toml, a notes/ folder (the repository's notes and the payload note)
    and NOTES_DIR left at its default, so pages show "notes" rather than a temporary path.
    ``secrets`` is the secrets.toml it reads (e.g. an [auth] section); ``port`` a port chosen
    beforehand (single sign-on's redirect URI names it), tried once.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    shutil.copytree(REPO / ".streamlit", workdir / ".streamlit", ignore=shutil.ignore_patterns("secrets*"))
    shutil.copytree(REPO / "notes", workdir / "notes")
    (workdir / "notes" / f"{PAYLOAD_WORD}-payloads.md").write_text(PAYLOAD_NOTE)
    secrets_file = workdir / "secrets.toml"  # only the test's: no developer's secrets file is read
    secrets_file.write_text(secrets)
    env = app_env(workdir, extra_env or {})
    add_users(env, workdir, users)
    for _attempt in range(1 if port else 3):  # another process may take the free port before streamlit binds it
        bound = port or free_port()
        command = [
            sys.executable, "-m", "streamlit", "run", str(REPO / "serve.py"),
            "--server.port", str(bound), "--server.address", "127.0.0.1", "--server.headless", "true",
            "--browser.gatherUsageStats", "false", "--secrets.files", str(secrets_file),
        ]
        server = AppServer(f"http://127.0.0.1:{bound}", workdir, _launch(command, workdir, env), env, command)
        if wait_until_healthy(server):
            return server
        server.stop()
    raise RuntimeError(f"streamlit did not start:\n{server.log_tail()}")


def _launch(command: list[str], workdir: Path, env: dict[str, str]) -> subprocess.Popen:
    """Start ``streamlit run`` in ``workdir``, its output appended to streamlit.log there."""
    with (workdir / "streamlit.log").open("ab") as log:
        return subprocess.Popen(command, cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)


def wait_until_healthy(server: AppServer) -> bool:
    """True once the app answers; False if it exited (port taken); raise after START_TIMEOUT."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            return False
        try:
            if requests.get(server.url("/_stcore/health"), timeout=2).text == "ok":
                return True
        except requests.RequestException:
            pass
        time.sleep(0.2)
    server.stop()
    raise RuntimeError(f"streamlit not healthy after {START_TIMEOUT:.0f} s:\n{server.log_tail()}")


@pytest.fixture(scope="session")
def app_server(tmp_path_factory: pytest.TempPathFactory, browser: Browser) -> Iterator[AppServer]:
    """The app with the notes engine, users alice and bob (analysts) and root (admin)."""
    server = start_app(tmp_path_factory.mktemp("app"))
    warm_up(browser, server)
    yield server
    server.stop()


def warm_up(browser: Browser, server: AppServer) -> None:
    """Open the app once, so that no test is the first session of the process (whose first
    run imports and warms up everything: test_first_login_after_a_restart_is_not_dropped
    checks that one on its own)."""
    context = new_context(browser)
    try:
        page = context.new_page()
        page.goto(server.base_url)
        expect(page.get_by_role("button", name="Login")).to_be_visible()
    finally:
        context.close()


# -- the browser ---------------------------------------------------------------------------------




def new_context(browser: Browser) -> BrowserContext:
    """A fresh profile (its own cookies) that records unsafe nodes in messages (WATCH_MESSAGES)."""
    context = browser.new_context(viewport=VIEWPORT, accept_downloads=True)
    context.set_default_timeout(UI_TIMEOUT_MS)
    context.add_init_script(WATCH_MESSAGES)
    return context


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    context = new_context(browser)
    yield context
    context.close()


@pytest.fixture
def page(context: BrowserContext) -> Page:
    return context.new_page()


# -- helpers the tests share ------------------------------------------------------------------


def submit_login(page: Page, user: str, password: str) -> None:
    """Fill and send the login form on the current page, once the page is ready for it."""
    expect(page.get_by_role("button", name="Login")).to_be_visible()
    settle(page)
    page.get_by_label("Username").fill(user)
    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_role("button", name="Login").click()


def login(page: Page, user: str, password: str | None = None, *, base_url: str | None = None) -> None:
    """Log in (opening ``base_url`` first when given) and wait until the app shows who is in."""
    if base_url is not None:
        page.goto(base_url)
    submit_login(page, user, PASSWORDS[user] if password is None else password)
    expect(sidebar(page).get_by_text(f"Signed in as {user}")).to_be_visible()
    settle(page)


def wait_for_login_cookie(page: Page, name: str = "chatbot_auth") -> None:
    """The cookie is written by a script in the page (chatbot.auth); wait for it to land."""
    deadline = time.monotonic() + UI_TIMEOUT_MS / 1000
    while not any(c["name"] == name for c in page.context.cookies()):
        assert time.monotonic() < deadline, (
            "the login cookie was never set: the cookie-writing script in the page did not run"
        )
        page.wait_for_timeout(100)


def settle(page: Page) -> None:
    """Wait until the page's components have loaded and no script run is in progress.

    The login cookie is read and written by component iframes; each reports back once
    loaded, and that rerun can swallow a click or a login sent meanwhile (as a person
    reading the page would not). Streamlit marks the app root with the run state (its own
    test hook); idle must last QUIET_MS, so that a rerun about to start is not missed.
    """
    wait_for_components(page)
    idle = page.locator('[data-testid="stApp"][data-test-script-state="notRunning"]')
    while True:
        expect(idle).to_have_count(1)
        page.wait_for_timeout(QUIET_MS)
        if idle.count() == 1:
            return


def wait_for_components(page: Page) -> None:
    """Wait until every component iframe on the page has loaded (a rerun may replace one)."""
    for _attempt in range(5):
        try:
            for component in page.locator('iframe[data-testid="stCustomComponentV1"]').element_handles():
                frame = component.content_frame()
                if frame is not None:
                    frame.wait_for_load_state("load")
            return
        except PlaywrightError as error:  # "frame was detached": a newer one took its place
            if "detached" not in str(error):
                raise


def new_chat(page: Page) -> None:
    sidebar(page).get_by_role("button", name="New chat").click()
    expect(messages(page)).to_have_count(0)


def sidebar(page: Page):
    return page.get_by_test_id("stSidebar")


def messages(page: Page):
    return page.get_by_test_id("stChatMessage")


def ask(page: Page, question: str, placeholder: str = QUESTION_BOX) -> Locator:
    """Send a question and wait until its answer is saved and shown; return the answer's bubble.

    Only the saved answer has a feedback widget (the streaming one has none) or, when it
    failed, an alert: either marks the end of the turn.
    """
    settle(page)
    before = messages(page).count()
    box = page.get_by_placeholder(placeholder)
    box.fill(question)
    box.press("Enter")
    expect(messages(page)).to_have_count(before + 2)
    answer = messages(page).nth(before + 1)
    saved = answer.get_by_test_id("stFeedback").or_(answer.get_by_test_id("stAlert"))
    expect(saved.first).to_be_visible()
    return answer


@contextmanager
def logged_in(browser: Browser, server: AppServer, user: str) -> Iterator[Page]:
    """A page of ``user``'s, logged in, for the tests of one module (a login costs seconds)."""
    context = new_context(browser)
    try:
        page = context.new_page()
        login(page, user, base_url=server.base_url)
        yield page
    finally:
        context.close()


def open_chat(page: Page) -> None:
    """Back to the chat page by the sidebar link, on a new chat, recording unsafe nodes afresh."""
    sidebar(page).get_by_role("link", name="Chat").click()
    expect(page.get_by_placeholder(re.compile("^Ask a question"))).to_be_visible()
    settle(page)
    new_chat(page)
    page.evaluate("() => { window.__unsafe = []; }")


def unsafe_nodes(page: Page) -> list[str]:
    """What WATCH_MESSAGES saw since the page loaded ("element iframe", "url a[href=javascript:…]"…),
    and "ran …" if a payload ran. Distinct entries, in the order first seen."""
    seen = page.evaluate("() => [...(window.__unsafe || []), ...(window.__pwned ? ['ran ' + window.__pwned] : [])]")
    return list(dict.fromkeys(seen))


def assert_inert(page: Page) -> None:
    """Nothing ran, and nothing that can run was ever in a message or the sidebar.

    Images with a data: URL are checked separately, saved and while streaming
    (test_saved_answer_shows_no_image_with_an_unsafe_scheme,
    test_streamed_answer_shows_no_image_with_an_unsafe_scheme).
    """
    assert page.evaluate("() => typeof window.__pwned") == "undefined"
    expect(page.locator('a[href^="javascript:" i]')).to_have_count(0)
    shown = messages(page)
    expect(shown.locator("iframe, script, object, embed")).to_have_count(0)
    expect(shown.locator(':not(img)[src^="data:" i]')).to_have_count(0)
    assert [seen for seen in unsafe_nodes(page) if not DATA_IMAGE.match(seen)] == []


def assert_no_traceback(page: Page) -> None:
    """No Streamlit exception box and no Python traceback anywhere on the page."""
    expect(page.get_by_test_id("stException")).to_have_count(0)
    assert "Traceback (most recent call last)" not in page.inner_text("body")


def open_history(page: Page) -> None:
    """Go to /history by the sidebar link, as people do once logged in."""
    sidebar(page).get_by_role("link", name="History").click()
    expect(page.get_by_role("heading", name="History")).to_be_visible()
    settle(page)


def history_table(page: Page) -> Locator:
    return page.locator(".st-key-history_table").get_by_test_id("stDataFrame")


def table_rows(page: Page) -> list[dict[str, str]]:
    """The history table's visible rows as {column: text}, read from the grid's accessible table."""
    return history_table(page).evaluate(
        """grid => {
            const rows = [...grid.querySelectorAll("tr")];
            const cells = (row) => [...row.querySelectorAll("th, td")].map((cell) => cell.innerText.trim());
            const [header, ...body] = rows.map(cells);
            return body.map((values) => Object.fromEntries(header.map((name, i) => [name, values[i]])));
        }"""
    )


def table_titles(page: Page, expected: list[str] | None = None) -> list[str]:
    """The titles in the history table; with ``expected``, once the table shows exactly those.

    The grid redraws after the rerun that changed it, so a read can see the previous rows.
    """
    deadline = time.monotonic() + UI_TIMEOUT_MS / 1000
    while True:
        titles = [row.get("Title", "") for row in table_rows(page)]
        titles = [title for title in titles if title]  # an empty table has one blank row
        if (expected is None and titles) or titles == expected:
            return titles
        if time.monotonic() > deadline:
            raise AssertionError(f"the history table shows {titles}, expected {expected or 'some rows'}")
        page.wait_for_timeout(100)


def select_row(page: Page, index: int) -> None:
    """Tick a row's checkbox in the history table (the grid is a canvas: click by position)."""
    box = history_table(page).locator("canvas").first.bounding_box()
    row_top = GRID_ROW_PX * (index + 1)  # below the header row, which is as tall as a row
    page.mouse.click(box["x"] + GRID_MARKER_PX / 2, box["y"] + row_top + GRID_ROW_PX / 2)
    settle(page)


def search_history(page: Page, text: str) -> None:
    box = page.get_by_label("Search messages")
    box.fill(text)
    box.press("Enter")
    settle(page)


def download(page: Page, label: str, folder: Path) -> Path:
    """Click a download button (opening the Download menu first when it is in there) and save
    what it sends under ``folder``."""
    button = page.get_by_role("button", name=label, exact=True)
    if not button.is_visible():
        page.get_by_role("button", name=re.compile(r"Download [\d,]+ messages")).click()
        expect(button).to_be_visible()
    with page.expect_download() as started:
        button.click()
    target = folder / started.value.suggested_filename
    started.value.save_as(target)
    return target


def screenshot(page: Page, name: str, *, top: Locator | None = None) -> None:
    """Save docs/<name>.png for the README, with ``top`` scrolled to the top of the view.

    Every run writes them, so the pictures stay true when the UI changes.
    """
    if top is not None:
        top.evaluate("element => element.scrollIntoView({block: 'start'})")
    page.mouse.move(0, 0)  # no hover highlight
    page.evaluate("() => document.fonts.ready")
    DOCS.mkdir(exist_ok=True)
    page.screenshot(path=str(DOCS / f"{name}.png"))


# -- hostile text: where it may not reach --------------------------------------------------


class Listener:
    """An HTTP server on another port of 127.0.0.1 that counts the requests reaching it."""

    def __init__(self) -> None:
        hits = self.hits = []

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's name)
                hits.append(self.path)
                self.send_response(200)
                self.send_header("Content-Type", "image/png")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.origin = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def listener() -> Iterator[Listener]:
    """Another origin on 127.0.0.1 that counts what reaches it; aim payloads at it with ``aimed``."""
    server = Listener()
    yield server
    server.close()


def aimed(text: str, listener: Listener) -> str:
    return text.replace("http://attacker.example", listener.origin).replace("https://attacker.example", listener.origin)


def foreign(seen: list[str], app_server: AppServer) -> list[str]:
    return [url for url in seen if not url.startswith((app_server.base_url + "/", "data:", "blob:"))]
