#!/bin/bash
# e2e_outside (issue 11, scenario 7): a peer outside the tunnel, on the
# outer link, in clear, connects to the MLLP port: refused, logged, counted.
#
# The attacker is the hospital namespace's OUTER address, 198.51.100.2, not
# its tunnel: a policy rule (priority 100, before charon's table 220) sends
# what 198.51.100.2 addresses to 203.0.113.1 straight over the outer link,
# via 198.51.100.1. Nothing on the edge filters that packet in this lab (no
# nftables), so it reaches the MLLP listener in clear: what the appliance
# itself guarantees is that the gate closes such a connection before a byte
# is read, because no installed CHILD_SA covers 198.51.100.2.
#   (a) one attempt: TCP connects, the frame it sends gets no answer, the
#       connection is closed (FIN, or RST since data was unread);
#       mllp_connections_refused_total{limit="gate"} +1; the bridge logs
#       event=connection_refused peer=198.51.100.2:PORT limit=gate exactly
#       once, and nothing else about that peer; the listener accepted no
#       connection (mllp_connections_total unchanged).
#   (b) 198.51.100.1:9960, the edge's outer address: nothing listens there
#       (the listener is bound to 203.0.113.1 only): ECONNREFUSED from the
#       kernel, the bridge sees nothing.
#   (c) a burst of $BURST attempts while the hospital sends a paced stream
#       through the tunnel and the cloud posts outbound: every attempt
#       refused with no answer and counted; the log is rate-limited per
#       address (docs/errors.md: at most LOG_RATE_BURST=10 lines at once,
#       then one a second; `log_suppressed` reports the rest), so the burst
#       gives at most 10 lines, and after a pause one more attempt makes the
#       bridge report the suppressed count: logged + suppressed = attempts.
#       The tunnel traffic is all ACKed and delivered, in order, byte-exact.
#   Nothing of the attacker reaches the cloud.
# The leak check: the hospital link carries TCP this time, the attacker's
# own. This scenario's e2e_leak_pre (e2e-lib's hook) asserts that every TCP
# segment on the hospital link is the attacker's (198.51.100.2 -> port
# 9960) or the edge's answer to it from port 9960 with no payload (SYN-ACK,
# ACK, FIN, RST), one SYN-ACK per attempt that connected, no "MSH|" in
# anything the edge sent; then it removes exactly those segments and
# e2e_leak_check goes on with the rest (only IKE, ESP, ARP; cloud link only
# TLS).
#
# Run alone: BUILD=build bash tests/e2e/e2e_outside.sh (root).
. "$(dirname "$0")/e2e-lib.sh"

T0=$(now_ms)
ATTACKER=198.51.100.2
BURST=25
N=200 RATE=100 SIZE=600 PREFIX=OK
ATTEMPTS=0    # connections the attacker got through to 203.0.113.1:9960
ATTACK_TCP="tcp and src host $ATTACKER and dst port 9960 and (dst host 203.0.113.1 or dst host 198.51.100.1)"
# the edge's segments to the attacker from port 9960 carrying no payload
EDGE_TCP="tcp and dst host $ATTACKER and src port 9960 and (src host 203.0.113.1 or src host 198.51.100.1)"
EDGE_DATA="$EDGE_TCP and (ip[2:2] - ((ip[0] & 0xf) << 2) - ((tcp[12] & 0xf0) >> 2)) != 0"

# --- the leak check, told about the attacker's TCP ---------------------------------------------
# e2e-lib's hook: e2e_leak_check calls it after its drop checks, before it
# classifies the captures.
e2e_leak_pre() {
	local h=$TMP/hosp.pcap e=$TMP/edge-h.pcap n_att n_other n_edge n_data n_synack n_end n_eother hl7
	if [ -s "$h" ] && [ -s "$e" ]; then
		n_att=$(pcap_count "$h" "$ATTACK_TCP")
		n_other=$(pcap_count "$h" "tcp and not ($ATTACK_TCP)")
		n_edge=$(pcap_count "$e" "$EDGE_TCP")
		n_data=$(pcap_count "$e" "$EDGE_DATA")
		n_synack=$(pcap_count "$e" "$EDGE_TCP and src host 203.0.113.1 and tcp[tcpflags] & (tcp-syn|tcp-ack) == (tcp-syn|tcp-ack)")
		n_end=$(pcap_count "$e" "$EDGE_TCP and src host 203.0.113.1 and tcp[tcpflags] & (tcp-fin|tcp-rst) != 0")
		n_eother=$(pcap_count "$e" "tcp and not ($EDGE_TCP)")
		hl7=$(grep -ac 'MSH|' "$e")
		echo "# leak: attacker: $n_att segments to port 9960 (other TCP from the hospital: $n_other); edge: $n_edge answers ($n_synack SYN-ACK, $n_end FIN/RST, $n_data with payload; other TCP: $n_eother)"
		expect "leak: hospital side: the attacker's segments were captured ($n_att >= 3 x $ATTEMPTS)" \
			test "$n_att" -ge "$((3 * ATTEMPTS))" -a "$ATTEMPTS" -gt 0
		expect "leak: hospital side: no TCP but the attacker's ($n_other)" test "$n_other" = 0
		expect "leak: edge side: one SYN-ACK from 203.0.113.1:9960 per attempt ($n_synack = $ATTEMPTS)" \
			test "$n_synack" = "$ATTEMPTS"
		expect "leak: edge side: every attempt closed by the edge (FIN/RST: $n_end >= $ATTEMPTS)" \
			test "$n_end" -ge "$ATTEMPTS"
		expect "leak: edge side: not one byte of payload to the attacker ($n_data segments)" test "$n_data" = 0
		expect "leak: edge side: no TCP but those answers ($n_eother)" test "$n_eother" = 0
		expect "leak: edge side: no cleartext HL7 left the edge (MSH| in $hl7 packets)" test "$hl7" = 0
		mv "$h" "$TMP/hosp-all.pcap"
		mv "$e" "$TMP/edge-h-all.pcap"
		tcpdump -r "$TMP/hosp-all.pcap" -w "$h" "not ($ATTACK_TCP)" 2>/dev/null
		tcpdump -r "$TMP/edge-h-all.pcap" -w "$e" "not ($EDGE_TCP and not ($EDGE_DATA))" 2>/dev/null
	else
		fail "leak: the hospital link's captures $h and $e are missing or empty"
	fi
}

e2e_setup
e2e_start
T_UP=$(now_ms)

refused_gate() { ap_metric 'mllp_connections_refused_total{limit="gate"}'; }
conns_lab() { ap_metric 'mllp_connections_total{listen="203.0.113.1:9960"}'; }
at_sink() { awk -F'\t' -v p="$1" '$3 == "/v1/hl7/lab" && index($11, p) == 1' "$E2E_SINK/requests.log" 2>/dev/null | grep -c .; }
refusal_lines() { grep -c "event=connection_refused peer=$ATTACKER:[0-9]* limit=gate reason=\"no installed CHILD_SA covers the peer\"" "$AP_LOG"; }

# attack DST COUNT: COUNT connections from 198.51.100.2 to DST:9960, each
# sending one MLLP frame (control id OUTSIDE-k) at once, then reading until
# the edge closes; one line each: "connected closed|reset|timeout N" (N
# bytes answered) or "refused ERRNO-TEXT".
attack() {
	ip netns exec "$NS_HOSP" python3 - "$ATTACKER" "$1" "$2" <<'EOF'
import socket, sys
src, dst, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
for k in range(count):
    msg = ("MSH|^~\\&|EVIL|OUT|REDOX|CLOUD|20261130120000||ADT^A01^ADT_A01|OUTSIDE-%d|P|2.5.1\r"
           "PID|1||OUT%d^^^H^MR||OUTSIDE^PEER\r" % (k, k)).encode()
    s = socket.socket()
    s.bind((src, 0))
    s.settimeout(5)
    try:
        s.connect((dst, 9960))
    except OSError as e:
        print("refused", e.strerror); s.close(); continue
    got, how = b"", None
    try:
        s.sendall(b"\x0b" + msg + b"\x1c\r")
        while how is None:
            d = s.recv(65536)
            if not d:
                how = "closed"
            got += d
    except ConnectionResetError:
        how = "reset"
    except BrokenPipeError:
        how = "reset"
    except socket.timeout:
        how = "timeout"
    print("connected", how, len(got))
    s.close()
EOF
}

# --- the attacker's path: in clear over the outer link -------------------------------------------
ip -n "$NS_HOSP" rule add from "$ATTACKER" to 203.0.113.1 priority 100 lookup 100
ip -n "$NS_HOSP" route add 203.0.113.1/32 via 198.51.100.1 dev outer table 100
route=$(ip -n "$NS_HOSP" route get 203.0.113.1 from "$ATTACKER")
expect "setup: from $ATTACKER, 203.0.113.1 is reached over the outer link in clear ($route)" \
	grep -q 'via 198.51.100.1 dev outer' <<<"$route"
route=$(ip -n "$NS_HOSP" route get 203.0.113.1 from 203.0.113.65)
expect "setup: from 203.0.113.65 it still goes through the tunnel ($route)" grep -q 'dev ipsec0' <<<"$route"

# --- (a) one attempt ---------------------------------------------------------------------------------
g0=$(refused_gate)
c0=$(conns_lab)
out=$(attack 203.0.113.1 1)
echo "# (a) attacker: $out"
[ "${out%% *}" = connected ] && ATTEMPTS=$((ATTEMPTS + 1))
expect "(a) the attacker's TCP connect reaches the listener, the frame gets no answer, the edge closes ($out)" \
	grep -qxE 'connected (closed|reset) 0' <<<"$out"
expect "(a) /metrics mllp_connections_refused_total{limit=\"gate\"} counted it ($g0 -> $((g0 + 1)))" \
	wait_until 5 'test "$(refused_gate)" = "$((g0 + 1))"'
expect "(a) the listener accepted no connection (mllp_connections_total $c0 -> $(conns_lab))" \
	test "$c0" -ge 0 -a "$(conns_lab)" = "$c0"
expect "(a) the bridge logged the refusal exactly once (event=connection_refused peer=$ATTACKER:PORT limit=gate: $(refusal_lines))" \
	wait_until 5 'test "$(refusal_lines)" = 1'
others=$(grep -F "peer=$ATTACKER" "$AP_LOG" | grep -v 'event=connection_refused ' | head -n 3)
expect "(a) and nothing else about that peer${others:+: $others}" test -z "$others"

# --- (b) the edge's outer address ------------------------------------------------------------------
g1=$(refused_gate)
out=$(attack 198.51.100.1 1)
echo "# (b) attacker -> 198.51.100.1:9960: $out"
expect "(b) 198.51.100.1:9960: connection refused by the edge's kernel (the listener is bound to 203.0.113.1 only)" \
	grep -qx 'refused Connection refused' <<<"$out"
expect "(b) the bridge saw nothing of it (limit=gate $g1 -> $(refused_gate), log lines $(refusal_lines))" \
	test "$(refused_gate)" = "$g1" -a "$(refusal_lines)" = 1

# --- (c) a burst while the tunnel carries traffic --------------------------------------------------
t0=$(date +%s)
ip netns exec "$NS_HOSP" "$BIN_ABS/mllp-load" -t "$E2E_LAB" -c 1 -n "$N" -r "$RATE" -p 8 \
	-s "$SIZE" --bind-from 203.0.113.65 --id-prefix "$PREFIX" --patients 1 \
	--acked "$TMP/acked.txt" -T 10 >"$TMP/load.out" 2>"$TMP/load.err" &
LOAD=$!
e2e_expect "(c) the tunnel stream is flowing (>= 20 at the cloud)" \
	wait_until 10 'test "$(at_sink "$PREFIX-")" -ge 20' || { wait "$LOAD"; e2e_stop; finish; }
g2=$(refused_gate)
l2=$(refusal_lines)
T_B0=$(now_ms)
out=$(attack 203.0.113.1 "$BURST")
T_B1=$(now_ms)
n_conn=$(grep -c '^connected ' <<<"$out")
ATTEMPTS=$((ATTEMPTS + n_conn))
n_mute=$(grep -cxE 'connected (closed|reset) 0' <<<"$out")
echo "# (c) burst of $BURST in $((T_B1 - T_B0)) ms: $(sort <<<"$out" | uniq -c | tr '\n' ';')"
expect "(c) all $BURST connected, none answered, each closed by the edge ($n_mute)" \
	test "$n_conn" = "$BURST" -a "$n_mute" = "$BURST"
expect "(c) /metrics counted every one (limit=gate $g2 -> $((g2 + BURST)))" \
	wait_until 5 'test "$(refused_gate)" = "$((g2 + BURST))"'
cloud_post_many 5 GOODOB
wait "$LOAD"
t1=$(date +%s)
line=$(cat "$TMP/load.out")
echo "# mllp-load: $line"
l3=$(refusal_lines)
burst_lines=$((l3 - l2))
expect "(c) the log is rate-limited: $burst_lines refusal lines for $BURST attempts (1..10)" \
	test "$burst_lines" -ge 1 -a "$burst_lines" -le 10
# after a pause the bucket has a token again: the next refusal is logged,
# preceded by the count of the lines suppressed
sleep 1.5
out=$(attack 203.0.113.1 1)
[ "${out%% *}" = connected ] && ATTEMPTS=$((ATTEMPTS + 1))
expect "(c) one more attempt after 1.5 s: refused, no answer ($out)" grep -qxE 'connected (closed|reset) 0' <<<"$out"
expect "(c) it is logged" wait_until 5 'test "$(refusal_lines)" = "$((l3 + 1))"'
supp=$(sed -n "s/.*event=log_suppressed kind=connection_refused peer=$ATTACKER suppressed=\\([0-9]*\\).*/\\1/p" "$AP_LOG" |
	awk '{ s += $1 } END { print s + 0 }')
total=$(refused_gate)
expect "(c) every refusal is logged or counted as suppressed: $(refusal_lines) lines + $supp suppressed = $((g0 + ATTEMPTS)) attempts = limit=gate $total" \
	test "$(($(refusal_lines) + supp))" = "$ATTEMPTS" -a "$total" = "$((g0 + ATTEMPTS))"

# the tunnel traffic during all this: every message ACKed, in order, byte-exact
expect "(c) mllp-load through the tunnel: $N sent, $N commit-ACKed, 0 NAK/unacked/errors" \
	grep -qE "^sent=$N acked=$N nak=0 unacked=0 errors=0 " <<<"$line"
expect "(c) the cloud received all $N" wait_until 20 'test "$(at_sink "$PREFIX-")" -ge "$N"'
why=$(load_verify "$SIZE" "$t0" "$t1" "$PREFIX" "$TMP/acked.txt" "$E2E_SINK")
echo "# at the cloud: $(head -n 1 <<<"$why")"
why=$(sed -n 2p <<<"$why")
expect "(c) at the cloud in send order and byte-exact (all $N)${why:+: $why}" test -z "$why" -a -s "$TMP/acked.txt"
expect "nothing the attacker sent reached the cloud (OUTSIDE-<k> at the sink: $(at_sink OUTSIDE-))" \
	test "$(at_sink OUTSIDE-)" = 0 -a -s "$E2E_SINK/requests.log"

T_END=$(now_ms)
echo "# timing: setup+up $(((T_UP - T0) / 1000)) s; total $(((T_END - T0) / 1000)) s"
e2e_stop
finish
