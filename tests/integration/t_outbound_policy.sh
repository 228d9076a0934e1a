#!/bin/bash
# Outbound senders' policies, bridge alone (gate: open): max_attempts → dead
# (no ACK, wrong MSA-2; GET shows the last answer as ack) and the next
# message goes, `spool stats` counts them under the destination; Prefer:
# wait → 502 for a dead message; the backoff; release 2 (NAK → the same
# message again on the same connection); a receiver that is down (messages
# wait, then drain in order); the idle timer never closes a connection whose
# ACK is awaited; a receiver that closes an idle connection; GET's 403/404
# and 405.
. tests/integration/lib.sh

# Ports (loopback; shared with t_outbound.sh, which runs before, never at
# the same time): 10993 the unused inbound listener, 18490 HTTPS, 18491
# /metrics, receivers 10994 (dead), 18496 (r2), 18497 (down), 18498 (idle).
MLLP=10993 HTTPS=18490 OBS_PORT=18491
P_DEAD=10994 P_R2=18496 P_DOWN=18497 P_IDLE=18498
CONF=$TMP/bridge.yaml
TOKEN=outbound-policy-token-0123456789
T_R2=outbound-r2-only-token-0123456789
printf '%s *\n%s r2\n' "$TOKEN" "$T_R2" >"$TMP/tokens"
chmod 600 "$TMP/tokens"
{
	outbound_conf_head 18499
	cat <<EOF
destinations:
  - { name: dead, address: 127.0.0.1:$P_DEAD, ack_timeout: 500ms, max_attempts: 3 }
  - { name: r2, address: 127.0.0.1:$P_R2, ack_timeout: 2s, mllp: { release: 2 } }
  - { name: down, address: 127.0.0.1:$P_DOWN, ack_timeout: 2s }
  - { name: idle, address: 127.0.0.1:$P_IDLE, ack_timeout: 5s, idle_timeout: 1s }
https:
  listen: 127.0.0.1:$HTTPS
  cert: $CERTS/server.pem
  key: $CERTS/server.key
  tokens_file: $TMP/tokens
EOF
} >"$CONF"

out_msg() {
	printf 'MSH|^~\\&|CLOUD|ACME|LIS|HOSP|20261130120000||ORM^O01^ORM_O01|%s|P|2.5.1\rPID|1||%s^^^HOSP^MR||DOE^JANE\r' \
		"$1" "$1" >"$TMP/$1.hl7"
}
# post DEST MSH10 [CURL ARGS...]: prints "STATUS LOCATION"; body in $TMP/last.body
post() {
	local dest=$1 id=$2
	shift 2
	out_msg "$id"
	curl -s --max-time 30 --cacert "$CERTS/ca.pem" -H "Authorization: Bearer $TOKEN" \
		-H 'Content-Type: x-application/hl7-v2+er7' --data-binary "@$TMP/$id.hl7" \
		-D "$TMP/last.hdr" -o "$TMP/last.body" -w '%{http_code} %header{location}' "$@" \
		"https://127.0.0.1:$HTTPS/v1/destinations/$dest/messages"
}
get() {
	curl -s --max-time 10 --cacert "$CERTS/ca.pem" -H "Authorization: Bearer ${2:-$TOKEN}" \
		"https://127.0.0.1:$HTTPS/v1/messages/$1"
}
jfield() { grep -o "\"$1\":\(\"[^\"]*\"\|[0-9a-z]*\)" | head -n 1 | cut -d: -f2- | tr -d '"'; }

start_recv dead $P_DEAD --rule MSH10=D01:noack --rule MSH10=D02:wrong-msa2 || exit 1
DEAD_RECV=$RECV_PID
start_recv r2 $P_R2 --release 2 --rule MSH10=N01@1:nak2 || exit 1
start_recv idle $P_IDLE --rule MSH10=L01:delay=2500 || exit 1
IDLE_RECV=$RECV_PID
start_obridge
T0=$(date +%s%N)

# ---- max_attempts → dead; 502 for Prefer: wait ----------------------------------
r1=$(post dead D01 -H 'Prefer: wait=10')
b1=$(tr -d '\r\n' <"$TMP/last.body")
expect "dead: no ACK 3 times → Prefer: wait answers 502 with a Location ($r1)" \
	bash -c "grep -qE '^502 /v1/messages/[0-9]+$' <<<'$r1'"
expect "dead: ... text/plain" grep -qi '^content-type: text/plain' "$TMP/last.hdr"
expect "dead: ... the 502 reason says why: no ACK within ack_timeout (got: $b1)" \
	grep -qi 'ack' <<<"$b1"
r2=$(post dead D02 -H 'Prefer: wait=10')
b2=$(tr -d '\r\n' <"$TMP/last.body")
expect "dead: wrong MSA-2 3 times → 502 ($r2)" bash -c "grep -qE '^502 ' <<<'$r2'"
expect "dead: ... the 502 reason says why: MSA-2 mismatch (got: $b2)" grep -qi 'MSA-2' <<<"$b2"
r3=$(post dead D03 -H 'Prefer: wait=10')
expect "dead: the next message goes after a dead one and is acked (200 with MSA|AA|D03)" \
	bash -c "grep -q '^200 ' <<<'$r3' && tr '\r' '\n' <'$TMP/last.body' | grep -q '^MSA|AA|D03'"
expect "dead: arrivals D01 ×3, D02 ×3, D03" \
	test "$(arrivals dead | tr '\n' ' ')" = "D01 D01 D01 D02 D02 D02 D03 "
j1=$(get "${r1##*/}") j2=$(get "${r2##*/}")
# has JSON REGEX...: every REGEX is found in JSON
has() {
	local j=$1
	shift
	for re in "$@"; do grep -q -- "$re" <<<"$j" || { echo "# not in $j: $re"; return 1; }; done
}
expect "dead: GET D01: dead, attempts 3, last_error no ACK within ack_timeout" \
	has "$j1" '"state":"dead"' '"attempts":3' '"last_error":"no ACK within ack_timeout'
expect "dead: GET D02: dead, attempts 3, last_error MSA-2 mismatch" \
	has "$j2" '"state":"dead"' '"attempts":3' '"last_error":"[^"]*MSA-2'
# The analyst sees what the receiver said last: the wrong ACK of the third
# send (mllp-recv's MSA-2 is WRONG-D02 once the message before was D02), and
# nothing for D01, whose last send got no answer.
expect "dead: GET D02: ack is the receiver's last answer (MSA|AA|WRONG-D02)" \
	has "$j2" '"ack":"MSH|[^"]*MSA|AA|WRONG-D02\\r'
expect "dead: GET D01: ack null (no answer to its last send)" has "$j1" '"ack":null'
expect "dead: the log says mllp_out_dead for both" \
	test "$(grep -c 'event=mllp_out_dead destination=dead' "$TMP/bridge.log")" -eq 2
# The operator's view: the two dead letters under the destination, in the
# outbound section (no inbound message exists, so the integration "inb" has
# no line). D03's ACK reaches the spool within the commit flush (100 ms).
stats_ok() {
	"$BIN/mllp-bridge" -c "$CONF" spool stats >"$TMP/stats.out" 2>&1 &&
		awk '$1 == "DESTINATION" {out = 1} out && $1 == "dead" && $2 == 0 && $3 == 2 {ok = 1}
		     $1 == "inb" {bad = 1} END {exit !(ok && !bad)}' "$TMP/stats.out"
}
expect "dead: spool stats lists destination dead with 0 queued and 2 dead" wait_until 3 stats_ok
echo "# spool stats: $(tr '\n' '|' <"$TMP/stats.out")"
# timings of D01: arrival → close (ack_timeout) → next arrival (backoff)
awk '$1 == "close" {c[$2] = $3} $1 ~ /^[0-9]+$/ && $4 == "D01" {a[$2] = $6; n[++k] = $2}
     END {for (i = 1; i <= k; i++) print a[n[i]], c[n[i]]}' "$TMP/dead.rlog" >"$TMP/d01.times"
to=$(awk '{printf "%d ", $2 - $1}' "$TMP/d01.times")
bo=$(awk 'NR > 1 {printf "%d ", $1 - prev} {prev = $2}' "$TMP/d01.times")
echo "# D01: ack timeouts (ms) $to; backoffs (ms) $bo"
expect "dead: each attempt closed about ack_timeout (500 ms) after the send ($to)" \
	awk -v s="$to" 'BEGIN {n = split(s, v, " "); for (i = 1; i <= n; i++) if (v[i] < 480 || v[i] > 900) exit 1; exit n != 3}'
expect "dead: the backoff grows from retry.initial (100 ms), doubling ($bo)" \
	awk -v s="$bo" 'BEGIN {n = split(s, v, " "); exit !(n == 2 && v[1] >= 45 && v[1] <= 400 && v[2] > v[1] && v[2] <= 600)}'
lap "dead done"

# ---- release 2 ----------------------------------------------------------------------
r=$(post r2 N01 -H 'Prefer: wait=10')
expect "r2: NAK then commit ACK: Prefer: wait answers 200 ($r)" bash -c "grep -q '^200 ' <<<'$r'"
expect "r2: ... the body is the commit ACK block's 0x06" test "$(od -An -tx1 "$TMP/last.body" | tr -d ' \n')" = 06
r=$(post r2 N02)
expect "r2: N01 sent twice on one connection (the NAK keeps it), then N02" \
	wait_until 5 'test "$(awk '"'"'$1 ~ /^[0-9]+$/ {print $4 "@" $2}'"'"' "$TMP/r2.rlog" | tr "\n" " ")" = "N01@1 N01@1 N02@1 "'
expect "r2: N02 acked" wait_until 5 "get ${r##*/} | grep -q '\"state\":\"acked\"'"
lap "release 2 done"

# ---- a receiver that is down ---------------------------------------------------------
for m in W01 W02 W03; do post down $m >/dev/null; done
sleep 1
q=$(metric 'mllp_out_queued{destination="down"}')
expect "down: the three wait (mllp_out_queued{destination=\"down\"} = $q)" test "$q" = 3
b=$(metric mllp_out_body_bytes) want=$(cat "$TMP"/W0[123].hl7 | wc -c)
expect "down: their bodies are in memory (mllp_out_body_bytes = $b, bodies $want bytes)" \
	test "$b" = "$want"
wid=$(sqlite3 "$TMP/spool.db" "SELECT min(id) FROM messages WHERE channel=1 AND integration='down'")
j=$(get "${wid:-none}")
expect "down: ... GET W01 says queued, last_error connection refused ($(jfield last_error <<<"$j"))" \
	bash -c "grep -q '\"state\":\"queued\"' <<<'$j' && grep -qi 'refused' <<<'$j'"
start_recv down $P_DOWN || exit 1
expect "down: once the receiver listens they drain, in order, on one connection" \
	wait_until 5 'test "$(awk '"'"'$1 ~ /^[0-9]+$/ {print $4 "@" $2}'"'"' "$TMP/down.rlog" | tr "\n" " ")" = "W01@1 W02@1 W03@1 "'
expect "down: mllp_out_queued back to 0" wait_until 3 "test \"\$(metric 'mllp_out_queued{destination=\"down\"}')\" = 0"
expect "down: mllp_out_body_bytes back to 0" test "$(metric mllp_out_body_bytes)" = 0
lap "down done"

# ---- idle timer and an ACK awaited; the receiver closing --------------------------
r=$(post idle L01 -H 'Prefer: wait=10')
expect "idle: an ACK 2.5 s late with idle_timeout 1s still arrives (200 with MSA|AA|L01)" \
	bash -c "grep -q '^200 ' <<<'$r' && tr '\r' '\n' <'$TMP/last.body' | grep -q '^MSA|AA|L01'"
expect "idle: ... L01 was sent once" test "$(arrivals idle | grep -c L01)" -eq 1
expect "idle: ... and the connection was kept until then (closed by the bridge 1 s after the ACK)" \
	wait_until 3 'grep -q "^close 1 .* by-peer" "$TMP/idle.rlog"'
# a receiver that closes connections idle for 700 ms (before the bridge would)
stop_pid "$IDLE_RECV"
start_recv idle2 $P_IDLE --idle-timeout 700 || exit 1
r=$(post idle L02 -H 'Prefer: wait=10')
expect "idle: L02 on a fresh receiver (200)" bash -c "grep -q '^200 ' <<<'$r'"
expect "idle: that receiver closes the idle connection (its idle-timeout 700 ms)" \
	wait_until 3 'grep -q "^close 1 .* by-us" "$TMP/idle2.rlog"'
r=$(post idle L03 -H 'Prefer: wait=10')
expect "idle: the next message goes on a new connection, once (200)" \
	bash -c "grep -q '^200 ' <<<'$r' && test \"\$(awk '\$1 ~ /^[0-9]+\$/ && \$4 == \"L03\" {print \$2}' '$TMP/idle2.rlog')\" = 2"
expect "idle: no retry was needed" bash -c "! grep -q 'event=mllp_out_retry destination=idle' '$TMP/bridge.log'"
lap "idle done"

# ---- GET -------------------------------------------------------------------------------
code() { curl -s -o /dev/null -w '%{http_code}' --cacert "$CERTS/ca.pem" "$@"; }
expect "GET with a token of another destination → 403" \
	test "$(code -H "Authorization: Bearer $T_R2" "https://127.0.0.1:$HTTPS/v1/messages/${r1##*/}")" = 403
expect "GET without a credential → 401" test "$(code "https://127.0.0.1:$HTTPS/v1/messages/${r1##*/}")" = 401
for id in 999999 abc 0 -1; do
	expect "GET /v1/messages/$id → 404" \
		test "$(code -H "Authorization: Bearer $TOKEN" "https://127.0.0.1:$HTTPS/v1/messages/$id")" = 404
done
hdr=$(curl -s -D - -o /dev/null --cacert "$CERTS/ca.pem" -H "Authorization: Bearer $TOKEN" \
	"https://127.0.0.1:$HTTPS/v1/destinations/dead/messages" | tr -d '\r')
expect "GET on the POST path → 405 with Allow: POST" \
	bash -c "grep -q '^HTTP/1.1 405' <<<'$hdr' && grep -qi '^allow: POST' <<<'$hdr'"

# ---- an operator's replay of a dead message, while the bridge runs ----------------------
# The receiver is fixed (no more rules): `spool replay` puts D01 back in its
# sender's queue within the once-a-second poll; it is sent and acked.
stop_pid "$DEAD_RECV"
start_recv dead2 $P_DEAD || exit 1
id1=${r1##*/}
expect "replay: mllp-bridge spool replay $id1 (the dead D01)" 	bash -c "'$BIN/mllp-bridge' -c '$CONF' spool replay '$id1' >'$TMP/replay.out' 2>&1"
expect "replay: D01 reaches the fixed receiver within 5 s, without a restart" 	wait_until 5 'arrivals dead2 | grep -qx D01'
expect "replay: GET D01: acked, its last_error cleared, the new ACK kept" 	wait_until 5 'has "$(get "$id1")" "\"state\":\"acked\"" "\"last_error\":null" "MSA|AA|D01"'
expect "replay: the bridge logged outbound_replayed id=$id1" 	grep -q "event=outbound_replayed id=$id1" "$TMP/bridge.log"

expect "the bridge is still running" kill -0 "$BRIDGE_PID"
finish
