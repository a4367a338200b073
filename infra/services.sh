#!/usr/bin/env bash
# The shared setup's services, started without containers on 127.0.0.1 (what the shared
# profile's tests use; infra/docker-compose.yml is the same setup for teams with Docker):
#
#   infra/services.sh up|down|status [DIR]
#
#   redis     redis-server (Debian's redis-server): Feast's online store
#   postgres  PostgreSQL 15 (Debian's postgresql): databases feast_registry (Feast's SQL
#             registry), mlflow (MLflow's tracking and registry store) and prefect
#   prefect   `prefect server start` from the checkout's .venv, on the prefect database
#
# DIR holds every data directory, log and pid file (default: $RANKING_SERVICES__DIR, else
# $RANKING_HOME/services, else <checkout>/.ranking/services); delete it to start afresh.
# Ports: RANKING_SERVICES__REDIS_PORT (6390), RANKING_SERVICES__POSTGRES_PORT (5442),
# RANKING_SERVICES__PREFECT_PORT (4290): the variables RANKING_PROFILE=shared reads too.
# PostgreSQL's superuser is `ranking`, trusted on 127.0.0.1 only (a local, throwaway
# cluster: no password). initdb refuses to run as root: as root, PostgreSQL runs as the
# user RANKING_SERVICES__RUN_AS (default `postgres`), who must be able to reach DIR.
# Idempotent: `up` leaves running services running; each command prints one line per
# service. RANKING_SERVICES__ONLY="redis postgres" limits which services a command acts on.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
HOST=127.0.0.1
REDIS_PORT="${RANKING_SERVICES__REDIS_PORT:-6390}"
POSTGRES_PORT="${RANKING_SERVICES__POSTGRES_PORT:-5442}"
PREFECT_PORT="${RANKING_SERVICES__PREFECT_PORT:-4290}"
ONLY="${RANKING_SERVICES__ONLY:-redis postgres prefect}"
PG_USER="${RANKING_SERVICES__POSTGRES_USER:-ranking}"
DATABASES="feast_registry mlflow prefect"
PREFECT_BIN="${RANKING_SERVICES__PREFECT_BIN:-$ROOT/.venv/bin/prefect}"

command="${1:-}"
DIR="${2:-${RANKING_SERVICES__DIR:-${RANKING_HOME:-$ROOT/.ranking}/services}}"

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f s", b - a }'; }
wanted() { [[ " $ONLY " == *" $1 "* ]]; }
pid_alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

pid_status() {  # NAME PIDFILE WHERE
    if pid_alive "$2"; then echo "$1: running on $3 (pid $(cat "$2"))"; else echo "$1: not running"; fi
}

# Polls COMMAND every 0.2 s until it succeeds; fails after SECONDS or when PIDFILE's
# process has died.
wait_until() {  # SECONDS PIDFILE COMMAND...
    local seconds=$1 pidfile=$2 tries=0
    shift 2
    until "$@" >/dev/null 2>&1; do
        tries=$((tries + 1))
        if ! pid_alive "$pidfile" || [ "$tries" -gt $((seconds * 5)) ]; then return 1; fi
        sleep 0.2
    done
}

redis_ping() { redis-cli -h "$HOST" -p "$REDIS_PORT" ping | grep -q PONG; }

# SIGTERM to the process group (or the process), SIGKILL after 15 s.
pid_stop() {  # NAME PIDFILE
    if ! pid_alive "$2"; then
        echo "$1: not running"
        return 0
    fi
    local pid tries=0
    pid=$(cat "$2")
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid"
    while kill -0 "$pid" 2>/dev/null; do
        tries=$((tries + 1))
        [ "$tries" -eq 150 ] && { kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid"; }
        sleep 0.1
    done
    rm -f "$2"
    echo "$1: stopped (pid $pid)"
}

pg_bin() {
    local dir
    for dir in /usr/lib/postgresql/*/bin; do
        [ -x "$dir/pg_ctl" ] && { echo "$dir"; return; }
    done
    command -v pg_ctl >/dev/null 2>&1 && dirname "$(command -v pg_ctl)"
}

# PostgreSQL's own commands, as a user other than root when we are root.
as_pg() {
    if [ "$(id -u)" = 0 ]; then
        runuser -u "${RANKING_SERVICES__RUN_AS:-postgres}" -- "$@"
    else
        "$@"
    fi
}

redis_up() {
    local start dir="$DIR/redis"
    start=$(now)
    if ! command -v redis-server >/dev/null 2>&1; then
        echo "redis: not started: redis-server is not installed (apt-get install redis-server)"
        return 1
    fi
    if pid_alive "$dir/redis.pid"; then
        echo "redis: already running on $HOST:$REDIS_PORT (pid $(cat "$dir/redis.pid"))"
        return 0
    fi
    mkdir -p "$dir"
    # No snapshots, no append-only file: a throwaway cache that Feast can rebuild.
    redis-server --bind "$HOST" --port "$REDIS_PORT" --dir "$dir" --daemonize yes \
        --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" --save "" --appendonly no \
        --protected-mode yes >/dev/null
    if ! wait_until 20 "$dir/redis.pid" redis_ping; then
        echo "redis: failed to start on $HOST:$REDIS_PORT, see $dir/redis.log"
        return 1
    fi
    echo "redis: up on $HOST:$REDIS_PORT (pid $(cat "$dir/redis.pid"), $(since "$start"))"
}

redis_down() { pid_stop redis "$DIR/redis/redis.pid"; }
redis_status() { pid_status redis "$DIR/redis/redis.pid" "$HOST:$REDIS_PORT"; }

postgres_up() {
    local start bin data="$DIR/postgres/data"
    start=$(now)
    bin=$(pg_bin || true)
    if [ -z "$bin" ]; then
        echo "postgres: not started: no PostgreSQL binaries (apt-get install postgresql)"
        return 1
    fi
    if as_pg "$bin/pg_ctl" -D "$data" status >/dev/null 2>&1; then
        echo "postgres: already running on $HOST:$POSTGRES_PORT (pid $(head -1 "$data/postmaster.pid"))"
        return 0
    fi
    mkdir -p "$DIR/postgres"
    if [ "$(id -u)" = 0 ]; then
        chown "${RANKING_SERVICES__RUN_AS:-postgres}" "$DIR/postgres"
        if ! as_pg test -w "$DIR/postgres"; then
            echo "postgres: not started: user ${RANKING_SERVICES__RUN_AS:-postgres} cannot reach $DIR (make its parents traversable)"
            return 1
        fi
    fi
    if [ ! -f "$data/PG_VERSION" ]; then
        as_pg "$bin/initdb" -D "$data" -U "$PG_USER" -A trust -E UTF8 --no-sync >"$DIR/postgres/initdb.log" 2>&1 \
            || { echo "postgres: initdb failed, see $DIR/postgres/initdb.log"; return 1; }
        echo "include_if_exists = 'ranking.conf'" | as_pg tee -a "$data/postgresql.conf" >/dev/null
    fi
    # Rewritten on every start, so another port takes effect. TCP on 127.0.0.1 only:
    # no Unix socket (its path would be too long under a deep DIR).
    as_pg tee "$data/ranking.conf" >/dev/null <<EOF
listen_addresses = '$HOST'
port = $POSTGRES_PORT
unix_socket_directories = ''
synchronous_commit = off
max_connections = 200
EOF
    if ! as_pg "$bin/pg_ctl" -D "$data" -l "$DIR/postgres/postgres.log" -w -t 60 start >/dev/null; then
        echo "postgres: failed to start on $HOST:$POSTGRES_PORT, see $DIR/postgres/postgres.log"
        return 1
    fi
    local db
    for db in $DATABASES; do
        if [ -z "$(psql -h "$HOST" -p "$POSTGRES_PORT" -U "$PG_USER" -d postgres -tAc \
            "SELECT 1 FROM pg_database WHERE datname = '$db'")" ]; then
            psql -h "$HOST" -p "$POSTGRES_PORT" -U "$PG_USER" -d postgres -qc "CREATE DATABASE $db" >/dev/null
        fi
    done
    echo "postgres: up on $HOST:$POSTGRES_PORT, databases ${DATABASES// /, } (pid $(head -1 "$data/postmaster.pid"), $(since "$start"))"
}

postgres_down() {
    local bin data="$DIR/postgres/data"
    bin=$(pg_bin || true)
    if [ -z "$bin" ] || ! as_pg "$bin/pg_ctl" -D "$data" status >/dev/null 2>&1; then
        echo "postgres: not running"
        return 0
    fi
    local pid
    pid=$(head -1 "$data/postmaster.pid")
    as_pg "$bin/pg_ctl" -D "$data" -m fast -w stop >/dev/null
    echo "postgres: stopped (pid $pid)"
}

postgres_status() {
    local bin data="$DIR/postgres/data"
    bin=$(pg_bin || true)
    if [ -n "$bin" ] && as_pg "$bin/pg_ctl" -D "$data" status >/dev/null 2>&1; then
        echo "postgres: running on $HOST:$POSTGRES_PORT (pid $(head -1 "$data/postmaster.pid"))"
    else
        echo "postgres: not running"
    fi
}

prefect_up() {
    local start dir="$DIR/prefect"
    start=$(now)
    if [ ! -x "$PREFECT_BIN" ]; then
        echo "prefect: not started: no $PREFECT_BIN (make venv)"
        return 1
    fi
    if pid_alive "$dir/prefect.pid"; then
        echo "prefect: already running on http://$HOST:$PREFECT_PORT/api (pid $(cat "$dir/prefect.pid"))"
        return 0
    fi
    mkdir -p "$dir"
    # Its own process group (setsid), so `down` stops the server and its children.
    PREFECT_HOME="$dir" \
        PREFECT_API_DATABASE_CONNECTION_URL="postgresql+asyncpg://$PG_USER@$HOST:$POSTGRES_PORT/prefect" \
        PREFECT_SERVER_ANALYTICS_ENABLED=false PREFECT_UI_ENABLED="${PREFECT_UI_ENABLED:-true}" \
        setsid "$PREFECT_BIN" server start --host "$HOST" --port "$PREFECT_PORT" \
        >"$dir/prefect.log" 2>&1 </dev/null &
    echo $! >"$dir/prefect.pid"
    if ! wait_until 120 "$dir/prefect.pid" curl -fs "http://$HOST:$PREFECT_PORT/api/health"; then
        echo "prefect: failed to start on $HOST:$PREFECT_PORT, see $dir/prefect.log"
        return 1
    fi
    echo "prefect: up on http://$HOST:$PREFECT_PORT/api, database prefect (pid $(cat "$dir/prefect.pid"), $(since "$start"))"
}

prefect_down() { pid_stop prefect "$DIR/prefect/prefect.pid"; }
prefect_status() { pid_status prefect "$DIR/prefect/prefect.pid" "http://$HOST:$PREFECT_PORT/api"; }

case "$command" in
    up)
        mkdir -p "$DIR"
        DIR="$(cd "$DIR" && pwd)"
        failed=0
        for service in redis postgres prefect; do
            wanted "$service" || continue
            if [ "$service" = prefect ] && ! postgres_status | grep -q running; then
                echo "prefect: not started: postgres is not running"
                failed=1
                continue
            fi
            "${service}_up" || failed=1
        done
        exit "$failed"
        ;;
    down)
        [ -d "$DIR" ] && DIR="$(cd "$DIR" && pwd)"
        for service in prefect postgres redis; do  # the server before its database
            wanted "$service" && "${service}_down"
        done
        exit 0
        ;;
    status)
        for service in redis postgres prefect; do
            wanted "$service" && "${service}_status"
        done
        exit 0
        ;;
    *)
        echo "usage: $0 up|down|status [DIR]" >&2
        exit 2
        ;;
esac
