#!/bin/bash
# t_rootfs (issue 13): what rootfs/ lays on the appliance, checked with the
# real tools, in a few seconds.
#
#   firewall  rootfs/etc/nftables.d/mllp-edge.nft: `nft -c` on the shipped
#             file and on the test's copy (OUTER_IF set to the test's link,
#             the other parameters as shipped, which agree with the example
#             appliance.yaml). Then, loaded in an appliance namespace joined
#             to a peer namespace (outer link 198.51.100.0/24, inner
#             addresses 203.0.113.x on lo, routed over the link in clear),
#             with a listener behind every port so that each refusal is the
#             firewall's (a control round without the ruleset connects to
#             each one first):
#               - an MLLP SYN from the outer address, and one from a hospital
#                 address, in clear: dropped, in_mllp_clear moves;
#               - IKE (UDP 500): delivered, in_ike moves, no drop counter moves;
#               - ESP (protocol 50, a raw datagram): in_esp moves, no drop
#                 counter moves (there is no kernel ESP here to decrypt it);
#               - HTTPS to the API port: connects, in_api moves, no drop
#                 counter moves; the same from a hospital address in clear:
#                 dropped, in_hospital_clear moves;
#               - TCP to a port nothing allows (2222, and the observability
#                 port 9100): dropped, in_dropped / in_metrics move;
#               - MLLP from the appliance to a hospital receiver in clear:
#                 dropped by the output rule (rt ipsec missing), connect()
#                 fails at once, out_mllp_clear moves.
#             NOT exercised here: this kernel has no ESP (CONFIG_INET_ESP,
#             AH and IPCOMP are all off), so no packet can carry IPsec state.
#             The accepting side of the IPsec matches, i.e. the input rule
#             "meta ipsec exists ... in_mllp_ipsec accept" and the output
#             rule letting "rt ipsec exists" traffic through, can be proven
#             only on a kernel with ESP: the VM image test (`make
#             image-test`), with this ruleset loaded in the appliance VM.
#   sysctl    rootfs/etc/sysctl.d/90-mllp-edge.conf: every line is KEY = VALUE,
#             every key is under net. and exists in a fresh network namespace
#             (so it is per namespace: applying the file there cannot touch
#             the host), `sysctl -p` applies it there without an error, and
#             each value reads back.
#   charon    rootfs/etc/appliance/strongswan.conf: a real charon started with
#             it (STRONGSWAN_CONF, in its own namespace, /run private, inside
#             appliance.service's CapabilityBoundingSet and NoNewPrivileges
#             by setpriv) answers
#             on the vici socket the file names (/run/charon.vici, as
#             appliance.yaml expects), with exactly the plugins the file
#             lists: kernel-netlink and vici, no kernel-libipsec, no stroke.
#             No log level above 2. Its start-scripts run swanctl --load-all,
#             which here loads the swanctl example
#             (rootfs/etc/swanctl/conf.d/hospital-b.conf.example, copied as a
#             .conf under SWANCTL_DIR): charon then has the connection
#             hospital-b with the child mllp-b and the traffic selectors of
#             the example appliance.yaml's hospital-b. Its proposals name DH
#             21 (ecp521) or 14 (modp2048) and no other group.
#   units     `make install DESTDIR=ROOT`, then `systemd-analyze verify
#             --root=ROOT` on appliance.service and mllp-bridge.service in
#             /usr/lib/systemd/system (it checks that each Exec binary exists
#             in ROOT: the ones the units name outside the package are copied
#             from this host, as is its unit directory for the targets). The
#             same verify on a ROOT without /usr/sbin/mllp-bridge must fail.
#             No unit of the package is left under /etc/systemd/system.
#             appliance.service's STRONGSWAN_CONF is the installed
#             strongswan.conf, whose vici socket is appliance.yaml's.
#   users     systemd-sysusers --root=ROOT makes mllp-bridge (no shell, home
#             /var/lib/appliance) and the group appliance; systemd-tmpfiles
#             --root=ROOT makes /var/lib/appliance 0700, owned by mllp-bridge.
#
# Run alone: BUILD=build bash tests/integration/t_rootfs.sh (root).
. "$(dirname "$0")/lib.sh"

ROOTFS=rootfs
NFT_FILE=$ROOTFS/etc/nftables.d/mllp-edge.nft
SYSCTL_FILE=$ROOTFS/etc/sysctl.d/90-mllp-edge.conf
SS_CONF=$ROOTFS/etc/appliance/strongswan.conf
SWANCTL_EX=$ROOTFS/etc/swanctl/conf.d/hospital-b.conf.example
EXAMPLE=$ROOTFS/etc/appliance/appliance.yaml
UNITS="appliance.service mllp-bridge.service"
CHARON=${CHARON:-/usr/lib/ipsec/charon}

SUFFIX=$$
NS_A=mllp-rfa-$SUFFIX # the appliance, with the ruleset
NS_P=mllp-rfp-$SUFFIX # the peer: the hospital's gateway and hosts, or an attacker
NS_C=mllp-rfc-$SUFFIX # charon with the shipped strongswan.conf
NAMESPACES=""

rootfs_cleanup() {
	local ns
	# Our processes first (lib.sh's cleanup would too, after the
	# namespaces are gone); nothing else runs in namespaces we made.
	stop_pids
	for ns in $NAMESPACES; do
		ip netns del "$ns" 2>/dev/null
	done
	NAMESPACES=""
}
trap 'rootfs_cleanup; cleanup' EXIT
trap 'exit 143' TERM
trap 'exit 130' INT

for tool in nft ip nc python3 setpriv sysctl systemd-analyze systemd-sysusers systemd-tmpfiles swanctl nsenter; do
	command -v "$tool" >/dev/null || {
		fail "setup: $tool is not installed (scripts/deps.sh)"
		exit 1
	}
done
for f in "$NFT_FILE" "$SYSCTL_FILE" "$SS_CONF" "$SWANCTL_EX" "$EXAMPLE" "$CHARON"; do
	[ -e "$f" ] || {
		fail "setup: $f is missing"
		exit 1
	}
done

# ---- firewall ----------------------------------------------------------------

OUTER=wan0
A_OUT=198.51.100.1 P_OUT=198.51.100.2
MLLP_ADDR=203.0.113.1 MLLP_PORT=9960 API_PORT=8443 OBS_PORT=9100 OTHER_PORT=2222
HOSP=203.0.113.65 LIS_PORT=2575

mkns() {
	ip netns add "$1" || {
		fail "setup: ip netns add $1"
		exit 1
	}
	NAMESPACES="$NAMESPACES $1"
	ip -n "$1" link set lo up
}

# bg NS CMD...: CMD in NS in the background, its PID recorded (ip netns exec
# execs it, so $! is CMD's own PID).
bg() {
	local ns=$1
	shift
	ip netns exec "$ns" "$@" </dev/null &
	PIDS="$PIDS $!"
}

# cnt NAME: the packets of counter NAME in NS_A, or "none" when it cannot be read.
cnt() {
	local n
	n=$(ip netns exec "$NS_A" nft list counter inet mllp_edge "$1" 2>/dev/null |
		sed -n 's/.*packets \([0-9][0-9]*\) bytes.*/\1/p')
	echo "${n:-none}"
}

DROPS="in_mllp_clear in_hospital_clear in_invalid in_metrics in_dropped out_mllp_clear"
# snap: every counter as NAME=N lines (one nft call), for before/after
# comparisons; a counter that cannot be read is NAME=none.
snap() {
	local c all
	all=$(ip netns exec "$NS_A" nft list counters table inet mllp_edge 2>/dev/null |
		awk '$1 == "counter" { n = $2 } $1 == "packets" && n != "" { print n "=" $2; n = "" }')
	for c in $DROPS in_mllp_ipsec in_ike in_esp in_api; do
		echo "$all" | grep -x "$c=[0-9]*" || echo "$c=none"
	done
}
# delta BEFORE AFTER NAME: how far counter NAME moved ("none" if unreadable).
delta() {
	local b a
	b=$(echo "$1" | sed -n "s/^$3=//p")
	a=$(echo "$2" | sed -n "s/^$3=//p")
	case "$b$a" in *none* | "") echo none ;; *) echo $((a - b)) ;; esac
}
# moved WHAT BEFORE AFTER NAME [NAME...]: ok when each named counter grew
# and every other drop counter stayed put.
moved() {
	local what=$1 b=$2 a=$3 c d bad=""
	shift 3
	for c in "$@"; do
		d=$(delta "$b" "$a" "$c")
		[ "$d" != none ] && [ "$d" -gt 0 ] || bad="$bad $c+$d"
	done
	for c in $DROPS; do
		case " $* " in *" $c "*) continue ;; esac
		d=$(delta "$b" "$a" "$c")
		[ "$d" = 0 ] || bad="$bad $c+$d(should stay)"
	done
	if [ -z "$bad" ]; then ok "$what"; else fail "$what" "counters:$bad"; fi
}

# tcp_try NS [nc options] HOST PORT: 0 when a TCP connection opens within 1 s
# (on a veth it takes well under a millisecond; a dropped SYN never does).
tcp_try() {
	local ns=$1
	shift
	ip netns exec "$ns" nc -z -w 1 "$@" >>"$TMP/nc.log" 2>&1
}

mkns "$NS_A"
mkns "$NS_P"
ip -n "$NS_A" link add "$OUTER" type veth peer name "$OUTER" netns "$NS_P" ||
	{ fail "setup: veth"; exit 1; }
ip -n "$NS_A" addr add "$A_OUT/24" dev "$OUTER"
ip -n "$NS_P" addr add "$P_OUT/24" dev "$OUTER"
ip -n "$NS_A" link set "$OUTER" up
ip -n "$NS_P" link set "$OUTER" up
# Inner addresses on lo (no dummy driver here), routed over the outer link
# in clear: what the firewall must stop.
ip -n "$NS_A" addr add "$MLLP_ADDR/32" dev lo
ip -n "$NS_P" addr add "$HOSP/32" dev lo
ip -n "$NS_P" route add "$MLLP_ADDR/32" via "$A_OUT"
ip -n "$NS_A" route add 203.0.113.64/26 via "$P_OUT"
for ns in "$NS_A" "$NS_P"; do
	ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1
done

# Listeners behind every port the checks use.
bg "$NS_A" nc -lk -s "$MLLP_ADDR" -p "$MLLP_PORT"
bg "$NS_A" nc -lk -s "$A_OUT" -p "$API_PORT"
bg "$NS_A" nc -lk -s "$A_OUT" -p "$OTHER_PORT"
bg "$NS_A" nc -lk -s "$A_OUT" -p "$OBS_PORT"
ip netns exec "$NS_A" nc -lu -s "$A_OUT" -p 500 >"$TMP/ike.recv" 2>&1 </dev/null &
PIDS="$PIDS $!"
bg "$NS_P" nc -lk -s "$HOSP" -p "$LIS_PORT"
listening() {
	local ns=$1 opt=$2 port
	shift 2
	for port in "$@"; do
		ip netns exec "$ns" ss "$opt" | grep -q ":$port " || return 1
	done
}
wait_until 5 "listening $NS_A -ltn $MLLP_PORT $API_PORT $OTHER_PORT $OBS_PORT" &&
	wait_until 5 "listening $NS_A -lun 500" && wait_until 5 "listening $NS_P -ltn $LIS_PORT" ||
	{ fail "setup: the listeners did not start"; exit 1; }

# Control round: without the ruleset every one of them is reachable, so a
# refusal below is the firewall's.
control=""
tcp_try "$NS_P" "$MLLP_ADDR" "$MLLP_PORT" || control="$control mllp"
tcp_try "$NS_P" -s "$HOSP" "$MLLP_ADDR" "$MLLP_PORT" || control="$control mllp-from-hospital"
tcp_try "$NS_P" "$A_OUT" "$OTHER_PORT" || control="$control $OTHER_PORT"
tcp_try "$NS_P" -s "$HOSP" "$A_OUT" "$API_PORT" || control="$control api-from-hospital"
tcp_try "$NS_P" "$A_OUT" "$OBS_PORT" || control="$control $OBS_PORT"
tcp_try "$NS_A" "$HOSP" "$LIS_PORT" || control="$control appliance-to-lis"
if [ -z "$control" ]; then
	ok "control: without the ruleset, MLLP (from the outer and a hospital address), the API from a hospital address, ports $OTHER_PORT and $OBS_PORT, and the hospital's receiver all connect"
else
	fail "control: without the ruleset these did not connect:$control" "$(tail -n 5 "$TMP/nc.log")"
	exit 1
fi

run_check() { "$@" >"$TMP/out" 2>&1; }

if run_check nft -c -f "$NFT_FILE"; then
	ok "nft -c -f $NFT_FILE (the shipped file, as an operator gets it)"
else
	fail "nft -c -f $NFT_FILE" "$(head -c 600 "$TMP/out")"
fi

# The test's copy: OUTER_IF is the test's link; every other parameter is
# the shipped one, which the example appliance.yaml must agree with.
sed "s/^define OUTER_IF = \"eth0\"\$/define OUTER_IF = \"$OUTER\"/" "$NFT_FILE" >"$TMP/fw.nft"
grep -qx "define OUTER_IF = \"$OUTER\"" "$TMP/fw.nft" ||
	fail "the parameter line 'define OUTER_IF = \"eth0\"' is not in $NFT_FILE any more"
params=""
grep -qx "define API_ADDR = $A_OUT" "$NFT_FILE" && grep -qx "define API_PORT = $API_PORT" "$NFT_FILE" &&
	grep -q "^  listen: $A_OUT:$API_PORT " "$EXAMPLE" || params="$params API"
grep -qx "define MLLP_ADDRS = { $MLLP_ADDR }" "$NFT_FILE" && grep -qx "define MLLP_PORTS = { 9960, 9961 }" "$NFT_FILE" &&
	[ "$(grep -cE "^    listen: $MLLP_ADDR:996[01]( |\$)" "$EXAMPLE")" = 2 ] || params="$params MLLP"
grep -qx "define HOSPITAL_NETS = { 203.0.113.64/26, 203.0.113.200/32 }" "$NFT_FILE" &&
	grep -q "remote_ts: \[203.0.113.64/26, 203.0.113.200/32\]" "$EXAMPLE" || params="$params HOSPITAL_NETS"
grep -qx "define OBS_PORT = $OBS_PORT" "$NFT_FILE" && grep -q "^  listen: 127.0.0.1:$OBS_PORT" "$EXAMPLE" ||
	params="$params OBS_PORT"
if [ -z "$params" ]; then
	ok "the ruleset's parameters are the example appliance.yaml's (https.listen, integrations' listen, remote_ts, observability port)"
else
	fail "the ruleset's parameters differ from the example appliance.yaml (or from what this test uses):$params"
fi

if run_check ip netns exec "$NS_A" nft -c -f "$TMP/fw.nft" &&
	run_check ip netns exec "$NS_A" nft -f "$TMP/fw.nft"; then
	ok "nft -c -f and nft -f: the ruleset with OUTER_IF=$OUTER loads in the appliance namespace"
else
	fail "loading the ruleset in $NS_A" "$(head -c 600 "$TMP/out")"
	exit 1
fi
# A second load replaces the table (the delete before it), never fails on
# an existing one: what `systemctl reload nftables` does.
if run_check ip netns exec "$NS_A" nft -f "$TMP/fw.nft" &&
	[ "$(ip netns exec "$NS_A" nft list tables | grep -c 'inet mllp_edge')" = 1 ]; then
	ok "loading it again replaces the table (one inet mllp_edge)"
else
	fail "a second nft -f of the ruleset" "$(head -c 600 "$TMP/out")"
fi
# The documented way: an nftables.conf that flushes and includes it,
# loaded twice (boot, then `systemctl reload nftables`).
printf 'flush ruleset\ninclude "%s"\n' "$TMP/fw.nft" >"$TMP/nftables.conf"
if run_check ip netns exec "$NS_A" nft -f "$TMP/nftables.conf" &&
	run_check ip netns exec "$NS_A" nft -f "$TMP/nftables.conf" &&
	[ "$(ip netns exec "$NS_A" nft list tables)" = "table inet mllp_edge" ]; then
	ok "an nftables.conf with 'flush ruleset' and 'include \"/etc/nftables.d/mllp-edge.nft\"' loads it, twice"
else
	fail "loading through an nftables.conf include" "$(head -c 600 "$TMP/out")"
fi
s0=$(snap)
case "$s0" in
*none*) fail "the named counters cannot be read with nft list counter" "$s0" ;;
*=0*) ;;
esac
nz=$(echo "$s0" | grep -v '=0$')
[ -z "$nz" ] && ok "nft list counter reads all ten named counters, each at 0" ||
	fail "counters after loading" "$nz"

# MLLP in clear from the outer address (the attacker of e2e_outside).
b=$(snap)
if tcp_try "$NS_P" "$MLLP_ADDR" "$MLLP_PORT"; then
	fail "an MLLP SYN from $P_OUT in clear connected to $MLLP_ADDR:$MLLP_PORT"
else
	moved "an MLLP SYN from $P_OUT without IPsec is dropped (no connection) and in_mllp_clear counts it" \
		"$b" "$(snap)" in_mllp_clear
fi
# The same from a hospital address: the tunnel's addresses in clear.
b=$(snap)
if tcp_try "$NS_P" -s "$HOSP" "$MLLP_ADDR" "$MLLP_PORT"; then
	fail "an MLLP SYN from $HOSP in clear connected"
else
	moved "an MLLP SYN from the hospital's $HOSP without IPsec is dropped and in_mllp_clear counts it" \
		"$b" "$(snap)" in_mllp_clear
fi

# IKE: a datagram on UDP 500 reaches the listener, and nothing is dropped.
b=$(snap)
ip netns exec "$NS_P" bash -c "printf 'ike-probe\n' >/dev/udp/$A_OUT/500" 2>>"$TMP/nc.log"
if wait_until 3 'grep -q ike-probe "$TMP/ike.recv"'; then
	moved "IKE (UDP 500) is delivered; in_ike counts it, no drop counter moves" "$b" "$(snap)"
	a=$(snap)
	[ "$(delta "$b" "$a" in_ike)" = 1 ] || fail "in_ike moved by $(delta "$b" "$a" in_ike), not 1"
else
	fail "a UDP 500 datagram did not reach the listener with the ruleset loaded"
fi

# ESP: a raw protocol-50 datagram; accepted by the ruleset (there is no
# kernel ESP here to decrypt it, so only the counters show it).
b=$(snap)
ip netns exec "$NS_P" python3 -c '
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, 50)
s.sendto(b"\0\0\0\1\0\0\0\1" + b"\0" * 32, (sys.argv[1], 0))
' "$A_OUT" 2>>"$TMP/nc.log"
sleep 0.2
a=$(snap)
if [ "$(delta "$b" "$a" in_esp)" = 1 ]; then
	moved "ESP (protocol 50) is accepted: in_esp counts it, no drop counter moves" "$b" "$a" 
else
	fail "an ESP datagram: in_esp moved by $(delta "$b" "$a" in_esp), not 1" "$a"
fi

# HTTPS to the API port connects, and nothing is dropped.
b=$(snap)
if tcp_try "$NS_P" "$A_OUT" "$API_PORT"; then
	a=$(snap)
	[ "$(delta "$b" "$a" in_api)" -ge 1 ] 2>/dev/null &&
		moved "HTTPS to the API port $API_PORT connects; in_api counts it, no drop counter moves" "$b" "$a" ||
		fail "the API connection: in_api moved by $(delta "$b" "$a" in_api)"
else
	fail "a connection to the API port $A_OUT:$API_PORT was refused by the ruleset"
fi

# The same API port from a hospital address in clear: the hospital's ranges
# come only through the tunnel, whatever the port.
b=$(snap)
if tcp_try "$NS_P" -s "$HOSP" "$A_OUT" "$API_PORT"; then
	fail "a hospital address ($HOSP) reached the API port in clear"
else
	moved "the API port from the hospital's $HOSP in clear is dropped and in_hospital_clear counts it" \
		"$b" "$(snap)" in_hospital_clear
fi

# A port nothing allows (what sshd would be) and the observability port.
b=$(snap)
if tcp_try "$NS_P" "$A_OUT" "$OTHER_PORT"; then
	fail "TCP to $A_OUT:$OTHER_PORT connected through the ruleset"
else
	moved "TCP to port $OTHER_PORT on the outer interface is dropped and in_dropped counts it" \
		"$b" "$(snap)" in_dropped
fi
b=$(snap)
if tcp_try "$NS_P" "$A_OUT" "$OBS_PORT"; then
	fail "TCP to the observability port $A_OUT:$OBS_PORT connected through the ruleset"
else
	moved "TCP to the observability port $OBS_PORT on the outer interface is dropped and in_metrics counts it" \
		"$b" "$(snap)" in_metrics
fi

# MLLP from the appliance to the hospital's receiver without IPsec: the
# output rule (the SYN never leaves; connect() times out).
b=$(snap)
if tcp_try "$NS_A" "$HOSP" "$LIS_PORT"; then
	fail "MLLP from the appliance to $HOSP:$LIS_PORT left in clear and connected"
else
	moved "MLLP from the appliance to the hospital's $HOSP:$LIS_PORT without IPsec is dropped on output and out_mllp_clear counts it" \
		"$b" "$(snap)" out_mllp_clear
fi
echo "# not exercised here (no kernel ESP): the input accept 'meta ipsec exists ... in_mllp_ipsec' and"
echo "# output through 'rt ipsec exists': only a kernel with ESP can (the VM image test, with this ruleset loaded)."
[ "$(cnt in_mllp_ipsec)" = 0 ] || fail "in_mllp_ipsec moved without IPsec: $(cnt in_mllp_ipsec)"

# ---- sysctl ------------------------------------------------------------------

mkns "$NS_C"
bad=$(grep -vE '^[[:space:]]*(#|$)' "$SYSCTL_FILE" | grep -vE '^net\.[a-z0-9_.]+ = [0-9]+( [0-9]+)*$')
[ -z "$bad" ] && ok "sysctl: every line of $SYSCTL_FILE is a comment or 'net.KEY = VALUE'" ||
	fail "sysctl: lines that are not 'net.KEY = VALUE'" "$bad"
keys=$(grep -E '^net\.' "$SYSCTL_FILE" | cut -d' ' -f1)
# shellcheck disable=SC2016 # expanded by the inner shell
missing=$(ip netns exec "$NS_C" sh -c 'for k; do
	[ -w "/proc/sys/$(echo "$k" | tr . /)" ] || printf " %s" "$k"; done' sh $keys)
[ -n "$keys" ] && [ -z "$missing" ] &&
	ok "sysctl: all $(echo "$keys" | wc -w) keys exist in a fresh network namespace (per namespace, so applying them there leaves the host alone)" ||
	fail "sysctl: keys not in a fresh namespace's /proc/sys (not per namespace, or unknown):$missing"
host_before=$(sysctl -n net.ipv4.conf.all.rp_filter net.ipv4.conf.all.log_martians)
if ip netns exec "$NS_C" sysctl -p "$SYSCTL_FILE" >"$TMP/sysctl.out" 2>&1; then
	wrong=""
	# shellcheck disable=SC2046 # one argument per key
	got=$(ip netns exec "$NS_C" sysctl $(echo "$keys" | tr '\n' ' ') | tr -s '\t ' ' ')
	while read -r k _ v; do
		echo "$got" | grep -qxF "$k = $v" || wrong="$wrong $k(want $v)"
	done < <(grep -E '^net\.' "$SYSCTL_FILE")
	[ -z "$wrong" ] && ok "sysctl -p $SYSCTL_FILE applies in the namespace and every value reads back" ||
		fail "sysctl values after sysctl -p" "$wrong"
else
	fail "sysctl -p $SYSCTL_FILE in a namespace" "$(head -c 400 "$TMP/sysctl.out")"
fi
[ "$(sysctl -n net.ipv4.conf.all.rp_filter net.ipv4.conf.all.log_martians)" = "$host_before" ] ||
	fail "sysctl: the host's values changed"

# ---- strongswan.conf and the swanctl example ------------------------------

hi=$(grep -nE '^[[:space:]]*[a-z]+[[:space:]]*=[[:space:]]*[3-9]([[:space:]]|$)' "$SS_CONF" |
	grep -vE 'port|timeout|tries|threads|size')
[ -z "$hi" ] && grep -q 'default = 1' "$SS_CONF" &&
	ok "strongswan.conf: logging at level 1, no log group above 2 (3 logs packets, 4 keys)" ||
	fail "strongswan.conf: log levels" "$hi"
proposals=$(sed -n 's/^[[:space:]]*\(esp_\)\{0,1\}proposals = \(.*\)$/\2/p' "$SWANCTL_EX" | tr ',' '\n' | tr -d ' ')
dhbad=""
for p in $proposals; do
	# shellcheck disable=SC2001
	groups=$(echo "$p" | tr '-' '\n' | grep -E '^(modp|ecp|curve|x25519|x448|ntru|newhope)')
	[ "$groups" = ecp521 ] || [ "$groups" = modp2048 ] || dhbad="$dhbad $p"
done
[ -n "$proposals" ] && [ -z "$dhbad" ] &&
	ok "swanctl example: each of its $(echo "$proposals" | wc -w) IKE and ESP proposals names one group, ecp521 (21) or modp2048 (14)" ||
	fail "swanctl example: proposals with another group, or none:$dhbad"

mkdir -p "$TMP/swanctl/conf.d"
printf 'include conf.d/*.conf\n' >"$TMP/swanctl/swanctl.conf"
cp "$SWANCTL_EX" "$TMP/swanctl/conf.d/hospital-b.conf"
# charon with the shipped file (its path as appliance.service passes it),
# /run private so that /run/charon.vici and /run/charon.pid are its own,
# and inside appliance.service's CapabilityBoundingSet with no new
# privileges (setpriv): the unit leaves charon what it needs (without
# CAP_NET_ADMIN it exits at once).
bset=$(sed -n 's/^CapabilityBoundingSet=//p' "$ROOTFS/usr/lib/systemd/system/appliance.service" |
	tr 'A-Z' 'a-z' | sed 's/cap_/+/g; s/ /,/g')
[ -n "$bset" ] || fail "no CapabilityBoundingSet in appliance.service"
SWANCTL_DIR=$TMP/swanctl STRONGSWAN_CONF=$PWD/$SS_CONF \
	ip netns exec "$NS_C" unshare -m --propagation private \
	sh -c 'mount -t tmpfs tmpfs /run && exec setpriv --bounding-set "-all,$1" --no-new-privs "$0"' \
	"$CHARON" "$bset" >"$TMP/charon.out" 2>&1 </dev/null &
CHARON_PID=$!
PIDS="$PIDS $CHARON_PID"
# swanctl in charon's namespaces, with the shipped file for its socket.
c_swanctl() {
	STRONGSWAN_CONF=$PWD/$SS_CONF timeout 10 nsenter -t "$CHARON_PID" -m -n swanctl "$@"
}
if wait_until 10 'c_swanctl --stats >"$TMP/stats" 2>&1'; then
	ok "charon with the shipped strongswan.conf, in appliance.service's capability bounding set ($bset), answers vici on /run/charon.vici (swanctl with the same file)"
	plugins=$(sed -n 's/^loaded plugins: //p' "$TMP/stats")
	want=$(sed -n 's/^[[:space:]]*load = \(.*kernel-netlink.*\)$/\1/p' "$SS_CONF")
	if [ "$plugins" = "charon $want" ] && [[ " $plugins " = *" kernel-netlink "* ]] &&
		[[ " $plugins " = *" vici "* ]] && [[ " $plugins " != *kernel-libipsec* ]] &&
		[[ " $plugins " != *" stroke "* ]]; then
		ok "charon loaded exactly the file's plugins: kernel-netlink and vici, no kernel-libipsec, no stroke"
	else
		fail "charon's plugins" "loaded: $plugins; file: $want"
	fi
	# start-scripts: swanctl --load-all ran by itself and loaded the example.
	if wait_until 5 'c_swanctl --list-conns >"$TMP/conns" 2>&1 && grep -q "^hospital-b:" "$TMP/conns"'; then
		ok "start-scripts ran swanctl --load-all: charon has the example's connection hospital-b"
	else
		fail "charon did not load the swanctl example at start" "$(head -c 600 "$TMP/conns")"
	fi
	# The names and selectors are the example appliance.yaml's hospital-b.
	yb=$(sed -n '/^  # - name: hospital-b$/,/^$/p' "$EXAMPLE")
	y_child=$(echo "$yb" | sed -n 's/^  #     - name: \([a-z0-9-]*\)$/\1/p')
	y_lts=$(echo "$yb" | sed -n 's/^  #       local_ts: \[\(.*\)\]$/\1/p')
	y_rts=$(echo "$yb" | sed -n 's/^  #       remote_ts: \[\(.*\)\]$/\1/p')
	if [ -n "$y_child" ] && grep -q "^  $y_child: TUNNEL" "$TMP/conns" &&
		grep -q "^    local:  $y_lts\$" "$TMP/conns" && grep -q "^    remote: $y_rts\$" "$TMP/conns"; then
		ok "its child $y_child ($y_lts === $y_rts) is the example appliance.yaml's hospital-b"
	else
		fail "the swanctl example and appliance.yaml's hospital-b differ" \
			"yaml: child '$y_child' $y_lts -> $y_rts; charon: $(tr '\n' ' ' <"$TMP/conns" | head -c 500)"
	fi
else
	fail "charon with $SS_CONF did not answer on /run/charon.vici" "$(head -c 600 "$TMP/charon.out" "$TMP/stats" 2>/dev/null)"
fi
stop_pid "$CHARON_PID"

# ---- units, users, directories -------------------------------------------

left=$(ls "$ROOTFS/etc/systemd/system/" 2>/dev/null)
[ -z "$left" ] && ok "no unit under rootfs/etc/systemd/system (the package's are in /usr/lib/systemd/system)" ||
	fail "units left under rootfs/etc/systemd/system" "$left"

# make_root DIR: the package's files, plus from this host what the units
# name outside it (targets, commands Debian's packages ship), for
# systemd-analyze verify --root.
make_root() {
	local r=$1 u cmd
	make --no-print-directory -s BUILD="$BUILD" install DESTDIR="$r" >"$TMP/install.out" 2>&1 || {
		fail "make install DESTDIR=$r" "$(tail -n 5 "$TMP/install.out")"
		return 1
	}
	cp -rn /usr/lib/systemd/system/. "$r/usr/lib/systemd/system/"
	for u in $UNITS; do
		for cmd in $(sed -n 's/^Exec[A-Za-z]*=[-+@!:]*\(\/[^ ]*\).*/\1/p' "$r/usr/lib/systemd/system/$u"); do
			# Only a Debian package's command (kill, systemd-tmpfiles):
			# a path the package itself should have put there stays
			# missing. dpkg knows some by their /bin name (merged /usr).
			[ -e "$r$cmd" ] && continue
			dpkg -S "$cmd" >/dev/null 2>&1 || dpkg -S "${cmd#/usr}" >/dev/null 2>&1 || continue
			install -D -m 0755 "$cmd" "$r$cmd"
		done
	done
}
R=$TMP/root
if make_root "$R"; then
	for u in $UNITS; do
		if systemd-analyze verify --root="$R" "$u" >"$TMP/verify.out" 2>&1 && [ ! -s "$TMP/verify.out" ]; then
			ok "systemd-analyze verify --root: $u, silent (every Exec binary found in the installed tree)"
		else
			fail "systemd-analyze verify $u" "$(head -c 800 "$TMP/verify.out")"
		fi
	done
	# The strongswan.conf the unit hands charon is the one installed, and
	# its vici socket is where appliance.yaml's charon.vici points.
	ssc=$(sed -n 's/^Environment=STRONGSWAN_CONF=//p' "$R/usr/lib/systemd/system/appliance.service")
	yvici=$(sed -n 's/^  vici: \(unix:[^ ]*\).*/\1/p' "$EXAMPLE")
	if [ -n "$ssc" ] && cmp -s "$R$ssc" "$SS_CONF" && [ -n "$yvici" ] &&
		[ "$(grep -c "socket = $yvici\$" "$R$ssc")" = 2 ]; then
		ok "appliance.service passes STRONGSWAN_CONF=$ssc, installed, whose vici socket (charon's and swanctl's) is appliance.yaml's $yvici"
	else
		fail "appliance.service's STRONGSWAN_CONF ('$ssc') is not the installed strongswan.conf, or its socket is not appliance.yaml's '$yvici'"
	fi
	for u in $UNITS; do
		grep -q '^ProtectSystem=strict$' "$R/usr/lib/systemd/system/$u" &&
			grep -q '^NoNewPrivileges=yes$' "$R/usr/lib/systemd/system/$u" &&
			grep -q '^CapabilityBoundingSet=' "$R/usr/lib/systemd/system/$u" ||
			fail "$u: ProtectSystem=strict, NoNewPrivileges=yes and a CapabilityBoundingSet"
	done
	# The check can fail: without the bridge's binary, verify must say so.
	rm -f "$R/usr/sbin/mllp-bridge"
	if systemd-analyze verify --root="$R" mllp-bridge.service >"$TMP/verify.out" 2>&1 ||
		! grep -q 'mllp-bridge is not executable' "$TMP/verify.out"; then
		fail "systemd-analyze verify did not notice a missing /usr/sbin/mllp-bridge" "$(head -c 400 "$TMP/verify.out")"
	else
		ok "systemd-analyze verify fails when /usr/sbin/mllp-bridge is missing (the check can fail)"
	fi

	if systemd-sysusers --root="$R" >"$TMP/sysusers.out" 2>&1 &&
		grep -qx 'mllp-bridge:x:[0-9]*:[0-9]*:[^:]*:/var/lib/appliance:/usr/sbin/nologin' "$R/etc/passwd" &&
		grep -q '^appliance:x:' "$R/etc/group" && grep -q '^mllp-bridge:x:' "$R/etc/group"; then
		ok "systemd-sysusers: user mllp-bridge (home /var/lib/appliance, nologin), groups mllp-bridge and appliance"
	else
		fail "systemd-sysusers --root" "$(cat "$TMP/sysusers.out" "$R/etc/passwd" 2>/dev/null | head -c 400)"
	fi
	uid=$(sed -n 's/^mllp-bridge:x:\([0-9]*\):.*/\1/p' "$R/etc/passwd")
	if systemd-tmpfiles --root="$R" --create mllp-edge.conf >"$TMP/tmpfiles.out" 2>&1 &&
		[ -n "$uid" ] && [ "$(stat -c '%a %u' "$R/var/lib/appliance")" = "700 $uid" ]; then
		ok "systemd-tmpfiles: /var/lib/appliance is 0700 and mllp-bridge's (uid $uid in the tree)"
	else
		fail "systemd-tmpfiles --root" "$(cat "$TMP/tmpfiles.out"; stat -c '%a %u' "$R/var/lib/appliance" 2>&1)"
	fi
fi

finish
