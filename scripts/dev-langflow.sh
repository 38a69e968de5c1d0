#!/usr/bin/env bash
# Run a local Langflow for app development, with two flows, and print the settings for the app.
#
#   scripts/dev-langflow.sh          # Ctrl-C stops Langflow; its state stays in data/langflow-dev/
#
# Flows (created or replaced on every start, with stable ids):
#   echo   Chat Input -> Chat Output. Answers with the question; needs no network and no key.
#   notes  Directory (./notes) -> Parser -> Prompt <- Chat Input; Prompt -> OpenAI -> Chat Output:
#          the notes Q&A flow an analyst would build. It calls api.openai.com, so it only answers
#          when OPENAI_API_KEY is set in this shell (Langflow keeps it as its global variable
#          OPENAI_API_KEY); without it, asking it fails with a flow error.
# The editor is at http://127.0.0.1:$LANGFLOW_PORT (user admin, password $LANGFLOW_DEV_PASSWORD).
#
#   LANGFLOW_PORT          default 7860
#   LANGFLOW_DEV_API_KEY   default sk-chatbot-dev-local-only (a dev key: never use it on a shared host)
#   LANGFLOW_DEV_PASSWORD  default chatbot-dev (the editor's admin password)
#   LANGFLOW_DEV_DIR       state (database, config, log); default data/langflow-dev (git-ignored)
#   NOTES_DIR              the folder the notes flow reads; default ./notes (must be inside the repo)
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
cd "$repo"
port="${LANGFLOW_PORT:-7860}"
key="${LANGFLOW_DEV_API_KEY:-sk-chatbot-dev-local-only}"
state="${LANGFLOW_DEV_DIR:-$repo/data/langflow-dev}"
notes_dir="${NOTES_DIR:-notes}"
[[ -d "$notes_dir" ]] || { echo "no notes folder at $notes_dir (set NOTES_DIR)" >&2; exit 1; }
notes="$(cd "$notes_dir" && pwd)"
python="$repo/.venv/bin/python"
[[ -x "$python" ]] || python=python3
url="http://127.0.0.1:$port"

langflow="$("$repo/scripts/install-langflow.sh")"

# Langflow silently moves to the next free port when its own is taken: refuse instead.
if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "port $port is already in use (another Langflow?); set LANGFLOW_PORT" >&2
    exit 1
fi

mkdir -p "$state"
echo "starting Langflow on $url (log: $state/langflow.log; 1-3 minutes)" >&2
# setsid: its own process group, so that stopping this script stops Langflow's workers too.
# The working directory is the repo: the Directory component only reads below it.
env LANGFLOW_CONFIG_DIR="$state/config" \
    LANGFLOW_DATABASE_URL="sqlite:///$state/langflow.db" \
    LANGFLOW_AUTO_LOGIN=false \
    LANGFLOW_SUPERUSER=admin \
    LANGFLOW_SUPERUSER_PASSWORD="${LANGFLOW_DEV_PASSWORD:-chatbot-dev}" \
    LANGFLOW_API_KEY_SOURCE=env \
    LANGFLOW_API_KEY="$key" \
    LANGFLOW_DO_NOT_TRACK=true DO_NOT_TRACK=true \
    LANGFLOW_CREATE_STARTER_PROJECTS=false \
    LANGFLOW_RESTRICT_LOCAL_FILE_ACCESS=false \
    LANGFLOW_PRETTY_LOGS=false \
    setsid "$langflow" run --host 127.0.0.1 --port "$port" >"$state/langflow.log" 2>&1 &
pid=$!
trap 'kill -TERM -- "-$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true' EXIT INT TERM

for _ in $(seq 180); do
    curl -fsS "$url/health_check" >/dev/null 2>&1 && break
    kill -0 "$pid" 2>/dev/null || { tail -n 40 "$state/langflow.log" >&2; exit 1; }
    sleep 1
done
curl -fsS "$url/health_check" >/dev/null || { echo "Langflow did not start; see $state/langflow.log" >&2; exit 1; }

flows="$("$python" -m tests.langflow_server build-flows --url "$url" --key "$key" --notes-dir "$notes")"
echo "$flows" >&2
notes_flow="$(sed -n 's/^notes=//p' <<<"$flows")"
echo_flow="$(sed -n 's/^echo=//p' <<<"$flows")"

cat <<EOF

Langflow is running (Ctrl-C to stop). Settings for the app (.streamlit/secrets.toml or the environment):

LANGFLOW_URL=$url
LANGFLOW_FLOW_ID=$notes_flow
LANGFLOW_API_KEY=$key

Offline instead (answers with the question): LANGFLOW_FLOW_ID=$echo_flow
EOF
wait "$pid"
