#!/usr/bin/env bash
# Start N Streamlit replicas of the app and nginx in front of them, on one machine.
#
#   DATABASE_URL=postgresql+psycopg://chatbot@127.0.0.1:5432/chatbot \
#   AUTH_COOKIE_KEY=... deploy/run-replicas.sh [--replicas 2] [--first-port 8501] [--proxy-port 8080]
#
# Options (or the environment variable in brackets):
#   --replicas N       how many replicas [REPLICAS, default 2]
#   --first-port P     the first replica's port; the others take the next ones [FIRST_PORT, default 8501]
#   --proxy-port P     nginx's port, the one people open [PROXY_PORT, default 8080]
#   --run-dir DIR      nginx.conf, logs and pid files [RUN_DIR, default a temp dir removed at exit]
# Also read: PYTHON (default .venv/bin/python, else python3), NGINX_BIN (default /usr/sbin/nginx),
# STREAMLIT_SERVER_COOKIE_SECRET (default: one random secret shared by this run's replicas),
# ROUTE_COOKIE_FLAGS (default empty; "; Secure" when browsers reach nginx over HTTPS).
# Every app setting (AUTH_COOKIE_KEY, CHATBOT_ENV, LOG_FORMAT, LANGFLOW_URL, ...) passes
# through the environment to every replica.
#
# Prints the app's URL on stdout once nginx and every replica answer; progress goes to
# stderr. Replica <port> writes stdout to RUN_DIR/replica-<port>.log, stderr to
# replica-<port>.err and its pid to replica-<port>.pid. A replica that dies is reported and
# the others carry on; Ctrl-C (or SIGTERM) stops them all.
set -euo pipefail

die() { echo "run-replicas: $*" >&2; exit 2; }
say() { echo "run-replicas: $*" >&2; }

replicas=${REPLICAS:-2}
first_port=${FIRST_PORT:-8501}
proxy_port=${PROXY_PORT:-8080}
run_dir=${RUN_DIR:-}
while [[ $# -gt 0 ]]; do
    case $1 in
        --replicas) replicas=${2:?}; shift 2 ;;
        --first-port) first_port=${2:?}; shift 2 ;;
        --proxy-port) proxy_port=${2:?}; shift 2 ;;
        --run-dir) run_dir=${2:?}; shift 2 ;;
        -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown option $1 (see --help)" ;;
    esac
done

[[ $replicas =~ ^[1-9][0-9]*$ ]] || die "--replicas must be a whole number ≥ 1, not '$replicas'"
[[ -n ${DATABASE_URL:-} ]] || die "set DATABASE_URL to the PostgreSQL the replicas share"
[[ $DATABASE_URL == postgresql* ]] || die "DATABASE_URL must be PostgreSQL: replicas cannot share a SQLite file"
[[ -n ${AUTH_COOKIE_KEY:-} ]] || say "warning: AUTH_COOKIE_KEY is not set; the replicas share data/.auth_cookie_key," \
    "which only works on one machine"

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
python=${PYTHON:-}
[[ -n $python ]] || { [[ -x .venv/bin/python ]] && python=.venv/bin/python || python=python3; }
nginx=${NGINX_BIN:-/usr/sbin/nginx}
[[ -x $nginx ]] || nginx=$(command -v nginx) || die "nginx not found: install it (apt-get install nginx) or set NGINX_BIN"

temp_dir=
if [[ -z $run_dir ]]; then
    run_dir=$(mktemp -d -t chatbot-replicas.XXXXXX)
    temp_dir=$run_dir
fi
mkdir -p "$run_dir/tmp"
run_dir=$(cd "$run_dir" && pwd)

# Streamlit signs its cookies with this secret: replicas behind one proxy must share it.
export STREAMLIT_SERVER_COOKIE_SECRET=${STREAMLIT_SERVER_COOKIE_SECRET:-$("$python" -c 'import secrets; print(secrets.token_hex(32))')}

# Behind nginx every connection comes from 127.0.0.1; nginx puts the browser's address in
# X-Real-IP (overwriting one a browser sent), so login locks are per browser address.
export CLIENT_ADDRESS_HEADER=${CLIENT_ADDRESS_HEADER:-X-Real-IP}

pids=()
cleanup() {
    local status=$?
    trap - EXIT INT TERM
    set +e
    # nginx first, so that no browser reaches a replica that is stopping.
    [[ -n ${nginx_pid:-} ]] && kill -TERM "$nginx_pid" 2>/dev/null && wait "$nginx_pid" 2>/dev/null
    kill -TERM "${pids[@]}" 2>/dev/null
    for _ in {1..50}; do
        kill -0 "${pids[@]}" 2>/dev/null || break
        sleep 0.2
    done
    kill -KILL "${pids[@]}" 2>/dev/null
    wait 2>/dev/null
    [[ -n $temp_dir ]] && rm -rf "$temp_dir"
    say "stopped"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# healthy PORT: Streamlit's (or, through nginx, some replica's) /_stcore/health says ok.
healthy() {
    local reply
    reply=$({ printf 'GET /_stcore/health HTTP/1.0\r\nHost: 127.0.0.1:%s\r\n\r\n' "$1" >&3
              timeout 2 cat <&3; } 2>/dev/null 3<>"/dev/tcp/127.0.0.1/$1") || return 1
    [[ $reply == HTTP/1.?" 200"* ]]
}

# with_app_name URL NAME: the URL with application_name set, so pg_stat_activity shows the replica.
with_app_name() {
    [[ $1 == *application_name=* ]] && { echo "$1"; return; }
    [[ $1 == *\?* ]] && echo "$1&application_name=$2" || echo "$1?application_name=$2"
}

ports=()
for ((i = 0; i < replicas; i++)); do ports+=($((first_port + i))); done
for port in "${ports[@]}" "$proxy_port"; do
    listening "$port" 2>/dev/null && die "port $port is already in use"
done

servers=
for port in "${ports[@]}"; do
    DATABASE_URL=$(with_app_name "$DATABASE_URL" "chatbot-$port") \
        "$python" -m streamlit run serve.py \
        --server.port "$port" --server.address 127.0.0.1 --server.headless true \
        --server.fileWatcherType none --logger.hideWelcomeMessage true \
        >"$run_dir/replica-$port.log" 2>"$run_dir/replica-$port.err" &
    pids+=($!)
    echo $! >"$run_dir/replica-$port.pid"
    servers+="server 127.0.0.1:$port max_fails=1 fail_timeout=10s; "
done
say "started ${#ports[@]} replicas on ports ${ports[*]}"

# The template's http-level blocks, inside a main config for an unprivileged nginx in run_dir.
conf=$(<deploy/nginx.conf.template)
conf=${conf//'${LISTEN}'/127.0.0.1:$proxy_port}
conf=${conf//'${UPSTREAM_SERVERS}'/$servers}
conf=${conf//'${ROUTE_COOKIE_FLAGS}'/${ROUTE_COOKIE_FLAGS:-}}
printf '%s\n' "$conf" >"$run_dir/chatbot.conf"
cat >"$run_dir/nginx.conf" <<EOF
# Written by deploy/run-replicas.sh.
worker_processes 2;
pid nginx.pid;
error_log stderr warn;
events { worker_connections 1024; }
http {
    # Relative to the -p prefix: the Debian defaults under /var/lib/nginx need root.
    client_body_temp_path tmp/client_body;
    proxy_temp_path tmp/proxy;
    fastcgi_temp_path tmp/fastcgi;
    uwsgi_temp_path tmp/uwsgi;
    scgi_temp_path tmp/scgi;
    access_log $run_dir/access.log;
    include chatbot.conf;
}
EOF
env -u NGINX "$nginx" -p "$run_dir/" -c nginx.conf -e stderr -t 2>"$run_dir/nginx.err" ||
    die "nginx refused the config: $(cat "$run_dir/nginx.err")"
env -u NGINX "$nginx" -p "$run_dir/" -c nginx.conf -e stderr -g 'daemon off;' 2>>"$run_dir/nginx.err" &
nginx_pid=$!
pids+=("$nginx_pid")

deadline=$((SECONDS + ${START_TIMEOUT:-90}))
for i in "${!ports[@]}"; do
    until healthy "${ports[$i]}"; do
        kill -0 "${pids[$i]}" 2>/dev/null ||
            die "the replica on port ${ports[$i]} exited: $(tail -n 20 "$run_dir/replica-${ports[$i]}.err")"
        ((SECONDS < deadline)) || die "the replica on port ${ports[$i]} did not answer in time"
        sleep 0.2
    done
done
until healthy "$proxy_port"; do
    kill -0 "$nginx_pid" 2>/dev/null || die "nginx exited: $(cat "$run_dir/nginx.err")"
    ((SECONDS < deadline)) || die "nginx did not answer in time"
    sleep 0.2
done
say "ready; logs in $run_dir; Ctrl-C stops everything"
echo "http://127.0.0.1:$proxy_port/"

# Report replicas that die; keep serving with the others until nginx stops or we are told to.
reported=()
while kill -0 "$nginx_pid" 2>/dev/null; do
    wait -n || true
    for i in "${!ports[@]}"; do
        if [[ -z ${reported[$i]:-} ]] && ! kill -0 "${pids[$i]}" 2>/dev/null; then
            say "the replica on port ${ports[$i]} exited; the others carry on"
            reported[$i]=1
        fi
    done
done
say "nginx exited: $(tail -n 5 "$run_dir/nginx.err")"
exit 1
