#!/bin/bash
# The vici library and tool against two real charons (kernel-libipsec) in
# network namespaces made here. The gateway's charon is driven only by
# build/bin/vici, as the appliance would drive it; the hospital side ("peer")
# is configured with swanctl. Covers: load-conn and load-shared for a DH 21
# and a DH 14 connection, initiate, list-sas (CHILD_SA INSTALLED, ECP_521 /
# MODP_2048, also in the ESP proposal after a rekey), traffic through the
# tunnel (nc; ESP counters in list-sas grow), terminate, a modp1024
# peer failing with NO_PROPOSAL_CHOSEN reported by the tool, monitor printing
# the up/down events, and charon killed and restarted under a running monitor
# that reconnects and registers its events again by itself.
set -u
. "$(dirname "$0")/lib.sh"
CH_TMP=$TMP/charon
mkdir -p "$CH_TMP"
. "$(dirname "$0")/charon-lib.sh"

if [ "$(id -u)" -ne 0 ]; then
	fail "network namespaces and charon need root"
	exit 1
fi

DH21=dh21:aes256gcm16-prfsha384-ecp521:aes256gcm16-ecp521
DH14=dh14:aes256gcm16-prfsha256-modp2048:aes256gcm16-modp2048
DH14_WEAK=dh14:aes256gcm16-prfsha256-modp1024:aes256gcm16-modp1024

# vici ARGS...: the tool against the gateway's charon; stdout in $TMP/out,
# stderr in $TMP/err (both kept per call in vici.log for the sanitizer check).
vici() {
	local rc
	timeout 30 "$BIN/vici" -s "unix://$CH_TMP/gw/charon.vici" "$@" >"$TMP/out" 2>"$TMP/err"
	rc=$?
	{
		echo "\$ vici $* -> exit $rc"
		cat "$TMP/out" "$TMP/err"
	} >>"$TMP/vici.log"
	return $rc
}

# check NAME WANT_RC PATTERN ARGS...: vici ARGS exits WANT_RC and its stdout
# and stderr together match the extended regexp PATTERN.
check() {
	local name=$1 want=$2 pat=$3 rc
	shift 3
	vici "$@"
	rc=$?
	if [ "$rc" -ne "$want" ]; then
		fail "$name" "exit $rc, wanted $want: $(head -c 300 "$TMP/err")"
	elif ! cat "$TMP/out" "$TMP/err" | grep -qE -- "$pat"; then
		fail "$name" "output lacks /$pat/: $(head -c 300 "$TMP/out" "$TMP/err")"
	else
		ok "$name"
	fi
}

# write_yaml FILE SPEC...: the gateway's connections as load-conn YAML.
write_yaml() {
	local file=$1 spec name ike esp
	shift
	ch_side gw
	for spec in "$@"; do
		IFS=: read -r name ike esp <<<"$spec"
		cat <<EOF
$name:
  version: 2
  local_addrs: [$ch_la]
  remote_addrs: [$ch_ra]
  proposals: [$ike]
  local:
    auth: psk
    id: gw-$name.mllp.test
  remote:
    auth: psk
    id: peer-$name.mllp.test
  children:
    $name-net:
      local_ts: [$ch_lts]
      remote_ts: [$ch_rts]
      esp_proposals: [$esp]
      start_action: none
EOF
	done >"$file"
}

# load_gateway: connections and secrets into the gateway's charon, the DH 21
# secret from a file (both owners), the DH 14 one from standard input (one
# owner), so that it never shows in the process list.
load_gateway() {
	check "load-conn dh21 + dh14" 0 "success" load-conn "$TMP/gw.yaml"
	check "load-shared from a file" 0 "success" load-shared "$TMP/psk-dh21.yaml"
	check "load-shared --id --secret - (standard input)" 0 "success" \
		load-shared --id gw-dh14.mllp.test --secret - <<<"$CH_PSK"
}

# monitor_has PATTERN: the running monitor printed a line matching PATTERN
# (extended regexp) after line $MON_MARK of its output.
monitor_has() { tail -n +$((MON_MARK + 1)) "$TMP/monitor.out" | grep -qE -- "$1"; }
monitor_mark() { MON_MARK=$(wc -l <"$TMP/monitor.out"); }

# sas IKE: list-sas --ike IKE as JSON into $TMP/out.
sas() { vici --json list-sas --ike "$1"; }

# esp_bytes IKE: ESP bytes in + out of IKE's CHILD_SAs, from list-sas.
esp_bytes() {
	sas "$1" && grep -oE '"bytes-(in|out)":"[0-9]+"' "$TMP/out" |
		awk -F '"' '{ t += $4 } END { print t + 0 }'
}

# tunnel_case CONN GROUP PORT: initiate, check the SAs, rekey, send traffic
# to PORT through the tunnel, terminate.
tunnel_case() {
	local conn=$1 group=$2 port=$3 before after
	monitor_mark
	check "$conn: initiate" 0 "success" initiate --child "$conn-net" --timeout 10000
	sas "$conn"
	expect "$conn: list-sas: IKE_SA ESTABLISHED with $group" \
		grep -qE "\"state\":\"ESTABLISHED\".*\"dh-group\":\"$group\"" "$TMP/out"
	expect "$conn: list-sas: CHILD_SA $conn-net INSTALLED" \
		grep -qE "\"name\":\"$conn-net\",[^}]*\"state\":\"INSTALLED\"" "$TMP/out"
	expect "$conn: the peer has it too (vici over TCP in the peer's namespace)" \
		sh -c "ip netns exec $NS_PEER $BIN/vici -s $PEER_URI list-sas --ike $conn |
			grep -q '^  $conn-net: #[0-9]*, reqid [0-9]*, INSTALLED, TUNNEL-in-UDP, ESP:'"
	expect "$conn: monitor: ike-updown up" \
		wait_until 5 "monitor_has '^ike-updown up=yes $conn=\\{'"
	expect "$conn: monitor: child-updown up" \
		wait_until 5 "monitor_has '^child-updown up=yes $conn=.*name=$conn-net .*state=INSTALLED'"
	# The CHILD_SA made with IKE_AUTH does no DH of its own; a rekey runs
	# CREATE_CHILD_SA with the ESP proposal's group (PFS).
	check "$conn: rekey --child" 0 "success" rekey --child "$conn-net"
	expect "$conn: monitor: child-rekey" \
		wait_until 10 "monitor_has '^child-rekey $conn=.*state=INSTALLED.*dh-group=$group'"
	expect "$conn: list-sas: the rekeyed CHILD_SA uses $group" \
		wait_until 10 "sas $conn && grep -qE '\"state\":\"INSTALLED\",[^}]*\"dh-group\":\"$group\"' $TMP/out"
	check "$conn: list-sas summary: the CHILD_SA with $group" 0 \
		"^  $conn-net: #[0-9]+, reqid [0-9]+, INSTALLED, TUNNEL-in-UDP, ESP:AES_GCM_16-256/$group\$" \
		list-sas --ike "$conn"
	check "$conn: list-sas --raw: the message tree" 0 "^      state = INSTALLED\$" \
		--raw list-sas --ike "$conn"
	before=$(esp_bytes "$conn")
	expect "$conn: nc 203.0.113.1 -> 203.0.113.65:$port through the tunnel" ch_nc_through "$port"
	after=$(esp_bytes "$conn")
	expect "$conn: list-sas: ESP byte counters grew ($before -> $after)" test "$after" -gt "$before"
	check "$conn: rekey --ike" 0 "success" rekey --ike "$conn"
	expect "$conn: monitor: ike-rekey, the new IKE_SA with $group" \
		wait_until 10 "monitor_has '^ike-rekey $conn=\\{ old=\\{.* new=\\{.*dh-group=$group'"
	monitor_mark
	check "$conn: terminate --ike" 0 "success" terminate --ike "$conn" --timeout 5000
	expect "$conn: monitor: ike-updown down" \
		wait_until 5 "monitor_has '^ike-updown $conn=\\{'"
	sas "$conn"
	expect "$conn: list-sas: gone after terminate" sh -c "! grep -q '\"$conn\"' $TMP/out"
}

# --- set-up -----------------------------------------------------------------
netns_setup
charon_start gw "$NS_GW" "$CH_TMP/gw"
# The peer's vici listens on TCP, on its namespace's loopback.
PEER_URI=tcp://127.0.0.1:4502
charon_start peer "$NS_PEER" "$CH_TMP/peer" "$PEER_URI"
ch_write_conf "$CH_TMP/peer-conf/swanctl.conf" peer "$DH21" "$DH14"
ch_write_conf "$CH_TMP/peer-weak/swanctl.conf" peer "$DH14_WEAK"
expect "peer configured with swanctl" swanctl_load peer "$CH_TMP/peer-conf" >/dev/null
write_yaml "$TMP/gw.yaml" "$DH21" "$DH14"
cat >"$TMP/psk-dh21.yaml" <<EOF
type: IKE
data: $CH_PSK
owners: [gw-dh21.mllp.test, peer-dh21.mllp.test]
EOF

# --- the tool against a live charon -----------------------------------------
check "version: charon 5.x" 0 "^daemon = charon" version
check "version --json" 0 '^\{"daemon":"charon","version":"5\.' --json version
check "stats: uptime" 0 "uptime \{" stats
load_gateway
check "get-conns: both connections" 0 '"conns":\["dh21","dh14"\]' --json get-conns
check "list-conns --ike dh14: its child and traffic selector" 0 \
	"remote-ts = \[203\.0\.113\.64/26\]" list-conns --ike dh14
printf 'bad:\n  version: 2\n  proposals: [aes256gcm16-prf_sha384-ecp521]\n' >"$TMP/bad.yaml"
check "load-conn: a proposal charon rejects: exit 1 with errmsg" 1 \
	"^vici: load-conn failed: invalid value for: proposals" load-conn "$TMP/bad.yaml"
check "unload-conn of an unknown connection: exit 1" 1 \
	"^vici: unload-conn failed: .*'nosuch' not found" unload-conn nosuch
check "initiate of an unknown child: exit 1" 1 \
	"^vici: initiate failed: CHILD_SA config 'nosuch' not found" initiate --child nosuch

# The monitor runs through everything below, charon's restart included.
"$BIN/vici" -s "unix://$CH_TMP/gw/charon.vici" monitor >"$TMP/monitor.out" 2>"$TMP/monitor.log" &
MON_PID=$!
PIDS="$PIDS $MON_PID"
MON_MARK=0
expect "monitor: subscribed" \
	wait_until 10 "grep -q '^vici: monitoring charon 5' $TMP/monitor.log"

tunnel_case dh21 ECP_521 5021
tunnel_case dh14 MODP_2048 5014

# --- a modp1024-only peer ---------------------------------------------------
expect "peer reloaded with modp1024 only" swanctl_load peer "$CH_TMP/peer-weak" >/dev/null
# A second monitor, with charon's log, watches the failure.
"$BIN/vici" -s "unix://$CH_TMP/gw/charon.vici" monitor --log >"$TMP/monlog.out" \
	2>"$TMP/monlog.log" &
MONLOG_PID=$!
PIDS="$PIDS $MONLOG_PID"
expect "monitor --log: subscribed" \
	wait_until 10 "grep -q '^vici: monitoring charon 5' $TMP/monlog.log"
check "modp1024 peer: initiate fails with reason NO_PROPOSAL_CHOSEN" 1 \
	"^reason: NO_PROPOSAL_CHOSEN$" initiate --child dh14-net --timeout 10000
expect "... after charon's errmsg" grep -q "^vici: initiate failed: establishing CHILD_SA .*failed" "$TMP/err"
expect "... and before charon's log of the attempt" \
	grep -q "^  \[IKE\] dh14: received NO_PROPOSAL_CHOSEN notify error" "$TMP/err"
sas dh14
expect "modp1024 peer: no SA left" sh -c "! grep -q INSTALLED $TMP/out"
expect "monitor --log: charon's log line of the failure" \
	wait_until 5 "grep -q '^log .*msg=received NO_PROPOSAL_CHOSEN notify error' $TMP/monlog.out"
kill -TERM "$MONLOG_PID"
expect "monitor --log: exits 0 on SIGTERM" wait "$MONLOG_PID"
PIDS=${PIDS/ $MONLOG_PID/}
expect "peer restored" swanctl_load peer "$CH_TMP/peer-conf" >/dev/null

# --- charon dies and comes back ---------------------------------------------
GW_OLD=${CH_PID[gw]}
kill -KILL "$GW_OLD"
wait "$GW_OLD" 2>/dev/null
unset "CH_PID[gw]"
expect "monitor: reports the lost connection" \
	wait_until 5 "grep -q 'vici: connection to .* lost' $TMP/monitor.log"
check "charon down: exit 3" 3 "cannot connect to charon" version
charon_start gw "$NS_GW" "$CH_TMP/gw"
expect "monitor: reconnects and registers again by itself" \
	wait_until 15 "grep -q 'vici: reconnected to .*events registered again' $TMP/monitor.log"
expect "monitor: still running" kill -0 "$MON_PID"
check "restarted charon has no connections" 0 '"conns":\[\]' --json get-conns
load_gateway
tunnel_case dh21 ECP_521 5022

# --- monitor ends on SIGTERM --------------------------------------------------
expect "monitor without --log: no log lines" sh -c "! grep -q '^log ' $TMP/monitor.out"
kill -TERM "$MON_PID"
expect "monitor: exits 0 on SIGTERM" wait "$MON_PID"
PIDS=${PIDS/ $MON_PID/}
