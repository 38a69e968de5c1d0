"""The shape the house style promises: thin pages, a streamlit-free core, no prints in library code."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STREAMLIT_ALLOWED = {"resources.py", "auth.py"}


def test_pages_contain_no_sql_and_no_http():
    for page in (ROOT / "pages").glob("*.py"):
        source = page.read_text()
        assert not re.search(r"^\s*(import|from) (sqlalchemy|requests)\b", source, re.MULTILINE), page
        assert "session.execute" not in source and "requests." not in source, page


def test_chatbot_modules_do_not_import_streamlit():
    for module in (ROOT / "chatbot").rglob("*.py"):
        if module.name in STREAMLIT_ALLOWED:
            continue
        assert not re.search(r"^\s*(import|from) streamlit", module.read_text(), re.MULTILINE), module


def test_outside_text_reaches_html_only_through_the_sanitizer():
    """Only ui.py passes HTML to Streamlit, and only what chatbot.render.safe_html made."""
    for source in [*(ROOT / "pages").glob("*.py"), ROOT / "app.py"]:
        assert "unsafe_allow_html" not in source.read_text(), source
        assert "unsafe_allow_javascript" not in source.read_text(), source
    for line in (ROOT / "ui.py").read_text().splitlines():
        if "unsafe_allow_html" in line:
            assert re.search(r"st\.markdown\((safe|live)_html\(.*\), unsafe_allow_html=True\)", line), line
        if "unsafe_allow_javascript" in line:  # only the app's own script files, whose hashes the CSP allows
            assert re.search(r"st\.html\(f\"<script>\{CLOSE_SIDEBAR\}</script>.*\{int\(nonce\)\}.*unsafe_allow_javascript=True\)", line) \
                or line.strip() == 'st.html(f"<script>{RERUN_ON_RECONNECT}</script>", unsafe_allow_javascript=True)', line


def test_the_ownership_rule_is_written_once():
    """Only store.visible_to and store.owned_by compare a conversation's owner with the actor, and
    only replays.jobs.replays_visible_to a replay's: every query asks them, so no query can forget
    the rule or spell it differently."""
    spelled = re.compile(r"(?<!SavedView)\.owner_id\s*==\s*actor\.id|actor\.id\s*==\s*(Conversation|Replay)\.owner_id")
    sources = [*(ROOT / "chatbot").rglob("*.py"), *(ROOT / "pages").glob("*.py"), ROOT / "ui.py", ROOT / "app.py"]
    found = {f"{path.relative_to(ROOT)}:{n}" for path in sources
             for n, line in enumerate(path.read_text().splitlines(), 1) if spelled.search(line)}
    store_lines = (ROOT / "chatbot" / "store.py").read_text().splitlines()
    rule = {f"chatbot/store.py:{n}" for n, line in enumerate(store_lines, 1) if spelled.search(line)}
    assert len(rule) == 2 and "def visible_to(actor: Actor)" in "\n".join(store_lines)
    jobs = ROOT / "chatbot" / "replays" / "jobs.py"
    replay_rule = {f"chatbot/replays/jobs.py:{n}" for n in _lines_of_function(jobs, "replays_visible_to")
                   if spelled.search(jobs.read_text().splitlines()[n - 1])}
    assert len(replay_rule) == 1, replay_rule
    assert found == rule | replay_rule, found


def _lines_of_function(path: Path, name: str) -> range:
    """The line numbers of a module-level function's body."""
    import ast

    node = next(n for n in ast.parse(path.read_text()).body if isinstance(n, ast.FunctionDef) and n.name == name)
    return range(node.lineno, node.end_lineno + 1)


def test_history_is_a_package_of_nouns():
    modules = {path.stem for path in (ROOT / "chatbot" / "history").glob("*.py")}
    assert {"filters", "page", "transcript", "exports", "usage"} <= modules


def test_the_dataframe_download_button_is_off():
    """st.dataframe's own CSV download would bypass the export's role checks and audit log."""
    import tomllib

    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert config["client"]["disableDataExport"] is True
