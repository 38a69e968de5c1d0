#!/usr/bin/env bash
# Install Langflow 1.13.0 into its own virtual environment (idempotent; CI calls it).
#
#   LANGFLOW_VENV     where the venv lives (default ~/.cache/chatbot-test/langflow-1.13.0)
#   LANGFLOW_VERSION  the version to install (default 1.13.0, the one the client is tested against)
#   PYTHON            the interpreter that creates the venv (default python3; needs 3.10-3.13)
#
# Langflow pins hundreds of packages (about 1.8 GB), hence a venv of its own instead of the
# project's. It is installed with uv, as Langflow's docs recommend: pip's resolver backtracks
# for half an hour or more over langfuse/opentelemetry versions, uv resolves in seconds.
# Prints the path of the `langflow` executable on success.
set -euo pipefail

version="${LANGFLOW_VERSION:-1.13.0}"
venv="${LANGFLOW_VENV:-$HOME/.cache/chatbot-test/langflow-$version}"
python="${PYTHON:-python3}"

if [[ -x "$venv/bin/langflow" ]]; then
    echo "$venv/bin/langflow"
    exit 0
fi

mkdir -p "$(dirname "$venv")"
# Two callers at once (parallel CI jobs, pytest workers) must not install into one venv
# together: the second waits, then finds bin/langflow and returns.
exec 9>"$venv.lock"
flock 9
if [[ ! -x "$venv/bin/langflow" ]]; then
    echo "installing langflow==$version into $venv (a few minutes)" >&2
    [[ -x "$venv/bin/python" ]] || "$python" -m venv "$venv"
    uv="$(command -v uv || true)"
    if [[ -z "$uv" ]]; then
        "$venv/bin/python" -m pip install --quiet uv >&2
        uv="$venv/bin/uv"
    fi
    "$uv" pip install --quiet --python "$venv/bin/python" "langflow==$version" >&2
fi
"$venv/bin/langflow" --help >/dev/null
echo "$venv/bin/langflow"
