# shellcheck shell=bash
# Start a throw-away PostgreSQL server on loopback for the test suite and the benchmark.
#
#   source .ci/postgres.sh        # exports TRIAGE_TEST_POSTGRES_URL (and TRIAGE_TEST_POSTGRES_DIR)
#   bash .ci/postgres.sh          # same, but only prints the URL (the export dies with the sub-shell)
#   triage_pg_stop                # (after sourcing) stops the server and removes its directory
#
# Needs the Debian/Ubuntu `postgresql` package (apt-get install -y postgresql). The data directory lives
# under /tmp, the server listens on 127.0.0.1 on a free port with trust authentication and fsync off: it is
# for tests only. Safe to source: no `set -e`, no traps, no `exit` on success; failures `return 1`.

_triage_pg_start() {
    local bindir base port try pyexe
    bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
    if [ -z "$bindir" ] || [ ! -x "$bindir/initdb" ]; then
        echo "postgres.sh: PostgreSQL is not installed (apt-get install -y postgresql)" >&2
        return 1
    fi
    base=$(mktemp -d /tmp/triage-pg.XXXXXX) || return 1
    mkdir -p "$base/data" "$base/sock"
    local -a as_pg=()
    if [ "$(id -u)" = "0" ]; then
        chown -R postgres:postgres "$base" || return 1
        as_pg=(runuser -u postgres --)
    fi
    if ! "${as_pg[@]}" "$bindir/initdb" -D "$base/data" -A trust -U postgres --no-sync \
            >"$base/initdb.log" 2>&1; then
        echo "postgres.sh: initdb failed, see $base/initdb.log" >&2
        return 1
    fi
    pyexe=$(command -v python3 || command -v python || true)
    for try in 1 2 3 4 5; do
        if [ -n "$pyexe" ]; then
            port=$("$pyexe" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
        else
            port=$((20000 + RANDOM % 20000))
        fi
        if "${as_pg[@]}" "$bindir/pg_ctl" -D "$base/data" -l "$base/server.log" -w -t 60 \
                -o "-p $port -k $base/sock -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200" \
                start >"$base/pg_ctl.log" 2>&1; then
            export TRIAGE_TEST_POSTGRES_URL="postgresql+psycopg://postgres@127.0.0.1:$port/postgres"
            export TRIAGE_TEST_POSTGRES_DIR="$base"
            echo "postgres.sh: PostgreSQL running, TRIAGE_TEST_POSTGRES_URL=$TRIAGE_TEST_POSTGRES_URL"
            echo "postgres.sh: data in $base (stop: triage_pg_stop, or pg_ctl -D $base/data stop)"
            return 0
        fi
        echo "postgres.sh: start on port $port failed (try $try), see $base/server.log" >&2
    done
    return 1
}

triage_pg_stop() {
    local base="${TRIAGE_TEST_POSTGRES_DIR:-}" bindir
    [ -n "$base" ] && [ -d "$base/data" ] || { echo "postgres.sh: no server recorded" >&2; return 1; }
    bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
    if [ "$(id -u)" = "0" ]; then
        runuser -u postgres -- "$bindir/pg_ctl" -D "$base/data" -m fast -w stop >/dev/null
    else
        "$bindir/pg_ctl" -D "$base/data" -m fast -w stop >/dev/null
    fi
    rm -rf "$base"
    unset TRIAGE_TEST_POSTGRES_URL TRIAGE_TEST_POSTGRES_DIR
}

_triage_pg_start
_triage_pg_rc=$?
# Sourced: return the status to the caller's shell. Executed: exit with it.
(return 0 2>/dev/null) && return "$_triage_pg_rc"
exit "$_triage_pg_rc"
