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
#   charon_start NAME NS DIR     writes DIR/strongswan.conf (self-contained,
#                                kernel-libipsec, vici at unix://DIR/charon.vici,
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
#   ch_now / ch_step LABEL       timing helpers (ch_step prints time since last).
#
# Variables: CH_SUFFIX (default $$), NS_GW, NS_PEER, CH_TMP (temp dir), CH_KEEP=1
# keeps $CH_TMP. Needs root and the packages strongswan-charon
# strongswan-swanctl libstrongswan-standard-plugins libcharon-extra-plugins,
# plus netcat-openbsd for traffic tests.
#
# Observed here (Debian 12, strongSwan 5.9.8, 2 cores; charon-demo.sh, 10 runs):
#   - full demo (setup, 2 charons, DH21 + DH14 tunnels, nc through both,
#     modp1024 failure, cleanup) ~0.9-1.2 s wall; nc waits dominate.
#   - netns_setup ~0.03 s; charon start -> vici answers ~0.05-0.08 s;
#     swanctl --load-all ~0.01 s; initiate -> CHILD_SA INSTALLED ~0.02-0.04 s;
#     SIGTERM -> charon exit < 0.1 s (SIGKILL never needed).
#   - No charon-systemd on this machine; `ip netns exec` already unshares the
#     mount namespace, so `mount -t tmpfs tmpfs /run` inside it is private, and
#     ip -> unshare -> sh -> charon all exec, so $! is charon's own PID.
#   - Two connections with the same addresses on the responder: 5.9.8 picks
#     the right one by IKE proposal (DH21 and DH14 both came up with both
#     connections loaded on the peer).
#   - kernel-libipsec installs routes into table 220 via ipsec0 with the
#     inner address as source only if that address exists in the namespace;
#     nc must bind the inner address (nc -s 203.0.113.1) anyway.
#   - The DH failure: `initiate` only says "establishing CHILD_SA ... failed";
#     NO_PROPOSAL_CHOSEN is in the initiator's charon.log ("received
#     NO_PROPOSAL_CHOSEN notify error") and the responder logs "no acceptable
#     proposal found" / "received proposals ... configured proposals".
#   - charon leaves charon.vici behind after exit; probe by connecting.
#   - A modp1024 config loads without complaint in 5.9.8.

CH_SUFFIX=${CH_SUFFIX:-$$}
NS_GW=mllp-gw-$CH_SUFFIX
NS_PEER=mllp-peer-$CH_SUFFIX
CH_TMP=${CH_TMP:-$(mktemp -d /tmp/mllp-charon.XXXXXX)}
CH_CHARON=${CH_CHARON:-/usr/lib/ipsec/charon}
declare -A CH_PID=() CH_DIR=() CH_NS=()
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

# charon_start NAME NS DIR
charon_start() {
	local name=$1 ns=$2 dir=$3 i pid
	mkdir -p "$dir"
	dir=$(cd "$dir" && pwd)
	cat >"$dir/strongswan.conf" <<EOF
# written by charon-lib.sh for charon "$name" in netns $ns
charon {
	load_modular = no
	load = kernel-libipsec random nonce openssl pem pkcs1 pkcs8 x509 pubkey gmp aes sha1 sha2 hmac kdf gcm kernel-netlink socket-default vici updown
	retransmit_tries = 2
	retransmit_timeout = 1.0
	plugins {
		vici {
			socket = unix://$dir/charon.vici
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
	socket = unix://$dir/charon.vici
}
EOF
	CH_DIR[$name]=$dir
	CH_NS[$name]=$ns
	# ip netns exec unshares the mount namespace; unshare -m makes sure, and
	# the tmpfs on /run keeps /run/charon.pid private. Every step execs.
	STRONGSWAN_CONF=$dir/strongswan.conf \
		ip netns exec "$ns" unshare -m --propagation private \
		sh -c 'mount -t tmpfs tmpfs /run && exec "$0"' "$CH_CHARON" \
		>"$dir/charon.stdout" 2>&1 </dev/null &
	pid=$!
	CH_PID[$name]=$pid
	for i in $(seq 250); do
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
	STRONGSWAN_CONF=${CH_DIR[$name]}/strongswan.conf \
		timeout 20 swanctl "$@" --uri "unix://${CH_DIR[$name]}/charon.vici"
}

# swanctl_load NAME CONF_DIR: load connections and secrets from CONF_DIR/swanctl.conf
swanctl_load() {
	local name=$1 confdir=$2
	# stderr: drop the complaints about absent x509/, private/, ... dirs
	SWANCTL_DIR=$confdir ch_swanctl "$name" --load-all --noprompt \
		--file "$confdir/swanctl.conf" 2> >(grep -v '^opening directory' >&2)
}

# ns_bg NS CMD...: background CMD in NS; PID recorded and put in NS_BG_PID.
ns_bg() {
	local ns=$1
	shift
	ip netns exec "$ns" "$@" &
	NS_BG_PID=$!
	CH_BG_PIDS="$CH_BG_PIDS $NS_BG_PID"
}

# stop PID: SIGTERM, SIGKILL after 2 s.
ch_kill_pid() {
	local pid=$1 i
	kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null; return 0; }
	kill -TERM "$pid" 2>/dev/null
	for i in $(seq 40); do
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
	if [ -n "${CH_KEEP:-}" ] || [ "$rc" -ne 0 ]; then
		echo "# charon-lib: files kept in $CH_TMP" >&2
	else
		rm -rf "$CH_TMP"
	fi
	return "$rc"
}

if ! declare -F cleanup >/dev/null; then
	cleanup() { charon_cleanup; }
fi
