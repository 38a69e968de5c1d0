#!/usr/bin/env bash
# Set up (first time) and run the app: a virtual environment in .venv, the pinned packages,
# then `streamlit run serve.py` (app.py behind its security headers). With nothing configured it uses SQLite in data/ and answers
# from the notes in notes/. Extra arguments go to streamlit (e.g. --server.port 8502).
set -euo pipefail
cd "$(dirname "$0")/.."

python="${PYTHON:-python3}"
[[ -x .venv/bin/python ]] || "$python" -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
exec .venv/bin/streamlit run serve.py "$@"
