#!/bin/bash
# tests/vm/image-test.sh (`make image-test`; docs/image.md): boots the VM
# image twice under qemu-system-x86_64 -accel tcg, as the appliance and as a
# hospital, and proves on the host, from what the VMs report over their
# second serial port and from a capture of the link between them, that
#   - each VM booted from the image's own disk (extlinux, no -kernel);
#   - the appliance's charon runs kernel-netlink and no kernel-libipsec, and
#     the kernel holds the tunnel's ESP SAs (`ip -s xfrm state`: two SAs
#     between 198.51.100.1 and .2, AES-GCM, packets counted in both);
#   - the IKE SA and the CHILD_SA use ECP_521 (DH 21), in charon's own
#     words (swanctl --list-sas) and in appliancectl's;
#   - an HL7 message sent by the hospital over MLLP (203.0.113.65 ->
#     203.0.113.1:9960) got the appliance's ACK (MSA|AA with its control id)
#     and arrived at the HTTPS receiver byte-exact;
#   - the firewall the image ships (/etc/nftables.conf includes
#     rootfs/'s mllp-edge.nft; OUTER_IF "eth0", the first NIC) is loaded at
#     boot; the message came in through meta ipsec exists (in_mllp_ipsec)
#     and its ACK went out through rt ipsec (out_mllp_clear unmoved); a
#     cleartext SYN from the hospital's outer address to the MLLP port is
#     dropped (the connect times out, in_mllp_clear moves, no answer on the
#     link), and so is the appliance's own TCP to a hospital address no SA
#     covers (out_mllp_clear moves, nothing on the link);
#   - the shipped sysctl file applied at boot, the shipped sysusers file
#     made the bridge's user and the control group;
#   - the link between the gateways carried ESP and IKE only: no TCP but
#     the test's dropped cleartext SYNs, no "MSH|" in clear.
#
# Topology: two qemu links (-netdev dgram over unix sockets in $TMP: no
# host network, no ports), each VM with one config drive (ext4, label
# MLLP-CFG; scripts/image-config-drive.sh copies its etc/ into /etc):
#
#   appliance VM  outer 198.51.100.1/25   ==== outer ====  198.51.100.2/25    hospital VM
#                 cloud 198.51.100.129/25 ==== cloud ====  198.51.100.130/25  (https-sink)
#                 lo 203.0.113.1 (MLLP)                    lo 203.0.113.65 (sender)
#
# Root; BUILD/image/mllp-edge.qcow2 (make image), BUILD/bin/https-sink and
# mllp-send (they run in the hospital VM: the same Debian 12 libraries).
# VMTEST_TIMEOUT (s, default 600) bounds the whole boot-and-run.
# The helpers below run through expect and wait_until, which shellcheck
# cannot follow.
# shellcheck disable=SC2317
set -u
cd "$(dirname "$0")/../.." || exit 1
# shellcheck source=tests/integration/lib.sh
. tests/integration/lib.sh
HERE=tests/vm
IMG=$BUILD/image/mllp-edge.qcow2
TIMEOUT=${VMTEST_TIMEOUT:-600}
T0=$(date +%s%N)

die() {
	fail "$1" "${2:-}"
	exit 1
}
[ "$(id -u)" -eq 0 ] || die "setup: needs root (mkfs of the config drives)"
[ -s "$IMG" ] || die "setup: $IMG is missing (make image)"
for p in qemu-system-x86_64 qemu-img mkfs.ext4 tcpdump openssl base64; do
	command -v "$p" >/dev/null || die "setup: $p is not installed (scripts/image-deps.sh)"
done
for p in https-sink mllp-send; do
	[ -x "$BIN/$p" ] || die "setup: $BIN/$p is not built"
done
chmod 755 "$TMP"
# lib.sh's EXIT trap stops the VMs by PID and removes $TMP (KEEP=1 keeps it)
trap 'exit 130' INT
trap 'exit 143' TERM

# --- the config drives ---------------------------------------------------------

PSK=vmtest-$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
CTRL=VM$(date +%s)$$
# the message: CR between segments, as on the wire; its control id is this run's
printf 'MSH|^~\\&|LABSYS|HOSP|MLLP-EDGE|CLOUD|%s||ORU^R01|%s|P|2.5.1\rPID|1||4711^^^HOSP||Doe^Jane\rOBR|1||%s|GLU^Glucose\rOBX|1|NM|GLU^Glucose||5.4|mmol/L|||||F\r' \
	"$(date +%Y%m%d%H%M%S)" "$CTRL" "$CTRL" >"$TMP/msg.hl7"

# mac NAME: the VMs' addresses, fixed so that the .network files match them
declare -A MAC=([app-outer]=52:54:00:00:01:01 [app-cloud]=52:54:00:00:01:02
	[hosp-outer]=52:54:00:00:02:01 [hosp-cloud]=52:54:00:00:02:02)

# network DIR NAME MAC ADDRESS: a systemd-networkd file on the drive
network() {
	mkdir -p "$1/etc/systemd/network"
	printf '[Match]\nMACAddress=%s\n\n[Link]\nRequiredForOnline=yes\n\n[Network]\nAddress=%s\nLinkLocalAddressing=no\nIPv6AcceptRA=no\n' \
		"$3" "$4" >"$1/etc/systemd/network/10-$2.network"
}
# loopback NAME ADDRESS: the inner address, on lo (no dummy device needed)
loopback() {
	mkdir -p "$1/etc/systemd/network"
	printf '[Match]\nName=lo\n\n[Network]\nAddress=%s\n' "$2" >"$1/etc/systemd/network/10-lo.network"
}
# common DIR ROLE-SCRIPT: the role's unit and script
common() {
	mkdir -p "$1/etc/systemd/system" "$1/etc/mllp-vmtest"
	cp "$HERE/mllp-vmtest.service" "$1/etc/systemd/system/"
	install -m 0755 "$HERE/$2" "$1/etc/mllp-vmtest/run"
	echo mllp-vmtest.service >"$1/start"
}
# mkdrive DIR IMG: ext4 labelled MLLP-CFG, straight from DIR
mkdrive() {
	truncate -s 64M "$2" && mkfs.ext4 -q -L MLLP-CFG -d "$1" "$2"
}

# the sink's certificate, for the address the appliance dials, from the test CA
sink_cert() {
	local d=$TMP/pki
	mkdir -p "$d"
	printf '%s\n' "basicConstraints=critical,CA:FALSE" "subjectAltName=IP:198.51.100.130" \
		"extendedKeyUsage=serverAuth" >"$d/sink.ext"
	openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$d/sink.key" &&
		openssl req -new -key "$d/sink.key" -out "$d/sink.csr" -subj "/O=mllp-edge test/CN=198.51.100.130" &&
		openssl x509 -req -in "$d/sink.csr" -CA "$CERTS/ca.pem" -CAkey "$CERTS/ca.key" \
			-CAcreateserial -CAserial "$d/ca.srl" -days 2 -sha256 -extfile "$d/sink.ext" -out "$d/sink.pem"
}
sink_cert >"$TMP/openssl.out" 2>&1 || die "setup: the sink's certificate" "$(tail -n 3 "$TMP/openssl.out")"

A=$TMP/drive-app
mkdir -p "$A/etc/appliance"
common "$A" guest-appliance.sh
network "$A" outer "${MAC[app-outer]}" 198.51.100.1/25
network "$A" cloud "${MAC[app-cloud]}" 198.51.100.129/25
loopback "$A" 203.0.113.1/32
cp "$HERE/appliance.yaml" "$A/etc/appliance/appliance.yaml"
cp "$CERTS/ca.pem" "$A/etc/appliance/upstream-ca.pem"
printf '%s\n' "$PSK" >"$A/etc/appliance/hospital-a.psk"
head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$A/etc/appliance/lab.token"
chmod 644 "$A/etc/appliance/"*
chmod 600 "$A/etc/appliance/hospital-a.psk"
chmod 640 "$A/etc/appliance/lab.token" # the bridge's: root:mllp-bridge in the VM

H=$TMP/drive-hosp
common "$H" guest-hospital.sh
network "$H" outer "${MAC[hosp-outer]}" 198.51.100.2/25
network "$H" cloud "${MAC[hosp-cloud]}" 198.51.100.130/25
loopback "$H" 203.0.113.65/32
cp "$HERE/strongswan-hospital.conf" "$H/etc/mllp-vmtest/strongswan.conf"
cp "$BIN/https-sink" "$BIN/mllp-send" "$TMP/pki/sink.pem" "$TMP/pki/sink.key" "$TMP/msg.hl7" \
	"$H/etc/mllp-vmtest/"
# the customer's gateway: the mirror of appliance.yaml's hospital-a, DH 21 only
cat >"$H/etc/mllp-vmtest/swanctl.conf" <<EOF
connections {
	hospital-a {
		version = 2
		local_addrs = 198.51.100.2
		remote_addrs = 198.51.100.1
		proposals = aes256gcm16-prfsha384-ecp521
		local {
			auth = psk
			id = hospital-a.example
		}
		remote {
			auth = psk
			id = edge.example
		}
		children {
			mllp {
				local_ts = 203.0.113.64/26
				remote_ts = 203.0.113.0/26
				esp_proposals = aes256gcm16-ecp521
				start_action = none
			}
		}
	}
}
secrets {
	ike-hospital-a {
		id-edge = edge.example
		id-hospital = hospital-a.example
		secret = "$PSK"
	}
}
EOF
chmod 600 "$H/etc/mllp-vmtest/swanctl.conf"
{ mkdrive "$A" "$TMP/app-cfg.img" && mkdrive "$H" "$TMP/hosp-cfg.img"; } || die "setup: mkfs.ext4 -d of a config drive"
rm -rf "$A" "$H"
lap "setup (drives)"

# --- the VMs --------------------------------------------------------------------

# vm NAME DRIVE: one VM on a copy-on-write overlay of the image (the image
# itself stays as built), two NICs on the unix-socket links, the console on
# the first serial port and the role's report on the second.
# The links: each VM binds its own socket and sends to the other's; the
# appliance's ends of both links are captured into $TMP/outer.pcap and
# $TMP/cloud.pcap.
vm() {
	local n=$1 peer=$2 extra=()
	qemu-img create -q -f qcow2 -F qcow2 -b "$(realpath "$IMG")" "$TMP/$n.qcow2" ||
		die "setup: overlay for $n"
	[ "$n" = app ] && extra=(-object "filter-dump,id=cap,netdev=outer,file=$TMP/outer.pcap"
		-object "filter-dump,id=capc,netdev=cloud,file=$TMP/cloud.pcap")
	qemu-system-x86_64 -accel tcg -machine pc -m 768 -smp 1 \
		-display none -monitor none -no-reboot \
		-serial "file:$TMP/$n.console" -serial "file:$TMP/$n.report" \
		-drive "file=$TMP/$n.qcow2,if=virtio,format=qcow2" \
		-drive "file=$TMP/$n-cfg.img,if=virtio,format=raw" \
		-netdev "dgram,id=outer,local.type=unix,local.path=$TMP/$n-outer.sock,remote.type=unix,remote.path=$TMP/$peer-outer.sock" \
		-device "virtio-net-pci,netdev=outer,mac=${MAC[$n-outer]}" \
		-netdev "dgram,id=cloud,local.type=unix,local.path=$TMP/$n-cloud.sock,remote.type=unix,remote.path=$TMP/$peer-cloud.sock" \
		-device "virtio-net-pci,netdev=cloud,mac=${MAC[$n-cloud]}" \
		"${extra[@]}" >"$TMP/$n.qemu.out" 2>&1 </dev/null &
	PIDS="$PIDS $!"
	eval "PID_$n=$!"
}
vm app hosp
vm hosp app
# shellcheck disable=SC2154
echo "# qemu: appliance PID $PID_app, hospital PID $PID_hosp (TCG, 1 vCPU each)"

# Both roles power their VM off after their END line; qemu then exits.
ended() { grep -q "^VMTEST END role=$1" "$TMP/$2.report" 2>/dev/null; }
gone() { ! kill -0 "$1" 2>/dev/null; }
if ! wait_until "$TIMEOUT" 'ended appliance app && ended hospital hosp'; then
	fail "both VMs reported to the end within ${TIMEOUT}s" \
		"appliance: $(tail -n 2 "$TMP/app.report" 2>/dev/null | tr '\n' ' ') hospital: $(tail -n 2 "$TMP/hosp.report" 2>/dev/null | tr '\n' ' ')"
fi
T_RUN=$((($(date +%s%N) - T0) / 1000000))
wait_until 60 "gone $PID_app && gone $PID_hosp" ||
	echo "# a VM did not power off within 60 s of its report: stopped by PID"
for p in $PID_app $PID_hosp; do
	kill "$p" 2>/dev/null
	wait "$p" 2>/dev/null
done
PIDS=""
lap "boot, tunnel, message, report, power-off"

# --- assertions ------------------------------------------------------------------

# rep VM TAG: the lines of block TAG in VM's report, without the tag
rep() { sed -n "s/^$2| //p" "$TMP/$1.report" | tr -d '\r'; }
# val VM KEY: the VMTEST KEY line's rest
val() { sed -n "s/^VMTEST $2 //p" "$TMP/$1.report" | tr -d '\r' | head -n 1; }
# has VM TAG ERE / lacks VM TAG ERE: block TAG has (has no) a line matching
has() { rep "$1" "$2" | grep -qE -- "$3"; }
lacks() { ! rep "$1" "$2" | grep -qE -- "$3"; }
# count VM TAG ERE: the lines of block TAG matching
count() { rep "$1" "$2" | grep -cE -- "$3"; }
# No -kernel: SYSLINUX (extlinux) on the serial console loaded the kernel
# and the initrd from the disk, with extlinux.conf's command line.
booted() {
	tr -d '\r' <"$TMP/$1.console" >"$TMP/$1.console.txt"
	grep -q '^SYSLINUX 6' "$TMP/$1.console.txt" &&
		grep -q '^Loading /vmlinuz\.\.\. *ok' "$TMP/$1.console.txt" &&
		grep -q '^Loading /initrd\.img\.\.\. *ok' "$TMP/$1.console.txt" &&
		grep -q 'Command line: BOOT_IMAGE=/vmlinuz root=UUID=[-0-9a-f]* ro console=tty0 console=ttyS0' "$TMP/$1.console.txt" &&
		grep -q '^VMTEST BEGIN' "$TMP/$1.report"
}
# sa_packets: the packet counters of the appliance's SAs (ip -s: "N(bytes),
# M(packets)" on the line after "lifetime current:"), one per line
sa_packets() {
	rep app xfrm-state | awk '/lifetime current:/ { getline; print }' |
		sed -n 's/.*(bytes), *\([0-9]*\)(packets).*/\1/p'
}
both_positive() { [ $# = 2 ] && [ "$1" -gt 0 ] && [ "$2" -gt 0 ]; }
status_ok() {
	rep app status | python3 -c '
import json, sys
s = json.load(sys.stdin)
t = [x for x in s["tunnels"] if x["name"] == "hospital-a"][0]
sys.exit(0 if t["up"] and t["ike"]["dh_group"] == 21 and
	 [c["state"] for c in t["children"]] == ["INSTALLED"] else 1)'
}
# the sink's requests.log: POST, path, ..., authorization (9th: yes|no), ..., MSH-10 (11th)
posted() {
	rep hosp requests | awk -F'\t' -v c="$CTRL" '$2 == "POST" && $3 == "/v1/hl7/lab" && $11 == c' | grep -q .
}
bearer() { rep hosp requests | awk -F'\t' '$9 == "yes"' | grep -q .; }
# pcap LINK FILTER: the packets of LINK's capture matching FILTER
pcap() { tcpdump -r "$TMP/$1.pcap" -nn "$2" 2>/dev/null | grep -c . || true; }

for n in app hosp; do
	expect "$n: the VM booted from its own disk (extlinux, no -kernel) and its role ran" booted "$n"
done
echo "# appliance: $(val app BEGIN); $(val app TUNNEL); $(val app DELIVERED)"
echo "# hospital:  $(val hosp BEGIN); $(val hosp CHILD_SA); $(val hosp SENT)"
echo "# appliance's root file system: $(rep app df | tail -n 1)"

# the kernel's ESP, not libipsec
expect "appliance: charon loaded kernel-netlink (swanctl --stats)" has app stats 'kernel-netlink'
expect "appliance: and not kernel-libipsec" lacks app stats 'libipsec'
expect "appliance: no ipsec0 TUN device (kernel-libipsec's)" \
	eval "has app links ': lo:' && lacks app links 'ipsec0'"
n_sa=$(count app xfrm-state '^src 198\.51\.100\.[12] dst 198\.51\.100\.[12]$')
n_esp=$(count app xfrm-state 'proto esp spi 0x')
expect "appliance: ip xfrm state holds two SAs between 198.51.100.1 and .2 ($n_sa), both ESP ($n_esp)" \
	test "$n_sa" = 2 -a "$n_esp" = 2
expect "appliance: both SAs are AES-GCM (rfc4106) in tunnel mode" \
	test "$(count app xfrm-state 'aead rfc4106\(gcm\(aes\)\)')" = 2 -a "$(count app xfrm-state 'mode tunnel')" = 2
pk=$(sa_packets | tr '\n' ' ')
# shellcheck disable=SC2086 # one argument per SA
expect "appliance: both SAs carried packets (kernel counters: ${pk:-none})" both_positive $pk
expect "appliance: ip xfrm policy: 203.0.113.0/26 -> 203.0.113.64/26" \
	has app xfrm-policy 'src 203\.0\.113\.0/26 dst 203\.0\.113\.64/26'
expect "appliance: ip xfrm policy: 203.0.113.64/26 -> 203.0.113.0/26" \
	has app xfrm-policy 'src 203\.0\.113\.64/26 dst 203\.0\.113\.0/26'
expect "hospital: its kernel holds the two ESP SAs too" \
	test "$(count hosp xfrm-state 'proto esp spi 0x')" = 2

# The shipped strongswan.conf's start script runs swanctl --load-all only
# when /etc/swanctl/conf.d has a .conf file (the image has none): run
# unguarded it unloads the supervisor's connection and PSK when it comes
# second, and the tunnel never comes up.
expect "appliance: charon ran its start script ($(rep app start-script | grep -c 'start script') line)" \
	has app start-script "executing start script 'swanctl'"
expect "appliance: and swanctl neither ran nor unloaded anything (no conf.d/*.conf)" \
	eval "lacks app start-script 'swanctl: ' && lacks app start-script 'unloaded'"

# DH 21, in charon's words and in the supervisor's
expect "appliance: the IKE SA hospital-a is ESTABLISHED, IKEv2" has app sas '^hospital-a: #[0-9]+, ESTABLISHED, IKEv2'
expect "appliance: with AES_GCM_16-256/PRF_HMAC_SHA2_384/ECP_521 (DH 21)" \
	has app sas '^ +AES_GCM_16-256/PRF_HMAC_SHA2_384/ECP_521$'
expect "appliance: the CHILD_SA mllp is INSTALLED, TUNNEL, ESP:AES_GCM_16-256" \
	has app sas '^ +mllp: #[0-9]+, reqid [0-9]+, INSTALLED, TUNNEL, ESP:AES_GCM_16-256'
expect "appliance: appliancectl status --json: hospital-a up, IKE dh_group 21, mllp INSTALLED" status_ok
expect "appliance: rekey-check: the CHILD_SA rekeys with PFS ECP_521 ($(rep app rekey | head -n 1))" \
	has app rekey '^rekey-check: ok: .*ECP_521'

# the message
ack=$(rep hosp ack)
expect "hospital: the appliance's ACK came back: MSA|AA|$CTRL ($(head -c 100 <<<"$ack")...)" \
	has hosp ack "MSA\|AA\|$CTRL\$"
val hosp BODY1 | base64 -d >"$TMP/body1" 2>/dev/null
expect "cloud: the HTTPS receiver got the message byte-exact ($(wc -c <"$TMP/msg.hl7") bytes, cmp)" \
	cmp -s "$TMP/msg.hl7" "$TMP/body1"
expect "cloud: one POST to /v1/hl7/lab with MSH-10 $CTRL" posted
expect "cloud: with the bearer token (the bridge read lab.token, 0640 on the drive: root:mllp-bridge)" bearer
expect "cloud: over TLS 1.2/1.3 (the sink's connections.log)" has hosp tls 'TLSv1\.[23]'

expect "hospital: the appliance's shutdown deleted the IKE SA ($(val hosp PEER-GONE))" \
	eval 'val hosp PEER-GONE | grep -q "ike_sas=0\$"'

# the firewall, as the image loads it at boot (nftables.service,
# /etc/nftables.conf, the shipped ruleset)
expect "appliance: nftables.service is active ($(val app NFT))" eval 'val app NFT | grep -qx "service=active"'
expect "appliance: nft list table inet mllp_edge at boot" has app nft-boot '^table inet mllp_edge \{$'
expect "appliance: its OUTER_IF is eth0 (the shipped parameter)" has app nft-boot 'iifname != "eth0" accept'
expect "appliance: eth0 is the first NIC, the outer link's (${MAC[app-outer]}; net.ifnames=0)" \
	has app links "^[0-9]+: eth0: .* link/ether ${MAC[app-outer]} "
# ctr TAG NAME: counter NAME's packets in the snapshot TAG ("" if absent)
ctr() { rep app "$1" | awk -v n="$2" '$1 == n { print $2 }'; }
# ctrs TAG: the snapshot's non-zero counters, for the messages
ctrs() { rep app "$1" | awk '$2 != 0 { printf "%s%s=%s", s, $1, $2; s = " " }'; }
echo "# counters at boot: $(ctrs counters-boot); after the message: $(ctrs counters-delivered); at the end: $(ctrs counters-end)"
expect "appliance: at boot in_mllp_ipsec and in_mllp_clear are 0 ($(ctr counters-boot in_mllp_ipsec), $(ctr counters-boot in_mllp_clear))" \
	test "$(ctr counters-boot in_mllp_ipsec)" = 0 -a "$(ctr counters-boot in_mllp_clear)" = 0
expect "appliance: the message came in through IPsec: in_mllp_ipsec ($(ctr counters-delivered in_mllp_ipsec)) >= 1 (meta ipsec exists)" \
	test "$(ctr counters-delivered in_mllp_ipsec)" -ge 1
expect "appliance: and its ACK went out through the SA: out_mllp_clear 0 after it ($(ctr counters-delivered out_mllp_clear); rt ipsec)" \
	test "$(ctr counters-delivered out_mllp_clear)" = 0
# in_ike stays 0 here: the appliance initiates, so the hospital's IKE is
# an answer (ct established); the first ESP packet is the hospital's
expect "appliance: ESP accepted on eth0 (in_esp $(ctr counters-delivered in_esp); in_ike $(ctr counters-delivered in_ike): IKE answers are established)" \
	test "$(ctr counters-delivered in_esp)" -ge 1
clear_ms=$(val hosp CLEAR | sed -n 's/^rc=1 ms=\([0-9]*\) .*Connection timed out.*/\1/p')
expect "hospital: MLLP in clear from 198.51.100.2 to 203.0.113.1:9960 timed out ($(val hosp CLEAR))" \
	test -n "$clear_ms"
expect "hospital: its route sent it to the appliance ($(rep hosp clear-route | head -n 1))" \
	has hosp clear-route '^203\.0\.113\.1 from 198\.51\.100\.2 via 198\.51\.100\.1 '
expect "appliance: in_mllp_clear moved: 0 -> $(ctr counters-end in_mllp_clear)" \
	test "$(ctr counters-end in_mllp_clear)" -ge 1
expect "appliance: TCP to 203.0.113.200 (a hospital address, no SA) had a route: $(rep app out-route | head -n 1)" \
	has app out-route '^203\.0\.113\.200 via 198\.51\.100\.2 dev eth0 '
expect "appliance: and did not connect ($(rep app out-clear | tr '\n' ' '))" lacks app out-clear '^connected$'
expect "appliance: out_mllp_clear moved: $(ctr counters-delivered out_mllp_clear) -> $(ctr counters-end out_mllp_clear)" \
	test "$(ctr counters-end out_mllp_clear)" -ge 1
# the shipped sysctl file: rp_filter 2 is also systemd's default and the
# port range the kernel's; accept_redirects 0, send_redirects 0 and
# log_martians 1 are this file's alone
sysctl_is() { has app sysctl "^${1//./\\.} = $2\$"; }
expect "appliance: sysctl net.ipv4.ip_local_port_range = 32768 60999" \
	has app sysctl '^net\.ipv4\.ip_local_port_range = 32768[[:space:]]+60999$'
for kv in net.ipv4.conf.all.rp_filter=2 net.ipv4.conf.default.rp_filter=2 net.ipv4.conf.all.accept_redirects=0 \
	net.ipv4.conf.all.send_redirects=0 net.ipv4.conf.all.log_martians=1; do
	expect "appliance: sysctl ${kv%%=*} = ${kv#*=}" sysctl_is "${kv%%=*}" "${kv#*=}"
done
echo "# eth0's own: $(rep app sysctl | grep '\.eth0\.' | tr '\n' ' ')"
expect "appliance: systemd-sysusers made mllp-bridge (home the spool, nologin) and the group appliance" \
	eval "has app users '^mllp-bridge:x:[0-9]+:[0-9]+:[^:]*:/var/lib/appliance:/usr/sbin/nologin\$' && has app users '^appliance:x:[0-9]+:'"
expect "appliance: the spool directory is mllp-bridge's, 0700 ($(rep app users | grep '^spool'))" \
	has app users '^spool mllp-bridge mllp-bridge 700$'

# the outer link, both ways, as the appliance's NIC saw it
if [ -s "$TMP/outer.pcap" ]; then
	esp=$(pcap outer 'ip proto 50') ike=$(pcap outer 'udp port 500 or udp port 4500')
	syn='src host 198.51.100.2 and dst host 203.0.113.1 and tcp dst port 9960 and tcp[tcpflags] == tcp-syn'
	syns=$(pcap outer "$syn") tcp=$(pcap outer "tcp and not ($syn)") msh=$(grep -c 'MSH|' "$TMP/outer.pcap")
	expect "outer link: ESP in IP protocol 50 ($esp packets) and IKE ($ike), no 'MSH|' ($msh)" \
		test "$esp" -gt 0 -a "$ike" -gt 0 -a "$msh" = 0
	expect "outer link: the cleartext SYNs reached the appliance ($syns) and no other TCP went either way ($tcp: no answer, nothing to 203.0.113.200)" \
		test "$syns" -gt 0 -a "$tcp" = 0
else
	fail "outer link: the capture $TMP/outer.pcap is missing or empty"
fi
# the cloud link: HTTPS to the sink and nothing in clear
if [ -s "$TMP/cloud.pcap" ]; then
	tls=$(pcap cloud 'tcp and host 198.51.100.130 and port 8443')
	other=$(pcap cloud 'ip and not (tcp and host 198.51.100.130 and port 8443)')
	msh=$(grep -c 'MSH|' "$TMP/cloud.pcap")
	expect "cloud link: TCP to 198.51.100.130:8443 ($tls packets), no other IP ($other), no 'MSH|' ($msh)" \
		test "$tls" -gt 0 -a "$other" = 0 -a "$msh" = 0
else
	fail "cloud link: the capture $TMP/cloud.pcap is missing or empty"
fi

echo "# run: ${T_RUN} ms from the drives to both reports; total $((($(date +%s%N) - T0) / 1000000)) ms"
if [ "$FAILS" -ne 0 ]; then
	echo "# the reports: $TMP/app.report $TMP/hosp.report, consoles: $TMP/*.console"
fi
finish
