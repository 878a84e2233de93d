#!/usr/bin/env bash
# End-to-end check of the Python examples against a real server. Non-interactive, every step
# under a timeout, exits non-zero on the first failure, always stops its server.
#
#   bash examples/python/smoke.sh target/debug/zcoord
#
# Needs python3 with the zcoord package (pip install ./clients/python, which brings pyzmq).
# PYTHON overrides the interpreter.
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
TOOLC=""

cleanup() {
    for pid in $TOKENS $MIRROR $TOOLC $SERVER; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    [ -n "$SERVER" ] && wait "$SERVER" 2>/dev/null || true
    rm -rf "$DIR"
}
trap cleanup EXIT

fail() {
    echo "FAIL: $*" >&2
    for f in serve.log ws.log tokens.out tokens.err mirror.out mirror.err tool.out tool.err send.out out err; do
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

"$PY" -c 'import zcoord' || fail "the zcoord package is not installed (pip install ./clients/python)"
# The secret of each server is read from its discovery file; one from the caller's environment
# would override it.
unset ZCOORD_SECRET

# The mirror's replica must equal what the server says now: state.sync + message.list.
#   compare.py ZCOORD DATA_DIR MIRROR_OUT SESSION_COUNT SID CONTENT...
# where SID's messages must have exactly the contents CONTENT... (in order).
cat >"$DIR/compare.py" <<'EOF'
import json, subprocess, sys

zcoord, data_dir, mirror_out, session_count, sid = sys.argv[1:6]
want_contents = sys.argv[6:]


def call(method, params=None):
    cmd = [zcoord, "--data-dir", data_dir, "call", method, json.dumps(params or {})]
    return json.loads(subprocess.run(cmd, capture_output=True, check=True, timeout=10).stdout)


lines = [l for l in open(mirror_out) if l.startswith("REPLICA ")]
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
# What the test did.
check("pending requests", replica["hitl"], sorted(r["id"] for r in sync["hitl"]))
check("session count", len(sessions), int(session_count))
contents = [m["content"] for m in replica["messages"].get(sid, [])]
check("the test's session", contents, want_contents)
for p in problems:
    print(p[:2000])
n = sum(len(m) for m in replica["messages"].values())
print(f"{len(sessions)} sessions, {n} messages, active {replica['active_session_id']}")
sys.exit(1 if problems else 0)
EOF

# 1. Server. A fast heartbeat, so that the mirror applies heartbeats between the turns' events
#    too; nothing waits for one (a subscriber is live when its instance.welcome arrives).
#    `timeout` is only a safety net; it forwards our SIGTERM to the server.
timeout 60 "$BIN" --data-dir "$DIR" serve --heartbeat-interval 0.2 >"$DIR/serve.log" 2>&1 &
SERVER=$!
server_ready_in() {
    kill -0 "$SERVER" 2>/dev/null || fail "server exited early"
    test -s "$1/instance.json"
}
wait_for 10 server_ready_in "$DIR" || fail "server did not write $DIR/instance.json"
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

# 3. tokens.py: wait until its subscription is live (it says "subscribed" once the server has
#    welcomed its subscriptions), then send; it must print the streamed reply and exit after one
#    turn.
timeout 20 "$PY" "$HERE/tokens.py" --data-dir "$DIR" --turns 1 >"$DIR/tokens.out" 2>"$DIR/tokens.err" &
TOKENS=$!
wait_for 10 grep -sq subscribed "$DIR/tokens.err" || fail "tokens.py was never welcomed"
timeout 20 "$BIN" --data-dir "$DIR" send "hello there" >"$DIR/send.out" 2>&1 \
    || fail "zcoord send exited $?"
rc=0
wait "$TOKENS" || rc=$?
TOKENS=""
[ "$rc" = 0 ] || fail "tokens.py exited $rc"
grep -qx 'echo: hello there' "$DIR/tokens.out" || fail "tokens.py did not print the reply"
echo "ok   tokens.py printed: $(cat "$DIR/tokens.out")"

# 4. mirror.py: started before the messages are sent and live (welcomed) before the first send.
#    It mirrors the session tokens.py saw from its snapshot, the two new messages from events,
#    and once no event but heartbeats (and welcomes) came for 1.5 s prints its replica on a
#    `REPLICA {json}` line and exits. That replica must equal what the server says now.
timeout 30 "$PY" "$HERE/mirror.py" --data-dir "$DIR" --dump-after-idle 1.5 \
    >"$DIR/mirror.out" 2>"$DIR/mirror.err" &
MIRROR=$!
mirror_live() {
    kill -0 "$MIRROR" 2>/dev/null || fail "mirror.py exited early"
    grep -sqx live "$DIR/mirror.err"
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
if grep -qE '^(resync |replay \(seq gap)' "$DIR/mirror.out"; then
    fail "mirror.py had to repair or resync (it lost events)"
fi
rc=0
timeout 30 "$PY" "$DIR/compare.py" "$BIN" "$DIR" "$DIR/mirror.out" 2 "$SID" \
    "first mirrored message" "echo: first mirrored message" "second one" "echo: second one" \
    >"$DIR/out" 2>&1 || rc=$?
[ "$rc" = 0 ] || fail "mirror.py's replica differs from state.sync + message.list"
echo "ok   mirror.py replica = state.sync + message.list: $(tail -n1 "$DIR/out")"

# 4b. client_tool.py: a client that offers the model one tool it runs itself. Once it is present
#     (it says "ready"), a turn that calls the tool gets the client's result, and the client says
#     goodbye after that one call.
timeout 20 "$PY" "$HERE/client_tool.py" --data-dir "$DIR" --calls 1 --client-id smoke-tool \
    >"$DIR/tool.out" 2>"$DIR/tool.err" &
TOOLC=$!
wait_for 10 grep -sq ready "$DIR/tool.err" || fail "client_tool.py never became ready"
timeout 20 "$BIN" --data-dir "$DIR" send $'reverse it\n/tool reverse_text {"text": "stressed"}' \
    >"$DIR/send.out" 2>&1 || fail "zcoord send (client tool) exited $?"
grep -q '\[reverse_text\] desserts' "$DIR/send.out" || fail "the client's result did not reach the model"
rc=0
wait "$TOOLC" || rc=$?
TOOLC=""
[ "$rc" = 0 ] || fail "client_tool.py exited $rc"
grep -q "ran reverse_text" "$DIR/tool.out" || fail "client_tool.py did not run the call"
echo "ok   client_tool.py ran the model's call: $(cat "$DIR/tool.out")"

# 5. Graceful shutdown: SIGTERM -> exit 0 and the discovery file removed.
kill -TERM "$SERVER"
rc=0
wait "$SERVER" || rc=$?
SERVER=""
[ "$rc" = 0 ] || fail "server exited $rc after SIGTERM"
[ ! -e "$DIR/instance.json" ] || fail "discovery file left behind"
echo "ok   server stopped cleanly"

# 6. Repairs: a server whose per-subscriber queue is tiny (--pub-hwm 5) streams a long reply
#    with no delay between tokens. Model output waits for a subscriber that reads, however
#    slowly, so tokens.py keeps up; mirror.py is stopped (SIGSTOP) for the turn, so once the
#    loopback buffers are full (40,001 token events, ~10 MB, are more than they hold) the model
#    waits for it, and after a second of that the server cuts it off and the stream goes on:
#    the mirror loses events for real. tokens.py must print the reply exactly, and mirror.py,
#    continued, must repair its seq gaps with events.replay (not one full resync: the replay
#    ring holds the whole turn) and end equal to the server.
HWM="$DIR/hwm"
mkdir -p "$HWM"
timeout 60 "$BIN" --data-dir "$HWM" serve --store memory --pub-hwm 5 --token-delay-ms 0 \
    >"$DIR/serve.log" 2>&1 &
SERVER=$!
wait_for 10 server_ready_in "$HWM" || fail "server (--pub-hwm 5) did not write $HWM/instance.json"
rm -f "$DIR"/mirror.* "$DIR"/tokens.*  # their "live" and "subscribed" are from the steps above
timeout 30 "$PY" "$HERE/tokens.py" --data-dir "$HWM" --turns 1 >"$DIR/tokens.out" 2>"$DIR/tokens.err" &
TOKENS=$!
wait_for 10 grep -sq subscribed "$DIR/tokens.err" || fail "tokens.py was never welcomed"
# The mirror last: its idle time counts from when it is live.
timeout 30 "$PY" "$HERE/mirror.py" --data-dir "$HWM" --dump-after-idle 3 \
    >"$DIR/mirror.out" 2>"$DIR/mirror.err" &
MIRROR=$!
wait_for 10 mirror_live || fail "mirror.py never went live"
MIRROR_PY=$(pgrep -P "$MIRROR")  # `timeout`'s child: the mirror itself
[ -n "$MIRROR_PY" ] || fail "mirror.py's process not found"
kill -STOP "$MIRROR_PY"
TEXT=$(seq 40000 | sed 's/.*/a/' | paste -sd' ')  # 40,000 words: the reply is 40,001 tokens
timeout 20 "$PY" "$HERE/call.py" --data-dir "$HWM" message.send "{\"content\": \"$TEXT\"}" \
    >"$DIR/out" 2>"$DIR/err" || fail "call.py message.send exited $?"
SID=$(sed -n 's/^ *"session_id": "\([0-9a-f-]*\)",\{0,1\}$/\1/p' "$DIR/out")
[ -n "$SID" ] || fail "message.send did not name its session"
rc=0
wait "$TOKENS" || rc=$?
TOKENS=""
[ "$rc" = 0 ] || fail "tokens.py exited $rc"
[ "$(wc -l <"$DIR/tokens.out")" = 1 ] && [ "$(cat "$DIR/tokens.out")" = "echo: $TEXT" ] \
    || fail "tokens.py did not print the reply exactly"
echo "ok   tokens.py printed the 40,001-token reply exactly" \
    "($(grep -c '^\[replayed tokens' "$DIR/tokens.err" || true) repairs with events.replay)"
kill -CONT "$MIRROR_PY"
rc=0
wait "$MIRROR" || rc=$?
MIRROR=""
[ "$rc" = 0 ] || fail "mirror.py exited $rc"
if grep -q '^resync' "$DIR/mirror.out"; then fail "mirror.py resynced instead of replaying"; fi
REPLAYS=$(grep -c '^replay (seq gap' "$DIR/mirror.out" || true)
[ "$REPLAYS" -gt 0 ] || fail "mirror.py saw no seq gap: the replay path was not exercised"
rc=0
timeout 30 "$PY" "$DIR/compare.py" "$BIN" "$HWM" "$DIR/mirror.out" 1 "$SID" "$TEXT" "echo: $TEXT" \
    >"$DIR/out" 2>&1 || rc=$?
[ "$rc" = 0 ] || fail "mirror.py's replica differs from state.sync + message.list"
echo "ok   mirror.py repaired $REPLAYS seq gaps with events.replay, replica = server:" \
    "$(tail -n1 "$DIR/out")"
kill -TERM "$SERVER"
rc=0
wait "$SERVER" || rc=$?
SERVER=""
[ "$rc" = 0 ] || fail "server (--pub-hwm 5) exited $rc after SIGTERM"

# 7. Workspaces: with no --data-dir, the server and the examples both map the current directory
#    to the same data directory (FNV-1a of its absolute path), so call.py finds the server.
mkdir -p "$DIR/home" "$DIR/my workspace"
(cd "$DIR/my workspace" && XDG_DATA_HOME="$DIR/home" exec timeout 60 "$BIN" serve --store memory \
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

# 8. PLAIN over tcp: a server bound to loopback tcp generates a secret into its (0600) discovery
#    file. The examples read it from there, or from $ZCOORD_SECRET, and set the two PLAIN socket
#    options on the DEALER and the SUB; a wrong secret gets no answer and a line in the log.
TCP="$DIR/tcp"
mkdir -p "$TCP"
timeout 60 "$BIN" --data-dir "$TCP" serve --store memory \
    --rpc tcp://127.0.0.1:0 --pub tcp://127.0.0.1:0 >"$DIR/serve.log" 2>&1 &
SERVER=$!
wait_for 10 server_ready_in "$TCP" || fail "tcp server did not write $TCP/instance.json"
field() {  # field KEY [SUBKEY]: a value from the tcp server's discovery file
    "$PY" -c 'import json, sys
v = json.load(open(sys.argv[1]))
for k in sys.argv[2:]:
    v = v[k]
print(v)' "$TCP/instance.json" "$@"
}
SECRET=$(field secret) || fail "the tcp server's discovery file holds no secret"
RPC=$(field endpoints rpc)
timeout 20 "$PY" "$HERE/call.py" --data-dir "$TCP" instance.ping >"$DIR/out" 2>"$DIR/err" \
    || fail "call.py over tcp (secret from the discovery file) exited $?"
grep -q '"status": "ok"' "$DIR/out" || fail "instance.ping over tcp did not answer ok"
echo "ok   call.py over tcp, secret from the discovery file: $RPC"
timeout 20 env ZCOORD_SECRET="$SECRET" "$PY" "$HERE/call.py" --data-dir "$DIR/nowhere" \
    --rpc "$RPC" instance.ping >"$DIR/out" 2>"$DIR/err" \
    || fail "call.py over tcp (secret from \$ZCOORD_SECRET) exited $?"
echo "ok   call.py over tcp, secret from \$ZCOORD_SECRET"
rc=0
timeout 20 env ZCOORD_SECRET=not-the-secret "$PY" "$HERE/call.py" --data-dir "$TCP" \
    --timeout-ms 500 instance.ping >"$DIR/out" 2>"$DIR/err" || rc=$?
[ "$rc" = 3 ] || fail "call.py with a wrong secret exited $rc, want 3 (no answer)"
wait_for 5 grep -q 'connection refused at the handshake.*wrong user name or secret' \
    "$DIR/serve.log" || fail "the server did not log the refused peer"
echo "ok   a wrong secret gets no answer: $(grep -m1 -o 'peer=[^ ]*' "$DIR/serve.log")"
rm -f "$DIR"/mirror.* "$DIR"/tokens.*
timeout 20 "$PY" "$HERE/tokens.py" --data-dir "$TCP" --turns 1 >"$DIR/tokens.out" 2>"$DIR/tokens.err" &
TOKENS=$!
wait_for 10 grep -sq subscribed "$DIR/tokens.err" || fail "tokens.py was never welcomed over tcp"
timeout 30 "$PY" "$HERE/mirror.py" --data-dir "$TCP" --dump-after-idle 1.5 \
    >"$DIR/mirror.out" 2>"$DIR/mirror.err" &
MIRROR=$!
wait_for 10 mirror_live || fail "mirror.py never went live over tcp"
timeout 20 "$PY" "$HERE/call.py" --data-dir "$TCP" message.send '{"content": "over tcp"}' \
    >"$DIR/out" 2>"$DIR/err" || fail "call.py message.send over tcp exited $?"
SID=$(sed -n 's/^ *"session_id": "\([0-9a-f-]*\)",\{0,1\}$/\1/p' "$DIR/out")
rc=0
wait "$TOKENS" || rc=$?
TOKENS=""
[ "$rc" = 0 ] || fail "tokens.py over tcp exited $rc"
grep -qx 'echo: over tcp' "$DIR/tokens.out" || fail "tokens.py over tcp did not print the reply"
echo "ok   tokens.py over tcp printed: $(cat "$DIR/tokens.out")"
rc=0
wait "$MIRROR" || rc=$?
MIRROR=""
[ "$rc" = 0 ] || fail "mirror.py over tcp exited $rc"
rc=0
timeout 30 "$PY" "$DIR/compare.py" "$BIN" "$TCP" "$DIR/mirror.out" 1 "$SID" "over tcp" \
    "echo: over tcp" >"$DIR/out" 2>&1 || rc=$?
[ "$rc" = 0 ] || fail "mirror.py's replica over tcp differs from state.sync + message.list"
echo "ok   mirror.py over tcp, replica = server: $(tail -n1 "$DIR/out")"
kill -TERM "$SERVER"
rc=0
wait "$SERVER" || rc=$?
SERVER=""
[ "$rc" = 0 ] || fail "tcp server exited $rc after SIGTERM"

# 9. CURVE over tcp (serve --curve; --allow-remote implies it, on loopback here as everywhere in
#    this script): curve.py makes client key pairs, one of them is authorised in the server's
#    authorized_keys, and the server's public key comes from the discovery file. The authorised
#    client gets a reply and an event; an unauthorised key, or the authorised key with a wrong
#    server key, gets neither.
CUR="$DIR/curve"
mkdir -p "$CUR"
"$PY" "$HERE/curve.py" keygen "$DIR/alice.key" >"$DIR/alice.pub" || fail "curve.py keygen exited $?"
"$PY" "$HERE/curve.py" keygen "$DIR/mallory.key" >"$DIR/mallory.pub" || fail "curve.py keygen exited $?"
{ echo "# alice"; cat "$DIR/alice.pub"; } >"$CUR/authorized_keys"
chmod 600 "$CUR/authorized_keys"
timeout 60 "$BIN" --data-dir "$CUR" serve --store memory --curve --heartbeat-interval 0.2 \
    --rpc tcp://127.0.0.1:0 --pub tcp://127.0.0.1:0 >"$DIR/serve.log" 2>&1 &
SERVER=$!
wait_for 10 server_ready_in "$CUR" || fail "CURVE server did not write $CUR/instance.json"
timeout 20 "$PY" "$HERE/curve.py" --data-dir "$CUR" --key "$DIR/alice.key" >"$DIR/out" 2>"$DIR/err" \
    || fail "curve.py with an authorised key exited $?"
grep -qx 'reply: ok' "$DIR/out" && grep -q '^event: ' "$DIR/out" \
    || fail "curve.py with an authorised key got no reply or no event"
echo "ok   CURVE: an authorised key gets a reply and an event ($(grep '^event' "$DIR/out"))"
rc=0
timeout 20 "$PY" "$HERE/curve.py" --data-dir "$CUR" --key "$DIR/mallory.key" --timeout-ms 700 \
    >"$DIR/out" 2>"$DIR/err" || rc=$?
[ "$rc" = 3 ] || fail "curve.py with an unauthorised key exited $rc, want 3 (nothing at all)"
wait_for 5 grep -qF "client key \"$(cat "$DIR/mallory.pub")\" is not in the authorised keys" \
    "$DIR/serve.log" || fail "the server did not log the unauthorised key"
echo "ok   CURVE: an unauthorised key gets no reply and no event"
WRONG=$("$PY" -c 'import zmq; print(zmq.curve_keypair()[0].decode())')
rc=0
timeout 20 "$PY" "$HERE/curve.py" --data-dir "$CUR" --key "$DIR/alice.key" --server-key "$WRONG" \
    --timeout-ms 700 >"$DIR/out" 2>"$DIR/err" || rc=$?
[ "$rc" = 3 ] || fail "curve.py with a wrong server key exited $rc, want 3 (nothing at all)"
echo "ok   CURVE: a client with the wrong server key gets no reply and no event"
kill -TERM "$SERVER"
rc=0
wait "$SERVER" || rc=$?
SERVER=""
[ "$rc" = 0 ] || fail "CURVE server exited $rc after SIGTERM"
echo "PASS"
