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
    for module in (ROOT / "chatbot").glob("*.py"):
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
