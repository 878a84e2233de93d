#!/usr/bin/env bash
# End-to-end check of the Python examples against a real server. Non-interactive, every step
# under a timeout, exits non-zero on the first failure, always stops its server.
#
#   bash examples/python/smoke.sh target/debug/zcoord
#
# Needs python3 with pyzmq (pip install pyzmq). PYTHON overrides the interpreter.
set -euo pipefail

BIN=${1:?usage: smoke.sh PATH_TO_ZCOORD_BINARY}
PY=${PYTHON:-python3}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# Short path: ipc socket paths are limited to 107 bytes.
DIR=$(mktemp -d /tmp/zcoord-smoke.XXXXXX)
SERVER=""
TOKENS=""

cleanup() {
    for pid in $TOKENS $SERVER; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    [ -n "$SERVER" ] && wait "$SERVER" 2>/dev/null || true
    rm -rf "$DIR"
}
trap cleanup EXIT

fail() {
    echo "FAIL: $*" >&2
    for f in serve.log tokens.out tokens.err send.out out err; do
        [ -s "$DIR/$f" ] && { echo "--- $f" >&2; cat "$DIR/$f" >&2; }
    done
    exit 1
}

# Polls (0.1 s steps, at most $1 seconds) until the command in the remaining args succeeds.
wait_for() {
    local secs=$1; shift
    for _ in $(seq $((secs * 10))); do
        "$@" && return 0
        sleep 0.1
    done
    return 1
}

"$PY" -c 'import zmq' || fail "pyzmq is not installed (pip install pyzmq)"

# 1. Server, with a fast heartbeat so subscribers learn quickly that they are live.
#    `timeout` is only a safety net; it forwards our SIGTERM to the server.
timeout 60 "$BIN" --data-dir "$DIR" serve --heartbeat-interval 0.2 >"$DIR/serve.log" 2>&1 &
SERVER=$!
server_ready() {
    kill -0 "$SERVER" 2>/dev/null || fail "server exited early"
    test -s "$DIR/instance.json"
}
wait_for 10 server_ready || fail "server did not write $DIR/instance.json"
echo "ok   server up: $(grep -m1 serving "$DIR/serve.log")"

# 2. call.py: success, an error reply (exit 1), and an unreachable endpoint (exit 3).
timeout 20 "$PY" "$HERE/call.py" --data-dir "$DIR" instance.ping >"$DIR/out" 2>"$DIR/err" \
    || fail "call.py instance.ping exited $?"
grep -q '"status": "ok"' "$DIR/out" || fail "instance.ping did not answer ok"
echo "ok   call.py instance.ping"

timeout 20 "$PY" "$HERE/call.py" --data-dir "$DIR" session.list >"$DIR/out" 2>"$DIR/err" \
    || fail "call.py session.list exited $?"
grep -q '"sessions": \[\]' "$DIR/out" || fail "session.list is not an empty list"
echo "ok   call.py session.list"

rc=0
timeout 20 "$PY" "$HERE/call.py" --data-dir "$DIR" session.get '{"session_id": "nope"}' \
    >"$DIR/out" 2>"$DIR/err" || rc=$?
[ "$rc" = 1 ] || fail "call.py session.get on an unknown session exited $rc, want 1"
grep -q session_not_found "$DIR/err" || fail "error reply does not name session_not_found"
echo "ok   call.py error reply -> exit 1: $(cat "$DIR/err")"

rc=0
timeout 20 "$PY" "$HERE/call.py" --rpc "ipc://$DIR/nobody.sock" --timeout-ms 300 instance.ping \
    >"$DIR/out" 2>"$DIR/err" || rc=$?
[ "$rc" = 3 ] || fail "call.py to a dead endpoint exited $rc, want 3"
echo "ok   call.py no server -> exit 3"

# 3. tokens.py: wait until its subscription is live (it says "subscribed" after its first
#    event, a heartbeat), then send; it must print the streamed reply and exit after one turn.
timeout 20 "$PY" "$HERE/tokens.py" --data-dir "$DIR" --turns 1 >"$DIR/tokens.out" 2>"$DIR/tokens.err" &
TOKENS=$!
wait_for 10 grep -q subscribed "$DIR/tokens.err" || fail "tokens.py never saw a heartbeat"
timeout 20 "$BIN" --data-dir "$DIR" send "hello there" >"$DIR/send.out" 2>&1 \
    || fail "zcoord send exited $?"
rc=0
wait "$TOKENS" || rc=$?
TOKENS=""
[ "$rc" = 0 ] || fail "tokens.py exited $rc"
grep -qx 'echo: hello there' "$DIR/tokens.out" || fail "tokens.py did not print the reply"
echo "ok   tokens.py printed: $(cat "$DIR/tokens.out")"

# 4. Graceful shutdown: SIGTERM -> exit 0 and the discovery file removed.
kill -TERM "$SERVER"
rc=0
wait "$SERVER" || rc=$?
SERVER=""
[ "$rc" = 0 ] || fail "server exited $rc after SIGTERM"
[ ! -e "$DIR/instance.json" ] || fail "discovery file left behind"
echo "ok   server stopped cleanly"
echo "PASS"
