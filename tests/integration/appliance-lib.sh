# appliance-lib.sh: the supervisor (build/bin/appliance) on real charons.
# Sourced (bash) by tests/integration/t_appliance*.sh, after nothing else:
# it sources lib.sh (TMP, ok/fail/expect, wait_until, test CA) and
# charon-lib.sh (namespaces, the hospital's charon, ch_kill_pid).
#
# Topology (charon-lib's netns_setup, plus):
#   NS_GW   the edge: outer 198.51.100.1, lo 203.0.113.1 (MLLP listener) and
#           203.0.113.100 (a local address inside the tunnel's remote_ts,
#           used to knock on the bridge's gate without any route); the
#           supervisor runs here with a private /run and starts charon and
#           the bridge (as nobody); the upstream (https-sink with
#           the test CA) listens on 127.0.0.1:$AP_UP here, /metrics on
#           127.0.0.1:$AP_OBS.
#   NS_PEER the hospital: outer 198.51.100.2, lo 203.0.113.65-68; a plain
#           charon loaded with swanctl (charon-lib's ch_write_conf "peer"
#           side: identities peer-NAME.mllp.test / gw-NAME.mllp.test, PSK
#           $CH_PSK, child NAME-net 203.0.113.64/26 <-> 203.0.113.1/32),
#           and an MLLP receiver on 203.0.113.65:2575 for the heartbeat.
#   IPv6 is off on both ends, so that a capture of the outer link holds IKE,
#   ESP and ARP only.
#
# The edge's tunnel NAME (ap_tunnel) mirrors the peer: local_id
# gw-NAME.mllp.test, remote_id peer-NAME.mllp.test, child NAME-net
# 203.0.113.1/32 <-> 203.0.113.64/26, dpd_delay 2s.
#
#   ap_setup                     root, programs, namespaces, directories,
#                                the hospital's charon, the upstream
#   ap_tunnel NAME SOURCE [IKE ESP]
#                                one tunnels[] entry (stdout); IKE and ESP are
#                                comma-separated proposal lists (appliance)
#   ap_conf FILE TUNNEL_YAML...  the whole appliance.yaml
#   ap_start [CONF]              the supervisor in NS_GW; waits for status
#   ap_stop [WHAT [kept]]        SIGTERM; asserts it exits 0 within 15 s and
#                                leaves no bridge and no charon behind (with
#                                "kept": the charon it attached to still runs)
#   ap_kill9                     SIGKILL the supervisor
#   ap_status                    appliancectl status --json -> $TMP/status.json
#   ap_true EXPR                 a fresh status satisfies the python3 EXPR
#                                (s: the object; tun(NAME), child(NAME, CHILD))
#   ap_wait SECS EXPR            ap_true until it holds; prints the last
#                                status to stderr when it never did
#   ap_q EXPR                    the value of EXPR on $TMP/status.json
#   ap_metric SAMPLE             the sum of the /metrics lines starting with
#                                SAMPLE (exact prefix), or "unreadable"
#   ap_metric_re REGEX           the same for the lines matching an awk REGEX
#   run_check NAME RC ERE CMD... CMD exits RC and its output matches ERE
#   pids_named NS COMM, uid_of PID
#                                processes in a namespace by name; their uids
#   ap_peer_load SPEC...         the hospital's swanctl.conf (ch_write_conf
#                                peer SPEC...) and swanctl --load-all
#   hospital_send ID [SRC]       one HL7 message with control id ID from SRC
#                                (default 203.0.113.65) to the edge's MLLP
#                                port; true when it was ACKed (AA)
#   hospital_hold ID [SRC]       the same on a connection that then stays
#                                open; its fate in $TMP/hold-ID.out
#   established_mllp             ESTABLISHED connections to the MLLP port
#   sink_has ID                  the upstream received MSH-10 = ID
#   capture_start NAME NS [IFACE] / capture_stop NAME
#                                tcpdump -Q out on NS's IFACE (default outer)
#                                into $TMP/NAME.pcap, first $CAP_SNAPLEN bytes
#                                of each packet (default 256; 0: all), a
#                                kernel buffer of $CAP_BUFFER_KB KiB (default
#                                65536); capture_start waits until tcpdump
#                                says it is listening
#
# Ports inside NS_GW (private to the namespace, so scenarios may run in
# parallel): MLLP $AP_MLLP, upstream $AP_UP, /metrics $AP_OBS.
#
# Observed here (2 cores, kernel-libipsec): supervisor start -> tunnel up
# ~0.15 s; the four t_appliance_* scenarios together ~80 s (up 18 s,
# faults 15 s, closed 5 s, crash 31 s, most of it the 24 s load).
set -u
AP_HERE=$(dirname "${BASH_SOURCE[0]}")
. "$AP_HERE/lib.sh"
CH_TMP=$TMP/charon
mkdir -p "$CH_TMP"
. "$AP_HERE/charon-lib.sh"

BUILD_ABS=$(cd "$BUILD" 2>/dev/null && pwd) || BUILD_ABS=$PWD/$BUILD
BIN_ABS=$BUILD_ABS/bin
CERTS_ABS=$(cd "$CERTS" && pwd)
APPLIANCE=$BIN_ABS/appliance
APPCTL=$BIN_ABS/appliancectl
AP_DIR=$TMP/edge
AP_CONF=$AP_DIR/appliance.yaml
AP_SOCK=$AP_DIR/control.sock
AP_VICI=unix://$AP_DIR/charon.vici
AP_LOG=$TMP/appliance.log
AP_MLLP=9960 AP_UP=8443 AP_OBS=9100
AP_PID=""
AP_HEARTBEAT_PORT=2575

# --- setup ---------------------------------------------------------------

ap_need() {
	local p
	if [ "$(id -u)" -ne 0 ]; then
		fail "network namespaces and charon need root"
		exit 1
	fi
	for p in "$APPLIANCE" "$APPCTL" "$BIN_ABS/mllp-bridge" "$BIN_ABS/mllp-send" \
		"$BIN_ABS/https-sink" "$CH_CHARON" "$@"; do
		case $p in
		/*) [ -x "$p" ] || { fail "$p is missing (make BUILD=$BUILD; scripts/deps.sh)"; exit 1; } ;;
		*) command -v "$p" >/dev/null || { fail "$p is missing (scripts/deps.sh)"; exit 1; } ;;
		esac
	done
	id nobody >/dev/null 2>&1 || { fail "no user nobody"; exit 1; }
}

# Prepends ap_cleanup to the EXIT trap (charon_cleanup; lib.sh's cleanup).
ap_trap() {
	local old
	old=$(trap -p EXIT | sed -e "s/^trap -- '//" -e "s/' EXIT\$//")
	# shellcheck disable=SC2064
	trap "ap_cleanup; $old" EXIT
}

ap_setup() {
	ap_need "$@"
	netns_setup
	ap_trap
	local ns a
	for ns in "$NS_GW" "$NS_PEER"; do
		ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 \
			net.ipv6.conf.default.disable_ipv6=1 net.ipv6.conf.outer.disable_ipv6=1 \
			net.ipv6.conf.lo.disable_ipv6=1 >/dev/null
	done
	ip -n "$NS_GW" addr add 203.0.113.100/32 dev lo
	for a in 66 67 68; do
		ip -n "$NS_PEER" addr add "203.0.113.$a/32" dev lo
	done
	# The bridge runs as nobody: it reads the config and the test CA and
	# writes the spool. The PSK files stay root's (0600).
	chmod 755 "$TMP"
	mkdir -p "$AP_DIR" "$TMP/spool" "$TMP/up"
	chmod 755 "$AP_DIR"
	chown nobody "$TMP/spool"
	printf '%s\n' "$CH_PSK" >"$AP_DIR/psk"
	chmod 600 "$AP_DIR/psk"
	ap_write_strongswan_conf
	# swanctl against the edge's charon: ch_swanctl edge ..., swanctl_load edge DIR
	CH_DIR[edge]=$AP_DIR CH_NS[edge]=$NS_GW CH_URI[edge]=$AP_VICI
	charon_start peer "$NS_PEER" "$CH_TMP/peer"
	ap_sink_start || exit 1
	ns_bg "$NS_PEER" nc -lk -s 203.0.113.65 -p "$AP_HEARTBEAT_PORT" >/dev/null 2>&1 </dev/null
}

# The edge's strongswan.conf, as charon-lib's charon_start writes it:
# kernel-libipsec, vici on $AP_VICI, no stroke, a file log.
ap_write_strongswan_conf() {
	cat >"$AP_DIR/strongswan.conf" <<EOF
# written by appliance-lib.sh for the edge's charon (started by the supervisor)
charon {
	load_modular = no
	load = kernel-libipsec random nonce openssl pem pkcs1 pkcs8 x509 pubkey gmp aes sha1 sha2 hmac kdf gcm kernel-netlink socket-default vici updown
	retransmit_tries = 2
	retransmit_timeout = 1.0
	plugins {
		vici {
			socket = $AP_VICI
		}
	}
	filelog {
		charon {
			path = $AP_DIR/charon.log
			time_format = %H:%M:%S
			append = yes
			flush_line = yes
			ike_name = yes
			default = 1
			ike = 2
			cfg = 2
		}
	}
	syslog {
		daemon {
			default = -1
		}
	}
}
swanctl {
	load = random openssl pem pkcs1 pkcs8 x509 pubkey
	socket = $AP_VICI
}
EOF
}

# The upstream: https-sink inside the edge namespace, recording in $TMP/up.
ap_sink_start() {
	ns_bg "$NS_GW" "$BIN_ABS/https-sink" --listen "127.0.0.1:$AP_UP" \
		--cert "$CERTS_ABS/server.pem" --key "$CERTS_ABS/server.key" \
		--record "$TMP/up" >"$TMP/up.out" 2>&1 </dev/null
	AP_SINK_PID=$NS_BG_PID
	wait_until 10 'grep -q listening "$TMP/up.out"' || {
		fail "the upstream (https-sink in $NS_GW) did not start" "$(head -c 300 "$TMP/up.out")"
		return 1
	}
}

# --- configuration ---------------------------------------------------------

# ap_tunnel NAME SOURCE [IKE ESP]: one tunnels[] entry.
ap_tunnel() {
	local name=$1 source=$2 ike=${3:-} esp=${4:-}
	printf '  - name: %s\n    source: %s\n' "$name" "$source"
	if [ "$source" = appliance ]; then
		cat <<EOF
    local_addrs: [198.51.100.1]
    remote_addrs: [198.51.100.2]
    local_id: gw-$name.mllp.test
    remote_id: peer-$name.mllp.test
    auth: { psk_file: $AP_DIR/psk }
    ike_proposals: [${ike//,/, }]
    dpd_delay: 2s
EOF
	fi
	cat <<EOF
    children:
      - name: $name-net
        local_ts: [203.0.113.1/32]
        remote_ts: [203.0.113.64/26]
EOF
	[ "$source" = appliance ] && printf '        esp_proposals: [%s]\n' "${esp//,/, }"
	return 0
}

# ap_conf FILE TUNNEL_YAML...: appliance.yaml for the supervisor and the bridge;
# $AP_CONF_EXTRA, when set, is appended to its integrations.
ap_conf() {
	local file=$1 t
	shift
	{
		cat <<EOF
# written by appliance-lib.sh
gate: closed
charon:
  start: true
  binary: $CH_CHARON
  strongswan_conf: $AP_DIR/strongswan.conf
  vici: $AP_VICI
supervisor:
  control_socket: $AP_SOCK
  bridge_user: nobody
  bridge_path: $BIN_ABS/mllp-bridge
  heartbeat: 2s
destinations:
  - name: lis
    address: 203.0.113.65:$AP_HEARTBEAT_PORT
spool: $TMP/spool/spool.db
observability: { listen: 127.0.0.1:$AP_OBS }
retry: { initial: 100ms, max: 1s }
tunnels:
EOF
		for t in "$@"; do printf '%s\n' "$t"; done
		cat <<EOF
integrations:
  - name: lab
    listen: 203.0.113.1:$AP_MLLP
    sources: [203.0.113.64/26]
    upstream: { url: "https://localhost:$AP_UP/v1/lab", ca_file: $CERTS_ABS/ca.pem, timeout: 5s }
EOF
		# more integrations, e.g. an SFTP channel (t_appliance_up)
		[ -n "${AP_CONF_EXTRA:-}" ] && printf '%s\n' "$AP_CONF_EXTRA"
	} >"$file"
	chmod 644 "$file"
}

# --- the supervisor ----------------------------------------------------------

# ap_start [CONF]: the supervisor in the edge namespace with a private /run
# (it starts charon, which writes /run/charon.pid); waits until its control
# socket answers. Fails the scenario (and returns 1) when it does not.
ap_start() {
	local conf=${1:-$AP_CONF}
	echo "# --- $(date +%T.%N | cut -c1-12) appliance -c $conf" >>"$AP_LOG"
	ip netns exec "$NS_GW" unshare -m --propagation private \
		sh -c 'mount -t tmpfs tmpfs /run && exec "$0" "$@"' "$APPLIANCE" -c "$conf" -v \
		2>>"$AP_LOG" </dev/null >>"$AP_LOG" &
	AP_PID=$!
	local i
	for i in $(seq 100); do
		if ! kill -0 "$AP_PID" 2>/dev/null; then
			wait "$AP_PID"
			fail "appliance -c $conf exited at start (exit $?)" "$(tail -n 5 "$AP_LOG" | tr '\n' ' ')"
			AP_PID=""
			return 1
		fi
		"$APPCTL" -s "$AP_SOCK" status --json >/dev/null 2>&1 && return 0
		sleep 0.1
	done
	fail "appliance: its control socket $AP_SOCK did not answer within 10 s" \
		"$(tail -n 5 "$AP_LOG" | tr '\n' ' ')"
	return 1
}

# pids_named NS COMM: PIDs in namespace NS whose command name is COMM.
pids_named() {
	local p
	for p in $(ip netns pids "$1" 2>/dev/null); do
		[ "$(cat "/proc/$p/comm" 2>/dev/null)" = "$2" ] && echo "$p"
	done
}

# ap_stop [WHAT [CHARON]]: SIGTERM to the supervisor; it stops the bridge,
# then the charon it started, then exits 0. Asserts all three; with CHARON
# "kept", asserts instead that charon (one it attached to) still runs.
ap_stop() {
	local what=${1:-appliance} charon=${2:-gone} rc i
	[ -n "$AP_PID" ] || return 0
	kill -TERM "$AP_PID"
	for i in $(seq 150); do
		kill -0 "$AP_PID" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$AP_PID" 2>/dev/null; then
		fail "$what: SIGTERM: the supervisor still runs after 15 s"
		kill -KILL "$AP_PID"
	fi
	wait "$AP_PID"
	rc=$?
	AP_PID=""
	expect "$what: SIGTERM: the supervisor exits 0 (got $rc)" test "$rc" -eq 0
	expect "$what: SIGTERM: no bridge left in the edge namespace" \
		wait_until 5 'test -z "$(pids_named "$NS_GW" mllp-bridge)"'
	if [ "$charon" = kept ]; then
		expect "$what: SIGTERM: the charon it attached to still runs" \
			test -n "$(pids_named "$NS_GW" charon)"
	else
		expect "$what: SIGTERM: no charon left in the edge namespace" \
			wait_until 5 'test -z "$(pids_named "$NS_GW" charon)"'
	fi
}

ap_kill9() {
	[ -n "$AP_PID" ] || return 0
	kill -KILL "$AP_PID"
	wait "$AP_PID" 2>/dev/null
	AP_PID=""
}

ap_cleanup() {
	local rc=$? i
	if [ -n "$AP_PID" ]; then
		kill -TERM "$AP_PID" 2>/dev/null
		for i in $(seq 100); do
			kill -0 "$AP_PID" 2>/dev/null || break
			sleep 0.1
		done
		kill -KILL "$AP_PID" 2>/dev/null
		wait "$AP_PID" 2>/dev/null
		AP_PID=""
	fi
	# charon_cleanup (next) stops whatever is left in the namespaces; it
	# keeps the files when the exit status says the scenario failed.
	return $rc
}

# --- status --------------------------------------------------------------------

ap_status() {
	timeout 10 "$APPCTL" -s "$AP_SOCK" status --json >"$TMP/status.json" 2>"$TMP/status.err"
}

AP_PY='
import json, sys
try:
    s = json.load(open(sys.argv[1]))
except Exception as e:
    sys.stderr.write("status is not JSON: %s\n" % e)
    sys.exit(2)
def tun(n):
    for t in s.get("tunnels") or []:
        if t.get("name") == n:
            return t
    raise KeyError("no tunnel " + n)
def child(n, c):
    # a rekeyed CHILD_SA stays listed (DELETED) for a few seconds beside the
    # new one: the INSTALLED one with that name, else the last one
    xs = [x for x in tun(n).get("children") or [] if x.get("name") == c]
    if not xs:
        raise KeyError("no child %s in %s" % (c, n))
    inst = [x for x in xs if x.get("state") == "INSTALLED"]
    return inst[-1] if inst else xs[-1]
def integ(n):
    for x in s.get("integrations") or []:
        if x.get("name") == n:
            return x
    raise KeyError("no integration " + n)
try:
    v = eval("(" + sys.argv[2] + "\n)")
except Exception as e:
    sys.stderr.write("%s: %s: %s\n" % (sys.argv[2], type(e).__name__, e))
    sys.exit(2)
if sys.argv[3] == "print":
    print(v if isinstance(v, str) else json.dumps(v))
else:
    sys.exit(0 if v else 1)
'

# ap_q EXPR: EXPR's value on the last status (strings bare, the rest as JSON).
ap_q() { python3 -c "$AP_PY" "$TMP/status.json" "$1" print 2>/dev/null || echo "(none)"; }

# ap_true EXPR: a fresh status makes EXPR true.
ap_true() {
	ap_status || return 1
	python3 -c "$AP_PY" "$TMP/status.json" "$1" test 2>/dev/null
}

# ap_wait SECS EXPR: polls ap_true every 0.25 s.
ap_wait() {
	local end
	end=$(($(date +%s) + $1))
	while :; do
		ap_true "$2" && return 0
		[ "$(date +%s)" -ge "$end" ] && break
		sleep 0.25
	done
	echo "# ap_wait $1 s for [$2]: never true; last status:" >&2
	head -c 3000 "$TMP/status.json" "$TMP/status.err" >&2
	echo >&2
	python3 -c "$AP_PY" "$TMP/status.json" "$2" test >&2
	return 1
}

# ap_metric SAMPLE: sum of the /metrics lines that start with SAMPLE.
ap_metric() {
	local out
	if ! out=$(ip netns exec "$NS_GW" curl -sf --max-time 5 "http://127.0.0.1:$AP_OBS/metrics"); then
		echo "# ap_metric $1: /metrics on 127.0.0.1:$AP_OBS in $NS_GW is unreachable" >&2
		echo unreadable
		return 1
	fi
	printf '%s\n' "$out" >"$TMP/metrics.txt"
	awk -v p="$1" 'index($0, p) == 1 { s += $NF; n++ } END { if (n) print s + 0; else print "unreadable" }' \
		<<<"$out"
}

# --- the hospital ----------------------------------------------------------------

# ap_peer_load SPEC...: the hospital charon's connections (NAME:IKE:ESP, see
# ch_write_conf); swanctl --load-all also unloads the ones no longer there.
ap_peer_load() {
	ch_write_conf "$CH_TMP/peer-conf/swanctl.conf" peer "$@"
	swanctl_load peer "$CH_TMP/peer-conf" >>"$TMP/swanctl.log" 2>&1
}

# hospital_send ID [SRC]: one message from the hospital's SRC to the edge's
# MLLP listener; true when answered AA with MSA-2 = ID.
hospital_send() {
	local id=$1 src=${2:-203.0.113.65} out
	hl7_msg "$id" >"$TMP/msg-$id.hl7"
	out=$(ip netns exec "$NS_PEER" "$BIN_ABS/mllp-send" -b "$src" -t 5000 \
		"203.0.113.1:$AP_MLLP" "$TMP/msg-$id.hl7" 2>&1)
	echo "$id from $src: $out" >>"$TMP/hospital.log"
	grep -q "MSA|AA|$id" <<<"$out"
}

# sink_has ID: the upstream received a message with MSH-10 = ID.
sink_has() { cut -f11 "$TMP/up/requests.log" 2>/dev/null | grep -qx "$1"; }

# --- captures -------------------------------------------------------------------

declare -A CAP_PID=()
# capture_start NAME NS [IFACE]: tcpdump -Q out on NS's IFACE (default outer)
# into $TMP/NAME.pcap, packet-buffered (-U), as root (-Z root: Debian's
# tcpdump would otherwise switch to the tcpdump user before it opens the
# file); $CAP_SNAPLEN bytes of each packet (default 256, 0 for all);
# $CAP_BUFFER_KB KiB of kernel buffer (default 65536).
capture_start() {
	local name=$1 ns=$2 iface=${3:-outer}
	# --immediate-mode: without it libpcap hands over packets in blocks, up
	# to a second late, and SIGTERM loses the last block (seen: 3 packets
	# captured of 132 received by the filter). Immediate mode makes libpcap
	# use a TPACKET_V2 ring of fixed slots sized by the snap length (the
	# veths do TSO/GSO, so libpcap cannot bound them by the MTU). Measured
	# here with tcpdump stopped and 5,000 UDP datagrams sent: a 2 MiB
	# buffer held 26 whole packets (-s 0), 1,248 with -s 1600. The kernel
	# dropped packets with 2 MiB (e2e_kill9's cloud-link bursts, 71-109 a
	# run; 14-57 in the fault scenarios) and with 16 MiB (e2e_hostile's
	# 17 MiB frame through the tunnel). 64 MiB (-B 65536): ~800 whole
	# packets, ~40,000 of 1,600 bytes; four captures take 256 MiB.
	ns_bg "$ns" tcpdump -i "$iface" -Q out -n -U --immediate-mode -B "${CAP_BUFFER_KB:-65536}" -Z root \
		-s "${CAP_SNAPLEN:-256}" \
		-w "$TMP/$name.pcap" >"$TMP/$name.tcpdump" 2>&1 </dev/null
	CAP_PID[$name]=$NS_BG_PID
	wait_until 10 'grep -q "listening on $iface" "$TMP/$name.tcpdump"' || {
		fail "tcpdump $name in $ns did not start" "$(head -c 300 "$TMP/$name.tcpdump")"
		return 1
	}
}

# capture_stop NAME: SIGTERM by PID (tcpdump flushes and reports its count).
capture_stop() {
	local pid=${CAP_PID[$1]}
	kill -TERM "$pid" 2>/dev/null
	wait "$pid" 2>/dev/null
	unset "CAP_PID[$1]"
}

# capture_text NAME: the capture decoded (numeric), one packet a line.
capture_text() { tcpdump -r "$TMP/$1.pcap" -nn -tt 2>/dev/null; }

# capture_others NAME: packets in capture NAME other than IKE and ESP-in-UDP
# (UDP 500/4500) and ARP. A gateway's ICMP port unreachable for UDP 500/4500
# is not counted: when one charon stops first, the other's last IKE or ESP
# packet gets one back (seen at teardown, 1 run in 9); it quotes that
# packet, IKE or ESP, never cleartext (the captures' MSH| check still reads it).
capture_others() {
	local all icmp
	all=$(tcpdump -r "$TMP/$1.pcap" -nn 'not arp and not (udp port 500 or udp port 4500)' 2>/dev/null)
	icmp=$(grep -cE ': ICMP [0-9.]+ udp port (500|4500) unreachable' <<<"$all")
	echo $(($(grep -c . <<<"$all") - icmp))
}

# ap_metric_re REGEX: the sum of the /metrics samples whose line matches the
# awk REGEX (for labels whose order or company is not fixed), or "unreadable".
ap_metric_re() {
	local out
	if ! out=$(ip netns exec "$NS_GW" curl -sf --max-time 5 "http://127.0.0.1:$AP_OBS/metrics"); then
		echo "# ap_metric_re $1: /metrics on 127.0.0.1:$AP_OBS in $NS_GW is unreachable" >&2
		echo unreadable
		return 1
	fi
	printf '%s\n' "$out" >"$TMP/metrics.txt"
	awk -v r="$1" '$0 ~ r { s += $NF; n++ } END { if (n) print s + 0; else print "unreadable" }' \
		<<<"$out"
}

# established_mllp: TCP connections to the edge's MLLP port in state
# ESTABLISHED inside the edge namespace (a connection the bridge closed is in
# FIN-WAIT at best: its FIN cannot reach a peer without the tunnel).
established_mllp() {
	ip netns exec "$NS_GW" ss -Htn state established "( sport = :$AP_MLLP )" | grep -c .
}

# hospital_hold ID [SRC]: in the background, one connection from SRC that
# sends one message, prints "acked" when it is answered AA, then waits (up to
# 60 s) and prints how the connection ended: eof, reset, timeout. Output in
# $TMP/hold-ID.out, PID in $HOLD_PID.
PY=$(command -v /usr/bin/python3 || command -v python3)
hospital_hold() {
	local id=$1 src=${2:-203.0.113.65}
	hl7_msg "$id" >"$TMP/msg-$id.hl7"
	ns_bg "$NS_PEER" "$PY" -u -c '
import socket, sys
src, port, path, mid = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4].encode()
s = socket.socket()
s.bind((src, 0))
s.settimeout(10)
try:
    s.connect(("203.0.113.1", port))
except OSError as e:
    print("connect failed:", e)
    sys.exit(1)
s.sendall(b"\x0b" + open(path, "rb").read() + b"\x1c\r")
buf = b""
while b"\x1c\r" not in buf:
    d = s.recv(65536)
    if not d:
        print("closed before the answer")
        sys.exit(1)
    buf += d
print("acked" if b"MSA|AA|" + mid in buf else "answered: " + repr(buf[:200]))
s.settimeout(60)
try:
    d = s.recv(65536)
    print("eof" if not d else "data")
except socket.timeout:
    print("timeout")
except ConnectionResetError:
    print("reset")
except OSError as e:
    print("error", e)
' "$src" "$AP_MLLP" "$TMP/msg-$id.hl7" "$id" >"$TMP/hold-$id.out" 2>&1 </dev/null
	HOLD_PID=$NS_BG_PID
}

# run_check NAME WANT_RC PATTERN CMD...: CMD exits WANT_RC and its output
# (both streams) matches the extended regexp PATTERN.
run_check() {
	local name=$1 want=$2 pat=$3 out rc
	shift 3
	out=$(timeout 60 "$@" 2>&1)
	rc=$?
	printf '$ %s -> exit %s\n%s\n' "$*" "$rc" "$out" >>"$TMP/commands.log"
	if [ "$rc" -ne "$want" ]; then
		fail "$name" "exit $rc, wanted $want: $(head -c 300 <<<"$out")"
	elif ! grep -qE -- "$pat" <<<"$out"; then
		fail "$name" "output lacks /$pat/: $(head -c 300 <<<"$out")"
	else
		ok "$name"
	fi
}

# uid_of PID: real, effective, saved and file-system uid of PID.
uid_of() { awk '/^Uid:/ {print $2, $3, $4, $5}' "/proc/$1/status" 2>/dev/null; }
