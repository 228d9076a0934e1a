# charon-lib.sh: run two real strongSwan charons in network namespaces.
# Sourced (bash) by scenario scripts; see charon-demo.sh for a full example.
#
#   netns_setup                  two namespaces $NS_GW / $NS_PEER joined by a
#                                veth pair ("outer" in both):
#                                  gateway 198.51.100.1/24, peer 198.51.100.2/24
#                                inner addresses on lo:
#                                  gateway 203.0.113.1/32, peer 203.0.113.65/32
#                                Installs charon_cleanup as EXIT trap (chained
#                                before any EXIT trap already set, e.g. lib.sh's).
#   charon_start NAME NS DIR [URI]
#                                writes DIR/strongswan.conf (self-contained,
#                                kernel-libipsec, vici at URI, by default
#                                unix://DIR/charon.vici; a tcp:// URI is
#                                inside NS, reach it with ip netns exec NS),
#                                no stroke, log in DIR/charon.log), starts
#                                /usr/lib/ipsec/charon in NS with a private /run
#                                (tmpfs, so /run/charon.pid does not collide),
#                                waits until vici answers, records the PID in
#                                CH_PID[NAME].
#   swanctl_load NAME CONF_DIR   swanctl --load-all --file CONF_DIR/swanctl.conf
#   ch_swanctl NAME ARGS...      runs swanctl ARGS against charon NAME's vici
#   ns_bg NS CMD...              starts CMD in NS in the background, records
#                                its PID (stopped by charon_cleanup); PID in $NS_BG_PID
#   ch_stop NAME                 SIGTERM, SIGKILL after 2 s, by PID
#   charon_cleanup (alias cleanup unless already defined)
#                                stops recorded processes by PID, then any process
#                                still inside our namespaces (ip netns pids),
#                                deletes the namespaces, removes $CH_TMP.
#   ch_nc_through PORT           nc from 203.0.113.1 to 203.0.113.65:PORT arrives
#   ch_write_conf FILE SIDE SPEC...
#                                a swanctl.conf with test connections and PSKs
#   ch_now / ch_step LABEL       timing helpers (ch_step prints time since last).
#
# Variables: CH_SUFFIX (default $$), NS_GW, NS_PEER, CH_TMP (temp dir),
# CH_PID[NAME] / CH_DIR[NAME] / CH_NS[NAME] / CH_URI[NAME] per charon, CH_KEEP=1
# keeps $CH_TMP. Needs root and the packages strongswan-charon
# strongswan-swanctl libstrongswan-standard-plugins libcharon-extra-plugins,
# plus netcat-openbsd for traffic tests.
#
# Observed here (Debian 12, strongSwan 5.9.8, 2 cores, kernel without ESP):
#   - charon-demo.sh: 10 consecutive runs all passed, 3.1-3.3 s wall each;
#     2 runs in parallel also passed. Per step (avg of 10, each includes
#     ~0.04 s swanctl process start-up): netns_setup 0.18 s; charon_start ->
#     vici answers 0.19 s; swanctl_load 0.17 s per side; initiate ->
#     CHILD_SA INSTALLED 0.08 s; forced CHILD_SA rekey 0.11 s; terminate
#     0.07 s; NO_PROPOSAL_CHOSEN failure 0.35 s (incl. reload of the peer);
#     cleanup 0.3 s (charon exits on SIGTERM well within 2 s).
#   - After every run, also when killed with SIGTERM mid-run: no namespace,
#     no charon, no nc left (temp dir kept only on failure or with CH_KEEP).
#   - strongSwan spells the PRF "prfsha384"/"prfsha256": "prf_sha384" makes
#     load-conn fail ("algorithm 'prf_sha384' not recognized" in charon.log,
#     swanctl only says "invalid value for: proposals").
#   - The CHILD_SA created with IKE_AUTH does no DH: `list-sas` shows
#     "ESP:AES_GCM_16-256" without group; only after a CREATE_CHILD_SA
#     (swanctl --rekey --child X) it shows "ESP:AES_GCM_16-256/ECP_521" and
#     raw dh-group=. The old CHILD_SA stays listed DELETED for 5 s
#     (delete_rekeyed_delay).
#   - Both connections (same addresses) loaded on the responder work: 5.9.8
#     tries the next ike_cfg when the first has no matching proposal (peer log:
#     "no acceptable PSEUDO_RANDOM_FUNCTION found", then it succeeds). Use
#     per-connection identities so the peer_cfg choice is unambiguous.
#   - No charon-systemd in Debian 12's packages used here. `ip netns exec`
#     already unshares the mount namespace, so the tmpfs on /run is private;
#     ip -> unshare -> sh -> charon all exec, so $! is charon's own PID.
#   - kernel-libipsec: ipsec0 TUN, route 203.0.113.64/26 dev ipsec0 table 220
#     src 203.0.113.1; always ESP-in-UDP/4500 ("TUNNEL-in-UDP"). Without the
#     tunnel the gateway namespace has no route to 203.0.113.65 (nc fails at
#     once). nc must bind the inner source (nc -s 203.0.113.1). ESP byte
#     counters in `list-sas --raw` grow with the nc traffic.
#   - DH failure: the initiate reply only says "establishing CHILD_SA ...
#     failed"; the initiator's charon.log has "received NO_PROPOSAL_CHOSEN
#     notify error", the responder's "no acceptable KEY_EXCHANGE_METHOD
#     found" plus received/configured proposals. modp1024 loads silently.
#   - swanctl with STRONGSWAN_CONF set loads its compiled-in plugin list and
#     warns about plugins Debian does not ship: hence swanctl.load in the
#     generated strongswan.conf. --load-all --file complains about absent
#     x509/, private/, ... dirs next to the file (filtered in swanctl_load).
#   - charon leaves charon.vici behind after exit; probe by connecting.
#   - A process ignoring SIGTERM inside a namespace is found by
#     `ip netns pids` and SIGKILLed after 2 s (tested with a sh ignoring TERM).

CH_SUFFIX=${CH_SUFFIX:-$$}
NS_GW=mllp-gw-$CH_SUFFIX
NS_PEER=mllp-peer-$CH_SUFFIX
CH_TMP=${CH_TMP:-$(mktemp -d /tmp/mllp-charon.XXXXXX)}
CH_CHARON=${CH_CHARON:-/usr/lib/ipsec/charon}
declare -A CH_PID=() CH_DIR=() CH_NS=() CH_URI=()
CH_BG_PIDS=""
CH_NAMESPACES=""
CH_T0=$(date +%s.%N)
CH_TLAST=$CH_T0

ch_now() { date +%s.%N; }
# ch_step LABEL: print "[+delta s, total s] LABEL" since the previous ch_step.
ch_step() {
	local t
	t=$(date +%s.%N)
	awk -v a="$CH_TLAST" -v b="$t" -v z="$CH_T0" -v l="$1" \
		'BEGIN { printf "# [%6.3f s, total %6.3f s] %s\n", b - a, b - z, l }'
	CH_TLAST=$t
}

ch_die() { echo "charon-lib: $*" >&2; exit 1; }

netns_setup() {
	local old
	old=$(trap -p EXIT | sed -e "s/^trap -- '//" -e "s/' EXIT\$//")
	# shellcheck disable=SC2064
	trap "charon_cleanup; $old" EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
	ip netns add "$NS_GW" || ch_die "ip netns add $NS_GW failed"
	CH_NAMESPACES="$NS_GW"
	ip netns add "$NS_PEER" || ch_die "ip netns add $NS_PEER failed"
	CH_NAMESPACES="$CH_NAMESPACES $NS_PEER"
	ip -n "$NS_GW" link add outer type veth peer name outer netns "$NS_PEER" ||
		ch_die "veth failed"
	ip -n "$NS_GW" addr add 198.51.100.1/24 dev outer
	ip -n "$NS_PEER" addr add 198.51.100.2/24 dev outer
	ip -n "$NS_GW" addr add 203.0.113.1/32 dev lo
	ip -n "$NS_PEER" addr add 203.0.113.65/32 dev lo
	local ns
	for ns in "$NS_GW" "$NS_PEER"; do
		ip -n "$ns" link set lo up
		ip -n "$ns" link set outer up
	done
}

# charon_start NAME NS DIR [URI]
charon_start() {
	local name=$1 ns=$2 dir=$3 uri=${4:-} pid
	mkdir -p "$dir"
	dir=$(cd "$dir" && pwd)
	uri=${uri:-unix://$dir/charon.vici}
	cat >"$dir/strongswan.conf" <<EOF
# written by charon-lib.sh for charon "$name" in netns $ns
charon {
	load_modular = no
	load = kernel-libipsec random nonce openssl pem pkcs1 pkcs8 x509 pubkey gmp aes sha1 sha2 hmac kdf gcm kernel-netlink socket-default vici updown
	retransmit_tries = 2
	retransmit_timeout = 1.0
	plugins {
		vici {
			socket = $uri
		}
	}
	filelog {
		charon {
			path = $dir/charon.log
			time_format = %H:%M:%S
			append = no
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
	# the compiled-in list names plugins Debian does not ship (warnings)
	load = random openssl pem pkcs1 pkcs8 x509 pubkey
	socket = $uri
}
EOF
	CH_DIR[$name]=$dir
	CH_URI[$name]=$uri
	CH_NS[$name]=$ns
	# ip netns exec unshares the mount namespace; unshare -m makes sure, and
	# the tmpfs on /run keeps /run/charon.pid private. Every step execs.
	STRONGSWAN_CONF=$dir/strongswan.conf \
		ip netns exec "$ns" unshare -m --propagation private \
		sh -c 'mount -t tmpfs tmpfs /run && exec "$0"' "$CH_CHARON" \
		>"$dir/charon.stdout" 2>&1 </dev/null &
	pid=$!
	CH_PID[$name]=$pid
	for _ in $(seq 250); do
		if ! kill -0 "$pid" 2>/dev/null; then
			cat "$dir/charon.stdout" "$dir/charon.log" >&2 2>/dev/null
			ch_die "charon $name exited during start"
		fi
		if ch_swanctl "$name" --stats >/dev/null 2>&1; then
			return 0
		fi
		sleep 0.02
	done
	ch_die "charon $name: vici did not answer within 5 s"
}

# ch_swanctl NAME ARGS...: swanctl against charon NAME.
ch_swanctl() {
	local name=$1
	shift
	# In the namespace, for a tcp:// URI on the namespace's loopback.
	STRONGSWAN_CONF=${CH_DIR[$name]}/strongswan.conf \
		timeout 20 ip netns exec "${CH_NS[$name]}" swanctl "$@" --uri "${CH_URI[$name]}"
}

# swanctl_load NAME CONF_DIR: load connections and secrets from CONF_DIR/swanctl.conf
swanctl_load() {
	local name=$1 confdir=$2
	# stderr: drop the complaints about absent x509/, private/, ... dirs
	SWANCTL_DIR=$confdir ch_swanctl "$name" --load-all --noprompt \
		--file "$confdir/swanctl.conf" 2> >(grep -v '^opening directory' >&2)
}

# Test connections. A spec is NAME:IKE_PROPOSAL:ESP_PROPOSAL, e.g.
# dh21:aes256gcm16-prfsha384-ecp521:aes256gcm16-ecp521; it becomes the
# connection NAME with the child NAME-net between the inner addresses. The
# identities are per connection (gw-NAME.mllp.test, peer-NAME.mllp.test) so
# that each side picks its peer config unambiguously. Not for production.
CH_PSK=mllp-edge-test-psk-not-for-production

# ch_side SIDE: sets ch_la ch_ra ch_lts ch_rts ch_other for SIDE gw|peer.
ch_side() {
	if [ "$1" = gw ]; then
		ch_la=198.51.100.1 ch_ra=198.51.100.2 ch_other=peer
		ch_lts=203.0.113.1/32 ch_rts=203.0.113.64/26
	else
		ch_la=198.51.100.2 ch_ra=198.51.100.1 ch_other=gw
		ch_lts=203.0.113.64/26 ch_rts=203.0.113.1/32
	fi
}

# ch_write_conf FILE SIDE SPEC...: a swanctl.conf with the connections and
# their PSKs, for swanctl_load.
ch_write_conf() {
	local file=$1 side=$2 spec name ike esp
	shift 2
	ch_side "$side"
	mkdir -p "$(dirname "$file")"
	{
		echo "connections {"
		for spec in "$@"; do
			IFS=: read -r name ike esp <<<"$spec"
			cat <<EOF
	$name {
		version = 2
		local_addrs = $ch_la
		remote_addrs = $ch_ra
		proposals = $ike
		local {
			auth = psk
			id = $side-$name.mllp.test
		}
		remote {
			auth = psk
			id = $ch_other-$name.mllp.test
		}
		children {
			$name-net {
				local_ts = $ch_lts
				remote_ts = $ch_rts
				esp_proposals = $esp
				start_action = none
			}
		}
	}
EOF
		done
		echo "}"
		echo "secrets {"
		for spec in "$@"; do
			name=${spec%%:*}
			cat <<EOF
	ike-$name {
		id-gw = gw-$name.mllp.test
		id-peer = peer-$name.mllp.test
		secret = "$CH_PSK"
	}
EOF
		done
		echo "}"
	} >"$file"
}

# ns_bg NS CMD...: background CMD in NS; PID recorded and put in NS_BG_PID.
ns_bg() {
	local ns=$1
	shift
	ip netns exec "$ns" "$@" &
	NS_BG_PID=$!
	CH_BG_PIDS="$CH_BG_PIDS $NS_BG_PID"
}

# ch_nc_through PORT: sends a token from 203.0.113.1 (gw) to 203.0.113.65:PORT
# (peer) with nc; true when the peer received it. Needs a tunnel.
ch_nc_through() {
	local port=$1 token out
	token="mllp-edge-$port-$$"
	out=$CH_TMP/nc-$port.out
	: >"$out"
	ns_bg "$NS_PEER" sh -c 'exec nc -l -s 203.0.113.65 -p "$0" >"$1"' "$port" "$out"
	local lpid=$NS_BG_PID
	for _ in $(seq 50); do
		if echo "$token" | ip netns exec "$NS_GW" \
			nc -N -w 2 -s 203.0.113.1 203.0.113.65 "$port" 2>/dev/null; then
			break
		fi
		sleep 0.02 # listener not yet listening
	done
	for _ in $(seq 50); do
		grep -qx "$token" "$out" && break
		sleep 0.02
	done
	ch_kill_pid "$lpid"
	grep -qx "$token" "$out"
}

# stop PID: SIGTERM, SIGKILL after 2 s.
ch_kill_pid() {
	local pid=$1
	kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null; return 0; }
	kill -TERM "$pid" 2>/dev/null
	for _ in $(seq 40); do
		kill -0 "$pid" 2>/dev/null || break
		# a dead child of ours stays a zombie until reaped
		[ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" = Z ] && break
		sleep 0.05
	done
	if kill -0 "$pid" 2>/dev/null &&
		[ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" != Z ]; then
		echo "charon-lib: PID $pid ignored SIGTERM for 2 s, SIGKILL" >&2
		kill -KILL "$pid" 2>/dev/null
	fi
	wait "$pid" 2>/dev/null
	return 0
}

ch_stop() {
	local name=$1
	[ -n "${CH_PID[$name]:-}" ] || return 0
	ch_kill_pid "${CH_PID[$name]}"
	unset "CH_PID[$name]"
}

charon_cleanup() {
	local rc=$? name pid ns
	trap - INT TERM
	for pid in $CH_BG_PIDS; do
		ch_kill_pid "$pid"
	done
	CH_BG_PIDS=""
	for name in "${!CH_PID[@]}"; do
		ch_stop "$name"
	done
	# Anything still running inside our own namespaces was started by us.
	for ns in $CH_NAMESPACES; do
		for pid in $(ip netns pids "$ns" 2>/dev/null); do
			echo "charon-lib: stray PID $pid in $ns" >&2
			ch_kill_pid "$pid"
		done
		ip netns del "$ns" 2>/dev/null
	done
	CH_NAMESPACES=""
	# keep the logs on failure, not when interrupted (SIGINT/SIGTERM)
	if [ -n "${CH_KEEP:-}" ] ||
		{ [ "$rc" -ne 0 ] && [ "$rc" -ne 130 ] && [ "$rc" -ne 143 ]; }; then
		echo "# charon-lib: files kept in $CH_TMP" >&2
	else
		rm -rf "$CH_TMP"
	fi
	return "$rc"
}

if ! declare -F cleanup >/dev/null; then
	cleanup() { charon_cleanup; }
fi
