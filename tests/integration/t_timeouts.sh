#!/bin/bash
# Hostile and sloppy peers: a frame that never ends is discarded at
# frame_timeout, an idle connection is closed at idle_timeout, a frame over
# max_frame gets a NAK and the connection is closed, and the config check
# reports every error with FILE:LINE.
. tests/integration/lib.sh

MLLP=10967 UP=18447 OBS_PORT=19147
CONF=$TMP/bridge.yaml
cat >"$CONF" <<EOF
gate: open # no tunnels: the bridge alone
spool: { path: $TMP/spool.db, retention: 2s }
observability: { listen: 127.0.0.1:$OBS_PORT }
log_phi: true
integrations:
  - name: lab
    listen: 127.0.0.1:$MLLP
    sources: [127.0.0.1]
    mllp: { max_frame: 4KiB, frame_timeout: 1s, idle_timeout: 2s }
    upstream: { url: "https://localhost:$UP/v1", ca_file: $CERTS/ca.pem }
EOF
expect "mllp-bridge -n accepts a valid file" "$BIN/mllp-bridge" -n -c "$CONF"
start_bridge "$CONF" $MLLP || exit 1
S=$SAMPLES

"$BIN/mllp-send" -r -t 2500 127.0.0.1:$MLLP "$S/frames/truncated.mllp" >"$TMP/out" &
sender=$!
expect "a truncated frame is discarded at frame_timeout" \
	wait_until 5 'test "$(metric mllp_frame_timeouts_total)" -eq 1'
wait $sender
expect "... and never acknowledged" test ! -s "$TMP/out"

t0=$(date +%s%N)
exec 5<>/dev/tcp/127.0.0.1/$MLLP
cat <&5 >/dev/null
ms=$((($(date +%s%N) - t0) / 1000000))
expect "an idle connection is closed at idle_timeout ($ms ms)" test "$ms" -ge 1800 -a "$ms" -lt 6000
expect "... and counted" test "$(metric mllp_idle_timeouts_total)" -ge 1

{
	printf 'MSH|^~\\&|A|B|C|D|1||ADT^A01|BIG1|P|2.5.1\r'
	head -c 5000 /dev/zero | tr '\0' 'x'
} >"$TMP/big.hl7"
out=$("$BIN/mllp-send" -t 2000 127.0.0.1:$MLLP "$TMP/big.hl7")
expect "a frame over max_frame gets AR saying so" grep -q 'MSA|AR|.*max_frame' <<<"$out"
expect "... and is counted" test "$(metric mllp_oversize_frames_total)" -eq 1
expect "... and is not forwarded or stored" bash -c "! spool list --state all | grep -q BIG1"

# log_phi: true puts the header of a rejected message in the log.
"$BIN/mllp-send" 127.0.0.1:$MLLP "$S/bad_no_control_id.hl7" >/dev/null
expect "with log_phi: true a rejection logs the message header" \
	grep -q 'event=frame_rejected .*msh="MSH|^~\\\\&|' "$TMP/bridge.log"

# Retention: a delivered row is purged once retention (2 s) has passed.
start_sink up $UP || exit 1
hl7_msg KEEP1 >"$TMP/keep.hl7"
"$BIN/mllp-send" 127.0.0.1:$MLLP "$TMP/keep.hl7" >/dev/null
expect "a delivered message is kept in the spool" \
	wait_until 5 'spool list --state delivered | grep -q KEEP1'
expect "... and purged after its retention" \
	wait_until 8 '! spool list --state all | grep -q KEEP1'
expect "... which the log reports" grep -q 'event=purged rows=' "$TMP/bridge.log"

# Configuration errors: every one, with its line.
cat >"$TMP/bad.yaml" <<EOF
spool: $TMP/spool.db
integrations:
  - name: lab
    listen: 127.0.0.1:80
    sources: [127.0.0.1/33]
    ack: sometimes
    upstream: { url: "http://x.test/", ca_file: /nonexistent/ca.pem }
gate: open # last: the errors above keep their lines
EOF
"$BIN/mllp-bridge" -n -c "$TMP/bad.yaml" >"$TMP/cfg.out" 2>&1
rc=$?
expect "-n on a bad file exits 1" test "$rc" -eq 1
for want in "bad.yaml:4: .*port 80" "bad.yaml:5: " "bad.yaml:6: .*sometimes" \
	"bad.yaml:7: .*https" "bad.yaml:7: .*/nonexistent/ca.pem"; do
	expect "config error reported: $want" grep -qE "$want" "$TMP/cfg.out"
done
finish
