#!/bin/bash
# e2e_tunnel_down (issue 11, scenario 3): the tunnel torn down mid-stream.
#
# While the cloud keeps posting outbound messages (cloud -> the LIS) and the
# hospital keeps sending inbound ones (-> the cloud), the hospital's gateway
# goes away: it unloads its connection (so that it refuses the edge's
# re-initiation for a while, as a gateway down for maintenance would) and
# terminates the IKE_SA (`swanctl --terminate --ike`). While it is down:
#   - posts still get 202 and wait: GET says queued/sending, `appliancectl
#     status --json` shows lis waiting_gate with a queue, /metrics
#     mllp_out_waiting_gate{destination="lis"} 1, mllp_gate_cidrs 0;
#   - the LIS receives nothing, while the posts go on being accepted;
#   - inbound is refused: the hospital has no route into 203.0.113.0/26 any
#     more (its CHILD_SA and the route charon put in table 220 are gone), so
#     mllp-send fails at connect with "Network is unreachable" and the
#     edge's listener accepts nothing (mllp_connections_total unchanged while
#     the hospital keeps trying); and a peer inside remote_ts that does reach
#     the listener (203.0.113.100 on the edge's own lo, no tunnel involved) is
#     closed by the gate before a byte is read (limit="gate" counted);
#   - nothing leaves in clear: e2e_stop's leak check on the captures.
# Then the hospital loads its connection again, the supervisor's own retry
# (1 s doubling, docs/appliance.md) brings the tunnel back, and every posted
# message reaches the LIS in post order, byte-exact, acked; every inbound
# message the hospital got a commit ACK for is at the cloud in send order,
# byte-exact; inbound works again.
#
# Run alone: BUILD=build bash tests/e2e/e2e_tunnel_down.sh (root).
. "$(dirname "$0")/e2e-lib.sh"

T0=$(now_ms)
KNOCK=203.0.113.100 # inside the child's remote_ts; on the edge's lo

e2e_setup
ip -n "$NS_EDGE" addr add "$KNOCK/32" dev lo
e2e_start
T_UP=$(now_ms)

met() { ap_metric "$1{destination=\"lis\"}"; }
lis_lines() { awk '$1 ~ /^[0-9]+$/' "$E2E_RECV_LOG" 2>/dev/null | grep -c .; }
conns_lab() { ap_metric 'mllp_connections_total{listen="203.0.113.1:9960"}'; }
refused_gate() { ap_metric 'mllp_connections_refused_total{limit="gate"}'; }

# --- the two streams ---------------------------------------------------------------------
# Outbound: one POST every ~0.1 s until $TMP/stop-out exists; per post a line
# "ID CODE LOCATION" in $TMP/posts.log (written after the answer).
mkdir -p "$TMP/out"
poster() {
	local i=0 id code loc
	while [ ! -e "$TMP/stop-out" ]; do
		i=$((i + 1))
		id=TD-OUT-$i
		hl7_msg "$id" CLOUD >"$TMP/out/$id.hl7"
		code=$(e2e_api -H 'Content-Type: x-application/hl7-v2+er7' --data-binary @"$TMP/out/$id.hl7" \
			-D "$TMP/out/$id.hdr" -o "$TMP/out/$id.body" -w '%{http_code}' \
			"$E2E_API/v1/destinations/lis/messages")
		loc=$(tr -d '\r' <"$TMP/out/$id.hdr" | awk 'tolower($1) == "location:" { print $2 }')
		echo "$id ${code:-none} ${loc:--}" >>"$TMP/posts.log"
		sleep 0.1
	done
}
# Inbound: one message per connection (mllp-send from 203.0.113.66, one
# patient, so one lane) every ~0.1 s until $TMP/stop-in exists; per attempt
# "ID acked|failed OUTPUT".
mkdir -p "$TMP/in"
in_msg() {
	printf 'MSH|^~\\&|APP|LAB|REDOX|CLOUD|20261130120000||ORU^R01^ORU_R01|%s|P|2.5.1\rPID|1||TDPAT1^^^H^MR||DOWN^TUNNEL\rOBX|1|ST|X^Y||%s\r' \
		"$1" "$1"
}
sender() {
	local i=0 id out
	while [ ! -e "$TMP/stop-in" ]; do
		i=$((i + 1))
		id=TD-IN-$i
		in_msg "$id" >"$TMP/in/$id.hl7"
		# timeout: a connect whose SYN left just before the cut waits
		# for TCP's retries (minutes); mllp-send's -t covers the answer only
		out=$(ip netns exec "$NS_HOSP" timeout 5 "$BIN_ABS/mllp-send" -b 203.0.113.66 -t 3000 \
			"$E2E_LAB" "$TMP/in/$id.hl7" 2>&1 | tr '\n' ' ')
		if [ "$out" = "R2_ACK " ]; then
			echo "$id acked" >>"$TMP/sends.log"
		else
			echo "$id failed $out" >>"$TMP/sends.log"
		fi
		sleep 0.1
	done
}
# knock: from $KNOCK on the edge itself, one frame to the lab listener;
# prints "closed|reset|timeout, N bytes answered" or "answered, N bytes".
knock() {
	ip netns exec "$NS_EDGE" python3 - "$KNOCK" "$TMP/probe.hl7" <<'EOF'
import socket, sys
s = socket.socket()
s.bind((sys.argv[1], 0))
s.settimeout(5)
try:
    s.connect(("203.0.113.1", 9960))
except OSError as e:
    print("connect failed:", e); sys.exit(0)
try:
    s.sendall(b"\x0b" + open(sys.argv[2], "rb").read() + b"\x1c\r")
except OSError as e:
    print("send failed:", e)
got = b""
try:
    while True:
        d = s.recv(65536)
        if not d:
            print("closed, %d bytes answered" % len(got)); break
        got += d
        if got.endswith(b"\x1c\r"):
            print("answered, %d bytes" % len(got)); break
except ConnectionResetError:
    print("reset, %d bytes answered" % len(got))
except socket.timeout:
    print("timeout, %d bytes answered" % len(got))
EOF
}
posts() { grep -c . "$TMP/posts.log" 2>/dev/null || echo 0; }
posts_202() { awk '$2 == 202' "$TMP/posts.log" 2>/dev/null | grep -c .; }
sends() { grep -c . "$TMP/sends.log" 2>/dev/null || echo 0; }

poster &
POSTER=$!
sender &
SENDER=$!

# mid-stream: both directions have moved before the cut
e2e_expect "before: outbound flowing (the LIS got >= 5 messages) and inbound ACKed (>= 5)" \
	wait_until 20 'test "$(lis_lines)" -ge 5 -a "$(grep -c " acked" "$TMP/sends.log" 2>/dev/null)" -ge 5' ||
	{ touch "$TMP/stop-out" "$TMP/stop-in"; wait "$POSTER" "$SENDER"; e2e_stop; finish; }

# --- the cut: the hospital's gateway goes away --------------------------------------------
printf 'connections {\n}\n' >"$CH_TMP/hospital-off.conf"
mkdir -p "$CH_TMP/hospital-off" && mv "$CH_TMP/hospital-off.conf" "$CH_TMP/hospital-off/swanctl.conf"
e2e_expect "cut: the hospital unloads its connection (its IKE_SA stays until terminated)" \
	swanctl_load peer "$CH_TMP/hospital-off" >>"$TMP/swanctl.log" 2>&1
T_TERM=$(now_ms)
e2e_expect "cut: swanctl --terminate --ike $E2E_TUNNEL on the hospital's charon" \
	ch_swanctl peer --terminate --ike "$E2E_TUNNEL" --timeout 5 >>"$TMP/swanctl.log" 2>&1
expect "cut: the supervisor reports the tunnel down" ap_wait 10 "not tun('$E2E_TUNNEL')['up']"
expect "cut: /metrics mllp_gate_cidrs 0 (the gate holds no CIDR)" \
	wait_until 5 'test "$(ap_metric mllp_gate_cidrs)" = 0'
expect "cut: the hospital has no route into 203.0.113.0/26 any more (table 220 empty)" \
	wait_until 5 'test -z "$(ip -n "$NS_HOSP" route show table 220)"'
T_DOWN=$(now_ms)

# --- down: outbound waits ------------------------------------------------------------------
expect "down: /metrics mllp_out_waiting_gate{destination=\"lis\"} 1" \
	wait_until 10 'test "$(met mllp_out_waiting_gate)" = 1'
expect "down: appliancectl status --json: lis waiting_gate, queued >= 1, not connected" \
	ap_wait 10 "[d for d in s['destinations'] if d['name'] == 'lis' and d['waiting_gate']
		and d['queued'] >= 1 and not d['connected']]"
n_lis=$(lis_lines)
p0=$(posts_202)
s0=$(sends)
c0=$(conns_lab)
sleep 2.5
# an mllp-send in flight at the cut waits out its 3 s answer timeout (or,
# its SYN lost in the cut, the 5 s timeout around it): the window closes
# once the hospital has tried 5 more times
wait_until 15 'test "$(sends)" -ge "$((s0 + 5))"'
n_lis2=$(lis_lines)
p1=$(posts_202)
s1=$(sends)
c1=$(conns_lab)
expect "down: the cloud's posts are still accepted meanwhile (202: $p0 -> $p1)" test "$p1" -ge "$((p0 + 5))"
expect "down: the LIS received nothing meanwhile ($n_lis -> $n_lis2 arrivals)" test "$n_lis2" = "$n_lis"
queued=$(met mllp_out_queued)
expect "down: /metrics mllp_out_queued{destination=\"lis\"} $queued >= the posts made while down ($((p1 - p0)))" \
	test "$queued" -ge "$((p1 - p0))"
last=$(awk '$2 == 202 { l = $3 } END { print l }' "$TMP/posts.log")
state=$(e2e_api "$E2E_API$last" | python3 -c 'import json,sys; print(json.load(sys.stdin).get("state"))' 2>/dev/null)
expect "down: GET $last (posted while down): state queued or sending (got ${state:-nothing})" \
	eval 'test "$state" = queued -o "$state" = sending'

# --- down: inbound is refused ------------------------------------------------------------------
in_msg TD-PROBE >"$TMP/probe.hl7"
out=$(ip netns exec "$NS_HOSP" timeout 10 "$BIN_ABS/mllp-send" -b 203.0.113.67 -t 3000 "$E2E_LAB" "$TMP/probe.hl7" 2>&1)
rc=$?
echo "# down: mllp-send from the hospital: exit $rc: $out"
expect "down: an inbound connect from the hospital fails at once: no route (exit 1, \"Network is unreachable\")" \
	eval 'test "$rc" = 1 && grep -q "cannot connect to $E2E_LAB: Network is unreachable" <<<"$out"'
expect "down: the hospital kept trying meanwhile ($s0 -> $s1 attempts) and the edge's listener accepted no connection ($c0 -> $c1)" \
	test "$s1" -ge "$((s0 + 5))" -a "$c0" -ge 1 -a "$c1" = "$c0"
expect "down: no inbound attempt made while down was ACKed" \
	eval '! tail -n +$((s0 + 1)) "$TMP/sends.log" | head -n $((s1 - s0)) | grep -q " acked"'
# A peer inside remote_ts that does reach the listener: closed by the gate.
g0=$(refused_gate)
kout=$(knock)
echo "# down: knock from $KNOCK on the edge: $kout"
expect "down: a peer inside remote_ts reaching the listener ($KNOCK) is closed with no answer ($kout)" \
	grep -qE '^(closed|reset), 0 bytes answered$' <<<"$kout"
expect "down: /metrics mllp_connections_refused_total{limit=\"gate\"} counted it ($g0 -> $(refused_gate))" \
	wait_until 5 'test "$(refused_gate)" = "$((g0 + 1))"'
expect "down: the bridge logged connection_refused limit=gate for $KNOCK" \
	grep -q "event=connection_refused peer=$KNOCK:[0-9]* limit=gate" "$AP_LOG"
expect "down: the tunnel is still down" ap_true "not tun('$E2E_TUNNEL')['up']"
expect "down: the supervisor's re-initiations were refused (tunnel_initiate_failed logged)" \
	grep -q "event=tunnel_initiate_failed tunnel=$E2E_TUNNEL" "$AP_LOG"

# --- back: the hospital loads its connection; the supervisor re-initiates -----------------------
T_RELOAD=$(now_ms)
e2e_expect "back: the hospital loads its connection again" \
	swanctl_load peer "$CH_TMP/hospital-conf" >>"$TMP/swanctl.log" 2>&1
expect "back: the supervisor brought the tunnel up again (child INSTALLED), without the hospital initiating" \
	ap_wait 40 "tun('$E2E_TUNNEL')['up'] and child('$E2E_TUNNEL', '$E2E_CHILD')['state'] == 'INSTALLED'"
T_BACK=$(now_ms)
retries=$(sed -n "s/.*proc=appliance event=tunnel_initiate_failed tunnel=$E2E_TUNNEL .*retry_ms=\([0-9]*\).*/\1/p" "$AP_LOG" | tr '\n' ' ')
expect "back: the supervisor's retries backed off 1 s doubling (retry_ms: $retries)" \
	python3 -c 'import sys; r = [int(x) for x in sys.argv[1:]]; sys.exit(0 if r and all(x == 1000 * 2 ** i for i, x in enumerate(r)) else 1)' $retries
last2=$(grep -E "proc=appliance event=tunnel_(initiate|up|down|initiate_failed) tunnel=$E2E_TUNNEL" "$AP_LOG" | tail -n 2 |
	sed 's/.* event=\([a-z_]*\) .*/\1/' | tr '\n' ' ')
expect "back: the tunnel came up from the supervisor's own initiate (last events: $last2)" \
	test "$last2" = "tunnel_initiate tunnel_up "
expect "back: the gate is open again (mllp_gate_cidrs >= 1)" \
	wait_until 10 'test "$(ap_metric mllp_gate_cidrs)" -ge 1'
echo "# outage: terminate -> seen down $((T_DOWN - T_TERM)) ms, -> back $((T_BACK - T_TERM)) ms; reload -> back $((T_BACK - T_RELOAD)) ms"
kout=$(knock)
expect "back: the same peer inside remote_ts ($KNOCK) is served now (answered: $kout)" \
	grep -qE '^answered, [1-9][0-9]* bytes$' <<<"$kout"
# a few more posts after the tunnel is back: they queue behind the backlog
# shellcheck disable=SC2034 # read inside wait_until's eval
p_back=$(posts)
expect "back: the cloud goes on posting after the tunnel is back" \
	wait_until 10 'test "$(posts)" -ge "$((p_back + 5))"'
touch "$TMP/stop-out"
wait "$POSTER"

# every post answered 202 arrives at the LIS, in post order, byte-exact
n_posted=$(posts)
bad=$(awk '$2 != 202 || $3 == "-"' "$TMP/posts.log" | head -n 3 | tr '\n' ' ')
expect "back: all $n_posted posts (before, during and after the outage) answered 202 + Location${bad:+ (not: $bad)}" \
	test -z "$bad" -a "$n_posted" -gt 0
awk '{ print $1 }' "$TMP/posts.log" >"$TMP/want-out"
firsts() { awk '$1 ~ /^[0-9]+$/ && index($4, "TD-OUT-") == 1 && !s[$4]++ { print $1, $4 }' "$E2E_RECV_LOG"; }
expect "back: the LIS received all $n_posted" \
	wait_until 40 'test "$(firsts | grep -c .)" -ge "$n_posted"'
firsts >"$TMP/got-out"
expect "back: at the LIS in post order, none lost, none extra ($(grep -c . "$TMP/got-out") distinct)" \
	cmp -s <(awk '{ print $2 }' "$TMP/got-out") "$TMP/want-out"
why=$(while read -r seq id; do
	cmp -s "$E2E_RECV_DIR/$seq.hl7" "$TMP/out/$id.hl7" || echo "$id"
done <"$TMP/got-out" | head -n 3 | tr '\n' ' ')
expect "back: at the LIS byte-exact ($n_posted payloads compared)${why:+: differ: $why}" \
	test -z "$why" -a -s "$TMP/got-out"
# shellcheck disable=SC2034 # read inside wait_until's eval
mapfile -t urls < <(awk '{ print $3 }' "$TMP/posts.log" | sed "s|^|$E2E_API|")
expect "back: GET each: acked with MSA|AA|<MSH-10>" \
	wait_until 20 'e2e_api -w "\n" "${urls[@]}" >"$TMP/gets.json" && python3 -c "
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
ids = [l.split()[0] for l in open(sys.argv[2])]
ok = len(rows) == len(ids) and all(r.get(\"state\") == \"acked\" and (\"MSA|AA|\" + i) in (r.get(\"ack\") or \"\") for r, i in zip(rows, ids))
sys.exit(0 if ok else 1)" "$TMP/gets.json" "$TMP/posts.log"'
expect "back: /metrics lis: queued 0, waiting_gate 0" \
	wait_until 10 'test "$(met mllp_out_queued)" = 0 -a "$(met mllp_out_waiting_gate)" = 0'

# inbound: the sender goes on until it is ACKed again after the outage
# shellcheck disable=SC2034 # read inside wait_until's eval
s_back=$(sends)
expect "back: the hospital's inbound stream is ACKed again" \
	wait_until 20 'tail -n +$((s_back + 1)) "$TMP/sends.log" | grep -q " acked"'
touch "$TMP/stop-in"
wait "$SENDER"
grep ' acked$' "$TMP/sends.log" | awk '{ print $1 }' >"$TMP/want-in"
n_in=$(grep -c . "$TMP/want-in")
n_fail=$(grep -c ' failed' "$TMP/sends.log")
echo "# inbound: $(sends) attempts, $n_in acked, $n_fail failed; failures: $(awk '$2 == "failed"' "$TMP/sends.log" | cut -d' ' -f3- | sort | uniq -c | tr '\n' ';')"
in_firsts() {
	python3 - "$E2E_SINK" "$TMP/want-in" <<'EOF'
import os, sys
sink, want = sys.argv[1], set(l.strip() for l in open(sys.argv[2]) if l.strip())
seen = set()
for l in open(os.path.join(sink, "requests.log")):
    r = l.rstrip("\n").split("\t")
    if r[2] == "/v1/hl7/lab" and r[10] in want and r[10] not in seen:
        seen.add(r[10]); print(r[0], r[10])
EOF
}
expect "back: the cloud received all $n_in inbound messages the hospital got a commit ACK for" \
	wait_until 30 'test "$(in_firsts | grep -c .)" -ge "$n_in"'
in_firsts >"$TMP/got-in"
expect "back: at the cloud in send order (the ACKed ones)" \
	cmp -s <(awk '{ print $2 }' "$TMP/got-in") "$TMP/want-in"
why=$(while read -r seq id; do
	cmp -s "$E2E_SINK/bodies/$seq" "$TMP/in/$id.hl7" || echo "$id"
done <"$TMP/got-in" | head -n 3 | tr '\n' ' ')
expect "back: at the cloud byte-exact ($n_in bodies compared)${why:+: differ: $why}" \
	test -z "$why" -a -s "$TMP/got-in"
hospital_send_many 20 TD-AFTER

T_END=$(now_ms)
echo "# timing: setup+up $(((T_UP - T0) / 1000)) s; outage $((T_BACK - T_TERM)) ms; total $(((T_END - T0) / 1000)) s"
e2e_stop
finish
