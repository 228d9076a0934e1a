#!/bin/bash
# The answer that says why a connection is closed reaches the peer, even
# when the peer is still sending: the AE for a frame no integration accepts
# and the AR for an oversized frame (docs/mllp.md). Closing with unread
# input would make the kernel send a RST, which throws away the answers the
# peer has not read yet; the bridge shuts its side, drains the peer's input
# and closes when the peer does, or after MLLP_IN_LINGER_MS (5 s).
# Found by tests/e2e/e2e_hostile.sh: through the tunnel, the random-bytes
# peer's AE was lost in 2 runs of 6.
. tests/integration/lib.sh

MLLP=10959 UP=18459 OBS_PORT=19159
CONF=$TMP/bridge.yaml
lab_conf "$CONF" $MLLP $UP $OBS_PORT "match: { sending_facility: LAB }" \
	"mllp: { max_frame: 1MiB }"
start_sink up $UP || exit 1
start_bridge "$CONF" $MLLP || exit 1

# peer N TAIL HOLD: N empty frames (each answered AR), then TAIL, sent from
# one thread while another reads every answer; after sending, the peer
# keeps its side open HOLD seconds. Prints "answers AR AE how seconds".
cat >"$TMP/peer.py" <<'EOF'
import socket, sys, threading, time
port, n, tail, hold = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
tails = {
    # a frame without MSH: no integration accepts it (AE, close), then junk
    "unknown": b"\x0b<x/>\x1c\x0d" + b"j" * 4_000_000,
    # a frame past max_frame (AR, close), and the rest of it still coming
    "oversize": b"\x0b" + b"x" * 6_000_000 + b"\x1c\x0d",
}
s = socket.create_connection(("127.0.0.1", port))
data = b"\x0b\x1c\x0d" * n + tails[tail]
def send():
    try:
        s.sendall(data)
        time.sleep(hold)
        s.shutdown(socket.SHUT_WR)
    except OSError:
        pass
sender = threading.Thread(target=send, daemon=True)
sender.start()
t0, buf, how = time.monotonic(), b"", "timeout"
s.settimeout(20)
try:
    while True:
        d = s.recv(65536)
        if not d:
            how = "eof"
            break
        buf += d
except OSError as e:
    how = type(e).__name__
print(buf.count(b"\x1c\x0d"), buf.count(b"MSA|AR"), buf.count(b"MSA|AE"), how,
      "%.1f" % (time.monotonic() - t0), flush=True)
sender.join()  # our side stays open for HOLD seconds
EOF

check() { # NAME N TAIL HOLD WANT_AR WANT_AE
	local out
	out=$(python3 "$TMP/peer.py" $MLLP "$2" "$3" "$4")
	echo "# $1: answers AR AE how seconds = $out"
	read -r answers ar ae how _ <<<"$out"
	expect "$1: every answer arrived ($((${5} + ${6})): $answers)" \
		test "$answers" = $((${5} + ${6})) -a "$ar" = "$5" -a "$ae" = "$6"
	expect "$1: the bridge closed politely, no reset ($how)" test "$how" = eof
}

check "unknown sender behind 2,000 empty frames, 4 MB still coming" 2000 unknown 0 2000 1
check "oversized frame behind 2,000 empty frames" 2000 oversize 0 2001 0
check "20,000 empty frames, then an unknown sender" 20000 unknown 0 20000 1

# A peer that keeps its side open after sending: it hears the answers and
# the bridge's FIN at once; the bridge drains it at most MLLP_IN_LINGER_MS,
# then lets it go.
python3 "$TMP/peer.py" $MLLP 10 unknown 30 >"$TMP/holder.out" 2>&1 &
HOLDER=$!
PIDS="$PIDS $HOLDER"
expect "a peer that never closes: hears all 11 answers and the FIN" \
	wait_until 10 'grep -qE "^11 10 1 eof" "$TMP/holder.out"'
t0=$(date +%s%N)
expect "... while the bridge still drains it (1 connection open)" \
	test "$(metric mllp_connections_open)" = 1
expect "... and closes it after the linger time" \
	wait_until 10 'test "$(metric mllp_connections_open)" = 0'
ms=$((($(date +%s%N) - t0) / 1000000))
expect "... about 5 s later (${ms} ms)" test "$ms" -ge 3500 -a "$ms" -lt 8000
finish
