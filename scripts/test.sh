#!/usr/bin/env bash
# Set up (first time) and run every test: unit, store on SQLite and PostgreSQL, the Langflow
# client against a real Langflow 1.13 server, the browser suite in Chromium, and the nginx +
# replicas deployment test. Extra arguments go to pytest (e.g. -m "not e2e", -k store).
#
# Needs: python3 (3.11+), a PostgreSQL it can reach (TEST_DATABASE_URL, default the local one
# with trust auth), Debian's chromium and nginx (installed here with apt-get when run as root),
# and Node.js (22 LTS, or 20) with npm for the single sign-on tests' OIDC provider.
set -euo pipefail
cd "$(dirname "$0")/.."

python="${PYTHON:-python3}"
[[ -x .venv/bin/python ]] || "$python" -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt

missing=()
for tool in chromium nginx; do command -v "$tool" >/dev/null || missing+=("$tool"); done
fc-list 2>/dev/null | grep -qi "color emoji" || missing+=(fonts-noto-color-emoji)
if (( ${#missing[@]} )); then
    if [[ "$(id -u)" == 0 ]]; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    else
        echo "note: ${missing[*]} missing: browser/deploy tests will skip (install with apt-get)" >&2
    fi
fi

# The real OpenID Connect provider for the single sign-on tests (npm's oidc-provider, pinned).
if command -v npm >/dev/null; then
    npm ci --prefix tests/oidc --no-audit --no-fund --loglevel=error >/dev/null \
        || { [[ "${CI:-}" == "true" ]] && exit 1; echo "note: npm ci in tests/oidc failed: single sign-on tests will skip" >&2; }
else
    echo "note: npm missing: the single sign-on tests will skip (install Node.js 22 LTS or 20)" >&2
fi

# The real Langflow server for the client's integration tests, in its own venv (cached).
bash scripts/install-langflow.sh >/dev/null

export TEST_DATABASE_URL="${TEST_DATABASE_URL:-postgresql+psycopg://postgres@127.0.0.1:5432/test}"
if [[ "${CI:-}" == "true" ]] && ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql)" main start
fi

exec .venv/bin/python -m pytest "$@"
