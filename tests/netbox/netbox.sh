#!/usr/bin/env bash
# A real NetBox + netbox-proxbox plugin for proxbox-host's tests.
#
#   tests/netbox/netbox.sh up      install (if needed) and start; keeps the current database
#   tests/netbox/netbox.sh reset   pristine database from the template, restart the RQ worker, wait ready
#                                  (seconds; gunicorn is kept if healthy; `reset --restart` restarts it too)
#   tests/netbox/netbox.sh down    stop gunicorn, the RQ worker, and Redis/PostgreSQL if `up` started them
#   tests/netbox/netbox.sh env     print the env file (NETBOX_URL, tokens, ...)
#   tests/netbox/netbox.sh status  say what is running
#
# Everything persistent lives under ${PROXBOX_NETBOX_HOME:-$HOME/.cache/proxbox-host/netbox}
# (venv, NetBox root, secrets, cached migrated dump, logs, pidfiles, env file), outside the repo.
# The first `up` on a machine migrates the database (~17 min on 2 cores) and caches a
# pg_dump of it; later `up`s restore/reuse it. See tests/netbox/README.md.
#
# Knobs (environment): PROXBOX_NETBOX_HOME, PROXBOX_NETBOX_PORT (8001), PROXBOX_NETBOX_REDIS_PORT
# (6379), PROXBOX_NETBOX_READY_TIMEOUT (120 s), PROXBOX_NETBOX_PYTHON (a python3.12 binary),
# PROXBOX_NETBOX_BACKGROUND_TASKS (false: the plugin's automatic_background_tasks),
# PROXBOX_NETBOX_SEED_DUMP (a migrated pg_dump -Fc to use instead of migrating), PROXBOX_NETBOX_DB
# (netbox: database + role name; the template is <name>_template).
set -Eeuo pipefail

NB_VERSION=4.7.3
PLUGIN_VERSION=0.0.29.post6
KEY="netbox-${NB_VERSION}-proxbox-${PLUGIN_VERSION}"

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
HOME=${HOME:-/root}
HOME_DIR=${PROXBOX_NETBOX_HOME:-$HOME/.cache/proxbox-host/netbox}
PORT=${PROXBOX_NETBOX_PORT:-8001}
REDIS_PORT=${PROXBOX_NETBOX_REDIS_PORT:-6379}
READY_TIMEOUT=${PROXBOX_NETBOX_READY_TIMEOUT:-120}
BG_TASKS=${PROXBOX_NETBOX_BACKGROUND_TASKS:-false}

VENV=$HOME_DIR/venv
ROOT=$HOME_DIR/root
RUN=$HOME_DIR/run
LOGS=$HOME_DIR/logs
SETTINGS=$ROOT/conf/proxbox-test.json
DUMP=$HOME_DIR/migrated-$KEY.dump
ENV_FILE=$HOME_DIR/env
URL=http://127.0.0.1:$PORT

DB=${PROXBOX_NETBOX_DB:-netbox}           # database and role; a second instance needs its own
[[ $DB =~ ^[a-z_][a-z0-9_]*$ ]] || { echo "PROXBOX_NETBOX_DB must match [a-z_][a-z0-9_]*" >&2; exit 2; }
TEMPLATE_DB=${DB}_template
DB_USER=$DB

export NETBOX_ROOT=$ROOT
export DEBIAN_FRONTEND=noninteractive
export PIP_DISABLE_PIP_VERSION_CHECK=1
unset NETBOX_CONFIGURATION DJANGO_SETTINGS_MODULE || true

APT_PACKAGES=(postgresql postgresql-contrib redis-server redis-tools libpq-dev build-essential pkg-config
              libxml2-dev libxslt1-dev libjpeg-dev zlib1g-dev libffi-dev libssl-dev curl ca-certificates)

# ---------------------------------------------------------------------------------------------
log() { printf '[netbox.sh %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
timed() { # timed NAME CMD... -- run CMD, then print how long it took
    local name=$1 t0; shift
    t0=$(now)
    "$@"
    log "step $name: $(since "$t0") s"
}
trap 'rc=$?; log "FAILED (exit $rc) at line $LINENO: $BASH_COMMAND"' ERR

tail_log() { # tail_log FILE [N]
    [[ -f $1 ]] || return 0
    log "--- last ${2:-40} lines of $1 ---"
    tail -n "${2:-40}" "$1" >&2 || true
    log "--- end of $1 ---"
}

run_logged() { # run_logged LOGFILE CMD... -- append output to LOGFILE, show its tail on failure
    local logfile=$1 rc=0; shift
    printf '\n=== %s: %s\n' "$(date -u +%FT%TZ)" "$*" >>"$logfile"
    "$@" >>"$logfile" 2>&1 || rc=$?
    if ((rc != 0)); then
        tail_log "$logfile" 60
        die "command failed ($rc): $*  (full log: $logfile)"
    fi
}

nb() { "$VENV/bin/netbox" "$@"; }

pg_su() { (cd / && runuser -u postgres -- env PGOPTIONS='-c client_min_messages=warning' "$@"); }
psql_su() { pg_su psql -X -q -v ON_ERROR_STOP=1 -p "$PG_PORT" "$@"; }
sql() { psql_su -d postgres -Atc "$1"; }

# fd 9 holds the lock; every long-lived process started below gets `9>&-` so it does not inherit it.
lock() {
    mkdir -p "$HOME_DIR"
    exec 9>"$HOME_DIR/.lock"
    flock -w 3600 9 || die "another netbox.sh holds $HOME_DIR/.lock"
}

# ---------------------------------------------------------------------------------------------
# 1. Debian packages
ensure_packages() {
    local need=() p
    for p in "${APT_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || need+=("$p")
    done
    if ((${#need[@]} == 0)); then
        log "apt: all packages present"
        return 0
    fi
    log "apt: installing ${need[*]}"
    mkdir -p "$LOGS"
    run_logged "$LOGS/apt.log" apt-get update
    run_logged "$LOGS/apt.log" apt-get install -y --no-install-recommends "${need[@]}"
}

# ---------------------------------------------------------------------------------------------
# 2. PostgreSQL and Redis (loopback only)
pg_detect() {
    PG_VER=$(pg_lsclusters -h 2>/dev/null | awk '$2 == "main" { print $1 }' | sort -V | tail -n 1)
    if [[ -z $PG_VER ]]; then
        PG_VER=$(ls /usr/lib/postgresql | sort -V | tail -n 1)
        [[ -n $PG_VER ]] || die "no PostgreSQL server installed"
        log "postgres: creating cluster $PG_VER/main"
        pg_createcluster "$PG_VER" main >/dev/null
    fi
    PG_PORT=$(pg_lsclusters -h | awk -v v="$PG_VER" '$1 == v && $2 == "main" { print $3 }')
}

pg_status() { pg_lsclusters -h | awk -v v="$PG_VER" '$1 == v && $2 == "main" { print $4 }'; }

ensure_postgres() {
    pg_detect
    if [[ $(pg_status) != online* ]]; then
        pg_ctlcluster "$PG_VER" main start 9>&-
        echo "$PG_VER" >"$RUN/postgres.started-by-netbox.sh"
        log "postgres: started cluster $PG_VER/main on port $PG_PORT"
    else
        log "postgres: cluster $PG_VER/main already running on port $PG_PORT"
    fi
    local i
    for i in $(seq 1 60); do
        pg_isready -q -h 127.0.0.1 -p "$PG_PORT" && return 0
        sleep 0.5
    done
    die "PostgreSQL $PG_VER/main does not accept connections on 127.0.0.1:$PG_PORT"
}

redis_ping() { redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null | grep -q PONG; }

ensure_redis() {
    if redis_ping; then
        log "redis: already answering on 127.0.0.1:$REDIS_PORT"
        return 0
    fi
    mkdir -p "$HOME_DIR/redis"
    redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --daemonize yes \
        --pidfile "$RUN/redis.pid" --logfile "$LOGS/redis.log" --dir "$HOME_DIR/redis" \
        --save '' --appendonly no >/dev/null 9>&-
    local i
    for i in $(seq 1 50); do
        redis_ping && { log "redis: started on 127.0.0.1:$REDIS_PORT"; return 0; }
        sleep 0.2
    done
    tail_log "$LOGS/redis.log"
    die "Redis did not come up on 127.0.0.1:$REDIS_PORT"
}

ensure_services() {
    mkdir -p "$RUN" "$LOGS"
    ensure_postgres
    ensure_redis
}

# ---------------------------------------------------------------------------------------------
# 3. Python 3.12 venv with netbox + netbox-proxbox
find_python() {
    local c
    for c in "${PROXBOX_NETBOX_PYTHON:-}" \
             $(ls -d "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.12*/bin/python3.12 2>/dev/null | sort -V | tail -n 1) \
             "$(command -v python3.12 2>/dev/null || true)"; do
        [[ -n $c && -x $c ]] || continue
        if "$c" -c 'import sys, venv; sys.exit(sys.version_info[:2] != (3, 12))' 2>/dev/null; then
            echo "$c"
            return 0
        fi
    done
    return 1
}

venv_versions() {
    "$VENV/bin/python" - <<'EOF' 2>/dev/null || true
from importlib.metadata import version
from importlib.util import find_spec
assert all(find_spec(m) for m in ('netbox', 'netbox_proxbox', 'gunicorn', 'django_rq', 'psycopg_c'))
print(version('netbox'), version('netbox-proxbox'))
EOF
}

ensure_venv() {
    local want="$NB_VERSION $PLUGIN_VERSION"
    if [[ -f $VENV/.proxbox-stamp && $(cat "$VENV/.proxbox-stamp") == "$want" && $(venv_versions) == "$want" ]]; then
        log "venv: netbox $NB_VERSION + netbox-proxbox $PLUGIN_VERSION already installed ($VENV)"
        return 0
    fi
    local py
    py=$(find_python) || die "no Python 3.12 found (tried \$PROXBOX_NETBOX_PYTHON, ~/.pyenv/versions/3.12*/bin/python3.12, python3.12 on PATH)"
    log "venv: creating $VENV with $py ($("$py" -V 2>&1))"
    rm -rf "$VENV"
    run_logged "$LOGS/pip.log" "$py" -m venv "$VENV"
    run_logged "$LOGS/pip.log" "$VENV/bin/pip" install --no-input "netbox==$NB_VERSION" "netbox-proxbox==$PLUGIN_VERSION"
    [[ $(venv_versions) == "$want" ]] || die "venv check failed after install (see $LOGS/pip.log)"
    echo "$want" >"$VENV/.proxbox-stamp"
    # contrib examples and static files belong to the installed version
    rm -rf "$ROOT/contrib" "$ROOT/static"
}

# ---------------------------------------------------------------------------------------------
# 4. NetBox root: `netbox setup`, configuration.py, secrets
ensure_settings() {
    mkdir -p "$ROOT/conf"
    chmod 700 "$ROOT/conf"
    # Secrets are generated once and kept; the knobs below are refreshed on every run.
    (umask 077
     SETTINGS="$SETTINGS" PG_PORT="$PG_PORT" REDIS_PORT="$REDIS_PORT" BG_TASKS="$BG_TASKS" DB="$DB" DB_USER="$DB_USER" \
     "$VENV/bin/python" - <<'EOF'
import json, os, secrets, string
path = os.environ['SETTINGS']
try:
    with open(path) as f:
        s = json.load(f)
except FileNotFoundError:
    s = {}
alnum = string.ascii_letters + string.digits
keychars = alnum + '!@#%^&*(-_=+)'
rnd = lambda n, cs=alnum: ''.join(secrets.choice(cs) for _ in range(n))
s.setdefault('secret_key', rnd(60, keychars))
s.setdefault('pepper', rnd(64, keychars))
s.setdefault('db_password', secrets.token_hex(16))
s.setdefault('admin_password', rnd(24))
s.setdefault('token_v1', secrets.token_hex(20))
s.setdefault('token_v2_key', rnd(12))
s.setdefault('token_v2_secret', rnd(40))
s['db_name'] = os.environ['DB']
s['db_user'] = os.environ['DB_USER']
s['db_port'] = int(os.environ['PG_PORT'])
s['redis_port'] = int(os.environ['REDIS_PORT'])
s['automatic_background_tasks'] = os.environ['BG_TASKS'].lower() in ('1', 'true', 'yes', 'on')
tmp = path + '.tmp'
with open(tmp, 'w') as f:
    json.dump(s, f, indent=1, sort_keys=True)
os.replace(tmp, path)
EOF
    )
    # A fingerprint of everything the database's users/tokens depend on (no secret in it).
    FP=$("$VENV/bin/python" -c '
import hashlib, json, sys
s = json.load(open(sys.argv[1]))
print(hashlib.sha256("\0".join(s[k] for k in ("pepper", "admin_password", "token_v1", "token_v2_key", "token_v2_secret")).encode()).hexdigest()[:16])
' "$SETTINGS")
    DB_MARK="proxbox-host $KEY fp=$FP"
}

ensure_root() {
    if [[ ! -f $ROOT/contrib/gunicorn.py ]]; then
        run_logged "$LOGS/setup.log" nb setup --target "$ROOT"
    fi
    install -m 644 "$SCRIPT_DIR/configuration.py" "$ROOT/conf/configuration.py"
    mkdir -p "$ROOT/media" "$ROOT/reports" "$ROOT/scripts"
}

ensure_static() {
    if [[ -f $ROOT/static/.proxbox-stamp && $(cat "$ROOT/static/.proxbox-stamp") == "$KEY" ]]; then
        log "static: already collected"
        return 0
    fi
    run_logged "$LOGS/collectstatic.log" nb collectstatic --no-input
    echo "$KEY" >"$ROOT/static/.proxbox-stamp"
}

# ---------------------------------------------------------------------------------------------
# 5./6. Database: role, migrated template, superuser + tokens
db_exists() { [[ $(sql "SELECT 1 FROM pg_database WHERE datname = '$1'") == 1 ]]; }
db_mark() { sql "SELECT coalesce(shobj_description(oid, 'pg_database'), '') FROM pg_database WHERE datname = '$1'"; }
set_db_mark() { sql "COMMENT ON DATABASE $1 IS '$DB_MARK'" >/dev/null; }

ensure_role() {
    local pw
    pw=$("$VENV/bin/python" -c 'import json, sys; print(json.load(open(sys.argv[1]))["db_password"])' "$SETTINGS")
    psql_su -d postgres >/dev/null <<EOF
SELECT format('CREATE ROLE %I LOGIN', '$DB_USER') WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '$DB_USER')\gexec
ALTER ROLE $DB_USER WITH LOGIN PASSWORD '$pw';
EOF
}

bootstrap_users() {
    run_logged "$LOGS/bootstrap.log" nb shell -c "$(cat "$SCRIPT_DIR/bootstrap.py")"
    log "bootstrap: $(tail -n 1 "$LOGS/bootstrap.log")"
}

migrate_db() {
    log "migrate: running all migrations (~18 min on 2 cores; log: $LOGS/migrate.log)"
    run_logged "$LOGS/migrate.log" nb migrate --no-input
}

dump_db() {
    pg_su pg_dump -p "$PG_PORT" -Fc -d "$DB" >"$DUMP.tmp"
    mv "$DUMP.tmp" "$DUMP"
    log "dump: $DUMP ($(du -h "$DUMP" | cut -f1))"
}

restore_db() {
    pg_su pg_restore -p "$PG_PORT" --no-owner --role="$DB_USER" --exit-on-error -d "$DB" <"$DUMP"
}

recreate_db() { # recreate_db [TEMPLATE]
    sql "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null
    if [[ -n ${1:-} ]]; then
        sql "CREATE DATABASE $DB OWNER $DB_USER TEMPLATE $1" >/dev/null
    else
        sql "CREATE DATABASE $DB OWNER $DB_USER" >/dev/null
    fi
}

build_template() {
    log "template: building $TEMPLATE_DB ($DB_MARK)"
    timed create-db recreate_db
    if [[ ! -s $DUMP ]]; then
        local seed
        for seed in "${PROXBOX_NETBOX_SEED_DUMP:-}" "$SCRIPT_DIR/migrated-$KEY.dump"; do
            if [[ -n $seed && -s $seed ]]; then
                log "dump: seeding the cache from $seed"
                cp "$seed" "$DUMP.tmp" && mv "$DUMP.tmp" "$DUMP"
                break
            fi
        done
    fi
    if [[ -s $DUMP ]]; then
        local t0; t0=$(now)
        if restore_db 2>>"$LOGS/restore.log"; then
            log "step restore-dump: $(since "$t0") s"
        else
            tail_log "$LOGS/restore.log" 20
            log "restore of $DUMP failed: discarding it and migrating instead"
            rm -f "$DUMP"
            recreate_db
        fi
    fi
    if [[ ! -s $DUMP ]]; then
        timed migrate migrate_db
        timed dump dump_db
    fi
    timed bootstrap bootstrap_users
    sql "DROP DATABASE IF EXISTS $TEMPLATE_DB WITH (FORCE)" >/dev/null
    sql "CREATE DATABASE $TEMPLATE_DB OWNER $DB_USER TEMPLATE $DB" >/dev/null
    set_db_mark "$TEMPLATE_DB"
    set_db_mark "$DB"
}

ensure_database() {
    ensure_role
    if ! db_exists "$TEMPLATE_DB" || [[ $(db_mark "$TEMPLATE_DB") != "$DB_MARK" ]]; then
        build_template
    elif ! db_exists "$DB" || [[ $(db_mark "$DB") != "$DB_MARK" ]]; then
        timed db-from-template reset_db
    else
        log "database: keeping the existing '$DB' database (use 'reset' for a pristine one)"
    fi
}

reset_db() {
    recreate_db "$TEMPLATE_DB"
    set_db_mark "$DB"
}

flush_redis() {
    redis-cli -h 127.0.0.1 -p "$REDIS_PORT" -n 0 flushdb >/dev/null
    redis-cli -h 127.0.0.1 -p "$REDIS_PORT" -n 1 flushdb >/dev/null
}

# ---------------------------------------------------------------------------------------------
# 7. gunicorn (NetBox's contrib config) + RQ worker
# alive = exists and is not a zombie (pid 1 here reaps orphans lazily, so `kill -0` is not enough)
proc_alive() { local st; st=$(ps -o stat= -p "$1" 2>/dev/null) && [[ $st != Z* ]]; }

pid_alive() { # pid_alive PIDFILE MATCH -- pid from the file is alive and its cmdline contains MATCH
    local pid
    [[ -f $1 ]] || return 1
    pid=$(cat "$1" 2>/dev/null) || return 1
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    proc_alive "$pid" || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$2"
}

stop_pidfile() { # stop_pidfile PIDFILE MATCH NAME [SIGNAL] [WAIT_SECONDS]
    local pidfile=$1 match=$2 name=$3 sig=${4:-TERM} wait=${5:-15} pid i
    if ! pid_alive "$pidfile" "$match"; then
        rm -f "$pidfile"
        return 0
    fi
    pid=$(cat "$pidfile")
    # Signal the process's own process group (gunicorn workers, the RQ scheduler child) when it
    # has one of its own (daemons and setsid'd processes do); never our own group.
    local pgid own target
    pgid=$(ps -o pgid= -p "$pid" 2>/dev/null | tr -d ' ') || true
    own=$(ps -o pgid= -p $$ | tr -d ' ')
    target=("$pid")
    [[ -n $pgid && $pgid != "$own" && $pgid != 1 ]] && target=(-- "-$pgid")
    kill "-$sig" "${target[@]}" 2>/dev/null || kill "-$sig" "$pid" 2>/dev/null || true
    for i in $(seq 1 $((wait * 10))); do
        proc_alive "$pid" || break
        sleep 0.1
    done
    if proc_alive "$pid"; then
        log "$name: still running ${wait} s after SIG$sig, sending SIGKILL"
        kill -KILL "${target[@]}" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
        for i in $(seq 1 50); do
            proc_alive "$pid" || break
            sleep 0.1
        done
    fi
    rm -f "$pidfile"
    log "$name: stopped (pid $pid)"
}

# gunicorn: QUIT = quick shutdown. Its workers log "exiting" at once but then linger ~10 s before
# the master is done, so they are killed after 3 s: a test server has nothing to save.
stop_web() { stop_pidfile "$RUN/gunicorn.pid" "$VENV" gunicorn QUIT 3; }
# RQ: TERM = warm shutdown (finish the current job); an idle worker takes ~6 s, killed after ${1:-3} s.
stop_worker() { stop_pidfile "$RUN/rqworker.pid" "$VENV" rqworker TERM "${1:-3}"; }
stop_app() { stop_web; stop_worker; }

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# What the running processes loaded: a change (configuration, secrets, knobs, venv) needs a restart.
app_hash() { cat "$ROOT/conf/configuration.py" "$SETTINGS" "$VENV/.proxbox-stamp" 2>/dev/null | sha256sum | cut -c1-16; }
web_current() { pid_alive "$RUN/gunicorn.pid" "$VENV" && [[ $(cat "$RUN/gunicorn.hash" 2>/dev/null) == "$(app_hash)" ]]; }

start_web() {
    if port_in_use "$PORT"; then
        die "127.0.0.1:$PORT is already in use by another process (set PROXBOX_NETBOX_PORT)"
    fi
    : >"$LOGS/gunicorn.log"
    : >"$LOGS/gunicorn-access.log"
    app_hash >"$RUN/gunicorn.hash"
    # The production way: gunicorn with NetBox's contrib/gunicorn.py (5 workers x 3 threads,
    # timeout 120 s); only the bind address is overridden. Command-line options win over the file.
    (cd "$ROOT" && "$VENV/bin/gunicorn" --config "$ROOT/contrib/gunicorn.py" \
        --bind "127.0.0.1:$PORT" --daemon --pid "$RUN/gunicorn.pid" \
        --error-logfile "$LOGS/gunicorn.log" --access-logfile "$LOGS/gunicorn-access.log" --capture-output \
        --control-socket "$RUN/gunicorn.ctl" netbox.wsgi 9>&-)
}

start_worker() {
    : >"$LOGS/rqworker.log"
    # RQ worker on the queues of contrib/netbox-rq.service, in its own session.
    (cd "$ROOT" && exec setsid "$VENV/bin/netbox" rqworker high default low --pid "$RUN/rqworker.pid" \
        >>"$LOGS/rqworker.log" 2>&1 </dev/null 9>&-) &
}

start_app() { start_web; start_worker; }

api() { # api AUTH_HEADER PATH -> prints "HTTP_CODE" and the body into $API_BODY file
    curl -sS -m 10 -o "$RUN/api-body" -w '%{http_code}' -H "Authorization: $1" -H 'Accept: application/json' "$URL$2" 2>/dev/null || echo 000
}

json_get() { # json_get FILE PYTHON_EXPR(d) -- evaluate an expression on the parsed JSON
    "$VENV/bin/python" -c 'import json, sys; d = json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$1" "$2" 2>/dev/null || true
}

load_tokens() {
    eval "$("$VENV/bin/python" -c '
import json, shlex, sys
s = json.load(open(sys.argv[1]))
print("TOKEN_V1=" + shlex.quote(s["token_v1"]))
print("TOKEN_V2=" + shlex.quote("nbt_" + s["token_v2_key"] + "." + s["token_v2_secret"]))
print("ADMIN_PASSWORD=" + shlex.quote(s["admin_password"]))
' "$SETTINGS")"
    V1_HEADER="Token $TOKEN_V1"
    V2_HEADER="Bearer $TOKEN_V2"
}

wait_ready() {
    local deadline code workers gunicorn_seen=0
    deadline=$(($(date +%s) + READY_TIMEOUT))
    while :; do
        if ! pid_alive "$RUN/gunicorn.pid" "$VENV"; then
            # the daemon writes its pidfile shortly after forking
            ((gunicorn_seen == 0)) && [[ ! -f $RUN/gunicorn.pid ]] && (($(date +%s) < deadline)) && { sleep 0.5; continue; }
            tail_log "$LOGS/gunicorn.log" 60
            die "gunicorn is not running"
        fi
        gunicorn_seen=1
        code=$(api "$V2_HEADER" /api/status/)
        if [[ $code == 200 ]]; then
            workers=$(json_get "$RUN/api-body" 'd.get("rq-workers-running", 0)')
            [[ ${workers:-0} =~ ^[1-9] ]] && return 0
        elif [[ $code == 403 ]]; then
            return 0 # up, but the token is not valid (any more): the caller repairs that
        fi
        if (($(date +%s) >= deadline)); then
            tail_log "$LOGS/gunicorn.log" 60
            tail_log "$LOGS/rqworker.log" 30
            die "NetBox not ready within ${READY_TIMEOUT}s (last /api/status/ answer: HTTP $code, rq workers: ${workers:-?})"
        fi
        sleep 0.5
    done
}

verify() {
    local code v nbv plugins
    code=$(api "$V2_HEADER" /api/status/)
    [[ $code == 200 ]] || return 1
    nbv=$(json_get "$RUN/api-body" 'd["netbox-version"]')
    plugins=$(json_get "$RUN/api-body" '" ".join(f"{k}={v}" for k, v in d["plugins"].items())')
    [[ $nbv == "$NB_VERSION"* ]] || die "/api/status/ reports netbox-version '$nbv', expected $NB_VERSION"
    [[ " $plugins " == *" netbox_proxbox=$PLUGIN_VERSION "* ]] || die "/api/status/ plugins '$plugins' lack netbox_proxbox=$PLUGIN_VERSION"
    v=$(api "$V1_HEADER" /api/status/)
    [[ $v == 200 ]] || return 1
    v=$(api "$V2_HEADER" /api/plugins/proxbox/)
    [[ $v == 200 ]] || die "GET /api/plugins/proxbox/ answered HTTP $v: $(head -c 300 "$RUN/api-body")"
    log "verified: netbox $nbv, plugins: $plugins; v1+v2 tokens accepted; /api/plugins/proxbox/ 200"
}

ready_and_verified() {
    wait_ready
    if ! verify; then
        log "tokens not accepted: re-creating admin user and tokens"
        timed bootstrap bootstrap_users
        wait_ready
        verify || die "tokens still rejected after bootstrap (see $LOGS/bootstrap.log, $LOGS/gunicorn.log)"
    fi
}

# ---------------------------------------------------------------------------------------------
# 8. env file
write_env() {
    local tmp=$ENV_FILE.tmp
    (umask 077
     cat >"$tmp" <<EOF
# proxbox-host test NetBox (written by tests/netbox/netbox.sh; source it with: set -a; . $ENV_FILE; set +a)
NETBOX_URL="$URL"
NETBOX_VERSION="$NB_VERSION"
NETBOX_PROXBOX_VERSION="$PLUGIN_VERSION"
NETBOX_TOKEN_V1="$TOKEN_V1"
NETBOX_TOKEN_V1_HEADER="$V1_HEADER"
NETBOX_TOKEN_V2="$TOKEN_V2"
NETBOX_TOKEN_V2_HEADER="$V2_HEADER"
NETBOX_ADMIN_USER="admin"
NETBOX_ADMIN_PASSWORD="$ADMIN_PASSWORD"
NETBOX_HOME="$HOME_DIR"
NETBOX_ROOT="$ROOT"
NETBOX_VENV="$VENV"
NETBOX_LOGS="$LOGS"
EOF
    )
    mv "$tmp" "$ENV_FILE"
    log "env: $ENV_FILE"
}

# ---------------------------------------------------------------------------------------------
is_running() { web_current && pid_alive "$RUN/rqworker.pid" "$VENV"; }

cmd_up() {
    local t0; t0=$(now)
    lock
    mkdir -p "$RUN" "$LOGS"
    log "up: $KEY in $HOME_DIR, serving on $URL"
    timed packages ensure_packages
    timed services ensure_services
    timed venv ensure_venv
    timed settings ensure_settings
    timed root ensure_root
    if is_running && [[ $(db_mark "$DB") == "$DB_MARK" ]]; then
        load_tokens
        if (wait_ready && verify) 2>/dev/null; then
            write_env
            log "up: already running; total $(since "$t0") s"
            return 0
        fi
        log "up: running instance is unhealthy, restarting it"
    fi
    timed stop stop_app
    timed database ensure_database
    timed collectstatic ensure_static
    load_tokens
    timed start start_app
    timed ready ready_and_verified
    write_env
    log "up: done in $(since "$t0") s"
}

cmd_reset() {
    local t0 restart_web=0; t0=$(now)
    [[ ${1:-} == --restart ]] && restart_web=1
    lock
    if [[ ! -f $VENV/.proxbox-stamp || ! -f $SETTINGS || ! -f $ROOT/contrib/gunicorn.py ]]; then
        log "reset: nothing set up yet, running 'up' first"
        flock -u 9
        cmd_up
        lock
    fi
    mkdir -p "$RUN" "$LOGS"
    timed services ensure_services
    timed settings ensure_settings
    install -m 644 "$SCRIPT_DIR/configuration.py" "$ROOT/conf/configuration.py"
    # gunicorn holds no state that outlives the database (NetBox caches per request; the Redis
    # cache is flushed below) and reconnects by itself (CONN_HEALTH_CHECKS), so a healthy one
    # is kept: booting 5 NetBox workers costs ~40 CPU-seconds. The RQ worker is always restarted
    # (its queues and registrations live in the flushed Redis db 0). `reset --restart` restarts both.
    web_current || restart_web=1
    # (a job still running is pointless: its database is about to go, hence the short grace)
    if ((restart_web)); then timed stop stop_web; fi
    timed stop stop_worker 2
    ensure_role
    if ! db_exists "$TEMPLATE_DB" || [[ $(db_mark "$TEMPLATE_DB") != "$DB_MARK" ]]; then
        timed template build_template
        timed collectstatic ensure_static
    else
        timed db-from-template reset_db
    fi
    flush_redis
    load_tokens
    if ((restart_web)); then timed start start_app; else timed start start_worker; fi
    timed ready ready_and_verified
    write_env
    log "reset: done in $(since "$t0") s$( ((restart_web)) || echo ' (gunicorn kept running)')"
}

cmd_down() {
    local t0 ver; t0=$(now)
    lock
    mkdir -p "$RUN"
    stop_app
    if pid_alive "$RUN/redis.pid" redis-server; then
        redis-cli -h 127.0.0.1 -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true
        stop_pidfile "$RUN/redis.pid" redis-server redis
    fi
    rm -f "$RUN/redis.pid"
    if [[ -f $RUN/postgres.started-by-netbox.sh ]]; then
        ver=$(cat "$RUN/postgres.started-by-netbox.sh")
        pg_ctlcluster "$ver" main stop -m fast 2>/dev/null || true
        rm -f "$RUN/postgres.started-by-netbox.sh"
        log "postgres: stopped cluster $ver/main"
    fi
    log "down: done in $(since "$t0") s"
}

cmd_env() {
    [[ -f $ENV_FILE ]] || die "no env file yet ($ENV_FILE): run '$0 up' first"
    cat "$ENV_FILE"
}

cmd_status() {
    local s
    pid_alive "$RUN/gunicorn.pid" "$VENV" && s="running (pid $(cat "$RUN/gunicorn.pid"))" || s="stopped"
    echo "gunicorn: $s on $URL"
    pid_alive "$RUN/rqworker.pid" "$VENV" && s="running (pid $(cat "$RUN/rqworker.pid"))" || s="stopped"
    echo "rqworker: $s"
    redis_ping && echo "redis: answering on 127.0.0.1:$REDIS_PORT" || echo "redis: not answering on 127.0.0.1:$REDIS_PORT"
    pg_lsclusters -h 2>/dev/null | awk '{ print "postgres: " $1 "/" $2 " port " $3 " " $4 }'
    echo "home: $HOME_DIR"
}

usage() {
    awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
    exit 2
}

[[ $(id -u) == 0 ]] || die "must run as root (installs packages, runs PostgreSQL as its cluster owner)"
case "${1:-}" in
    up) cmd_up ;;
    reset) cmd_reset "${2:-}" ;;
    down) cmd_down ;;
    env) cmd_env ;;
    status) cmd_status ;;
    *) usage ;;
esac
