#!/bin/bash
# Fail closed, proven on the wire (issue 9, invariant 3). tcpdump -Q out on
# the outer link of both the edge and the hospital runs for the whole
# scenario, started before any tunnel. The hospital's charon first has no
# connection for the edge, so the supervisor's initiates fail and the tunnel
# is down: an MLLP connection from the hospital fails, and a knock on the
# bridge from a local address inside the tunnel's remote_ts (203.0.113.100 on
# the edge's lo, which needs no route) is refused by the gate. The hospital
# loads its connection: the supervisor brings the tunnel up and the same
# sender is served. One hospital connection stays open; the hospital unloads
# its connection and terminates the IKE_SA: the bridge closes that open
# connection and refuses again. The hospital loads it again: served again.
# Both captures hold IKE and ESP-in-UDP (and ARP) only: not one TCP segment.
# Topology: appliance-lib.sh.
. "$(dirname "$0")/appliance-lib.sh"

ap_setup tcpdump ss
T=hospital-a
DH21_IKE=aes256gcm16-prfsha384-ecp521 DH21_ESP=aes256gcm16-ecp521
PEER_SPEC="$T:$DH21_IKE:$DH21_ESP"
ap_conf "$AP_CONF" "$(ap_tunnel "$T" appliance "$DH21_IKE" "$DH21_ESP")"
GATE_RE='^mllp_connections_refused_total\{.*limit="gate"'

capture_start gw "$NS_GW" || exit 1
capture_start peer "$NS_PEER" || exit 1

# knock ID: one message from 203.0.113.100, the edge's own address inside the
# tunnel's remote_ts; true when it was ACKed.
knock() {
	local out
	hl7_msg "$1" >"$TMP/msg-$1.hl7"
	out=$(ip netns exec "$NS_GW" "$BIN_ABS/mllp-send" -b 203.0.113.100 -t 3000 \
		"203.0.113.1:$AP_MLLP" "$TMP/msg-$1.hl7" 2>&1)
	echo "knock $1: $out" >>"$TMP/hospital.log"
	grep -q "MSA|AA|$1" <<<"$out"
}

# grown A B: both are numbers and B > A.
grown() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a ~ /^[0-9.]+$/ && b ~ /^[0-9.]+$/ && b + 0 > a + 0) }'; }

# --- down: the hospital has no connection for the edge ----------------------------------
ap_start || exit 1
expect "down: the supervisor tried and failed (last_error set), the tunnel is down" \
	ap_wait 20 "tun('$T')['last_error'] != '' and not tun('$T')['up']"
expect "down: the bridge runs (its /metrics answers)" \
	wait_until 10 'test "$(ap_metric mllp_frames_total)" != unreadable'
expect "down: /metrics: the bridge's supervisor link is up, its gate closed with no CIDR" \
	eval 'test "$(ap_metric mllp_supervisor_link_up)" = 1 -a "$(ap_metric mllp_gate_open)" = 0 -a \
		"$(ap_metric mllp_gate_cidrs)" = 0'
expect "down: an MLLP connection from the hospital fails" eval '! hospital_send D1'
g0=$(ap_metric_re "$GATE_RE")
lines=$(wc -l <"$AP_LOG")
expect "down: a local knock from 203.0.113.100 is not answered" eval '! knock K1'
g1=$(ap_metric_re "$GATE_RE")
expect "down: ... the gate refused it (mllp_connections_refused_total gate: $g0 -> $g1)" \
	grown "$g0" "$g1"
expect "down: ... and the bridge logged it (gate, peer 203.0.113.100)" \
	eval "tail -n +$((lines + 1)) '$AP_LOG' | grep 'gate' | grep -q '203\.0\.113\.100'"

# --- up ----------------------------------------------------------------------------------------
ap_peer_load "$PEER_SPEC" || fail "the hospital's swanctl --load-all" "$(tail -n 3 "$TMP/swanctl.log")"
expect "up: the supervisor brings the tunnel up once the hospital accepts" \
	ap_wait 45 "tun('$T')['up'] and child('$T', '$T-net')['state'] == 'INSTALLED'"
expect "up: the hospital's sender is served" wait_until 10 'hospital_send U1'
expect "up: /metrics: the gate holds one CIDR" test "$(ap_metric mllp_gate_cidrs)" = 1
if knock K2; then
	echo "# note: up: the local knock from 203.0.113.100 (inside remote_ts) is served"
else
	echo "# note: up: the local knock from 203.0.113.100 is still refused"
fi
hospital_hold H1
expect "up: a held connection from the hospital is ACKed" \
	wait_until 10 'grep -qx acked "$TMP/hold-H1.out"'
expect "up: ... and open on the edge (ESTABLISHED to :$AP_MLLP)" \
	test "$(established_mllp)" -ge 1

# --- down again: the hospital unloads its connection and ends the IKE_SA -----------------
ap_peer_load || fail "the hospital's swanctl --load-all (nothing)" "$(tail -n 3 "$TMP/swanctl.log")"
ch_swanctl peer --terminate --ike "$T" --timeout 5 >>"$TMP/swanctl.log" 2>&1
expect "down again: the supervisor reports the tunnel down" ap_wait 15 "not tun('$T')['up']"
expect "down again: the bridge closed the held connection (none ESTABLISHED to :$AP_MLLP)" \
	wait_until 10 'test "$(established_mllp)" -eq 0'
expect "down again: /metrics: the gate holds no CIDR" test "$(ap_metric mllp_gate_cidrs)" = 0
expect "down again: an MLLP connection from the hospital fails" eval '! hospital_send D2'
g2=$(ap_metric_re "$GATE_RE")
expect "down again: a local knock from 203.0.113.100 is not answered" eval '! knock K3'
g3=$(ap_metric_re "$GATE_RE")
expect "down again: ... the gate refused it ($g2 -> $g3)" grown "$g2" "$g3"

# --- back ---------------------------------------------------------------------------------------
ap_peer_load "$PEER_SPEC" || fail "the hospital's swanctl --load-all" "$(tail -n 3 "$TMP/swanctl.log")"
expect "back: the tunnel comes back" \
	ap_wait 45 "tun('$T')['up'] and child('$T', '$T-net')['state'] == 'INSTALLED'"
expect "back: the same sender (203.0.113.65) is served" wait_until 10 'hospital_send U2'
expect "back: U1 and U2 reached the upstream, D1 and D2 never did" \
	wait_until 10 'sink_has U1 && sink_has U2 && ! sink_has D1 && ! sink_has D2'
ap_stop "fail closed"
echo "# the held connection H1 (hospital side) ended: $(tr '\n' ' ' <"$TMP/hold-H1.out")"

# --- the wire ----------------------------------------------------------------------------------
capture_stop gw
capture_stop peer
for c in gw peer; do
	f=$TMP/$c.pcap
	expect "$c capture: $f exists and tcpdump reported its count" \
		eval "test -s '$f' && grep -qE '^[0-9]+ packets? captured' '$TMP/$c.tcpdump'"
	capture_text "$c" >"$TMP/$c.txt"
	ike=$(grep -cE '\.500 > [0-9.]+\.500: isakmp|NONESP-encap: isakmp' "$TMP/$c.txt")
	esp=$(grep -c 'UDP-encap: ESP' "$TMP/$c.txt")
	tcp=$(tcpdump -r "$f" -nn tcp 2>/dev/null | grep -c .)
	mllp=$(tcpdump -r "$f" -nn "tcp port $AP_MLLP" 2>/dev/null | grep -c .)
	other=$(capture_others "$c")
	all=$(grep -c . "$TMP/$c.txt")
	echo "# $c capture: $all packets: IKE $ike, ESP-in-UDP $esp, TCP $tcp, other than IKE/ESP/ARP $other"
	expect "$c capture: tcpdump saw the IKE exchanges ($ike packets)" test "$ike" -ge 4
	expect "$c capture: tcpdump saw ESP-in-UDP ($esp packets)" test "$esp" -ge 4
	expect "$c capture: not one TCP segment to or from the MLLP port $AP_MLLP ($mllp)" test "$mllp" -eq 0
	expect "$c capture: not one TCP segment at all ($tcp)" test "$tcp" -eq 0
	expect "$c capture: nothing but IKE, ESP-in-UDP and ARP ($other others)" test "$other" -eq 0
done
finish
