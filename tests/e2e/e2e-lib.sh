# e2e-lib.sh: the whole appliance as a customer's network sees it (issue 11).
# Sourced (bash) by tests/e2e/e2e_*.sh and scripts/demo.sh, from the
# repository's top directory, after nothing else. It sources
# tests/integration/appliance-lib.sh (and through it lib.sh and
# charon-lib.sh): TMP, ok/fail/expect/finish, wait_until, the test CA,
# ap_start/ap_stop/ap_status/ap_wait/ap_q/ap_metric, capture_start/stop,
# ch_swanctl, ns_bg, ch_kill_pid and the EXIT-trap cleanup all come from there.
#
# Topology (three namespaces, names with a per-run suffix $CH_SUFFIX, so runs
# may go in parallel; IPv6 off in all three, so captures hold IPv4 and ARP):
#
#   $NS_HOSP  hospital-SUFFIX: outer 198.51.100.2/25 (veth to the edge), lo
#             203.0.113.65-68 and .200 (the tunnel's remote_ts). charon as the
#             customer's VPN gateway (swanctl.conf, PSK, the DH group asked
#             for: 21 or 14), mllp-recv (the LIS) on 203.0.113.65:2575
#             recording arrivals in $E2E_RECV_LOG and payloads in
#             $E2E_RECV_DIR; senders (mllp-load, mllp-send) run here from
#             203.0.113.65..68.
#   $NS_EDGE  edge-SUFFIX: outer 198.51.100.1/25 (hospital link), cloud
#             198.51.100.129/25 (cloud link), lo 203.0.113.1 (the MLLP
#             listeners). The supervisor (build/bin/appliance) with a private
#             /run (appliance-lib's ap_start), starting charon and mllp-bridge
#             (as nobody). /metrics on 127.0.0.1:9100 here.
#   $NS_CLOUD cloud-SUFFIX: outer 198.51.100.130/25. https-sink stands in for
#             the upstream API on 198.51.100.130:8443 (certificate for that IP
#             from the test CA, --ack, records into $E2E_SINK); curl posts
#             outbound messages to the edge's API, 198.51.100.129:8443, with
#             a bearer token.
#
# The appliance's config is RENDERED from the shipped example
# rootfs/etc/appliance/appliance.yaml (e2e_render; the result is kept as
# $AP_CONF): only paths, the upstream's host, the API's address, the bridge's
# user, control_group and the DH group change; see e2e_render.
#
#   e2e_setup [DH]        root, programs, the three namespaces, certificates,
#                         secrets, the rendered config (DH 21 by default, or
#                         14), the hospital's charon loaded, the LIS, the
#                         cloud's sink, and the four captures (e2e_capture_start)
#   e2e_start             the supervisor; waits until `appliancectl status
#                         --json` shows the tunnel up with its child INSTALLED
#                         and the DH group asked for, and the gate open (the
#                         bridge's /metrics: mllp_gate_cidrs >= 1; status has
#                         no gate field) and the API answering
#   e2e_stop              SIGTERM to the supervisor (ap_stop: exits 0, no
#                         bridge, no charon left), then the captures stop and
#                         e2e_leak_check runs: every scenario gets the leak
#                         test in its teardown. The EXIT trap does the same for
#                         a scenario that ends early.
#   e2e_capture_start / e2e_capture_stop
#                         tcpdump -Q out (appliance-lib's capture_start, 64 MiB
#                         kernel buffer) on both ends of both links: hospital
#                         link $TMP/hosp.pcap (hospital side) and
#                         $TMP/edge-h.pcap (edge side), the first
#                         $E2E_HOSP_SNAPLEN bytes of each packet (more than an
#                         Ethernet frame: whole packets, in 40 times the slots
#                         of -s 0); cloud link $TMP/edge-c.pcap and
#                         $TMP/cloud.pcap, whole packets (the veth hands TCP
#                         over in GSO packets of up to 64 KiB)
#   e2e_leak_check        asserts on the captures, in this order:
#                         1. every capture is whole: tcpdump reported its
#                            count and 0 packets dropped (by the kernel or the
#                            interface), and no hospital-link packet is longer
#                            than the snap length: a lost packet could be the
#                            leak;
#                         2. the scenario's hook e2e_leak_pre, when it defines
#                            one: it asserts on the traffic the scenario
#                            causes on the outer link on purpose (e2e_outside:
#                            an attacker's cleartext TCP and the edge's
#                            payload-free answers) and removes exactly that
#                            from $TMP/<capture>.pcap (keeping the whole file
#                            beside it); the rest is checked as below;
#                         3. hospital link: only IKE (UDP 500/4500, NAT-T
#                            keepalives), ESP (in UDP 4500 or IP proto 50),
#                            ARP and the gateways' ICMP (E2E_ICMP_IKE, below),
#                            zero TCP, no "MSH|" anywhere; cloud link: only
#                            TCP on port 8443 whose every stream is TLS
#                            records (tests/e2e/pcap-tls.py), ARP, no "MSH|".
#                         Counts in E2E_LEAK[...] (hosp_ike, hosp_esp,
#                         hosp_icmp, hosp_tcp, hosp_other, cloud_tcp,
#                         cloud_records, ...)
#                         The gateways' ICMP: ICMP port unreachable from one
#                         gateway's outer address to the other's, quoting a
#                         UDP datagram that the other sent it from and to
#                         port 500 or 4500. A kernel sends it when a packet
#                         reaches a port with no socket: whenever one
#                         charon is not running while the other sends, seen
#                         in three cases: the supervisor's shutdown racing
#                         the hospital's last INFORMATIONAL (2 of 9 runs),
#                         the edge's charon killed (e2e_kill9: ~6 in 0.2 s,
#                         the kernel's rate limit), a charon stopped before
#                         its peer's. It is safe to allow at any time: it
#                         goes back to the gateway that sent the datagram,
#                         and what it quotes is the first bytes of that
#                         datagram, ESP ciphertext or IKE: bytes the link
#                         has just carried the other way, nothing of the
#                         edge's cleartext side. It is counted and reported
#                         on its own (with how many came after the
#                         supervisor's shutdown), falls under the "MSH|"
#                         check like every packet, and an ICMP that differs
#                         in any field (another type or code, other
#                         addresses, another quoted protocol or port) is
#                         "other", a failure. A charon down when it should
#                         not be fails the scenario's own assertions.
#   hospital_send_many N [PREFIX]
#                         N messages with mllp-load from 203.0.113.65 (one
#                         connection, one patient, so one lane) to the lab
#                         integration (MLLP release 2); asserts all N commit-
#                         ACKed, and at the sink in order and byte-exact
#                         (load_verify). mllp-load's summary line in
#                         $E2E_LOAD_LINE.
#   cloud_post_many N [PREFIX]
#                         N POSTs (curl, bearer token) to the edge's API for
#                         destination lis; asserts 202 each, the LIS got them
#                         in post order byte-exact, and every GET says acked
#                         with MSA|AA|<MSH-10>
#   cloud_post FILE [CURL_ARGS...]
#                         one POST of FILE; the HTTP code on stdout, headers
#                         and body in $TMP/post.hdr / $TMP/post.body
#   e2e_api CURL_ARGS...  curl from the cloud to the edge's API (token, CA)
#   load_verify SIZE T0 T1 PREFIX ACKED SINK_DIR...
#                         checks an mllp-load run (--patients 1, -s SIZE,
#                         --id-prefix PREFIX, between the epochs T0 and T1,
#                         its --acked file ACKED) at the cloud: every
#                         control id in ACKED there, first arrivals in
#                         ACKED's order, each body byte-exact (rebuilt from
#                         mllp-load's format), a message received twice
#                         with one Idempotency-Key. Reads the SINK_DIRs one
#                         after the other (a restarted sink records into a
#                         new one). Prints a summary line, then the problems
#                         (empty when none); returns 1 on a problem.
#   edge_pid KIND         the PID of the edge's KIND (appliance, charon,
#                         mllp-bridge) from the supervisor's status, checked
#                         against /proc/PID/comm, the edge namespace and, for
#                         charon and the bridge, the supervisor's pid file;
#                         empty (the reason on stderr) when a check fails
#   gone PID              PID no longer runs (or is a zombie)
#   now_ms                the time in ms since the epoch
#
# Variables: E2E_DH, E2E_TUNNEL (hospital-a), E2E_CHILD (mllp), E2E_IKE/E2E_ESP
# (the proposals the rendered file keeps), E2E_DIR (= $AP_DIR, the run dir:
# config, secrets, run/, lib/), E2E_SINK, E2E_RECV_LOG, E2E_TOKEN, E2E_API.
# Needs root and, beyond appliance-lib's packages, tcpdump, curl, openssl,
# python3.
set -u
E2E_HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
E2E_REPO=$(cd "$E2E_HERE/../.." && pwd)
CH_SUFFIX=${CH_SUFFIX:-e2e$$}
. "$E2E_REPO/tests/integration/appliance-lib.sh"

NS_HOSP=hospital-$CH_SUFFIX
NS_EDGE=edge-$CH_SUFFIX
NS_CLOUD=cloud-$CH_SUFFIX
NS_GW=$NS_EDGE NS_PEER=$NS_HOSP # for appliance-lib's helpers
E2E_EXAMPLE=$E2E_REPO/rootfs/etc/appliance/appliance.yaml
E2E_DIR=$AP_DIR
E2E_SINK=$TMP/cloud-sink
E2E_RECV_LOG=$TMP/lis.log
E2E_RECV_DIR=$TMP/lis
E2E_TUNNEL=hospital-a E2E_CHILD=mllp
E2E_UPSTREAM=198.51.100.130:8443
E2E_API=https://198.51.100.129:8443
E2E_LIS=203.0.113.65:2575
E2E_LAB=203.0.113.1:9960 E2E_ADT=203.0.113.1:9961
E2E_PSK=mllp-edge-e2e-psk-not-for-production
E2E_TOKEN=e2e-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
E2E_RUNNING=""
E2E_CAPTURING=""
E2E_LEAK_DONE=""
declare -A E2E_LEAK=()
CAP_SNAPLEN=0 # whole packets: the leak check reads every payload byte
# The hospital link's snap length: above its largest frame (MTU 1500 + 14),
# asserted by the leak check; 40 times the ring slots of whole packets.
E2E_HOSP_SNAPLEN=1600

# e2e_expect NAME CMD...: expect (ok/not ok), and CMD's status returned, so
# that a step a scenario cannot go on without can end it.
e2e_expect() {
	local what=$1
	shift
	if "$@"; then
		ok "$what"
		return 0
	fi
	fail "$what"
	return 1
}

# --- namespaces ------------------------------------------------------------------

e2e_netns() {
	local old ns
	old=$(trap -p EXIT | sed -e "s/^trap -- '//" -e "s/' EXIT\$//")
	# charon_cleanup stops what is left by PID, sweeps `ip netns pids` and
	# deletes the namespaces in $CH_NAMESPACES.
	# shellcheck disable=SC2064
	trap "charon_cleanup; $old" EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
	for ns in "$NS_HOSP" "$NS_EDGE" "$NS_CLOUD"; do
		ip netns add "$ns" || ch_die "ip netns add $ns failed"
		CH_NAMESPACES="$CH_NAMESPACES $ns"
		# before the veths exist, so that they never get an IPv6 address
		ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 \
			net.ipv6.conf.default.disable_ipv6=1 net.ipv6.conf.lo.disable_ipv6=1 >/dev/null ||
			ch_die "sysctl disable_ipv6 in $ns failed"
	done
	ip -n "$NS_EDGE" link add outer type veth peer name outer netns "$NS_HOSP" ||
		ch_die "veth edge-hospital failed"
	ip -n "$NS_EDGE" link add cloud type veth peer name outer netns "$NS_CLOUD" ||
		ch_die "veth edge-cloud failed"
	ip -n "$NS_HOSP" addr add 198.51.100.2/25 dev outer
	ip -n "$NS_EDGE" addr add 198.51.100.1/25 dev outer
	ip -n "$NS_EDGE" addr add 198.51.100.129/25 dev cloud
	ip -n "$NS_CLOUD" addr add 198.51.100.130/25 dev outer
	ip -n "$NS_EDGE" addr add 203.0.113.1/32 dev lo
	local a
	# .200: the example's second remote_ts entry; charon (kernel-libipsec)
	# installs its route only with a local address inside each local_ts
	for a in 65 66 67 68 200; do
		ip -n "$NS_HOSP" addr add "203.0.113.$a/32" dev lo
	done
	for ns in "$NS_HOSP" "$NS_EDGE" "$NS_CLOUD"; do
		ip -n "$ns" link set lo up
	done
	ip -n "$NS_HOSP" link set outer up
	ip -n "$NS_EDGE" link set outer up
	ip -n "$NS_EDGE" link set cloud up
	ip -n "$NS_CLOUD" link set outer up
	for ns in "$NS_HOSP" "$NS_EDGE" "$NS_CLOUD"; do
		if ip -n "$ns" -6 addr show | grep -q inet6; then
			ch_die "IPv6 is still on in $ns"
		fi
	done
}

# Prepended to the EXIT trap: a scenario that ends without e2e_stop still
# gets the supervisor stopped and the leak check on what was captured.
e2e_trap() {
	local old
	old=$(trap -p EXIT | sed -e "s/^trap -- '//" -e "s/' EXIT\$//")
	# shellcheck disable=SC2064
	trap "e2e_cleanup; $old" EXIT
}

e2e_cleanup() {
	local rc=$?
	if [ -n "$E2E_RUNNING" ] || [ -n "$E2E_CAPTURING" ]; then
		echo "# e2e-lib: the scenario ended without e2e_stop; stopping and checking the captures"
		e2e_stop
	fi
	[ "$FAILS" -ne 0 ] && [ "$rc" -eq 0 ] && rc=1
	return "$rc"
}

# --- certificates, secrets, the config ---------------------------------------------

# e2e_cert NAME IP: DIR/NAME.pem/.key, an EC P-256 server certificate for IP
# signed by the test CA (mkcerts.sh's ca.pem/ca.key, whose outputs stay as
# they are).
e2e_cert() {
	local name=$1 ip=$2 d=$E2E_DIR/pki
	mkdir -p "$d"
	printf '%s\n' "basicConstraints=critical,CA:FALSE" "subjectAltName=IP:$ip" \
		"extendedKeyUsage=serverAuth" >"$d/$name.ext"
	{
		openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$d/$name.key" &&
			openssl req -new -key "$d/$name.key" -out "$d/$name.csr" \
				-subj "/O=mllp-edge test/CN=$ip" &&
			openssl x509 -req -in "$d/$name.csr" -CA "$CERTS_ABS/ca.pem" \
				-CAkey "$CERTS_ABS/ca.key" -CAcreateserial -CAserial "$d/ca.srl" -days 2 \
				-sha256 -extfile "$d/$name.ext" -out "$d/$name.pem"
	} >"$d/$name.openssl.log" 2>&1 || {
		fail "setup: openssl: certificate $name for $ip" "$(tail -n 3 "$d/$name.openssl.log")"
		return 1
	}
	chmod 644 "$d/$name.pem" "$d/$name.key" # test keys: the bridge (nobody) reads its own
}

# e2e_secrets: the files the example names under /etc/appliance, in the run
# dir. Root-only where the example says so (the PSK, read by the
# supervisor); the bridge's own files readable by nobody.
e2e_secrets() {
	local d=$E2E_DIR
	e2e_cert https 198.51.100.129 || return 1
	e2e_cert cloud 198.51.100.130 || return 1
	cp "$d/pki/https.pem" "$d/https.pem"
	cp "$d/pki/https.key" "$d/https.key"
	cp "$CERTS_ABS/ca.pem" "$d/https-client-ca.pem"
	cp "$CERTS_ABS/ca.pem" "$d/upstream-ca.pem"
	cp "$CERTS_ABS/client.pem" "$d/adt-client.pem"
	cp "$CERTS_ABS/client.key" "$d/adt-client.key"
	chmod 644 "$d"/*.pem "$d"/*.key
	printf '%s\n' "$E2E_PSK" >"$d/hospital-a.psk"
	chmod 600 "$d/hospital-a.psk"
	printf '# the cloud test client\n%s lis\n' "$E2E_TOKEN" >"$d/outbound.tokens"
	head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$d/lab.token"
	chown nobody "$d/outbound.tokens" "$d/lab.token"
	chmod 600 "$d/outbound.tokens" "$d/lab.token"
	mkdir -p "$d/run" "$d/lib"
	chown nobody "$d/lib" # the spool: the bridge writes it
}

# e2e_render DH: $AP_CONF from the shipped example. Every substitution must
# hit (a changed example fails here, loudly), nothing else is touched:
#   /etc/appliance/      -> $E2E_DIR/          (config dir: secrets, certificates)
#   /run/                -> $E2E_DIR/run/      (vici and control sockets: the
#                                               supervisor gets a private tmpfs
#                                               /run for charon's pid file, which
#                                               appliancectl outside could not see)
#   /var/lib/appliance/  -> $E2E_DIR/lib/      (the spool)
#   /usr/sbin/mllp-bridge -> the build's       (bridge_path)
#   # strongswan_conf:   uncommented           (kernel-libipsec: this kernel has
#                                               no ESP; appliance-lib's file)
#   api.example.test     -> 198.51.100.130:8443 (the cloud's sink: an IP in the
#                                               URL and the certificate, rather
#                                               than a hosts entry that would need
#                                               a bind mount over /etc/hosts)
#   https listen 198.51.100.1:8443 -> 198.51.100.129:8443 (the cloud link)
#   bridge_user mllp-bridge -> nobody; the control_group line is dropped
#   ike_proposals / esp_proposals: only the example's entries with the group
#                                  asked for (ecp521 for 21, modp2048 for 14)
# The selected proposals are printed: "IKE ESP" (comma-separated).
e2e_render() {
	python3 - "$E2E_EXAMPLE" "$AP_CONF" "$E2E_DIR" "$1" "$BIN_ABS/mllp-bridge" <<'EOF'
import re, sys
src, dst, d, dh, bridge = sys.argv[1:]
group = {"21": "ecp521", "14": "modp2048"}[dh]
text = open(src).read()
subs = [
    ("/etc/appliance/", d + "/"),
    ("unix:///run/", "unix://" + d + "/run/"),
    (" /run/appliance/", " " + d + "/run/appliance/"),
    ("/var/lib/appliance/", d + "/lib/"),
    ("/usr/sbin/mllp-bridge", bridge),
    ("  # strongswan_conf: ", "  strongswan_conf: "),
    ("https://api.example.test/", "https://198.51.100.130:8443/"),
    ("listen: 198.51.100.1:8443", "listen: 198.51.100.129:8443"),
    ("bridge_user: mllp-bridge", "bridge_user: nobody"),
]
for old, new in subs:
    if old not in text:
        sys.exit("e2e_render: %r is not in %s any more" % (old, src))
    text = text.replace(old, new)
text, k = re.subn(r"(?m)^\s*control_group:.*\n", "", text)
if k != 1:
    sys.exit("e2e_render: %d control_group lines in %s" % (k, src))
picked = {}
def pick(m):
    items = [x.strip() for x in m.group(2).split(",")]
    keep = [x for x in items if x.endswith("-" + group)]
    if not keep:
        sys.exit("e2e_render: no %s proposal in %s" % (group, m.group(0).strip()))
    picked[m.group(1)] = ",".join(keep)
    return "%s: [%s]" % (m.group(1), ", ".join(keep))
text, k = re.subn(r"\b(ike_proposals|esp_proposals): \[([^\]]*)\]", pick, text)
if k != 2:
    sys.exit("e2e_render: %d proposal lists (wanted 2) in %s" % (k, src))
hdr = ("# Rendered by tests/e2e/e2e-lib.sh from %s for DH %s: paths, upstream host,\n"
       "# API address, bridge user, control_group and proposals changed; nothing else.\n" % (src, dh))
open(dst, "w").write(hdr + text)
print(picked["ike_proposals"], picked["esp_proposals"])
EOF
}

# e2e_hospital_conf: the hospital's swanctl.conf, the mirror of the example's
# tunnel hospital-a (identities, PSK, traffic selectors), DH $E2E_DH only.
e2e_hospital_conf() {
	local d=$CH_TMP/hospital-conf
	mkdir -p "$d"
	cat >"$d/swanctl.conf" <<EOF
# the customer's VPN gateway (written by e2e-lib.sh; DH $E2E_DH)
connections {
	$E2E_TUNNEL {
		version = 2
		local_addrs = 198.51.100.2
		remote_addrs = 198.51.100.1
		proposals = $E2E_IKE
		local {
			auth = psk
			id = hospital-a.example
		}
		remote {
			auth = psk
			id = edge.example
		}
		children {
			$E2E_CHILD {
				local_ts = 203.0.113.64/26, 203.0.113.200/32
				remote_ts = 203.0.113.0/26
				esp_proposals = $E2E_ESP
				start_action = none
			}
		}
	}
}
secrets {
	ike-hospital-a {
		id-edge = edge.example
		id-hospital = hospital-a.example
		secret = "$E2E_PSK"
	}
}
EOF
	swanctl_load peer "$d" >>"$TMP/swanctl.log" 2>&1
}

# e2e_setup [DH]: everything but the supervisor; see the header.
e2e_setup() {
	E2E_DH=${1:-21}
	case $E2E_DH in 21 | 14) ;; *) fail "e2e_setup: DH $E2E_DH: 21 or 14"; exit 1 ;; esac
	ap_need tcpdump curl openssl python3 "$BIN_ABS/mllp-recv" "$BIN_ABS/mllp-load"
	e2e_netns
	ap_trap
	e2e_trap
	chmod 755 "$TMP"
	mkdir -p "$E2E_DIR" "$E2E_SINK" "$E2E_RECV_DIR"
	chmod 755 "$E2E_DIR"
	e2e_secrets || exit 1
	AP_SOCK=$E2E_DIR/run/appliance/control.sock
	AP_VICI=unix://$E2E_DIR/run/charon.vici
	ap_write_strongswan_conf
	CH_DIR[edge]=$E2E_DIR CH_NS[edge]=$NS_EDGE CH_URI[edge]=$AP_VICI
	local picked
	picked=$(e2e_render "$E2E_DH" 2>"$TMP/render.err") || {
		fail "setup: rendering $E2E_EXAMPLE" "$(cat "$TMP/render.err")"
		exit 1
	}
	read -r E2E_IKE E2E_ESP <<<"$picked"
	chmod 644 "$AP_CONF"
	run_check "setup: appliance -n accepts the config rendered from the shipped example (DH $E2E_DH: $E2E_IKE / $E2E_ESP)" \
		0 'configuration is valid' "$APPLIANCE" -n -c "$AP_CONF"
	charon_start peer "$NS_HOSP" "$CH_TMP/peer"
	e2e_hospital_conf || { fail "setup: the hospital's swanctl --load-all" "$(tail -n 3 "$TMP/swanctl.log")"; exit 1; }
	# the LIS: AA to every message, arrivals logged, payloads kept
	ns_bg "$NS_HOSP" "$BIN_ABS/mllp-recv" -l "$E2E_LIS" -o "$E2E_RECV_LOG" -d "$E2E_RECV_DIR" \
		>"$TMP/lis.out" 2>&1 </dev/null
	wait_until 10 'grep -q listening "$TMP/lis.out"' ||
		{ fail "setup: mllp-recv on $E2E_LIS did not start" "$(head -c 300 "$TMP/lis.out")"; exit 1; }
	# the upstream API: the appliance's TLS policy, an HL7 ACK as body (for adt)
	ns_bg "$NS_CLOUD" "$BIN_ABS/https-sink" --listen "$E2E_UPSTREAM" --tls policy --ack \
		--cert "$E2E_DIR/pki/cloud.pem" --key "$E2E_DIR/pki/cloud.key" --record "$E2E_SINK" \
		>"$TMP/sink.out" 2>&1 </dev/null
	wait_until 10 'grep -q listening "$TMP/sink.out"' ||
		{ fail "setup: https-sink on $E2E_UPSTREAM did not start" "$(head -c 300 "$TMP/sink.out")"; exit 1; }
	e2e_capture_start || exit 1
}

# --- captures and the leak check ---------------------------------------------------

e2e_capture_start() {
	CAP_SNAPLEN=$E2E_HOSP_SNAPLEN capture_start hosp "$NS_HOSP" outer &&
		CAP_SNAPLEN=$E2E_HOSP_SNAPLEN capture_start edge-h "$NS_EDGE" outer &&
		capture_start edge-c "$NS_EDGE" cloud &&
		capture_start cloud "$NS_CLOUD" outer &&
		E2E_CAPTURING=1
}

e2e_capture_stop() {
	local c
	for c in hosp edge-h edge-c cloud; do
		[ -n "${CAP_PID[$c]:-}" ] && capture_stop "$c"
	done
	E2E_CAPTURING=""
}

# The gateways' ICMP (see the header): port unreachable (type 3, code 3)
# from one outer address to the other, quoting (a 20-byte IPv4 header at
# icmp[8]) UDP (icmp[17]) from the ICMP's destination (icmp[20:4]) to its
# source (icmp[24:4]), port 500 or 4500 on both ends (icmp[28:2], [30:2]).
# 0xc6336401 and 0xc6336402 are 198.51.100.1 (edge) and .2 (hospital).
E2E_ICMP_IKE='icmp and icmp[0] = 3 and icmp[1] = 3 and icmp[8] = 0x45 and icmp[17] = 17 and
	(icmp[28:2] = 500 or icmp[28:2] = 4500) and (icmp[30:2] = 500 or icmp[30:2] = 4500) and
	((src host 198.51.100.1 and dst host 198.51.100.2 and icmp[20:4] = 0xc6336402 and icmp[24:4] = 0xc6336401) or
	 (src host 198.51.100.2 and dst host 198.51.100.1 and icmp[20:4] = 0xc6336401 and icmp[24:4] = 0xc6336402))'

# pcap_count FILE FILTER: packets in FILE matching the tcpdump FILTER; "error"
# when tcpdump cannot read it.
pcap_count() {
	local out
	out=$(tcpdump -r "$1" -nn "$2" 2>/dev/null) || { echo error; return 1; }
	grep -c . <<<"$out"
}

# cap_dropped NAME: the packets capture NAME's tcpdump reported dropped, by
# the kernel and by the interface; "no count" when it reported none.
cap_dropped() {
	grep -E '^[0-9]+ packets? dropped by (kernel|interface)' "$TMP/$1.tcpdump" 2>/dev/null |
		awk '{ s += $1; n++ } END { print n ? s : "no count" }'
}

# e2e_icmp_report C: the gateways' ICMP in capture C: how many, and how many
# after the supervisor's last event=shutdown (printed; the rule allows any).
e2e_icmp_report() {
	local f=$TMP/$1.pcap times stop late
	times=$(tcpdump -r "$f" -nn -tt "$E2E_ICMP_IKE" 2>/dev/null | awk '{ print $1 }')
	[ -n "$times" ] || return 0
	stop=$(sed -n 's/^ts=\([^ ]*\) level=info proc=appliance event=shutdown .*/\1/p' "$AP_LOG" | tail -n 1)
	stop=$(date -d "$stop" +%s.%N 2>/dev/null)
	late=$(awk -v t="${stop:-9e99}" '$1 + 0 >= t + 0' <<<"$times" | grep -c .)
	echo "# leak: $1: $(grep -c . <<<"$times") ICMP port unreachable between the gateways for UDP 500/4500" \
		"($(date -d "@$(head -n 1 <<<"$times")" +%T.%3N)..$(date -d "@$(tail -n 1 <<<"$times")" +%T.%3N)," \
		"$late after the supervisor's shutdown at $(date -d "@${stop:-0}" +%T.%3N))"
}

e2e_leak_check() {
	local f n k c ike esp keep tcp other arp all hl7 out icmp big drops
	E2E_LEAK_DONE=1
	for c in hosp edge-h edge-c cloud; do
		f=$TMP/$c.pcap
		drops=$(cap_dropped "$c")
		# a dropped packet could be the leak: the capture must be whole
		e2e_expect "leak: capture $c exists, tcpdump reported its count and 0 dropped ($drops)" \
			eval "test -s '$f' && grep -qE '^[0-9]+ packets? captured' '$TMP/$c.tcpdump' && test '$drops' = 0"
	done
	for c in hosp edge-h; do
		big=$(pcap_count "$TMP/$c.pcap" "greater $((E2E_HOSP_SNAPLEN + 1))")
		e2e_expect "leak: capture $c: every packet whole (none over the $E2E_HOSP_SNAPLEN-byte snap length: $big)" \
			test "$big" = 0
	done
	if declare -F e2e_leak_pre >/dev/null; then
		e2e_leak_pre
	fi
	# The hospital link: IKE (UDP 500, UDP 4500 with the non-ESP marker),
	# NAT-T keepalives (one byte on 4500), ESP (in UDP 4500, or IP 50), ARP.
	for c in hosp edge-h; do
		f=$TMP/$c.pcap
		all=$(pcap_count "$f" '')
		ike=$(pcap_count "$f" 'udp port 500 or (udp port 4500 and udp[4:2] > 12 and udp[8:4] = 0)')
		keep=$(pcap_count "$f" 'udp port 4500 and udp[4:2] = 9')
		esp=$(pcap_count "$f" 'ip proto 50 or (udp port 4500 and udp[4:2] > 12 and udp[8:4] != 0)')
		arp=$(pcap_count "$f" arp)
		tcp=$(pcap_count "$f" tcp)
		icmp=$(pcap_count "$f" "$E2E_ICMP_IKE")
		e2e_icmp_report "$c"
		other=$(pcap_count "$f" "not arp and not (udp port 500 or udp port 4500 or ip proto 50) and not ($E2E_ICMP_IKE)")
		hl7=$(grep -ac 'MSH|' "$f")
		E2E_LEAK[${c}_all]=$all E2E_LEAK[${c}_ike]=$ike E2E_LEAK[${c}_esp]=$esp
		E2E_LEAK[${c}_tcp]=$tcp E2E_LEAK[${c}_other]=$other E2E_LEAK[${c}_arp]=$arp
		E2E_LEAK[${c}_keepalive]=$keep E2E_LEAK[${c}_hl7]=$hl7 E2E_LEAK[${c}_icmp]=$icmp
		echo "# leak: hospital link, $c side (out): $all packets: IKE $ike, ESP $esp, NAT-T keepalive $keep, ARP $arp, the gateways' ICMP $icmp, TCP $tcp, other $other"
		e2e_expect "leak: hospital link ($c): IKE was seen ($ike packets)" test "$ike" -ge 2
		e2e_expect "leak: hospital link ($c): not one TCP segment ($tcp)" test "$tcp" = 0
		e2e_expect "leak: hospital link ($c): nothing but IKE, ESP, ARP and the gateways' ICMP ($other others)" test "$other" = 0
		e2e_expect "leak: hospital link ($c): every packet classified ($ike + $esp + $keep + $arp + $icmp = $all)" \
			test "$((ike + esp + keep + arp + icmp))" = "$all"
		e2e_expect "leak: hospital link ($c): no cleartext HL7 (MSH| in $hl7 packets)" test "$hl7" = 0
	done
	# The cloud link: TLS on 8443 (the upstream and the edge's API) and ARP.
	for c in edge-c cloud; do
		f=$TMP/$c.pcap
		out=$(python3 "$E2E_HERE/pcap-tls.py" 8443 "$f" 2>&1)
		n=$?
		echo "# leak: cloud link, $c side (out): $(head -n 1 <<<"$out")"
		for k in packets tcp records streams cleartext_hl7; do
			E2E_LEAK[${c}_$k]=$(sed -n "1s/.*\\b$k=\\([0-9]*\\).*/\\1/p" <<<"$out")
		done
		e2e_expect "leak: cloud link ($c): TCP on 8443 only, every stream TLS records, no cleartext HL7${out:+ ($(grep violation: <<<"$out" | head -n 3 | tr '\n' ' '))}" \
			test "$n" = 0
	done
}

# --- the supervisor ------------------------------------------------------------------

e2e_start() {
	ap_start || exit 1
	E2E_RUNNING=1
	e2e_expect "start: tunnel $E2E_TUNNEL up, child $E2E_CHILD INSTALLED, DH $E2E_DH" \
		ap_wait 30 "tun('$E2E_TUNNEL')['up'] and tun('$E2E_TUNNEL')['ike']['dh_group'] == $E2E_DH and
			child('$E2E_TUNNEL', '$E2E_CHILD')['state'] == 'INSTALLED'" || exit 1
	e2e_expect "start: the gate is open (/metrics mllp_gate_cidrs >= 1)" \
		wait_until 15 'test "$(ap_metric mllp_gate_cidrs)" -ge 1 2>/dev/null' || exit 1
	e2e_expect "start: the API on 198.51.100.129:8443 answers the cloud (unknown message: 404)" \
		wait_until 10 'test "$(e2e_api -o /dev/null -w "%{http_code}" "$E2E_API/v1/messages/999999")" = 404' ||
		exit 1
}

# edge_pid KIND: see the header.
edge_pid() {
	local kind=$1 key pid file
	case $kind in
	appliance) key="s['supervisor']['pid']" file="" ;;
	charon) key="s['charon']['pid']" file=$E2E_DIR/run/appliance/charon.pid ;;
	mllp-bridge) key="s['bridge']['pid']" file=$E2E_DIR/run/appliance/bridge.pid ;;
	esac
	ap_status || { echo "# edge_pid $kind: no status" >&2; return 1; }
	pid=$(ap_q "$key")
	case $pid in '' | *[!0-9]*) echo "# edge_pid $kind: status says '$pid'" >&2; return 1 ;; esac
	if [ "$(cat "/proc/$pid/comm" 2>/dev/null)" != "$kind" ]; then
		echo "# edge_pid $kind: /proc/$pid/comm is '$(cat "/proc/$pid/comm" 2>/dev/null)'" >&2
		return 1
	fi
	if ! ip netns pids "$NS_EDGE" | grep -qx "$pid"; then
		echo "# edge_pid $kind: $pid is not in $NS_EDGE" >&2
		return 1
	fi
	if [ -n "$file" ] && [ "$(tr -d ' \n' <"$file" 2>/dev/null)" != "$pid" ]; then
		echo "# edge_pid $kind: $file says '$(cat "$file" 2>/dev/null)', status $pid" >&2
		return 1
	fi
	echo "$pid"
}

gone() { ! kill -0 "$1" 2>/dev/null || [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" = Z ]; }
now_ms() { date +%s%3N; }

e2e_stop() {
	if [ -n "$E2E_RUNNING" ]; then
		ap_stop "stop"
		E2E_RUNNING=""
	fi
	if [ -n "$E2E_CAPTURING" ]; then
		e2e_capture_stop
		e2e_leak_check
	fi
}

# --- traffic -----------------------------------------------------------------------------

e2e_api() {
	ip netns exec "$NS_CLOUD" curl -s --max-time 15 --cacert "$CERTS_ABS/ca.pem" \
		-H "Authorization: Bearer $E2E_TOKEN" "$@"
}

# cloud_post FILE [CURL_ARGS...]: one POST for lis; prints the HTTP code.
cloud_post() {
	local file=$1
	shift
	e2e_api -H 'Content-Type: x-application/hl7-v2+er7' --data-binary @"$file" \
		-D "$TMP/post.hdr" -o "$TMP/post.body" -w '%{http_code}' "$@" \
		"$E2E_API/v1/destinations/lis/messages"
}

# sink_rows PATH: the sink's requests.log rows for PATH (TAB-separated).
sink_rows() { awk -F'\t' -v p="$1" '$3 == p' "$E2E_SINK/requests.log" 2>/dev/null; }

# hospital_send_many N [PREFIX]: see the header.
hospital_send_many() {
	local n=$1 prefix=${2:-IN$RANDOM} size=600 t0 t1
	t0=$(date +%s)
	E2E_LOAD_LINE=$(ip netns exec "$NS_HOSP" "$BIN_ABS/mllp-load" -t "$E2E_LAB" -c 1 -n "$n" -p 8 \
		-s "$size" --bind-from 203.0.113.65 --id-prefix "$prefix" --patients 1 \
		--acked "$TMP/acked-$prefix.txt" -T 10 2>"$TMP/load-$prefix.err")
	t1=$(date +%s)
	echo "# mllp-load $prefix: $E2E_LOAD_LINE"
	e2e_expect "inbound $prefix: mllp-load: $n sent, $n commit-ACKed, 0 NAK/unacked/errors" \
		grep -qE "^sent=$n acked=$n nak=0 unacked=0 errors=0 " <<<"$E2E_LOAD_LINE" || return 1
	e2e_expect "inbound $prefix: the cloud received all $n" \
		wait_until 30 "test \"\$(sink_rows /v1/hl7/lab | awk -F'\t' -v p='$prefix-' 'index(\$11, p) == 1' | grep -c .)\" -ge $n"
	local why
	why=$(load_verify "$size" "$t0" "$t1" "$prefix" "$TMP/acked-$prefix.txt" "$E2E_SINK")
	echo "# at the cloud: $(head -n 1 <<<"$why")"
	why=$(sed -n 2p <<<"$why")
	e2e_expect "inbound $prefix: at the cloud in send order, byte-exact, one Idempotency-Key each (all $n)${why:+: $why}" \
		test -z "$why" -a -s "$TMP/acked-$prefix.txt"
}

# load_verify SIZE T0 T1 PREFIX ACKED SINK_DIR...: see the header. Every
# body equals what mllp-load sent: its format, rebuilt from the control id
# and the timestamp (the only thing that varies, the same in MSH-7 and
# EVN-2, within the run's seconds).
load_verify() {
	python3 - "$@" <<'EOF'
import os, sys, time
size, t0, t1, prefix, acked = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
sinks = sys.argv[6:]
want = [l.strip() for l in open(acked) if l.strip()]
got, keys = [], {}
for d in sinks:
    for l in open(os.path.join(d, "requests.log")):
        r = l.rstrip("\n").split("\t")
        if r[2] == "/v1/hl7/lab" and r[10].startswith(prefix + "-"):
            got.append((d, r[0], r[10]))
            keys.setdefault(r[10], set()).add(r[3])
first, seen = [], set()
for d, seq, mid in got:
    if mid not in seen:
        seen.add(mid)
        first.append((d, seq, mid))
bad = [] if want else ["no control id in %s" % acked]
if [m for _, _, m in first] != want:
    bad.append("order: got %d %s... wanted %d %s..." % (
        len(first), [m for _, _, m in first][:3], len(want), want[:3]))
dup = [m for m, k in keys.items() if len(k) != 1 or "-" in k]
if dup:
    bad.append("Idempotency-Key differs or missing: %s" % dup[:3])
lo = time.strftime("%Y%m%d%H%M%S", time.localtime(t0 - 1))
hi = time.strftime("%Y%m%d%H%M%S", time.localtime(t1 + 1))
for d, seq, mid in first:
    body = open(os.path.join(d, "bodies", seq), "rb").read()
    ts = body.split(b"|")[6].decode()
    if not lo <= ts <= hi:
        bad.append("%s: MSH-7 %s outside the run" % (mid, ts))
        continue
    msg = ("MSH|^~\\&|MLLPLOAD|LOAD|BRIDGE|CLOUD|%s||ADT^A01^ADT_A01|%s|P|2.5.1\rEVN|A01|%s\r"
           "PID|1||P0^^^LOAD^MR||LOAD^PATIENT||19800101|U\rPV1|1|I\r" % (ts, mid, ts))
    if size >= len(msg) + 8:
        msg += "NTE|1||" + "x" * (size - len(msg) - 8) + "\r"
    if body != msg.encode():
        bad.append("%s: body differs (%d bytes, wanted %d)" % (mid, len(body), len(msg)))
print("%d first arrivals (%s), %d requests" % (
    len(first), ", ".join("%d in %s" % (sum(1 for x, _, _ in first if x == d), os.path.basename(d))
                          for d in sinks), len(got)))
print("; ".join(bad[:3]))
sys.exit(1 if bad else 0)
EOF
}

# cloud_post_many N [PREFIX]: see the header.
cloud_post_many() {
	local n=$1 prefix=${2:-OB$RANDOM} i id code bad="" ids=() urls=() before
	before=$(awk '$1 ~ /^[0-9]+$/' "$E2E_RECV_LOG" 2>/dev/null | grep -c .)
	mkdir -p "$TMP/out-$prefix"
	for i in $(seq "$n"); do
		id=$prefix-$i
		hl7_msg "$id" CLOUD >"$TMP/out-$prefix/$id.hl7"
		code=$(cloud_post "$TMP/out-$prefix/$id.hl7")
		loc=$(tr -d '\r' <"$TMP/post.hdr" | awk 'tolower($1) == "location:" { print $2 }')
		[ "$code" = 202 ] && [ -n "$loc" ] || bad="$bad $id:$code"
		ids+=("$id")
		urls+=("$E2E_API$loc")
	done
	e2e_expect "outbound $prefix: $n POSTs: 202 + Location each${bad:+ (not:$bad)}" test -z "$bad"
	e2e_expect "outbound $prefix: the LIS received all $n" \
		wait_until 30 "test \"\$(awk '\$1 ~ /^[0-9]+\$/ && index(\$4, \"$prefix-\") == 1' '$E2E_RECV_LOG' | awk '!s[\$4]++' | grep -c .)\" -ge $n"
	local why
	why=$(awk '$1 ~ /^[0-9]+$/' "$E2E_RECV_LOG" | awk -v p="$prefix-" 'index($4, p) == 1 && !s[$4]++ { print $1, $4 }' |
		while read -r seq id; do
			cmp -s "$E2E_RECV_DIR/$seq.hl7" "$TMP/out-$prefix/$id.hl7" || echo "$id differs"
			echo "$id" >>"$TMP/out-$prefix.order"
		done)
	local order want
	order=$(tr '\n' ' ' <"$TMP/out-$prefix.order" 2>/dev/null)
	want="${ids[*]} "
	e2e_expect "outbound $prefix: at the LIS in post order${why:+, $why}" \
		test "$order" = "$want" -a -z "$why"
	e2e_expect "outbound $prefix: at the LIS byte-exact ($n payloads compared)" test -z "$why"
	# GET each: acked, with the LIS's AA for its MSH-10
	e2e_expect "outbound $prefix: GET /v1/messages/{id}: all acked with MSA|AA|<MSH-10>" \
		wait_until 15 'e2e_api -w "\n" "${urls[@]}" >"$TMP/get-$prefix.json" &&
			python3 -c "
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
ids = sys.argv[2:]
ok = len(rows) == len(ids) and all(r.get(\"state\") == \"acked\" and (\"MSA|AA|\" + i) in (r.get(\"ack\") or \"\") for r, i in zip(rows, ids))
sys.exit(0 if ok else 1)" "$TMP/get-$prefix.json" "${ids[@]}"'
}
