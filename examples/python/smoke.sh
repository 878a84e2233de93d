#!/usr/bin/env bash
# End-to-end check of the Python examples against a real server. Non-interactive, every step
# under a timeout, exits non-zero on the first failure, always stops its server.
#
#   bash examples/python/smoke.sh target/debug/zcoord
#
# Needs python3 with pyzmq (pip install pyzmq). PYTHON overrides the interpreter.
set -euo pipefail

BIN=${1:?usage: smoke.sh PATH_TO_ZCOORD_BINARY}
BIN="$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")"  # absolute: a later step changes directory
PY=${PYTHON:-python3}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# Short path: ipc socket paths are limited to 107 bytes.
DIR=$(mktemp -d /tmp/zcoord-smoke.XXXXXX)
SERVER=""
TOKENS=""
MIRROR=""

cleanup() {
    for pid in $TOKENS $MIRROR $SERVER; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    [ -n "$SERVER" ] && wait "$SERVER" 2>/dev/null || true
    rm -rf "$DIR"
}
trap cleanup EXIT

fail() {
    echo "FAIL: $*" >&2
    for f in serve.log ws.log tokens.out tokens.err mirror.out mirror.err send.out out err; do
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

# 4. mirror.py: started before the messages are sent and live (subscribed, first heartbeat seen)
#    before the first send. It mirrors the session tokens.py saw from its snapshot, the two new
#    messages from events, and once no event but heartbeats came for 1.5 s prints its replica on a
#    `REPLICA {json}` line and exits. That replica must equal what the server says now.
timeout 30 "$PY" "$HERE/mirror.py" --data-dir "$DIR" --dump-after-idle 1.5 \
    >"$DIR/mirror.out" 2>"$DIR/mirror.err" &
MIRROR=$!
mirror_live() {
    kill -0 "$MIRROR" 2>/dev/null || fail "mirror.py exited early"
    grep -qx live "$DIR/mirror.err"
}
wait_for 10 mirror_live || fail "mirror.py never went live"
timeout 20 "$BIN" --data-dir "$DIR" send "first mirrored message" >"$DIR/send.out" 2>&1 \
    || fail "zcoord send (new session) exited $?"
# `zcoord send` names the session it created on stderr: "session <id> turn <id>".
SID=$(sed -n 's/^session \([0-9a-f-]*\) turn .*/\1/p' "$DIR/send.out")
[ -n "$SID" ] || fail "zcoord send did not name its session"
timeout 20 "$BIN" --data-dir "$DIR" send --session "$SID" "second one" >"$DIR/send.out" 2>&1 \
    || fail "zcoord send --session exited $?"
rc=0
wait "$MIRROR" || rc=$?
MIRROR=""
[ "$rc" = 0 ] || fail "mirror.py exited $rc"
grep -q '^REPLICA ' "$DIR/mirror.out" || fail "mirror.py printed no REPLICA line"
if grep -q '^resync' "$DIR/mirror.out"; then fail "mirror.py had to resync (it lost events)"; fi
rc=0
timeout 30 "$PY" - "$BIN" "$DIR" "$SID" >"$DIR/out" 2>&1 <<'EOF' || rc=$?
import json, subprocess, sys

zcoord, data_dir, sid = sys.argv[1:4]


def call(method, params=None):
    cmd = [zcoord, "--data-dir", data_dir, "call", method, json.dumps(params or {})]
    return json.loads(subprocess.run(cmd, capture_output=True, check=True, timeout=10).stdout)


lines = [l for l in open(f"{data_dir}/mirror.out") if l.startswith("REPLICA ")]
assert len(lines) == 1, f"{len(lines)} REPLICA lines"
replica = json.loads(lines[0][len("REPLICA "):])
sync = call("state.sync")
problems = []


def check(what, got, want):
    if got != want:
        problems.append(f"{what}: mirror has {got!r}, server {want!r}")


check("instance_id", replica["instance_id"], sync["instance_id"])
check("active session", replica["active_session_id"], sync.get("active_session_id"))
sessions = {
    s["id"]: {"title": s["title"], "message_count": s["message_count"], "status": s["status"]}
    for s in sync["sessions"]
}
check("sessions", replica["sessions"], sessions)
for s in sessions:
    listed = call("message.list", {"session_id": s})["messages"]
    rows = [{"id": m["id"], "role": m["role"], "content": m["content"]} for m in listed]
    check(f"messages of {s}", replica["messages"].get(s), rows)
    check(f"message_count of {s}", sessions[s]["message_count"], len(rows))
# What the test did: tokens.py's session and the new one, holding both turns of this step.
check("session count", len(sessions), 2)
contents = [m["content"] for m in replica["messages"].get(sid, [])]
check("new session", contents, ["first mirrored message", "echo: first mirrored message",
                                "second one", "echo: second one"])
for p in problems:
    print(p)
n = sum(len(m) for m in replica["messages"].values())
print(f"{len(sessions)} sessions, {n} messages, active {replica['active_session_id']}")
sys.exit(1 if problems else 0)
EOF
[ "$rc" = 0 ] || fail "mirror.py's replica differs from state.sync + message.list"
echo "ok   mirror.py replica = state.sync + message.list: $(tail -n1 "$DIR/out")"

# 5. Graceful shutdown: SIGTERM -> exit 0 and the discovery file removed.
kill -TERM "$SERVER"
rc=0
wait "$SERVER" || rc=$?
SERVER=""
[ "$rc" = 0 ] || fail "server exited $rc after SIGTERM"
[ ! -e "$DIR/instance.json" ] || fail "discovery file left behind"
echo "ok   server stopped cleanly"

# 6. Workspaces: with no --data-dir, the server and the examples both map the current directory
#    to the same data directory (FNV-1a of its absolute path), so call.py finds the server.
mkdir -p "$DIR/home" "$DIR/my workspace"
(cd "$DIR/my workspace" && XDG_DATA_HOME="$DIR/home" timeout 60 "$BIN" serve --store memory \
    >"$DIR/ws.log" 2>&1) &
SERVER=$!
for _ in $(seq 1 100); do
    ls "$DIR"/home/zcoord/workspaces/*/instance.json >/dev/null 2>&1 && break
    sleep 0.1
done
(cd "$DIR/my workspace" && XDG_DATA_HOME="$DIR/home" timeout 20 "$PY" "$HERE/call.py" \
    instance.ping >"$DIR/out" 2>"$DIR/err") || fail "call.py did not find the workspace's server"
grep -q '"status": "ok"' "$DIR/out" || fail "unexpected ping answer: $(cat "$DIR/out")"
echo "ok   call.py found the server of its workspace: $(ls "$DIR/home/zcoord/workspaces")"
kill -TERM "$SERVER"
wait "$SERVER" || true
SERVER=""
echo "PASS"
