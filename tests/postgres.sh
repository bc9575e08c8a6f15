#!/usr/bin/env bash
# A throwaway PostgreSQL server for the storage tests, listening on 127.0.0.1 only, with a role
# that logs in with a random password and a database of its own.
#
#   bash tests/postgres.sh available           # exit 0 when the server binaries are installed
#   eval "$(bash tests/postgres.sh start)"     # exports SCALETUNE_TEST_POSTGRES_URL (and _DIR)
#   bash tests/postgres.sh stop                # stops it and deletes $SCALETUNE_TEST_POSTGRES_DIR
#
# Debian: apt-get install postgresql. Run as root, the server runs as the postgres user.
# Only the export lines go to stdout; progress and errors go to stderr.
set -euo pipefail

bindir() {
    # Debian keeps the server binaries (initdb, pg_ctl, psql side by side) off the PATH.
    local dir
    dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
    if [ -z "$dir" ] && command -v pg_ctl >/dev/null 2>&1; then
        dir=$(dirname "$(readlink -f "$(command -v pg_ctl)")")
    fi
    [ -n "$dir" ] && [ -x "$dir/pg_ctl" ] && [ -x "$dir/initdb" ] && [ -x "$dir/psql" ] \
        && echo "$dir"
}

# Runs a server binary as the user that owns the data folder (initdb refuses root).
as_owner() {
    if [ "$(id -u)" = 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

start() {
    local bin dir port password
    bin=$(bindir) || { echo "postgres.sh: PostgreSQL is not installed" >&2; return 1; }
    if [ "$(id -u)" = 0 ] && ! id postgres >/dev/null 2>&1; then
        echo "postgres.sh: running as root needs the postgres user (apt-get install postgresql)" >&2
        return 1
    fi
    dir=$(mktemp -d "${TMPDIR:-/tmp}/scaletune-pg.XXXXXX")
    [ "$(id -u)" = 0 ] && chown postgres: "$dir"
    chmod 700 "$dir"
    port=$(free_port)
    password=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
    # Local socket connections (in the private folder) trust the superuser; TCP needs passwords.
    as_owner "$bin/initdb" -D "$dir/data" -U postgres --auth-local=trust \
        --auth-host=scram-sha-256 >"$dir/initdb.log" 2>&1 \
        || { cat "$dir/initdb.log" >&2; rm -rf "$dir"; return 1; }
    # A throwaway server: no fsync; the tests open few connections.
    as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 -o \
        "-c listen_addresses=127.0.0.1 -p $port -k $dir -c fsync=off -c max_connections=40" \
        start >&2 || { cat "$dir/server.log" >&2; rm -rf "$dir"; return 1; }
    as_owner "$bin/psql" -h "$dir" -p "$port" -U postgres -d postgres -v ON_ERROR_STOP=1 -q \
        -c "CREATE ROLE scaletune LOGIN PASSWORD '$password'" \
        -c "CREATE DATABASE scaletune OWNER scaletune" >&2 \
        || { as_owner "$bin/pg_ctl" -D "$dir/data" -m immediate stop >&2; rm -rf "$dir"; return 1; }
    echo "postgres.sh: PostgreSQL $("$bin/pg_ctl" --version | awk '{print $3}') on 127.0.0.1:$port" >&2
    echo "export SCALETUNE_TEST_POSTGRES_URL=postgresql://scaletune:$password@127.0.0.1:$port/scaletune"
    echo "export SCALETUNE_TEST_POSTGRES_DIR=$dir"
}

stop() {
    local dir=${SCALETUNE_TEST_POSTGRES_DIR:-} bin
    [ -n "$dir" ] && [ -d "$dir/data" ] || { echo "postgres.sh: nothing to stop" >&2; return 0; }
    bin=$(bindir)
    as_owner "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >&2 || true
    rm -rf "$dir"
}

case "${1:-}" in
    available) bindir >/dev/null ;;
    start) start ;;
    stop) stop ;;
    *) echo "usage: $0 available|start|stop" >&2; exit 2 ;;
esac
