# shellcheck shell=bash
# Start a throw-away Redis server on loopback for the queue tests; exports TRIAGE_TEST_REDIS_URL.
# Safe to source: no `set -e`, no traps, failures `return 1`. Needs the Debian `redis-server` package.
_triage_redis_start() {
    local exe base port
    exe=$(command -v redis-server || true)
    if [ -z "$exe" ]; then
        echo "redis.sh: redis-server is not installed (apt-get install -y redis-server)" >&2
        return 1
    fi
    base=$(mktemp -d /tmp/triage-redis.XXXXXX) || return 1
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    "$exe" --port "$port" --bind 127.0.0.1 --daemonize yes --dir "$base" --save "" --appendonly no \
        --logfile "$base/redis.log" --pidfile "$base/redis.pid" || return 1
    for _ in $(seq 1 50); do
        if redis-cli -p "$port" ping 2>/dev/null | grep -q PONG; then
            export TRIAGE_TEST_REDIS_URL="redis://127.0.0.1:$port/0"
            echo "redis.sh: Redis running, TRIAGE_TEST_REDIS_URL=$TRIAGE_TEST_REDIS_URL"
            return 0
        fi
        sleep 0.1
    done
    echo "redis.sh: Redis did not answer, see $base/redis.log" >&2
    return 1
}
_triage_redis_start
