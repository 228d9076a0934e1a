#!/bin/bash
# make demo: the whole appliance, as a customer's network sees it (issue 11).
#
# In three network namespaces (tests/e2e/e2e-lib.sh, docs/demo.md):
#   hospital  the customer's VPN gateway (strongSwan charon), HL7 senders
#             (mllp-send, mllp-load) and an HL7 receiver (mllp-recv, the LIS)
#   edge      the appliance: the supervisor starting charon and mllp-bridge,
#             configured from the shipped rootfs/etc/appliance/appliance.yaml
#   cloud     an HTTPS receiver standing in for the upstream API, and curl
#             posting outbound messages to the edge's API
# it brings the IKEv2 tunnel up with DH 21, sends the shared sample messages
# and a short load burst hospital -> cloud, posts messages cloud -> hospital
# (one with Prefer: wait=5), and prints a summary: the tunnel and its
# algorithms, messages each way, ACK codes, latency, and what the captures of
# both links held. Every line of the summary is also a check: the demo exits
# 1 when one fails. Then everything is stopped and removed.
#
#   scripts/demo.sh            (make demo)
#   KEEP=1 scripts/demo.sh     (make demo KEEP=1) leaves the lab running and
#                              prints how to look at it
#   scripts/demo.sh --stop     stops a lab left by KEEP=1: every process by its
#                              PID, then whatever is left in its namespaces,
#                              then the namespaces and its files
set -u
cd "$(dirname "$0")/.." || exit 1
BUILD=${BUILD:-build}
STATE=/run/mllp-edge-demo.state

# --- --stop ---------------------------------------------------------------------------

# stop_pid PID: SIGTERM, up to WAIT s, then SIGKILL (not our child: polls /proc).
stop_pid() {
	local pid=$1 wait=${2:-3} i
	[ -d "/proc/$pid" ] || return 0
	kill -TERM "$pid" 2>/dev/null
	for i in $(seq $((wait * 20))); do
		[ -d "/proc/$pid" ] || return 0
		[ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" = Z ] && return 0
		sleep 0.05
	done
	echo "demo: PID $pid ignored SIGTERM for $wait s: SIGKILL"
	kill -KILL "$pid" 2>/dev/null
}

# in_our_ns PID: PID lives in one of the lab's namespaces (so a PID reused by
# another process since is never signalled).
in_our_ns() {
	local ns
	ns=$(ip netns identify "$1" 2>/dev/null) || return 1
	case " $DEMO_NAMESPACES " in *" $ns "*) return 0 ;; esac
	return 1
}

demo_stop() {
	local pid ns left=0
	if [ ! -f "$STATE" ]; then
		echo "demo: no lab is running ($STATE does not exist)"
		return 0
	fi
	# shellcheck disable=SC1090
	. "$STATE"
	# the supervisor first: it stops the bridge, then its charon
	in_our_ns "$DEMO_SUPERVISOR" && stop_pid "$DEMO_SUPERVISOR" 20
	for pid in $DEMO_PIDS; do
		in_our_ns "$pid" && stop_pid "$pid"
	done
	for ns in $DEMO_NAMESPACES; do
		for pid in $(ip netns pids "$ns" 2>/dev/null); do
			echo "demo: stray PID $pid ($(cat "/proc/$pid/comm" 2>/dev/null)) in $ns"
			stop_pid "$pid"
		done
		ip netns del "$ns" 2>/dev/null
	done
	for ns in $DEMO_NAMESPACES; do
		ip netns list | grep -qw "$ns" && { echo "demo: namespace $ns is still there"; left=1; }
	done
	case $DEMO_TMP in /tmp/mllp-it.*) rm -rf "$DEMO_TMP" ;; esac
	rm -f "$STATE"
	[ "$left" -eq 0 ] && echo "demo: stopped; namespaces $DEMO_NAMESPACES removed"
	return "$left"
}

if [ "${1:-}" = --stop ]; then
	[ "$(id -u)" -eq 0 ] || { echo "demo --stop: needs root" >&2; exit 1; }
	demo_stop
	exit $?
fi
if [ -f "$STATE" ]; then
	echo "demo: a lab from 'make demo KEEP=1' is still running: scripts/demo.sh --stop first" >&2
	exit 1
fi

# --- the lab ----------------------------------------------------------------------------
T_START=$(date +%s.%N)
DEMO_KEEP=${KEEP:-}
KEEP="" # lib.sh's KEEP keeps files; the demo's KEEP keeps the lab
CH_SUFFIX=demo$$
. tests/e2e/e2e-lib.sh
SAMPLES_ABS=$(cd "$SAMPLES" && pwd) || { echo "demo: no samples in $SAMPLES" >&2; exit 1; }
LOG=$TMP/demo.log
# The checks' "ok -" lines go to $LOG; the terminal gets the story (fd 3).
exec 3>&1 1>>"$LOG" 2>&1
say() { printf '%s\n' "$*" >&3; }
step() { printf '\n\033[1m== %s\033[0m\n' "$*" >&3; }
# check NAME CMD...: a step that must hold; a failure is shown at once.
check() {
	if e2e_expect "$@"; then return 0; fi
	say "   FAILED: $1"
	return 1
}
SHOWN=""
bail() {
	SHOWN=1
	say ""
	say "demo: FAILED; the checks that failed:"
	grep '^not ok' "$LOG" | sed 's/^/   /' >&3
	say "   (log and captures are kept in $TMP)"
	exec 1>&3 2>&3
	exit 1
}

# Also when a step exits on its own (e2e_setup, e2e_start): the terminal
# hears why, then the lib's cleanup (later in the EXIT trap) stops everything.
demo_exit() {
	local rc=$?
	if [ "$rc" -ne 0 ] && [ -z "$SHOWN" ]; then
		printf '\ndemo: FAILED (exit %s); the checks that failed:\n' "$rc" >&3
		grep '^not ok' "$LOG" | sed 's/^/   /' >&3
		tail -n 5 "$LOG" | sed 's/^/   | /' >&3
	fi
	exec 1>&3 2>&3
	return "$rc"
}
trap 'demo_exit; cleanup' EXIT

step "Setting up the lab: namespaces $NS_HOSP, $NS_EDGE, $NS_CLOUD"
# 3>&-: the lab's processes must not hold the terminal's descriptor (with
# KEEP=1 they outlive this script, and a pipe reading it would never end)
e2e_setup 21 3>&-
[ "$FAILS" -eq 0 ] || bail
say "   the appliance's config: $AP_CONF"
say "   (rendered from rootfs/etc/appliance/appliance.yaml: paths, upstream host, API address, user, DH 21)"
step "Starting the appliance in $NS_EDGE (supervisor -> charon + mllp-bridge); the tunnel comes up"
T_UP0=$(date +%s.%N)
e2e_start 3>&-
[ "$FAILS" -eq 0 ] || bail
T_UP=$(awk -v a="$T_UP0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
check "demo: rekey-check: a CHILD_SA rekey with PFS" \
	"$APPCTL" -s "$AP_SOCK" rekey-check "$E2E_TUNNEL" >>"$LOG" 2>&1
check "demo: the rekeyed CHILD_SA's PFS group is 21" \
	ap_wait 10 "child('$E2E_TUNNEL', '$E2E_CHILD')['dh_group'] == 21" || bail
ap_status
cp "$TMP/status.json" "$TMP/status-up.json"
say "   up in $T_UP s"

# --- inbound -------------------------------------------------------------------------
step "Hospital -> cloud: the sample messages (lab integration, MLLP release 2)"
SAMPLE_FILES="adt_a01_v251.hl7 oru_r01_enhanced_ack.hl7 adt_a08_latin1.hl7 orm_o01_v23.hl7 vxu_v04_repeats_escapes.hl7"
n_samples=0 r2_acks=0
for f in $SAMPLE_FILES; do
	[ -f "$SAMPLES_ABS/$f" ] || { fail "demo: sample $f is missing in $SAMPLES_ABS"; continue; }
	out=$(ip netns exec "$NS_HOSP" "$BIN_ABS/mllp-send" -b 203.0.113.67 -t 10000 "$E2E_LAB" \
		"$SAMPLES_ABS/$f" 2>&1)
	n_samples=$((n_samples + 1))
	if [ "$out" = R2_ACK ]; then
		r2_acks=$((r2_acks + 1))
		say "   $f: commit ACK"
	else
		fail "demo: $f: commit ACK" "heard: $(head -c 100 <<<"$out")"
		say "   $f: heard: $(head -c 100 <<<"$out")"
	fi
done
# each sample at the cloud, byte for byte (any order: they are other patients)
sample_at_cloud() {
	local seq
	for seq in $(sink_rows /v1/hl7/lab | cut -f1); do
		cmp -s "$E2E_SINK/bodies/$seq" "$SAMPLES_ABS/$1" && return 0
	done
	return 1
}
for f in $SAMPLE_FILES; do
	check "demo: $f reached the cloud byte-exact" wait_until 15 "sample_at_cloud $f"
done

step "Hospital -> cloud: an admission to the adt integration (ack: upstream: the cloud's own answer)"
hl7_msg DEMO-ADT-1 ADT >"$TMP/adt.hl7"
adt_out=$(ip netns exec "$NS_HOSP" "$BIN_ABS/mllp-send" -b 203.0.113.66 -t 10000 "$E2E_ADT" "$TMP/adt.hl7" 2>&1)
adt_code=$(grep -o 'MSA|[A-Z][A-Z]|DEMO-ADT-1' <<<"$adt_out" | cut -d'|' -f2)
check "demo: adt: the sender hears the cloud's AA" test "${adt_code:-}" = AA
say "   the sender heard MSA-1 ${adt_code:-nothing}"

step "Hospital -> cloud: 200 messages from mllp-load (one connection, in order, byte-exact)"
hospital_send_many 200 DEMO-IN
inorder_line=$E2E_LOAD_LINE
step "Hospital -> cloud: a burst of 2,000 messages over 4 connections from 203.0.113.65-68"
burst=$(ip netns exec "$NS_HOSP" "$BIN_ABS/mllp-load" -t "$E2E_LAB" -c 4 -n 2000 -p 8 -s 1024 \
	--bind-from 203.0.113.65 --id-prefix DEMO-LOAD --patients 50 -T 15 2>"$TMP/burst.err")
say "   $burst"
check "demo: burst: 2000 sent, 2000 commit-ACKed, none lost" \
	grep -qE '^sent=2000 acked=2000 nak=0 unacked=0 errors=0 ' <<<"$burst"
burst_at_cloud() { sink_rows /v1/hl7/lab | awk -F'\t' 'index($11, "DEMO-LOAD-") == 1 && !s[$11]++' | grep -c .; }
check "demo: burst: all 2000 at the cloud" wait_until 30 'test "$(burst_at_cloud)" -ge 2000'
p50=$(sed -n 's/.* p50=\([0-9.]*ms\).*/\1/p' <<<"$burst")
p99=$(sed -n 's/.* p99=\([0-9.]*ms\).*/\1/p' <<<"$burst")
rate=$(sed -n 's/.* rate=\([0-9]*\) msg\/s.*/\1/p' <<<"$burst")

# --- outbound ----------------------------------------------------------------------------
step "Cloud -> hospital: samples posted to the edge's API for destination lis"
posted=0 post_bad=""
for f in adt_a01_v251.hl7 orm_o01_v23.hl7 vxu_v04_repeats_escapes.hl7; do
	code=$(cloud_post "$SAMPLES_ABS/$f")
	posted=$((posted + 1))
	[ "$code" = 202 ] || post_bad="$post_bad $f:$code"
	say "   POST $f: HTTP $code"
done
check "demo: 3 sample POSTs answered 202${post_bad:+ (not:$post_bad)}" test -z "$post_bad"
lis_has() { # the LIS received FILE byte-exact
	local seq
	for seq in $(awk '$1 ~ /^[0-9]+$/ { print $1 }' "$E2E_RECV_LOG" 2>/dev/null); do
		cmp -s "$E2E_RECV_DIR/$seq.hl7" "$1" && return 0
	done
	return 1
}
for f in adt_a01_v251.hl7 orm_o01_v23.hl7 vxu_v04_repeats_escapes.hl7; do
	check "demo: $f reached the LIS byte-exact" wait_until 15 "lis_has '$SAMPLES_ABS/$f'"
done
step "Cloud -> hospital: 20 generated messages, in order"
cloud_post_many 20 DEMO-OUT
step "Cloud -> hospital: one POST with Prefer: wait=5 (the answer carries the LIS's ACK)"
hl7_msg DEMO-SYNC-1 CLOUD >"$TMP/sync.hl7"
sync_code=$(cloud_post "$TMP/sync.hl7" -H 'Prefer: wait=5')
sync_ack=$(tr '\r' '\n' <"$TMP/post.body" | grep '^MSA|' | head -n 1)
say "   HTTP $sync_code, body: $(tr '\r' ' ' <"$TMP/post.body" | head -c 160)"
check "demo: Prefer: wait=5: 200 with MSA|AA|DEMO-SYNC-1" \
	test "$sync_code" = 200 -a "$sync_ack" = "MSA|AA|DEMO-SYNC-1"

step "Cloud -> hospital: a Redox-style JSON document (PatientAdmin Arrival), translated at the edge"
json_doc=$E2E_REPO/tests/translate/adt_a01_arrival_inpatient.json
json_code=$(e2e_api -H 'Content-Type: application/json' --data-binary @"$json_doc" \
	-D "$TMP/json.hdr" -o "$TMP/json.body" -w '%{http_code}' "$E2E_API/v1/destinations/lis/messages")
json_loc=$(tr -d '\r' <"$TMP/json.hdr" | sed -n 's/^Location: //Ip')
say "   POST $(basename "$json_doc") (application/json): HTTP $json_code, Location $json_loc"
json_acked() { e2e_api -o "$TMP/json.state" "$E2E_API$json_loc" && grep -q '"state":"acked"' "$TMP/json.state"; }
check "demo: the JSON POST answered 202 and its message was acked" \
	eval 'test "$json_code" = 202 && wait_until 15 json_acked'
json_ctl=$(grep -o 'MSA|AA|[0-9A-F]*' "$TMP/json.state" | head -n 1 | cut -d'|' -f3)
json_seq=$(awk -v c="$json_ctl" '$1 ~ /^[0-9]+$/ && $4 == c { print $1; exit }' "$E2E_RECV_LOG")
say "   the LIS received (MSH-10 $json_ctl, chosen by the edge):"
tr '\r' '\n' <"$E2E_RECV_DIR/$json_seq.hl7" 2>/dev/null | sed 's/^/      /' >&3
check "demo: the LIS received it as HL7 v2 ADT^A01 from MLLP-EDGE|CLOUD to LIS|HOSPITAL" \
	grep -q "^MSH|^~\\\\&|MLLP-EDGE|CLOUD|LIS|HOSPITAL|[0-9+-]*||ADT^A01^ADT_A01|$json_ctl|P|2.5.1|" \
	"$E2E_RECV_DIR/$json_seq.hl7"

# --- the captures ---------------------------------------------------------------------
step "Stopping the captures; what the wire carried"
e2e_capture_stop
e2e_leak_check
ap_status

# --- the summary ----------------------------------------------------------------------------
q() { python3 -c "$AP_PY" "$TMP/status-up.json" "$1" print 2>/dev/null || echo "?"; }
in_total=$(sink_rows /v1/hl7/lab | awk -F'\t' '!s[$11]++' | grep -c .)
adt_total=$(sink_rows /v1/hl7/adt | grep -c .)
out_total=$(awk '$1 ~ /^[0-9]+$/' "$E2E_RECV_LOG" | awk '!s[$4]++' | grep -c .)
out_aa=$(ap_metric 'mllp_out_acked_total{destination="lis"}')
hl7_clear=$((${E2E_LEAK[edge-c_cleartext_hl7]:-0} + ${E2E_LEAK[cloud_cleartext_hl7]:-0}))
T_END=$(date +%s.%N)
WALL=$(awk -v a="$T_START" -v b="$T_END" 'BEGIN { printf "%.1f", b - a }')
L() { printf '   %-22s %s\n' "$1" "$2" >&3; }
step "Summary"
L "tunnel" "$(q "'$E2E_TUNNEL'") child $(q "'$E2E_CHILD'"): $(q "child('$E2E_TUNNEL', '$E2E_CHILD')['state']"), $(q "child('$E2E_TUNNEL', '$E2E_CHILD')['local_ts']") <-> $(q "child('$E2E_TUNNEL', '$E2E_CHILD')['remote_ts']") (up in $T_UP s)"
L "IKE" "IKEv2 $(q "tun('$E2E_TUNNEL')['ike']['encr']") $(q "tun('$E2E_TUNNEL')['ike']['prf']"), DH $(q "tun('$E2E_TUNNEL')['ike']['dh']") (group $(q "tun('$E2E_TUNNEL')['ike']['dh_group']"))"
L "ESP" "$(q "child('$E2E_TUNNEL', '$E2E_CHILD')['esp']"), PFS group $(q "child('$E2E_TUNNEL', '$E2E_CHILD')['dh_group']") (after a forced rekey)"
L "hospital -> cloud" "$in_total to lab ($n_samples samples, 200 in order, 2000 burst), $adt_total to adt"
L "cloud -> hospital" "$out_total at the LIS ($posted samples, 20 in order, 1 with Prefer: wait=5, 1 JSON translated)"
L "ACK codes" "inbound: MLLP commit ACK x$((r2_acks + 2200)) (lab, release 2), $adt_code x1 (adt, the cloud's answer relayed); outbound: AA x$out_aa (from the LIS)"
L "latency (burst)" "p50 $p50, p99 $p99 (ACK after the spool commit), $rate msg/s through the tunnel"
L "hospital link" "edge out: IKE ${E2E_LEAK[edge-h_ike]}, ESP ${E2E_LEAK[edge-h_esp]}, ARP ${E2E_LEAK[edge-h_arp]}, other ${E2E_LEAK[edge-h_other]}, TCP ${E2E_LEAK[edge-h_tcp]}; hospital out: IKE ${E2E_LEAK[hosp_ike]}, ESP ${E2E_LEAK[hosp_esp]}, ARP ${E2E_LEAK[hosp_arp]}, other ${E2E_LEAK[hosp_other]}, TCP ${E2E_LEAK[hosp_tcp]}"
L "cloud link" "TLS only: ${E2E_LEAK[edge-c_tcp]} + ${E2E_LEAK[cloud_tcp]} TCP segments on 8443, ${E2E_LEAK[edge-c_records]} + ${E2E_LEAK[cloud_records]} TLS records, 0 other; cleartext HL7: $hl7_clear"
L "wall time" "$WALL s so far"
check "demo: the summary's counts: lab $in_total = $((n_samples + 2200)), adt $adt_total = 1, LIS $out_total = $((posted + 22)), AA $out_aa = $((posted + 22))" \
	test "$in_total" = $((n_samples + 2200)) -a "$adt_total" = 1 -a "$out_total" = $((posted + 22)) -a "$out_aa" = $((posted + 22))
[ "$FAILS" -eq 0 ] || bail

if [ -n "$DEMO_KEEP" ]; then
	{
		echo "DEMO_NAMESPACES='$NS_HOSP $NS_EDGE $NS_CLOUD'"
		echo "DEMO_SUPERVISOR=$AP_PID"
		echo "DEMO_PIDS='${CH_PID[peer]} $CH_BG_PIDS'"
		echo "DEMO_TMP=$TMP"
	} >"$STATE"
	trap - EXIT INT TERM
	exec 1>&3 2>&3
	cat <<EOF

The lab keeps running (make demo KEEP=1). Look at it:
   ip netns exec $NS_EDGE $APPCTL -s $AP_SOCK status
   ip netns exec $NS_EDGE $APPCTL -s $AP_SOCK status --json
   ip netns exec $NS_EDGE curl -s http://127.0.0.1:9100/metrics | grep -E '^(mllp|appliance)_' | head -40
   ip netns exec $NS_HOSP $BIN_ABS/mllp-send -b 203.0.113.65 $E2E_LAB $SAMPLES_ABS/adt_a01_v251.hl7
   ip netns exec $NS_CLOUD curl -s --cacert $CERTS_ABS/ca.pem -H 'Authorization: Bearer $E2E_TOKEN' \\
       -H 'Prefer: wait=5' --data-binary @$SAMPLES_ABS/orm_o01_v23.hl7 $E2E_API/v1/destinations/lis/messages
   the config: $AP_CONF; logs: $AP_LOG, $E2E_DIR/charon.log; the cloud's records: $E2E_SINK
Stop it (every process by PID, then the namespaces and $TMP):
   scripts/demo.sh --stop
EOF
	exit 0
fi

step "Tearing down"
e2e_stop
T_END=$(date +%s.%N)
[ "$FAILS" -eq 0 ] || bail
exec 1>&3 2>&3
awk -v a="$T_START" -v b="$T_END" 'BEGIN { printf "\nDemo passed in %.1f s; stopping what is left and removing the namespaces.\n", b - a }'
finish
