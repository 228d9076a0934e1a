# shellcheck shell=bash
# A real OpenSSH sshd serving SFTP only, for the file channel scenarios.
# Sourced after lib.sh:  . tests/integration/lib.sh; . tests/integration/sshd-lib.sh
#
#   sshd_setup [DIR]        a fresh server tree in DIR (default: a new
#                           /run/mllp-sftp.XXXXXX, removed on exit; a DIR
#                           given is the caller's to remove, and must be a
#                           root-owned path no group or other may write):
#                           DIR/etc holds sshd_config,
#                           the host keys (ed25519 and RSA 3072, plus an unused
#                           "next" ed25519 key for rotations) and
#                           authorized_keys; DIR/root is the chroot, with
#                           inbox, inbox/done, inbox/error and outbox owned by
#                           the SFTP user. Sets SSHD_DIR, SSHD_ROOT (the chroot
#                           as root sees it), SSHD_USER, SSHD_LOG.
#   sshd_netns NS           a namespace NS joined to the root namespace by a
#                           veth pair: $SSHD_NET.1/24 on our side,
#                           $SSHD_NET.2/24 inside NS; deleted on exit.
#                           SSHD_NET is 198.51.100 unless the environment
#                           says otherwise (203.0.113 lets two scenarios
#                           run side by side on a developer's machine).
#   sshd_start NETNS ADDR PORT
#                           sshd -D -e in NETNS (loopback when NETNS is empty),
#                           listening on ADDR:PORT only; its PID in SSHD_PID
#                           and PIDS; waits until the port answers.
#   sshd_stop / sshd_restart
#   sshd_authorize KEY.pub  appends a client key to authorized_keys
#   sshd_pin                the pin lines ("type base64") of the host keys
#                           sshd serves; sshd_next_pin: the "next" key's
#   sshd_rotate_hostkey     the next ed25519 key becomes the host key, a new
#                           next key is made, sshd restarts
#   sshd_log_count RE       how many lines of the sshd log match RE
#   sshd_put DIR NAME       stdin becomes the server's file DIR/NAME (under
#                           the chroot), owned by the SFTP user and appearing
#                           at once, as a hospital's writer that renames
#                           (".NAME" first, then mv)
#
#   SSHD_PUBKEY_ALGOS       PubkeyAcceptedAlgorithms (empty: sshd's default);
#   SSHD_EXTRA              more sshd_config lines (e.g. "HostKeyAlgorithms
#                           ssh-rsa"); both take effect at the next start or
#                           restart.
#
# Why it looks like this:
#  - ChrootDirectory wants every component of the chroot path root-owned and
#    not writable by group or others. /tmp (and so $TMP), /var/tmp and
#    /dev/shm are 1777, so the tree lives under /run (0755 root) and is
#    removed on exit. sshd's own files sit next to the chroot, outside it.
#  - StrictModes stays on: authorized_keys is root-owned 0644 in DIR/etc,
#    whose path is root-owned and not writable by others.
#  - The SFTP user is the existing account `nobody` (shell nologin, which
#    sshd only checks for being executable; ForceCommand internal-sftp never
#    runs it; its home /nonexistent does not matter inside the chroot):
#    nothing is added to /etc/passwd. Its files in the chroot go with DIR.
#  - /run/sshd (privilege separation) is made when missing and left there
#    (it is empty; another scenario's sshd may be using it at the same
#    time). The host's own ssh service is never touched; only our sshd
#    processes are stopped, by PID.

SSHD_USER=nobody
SSHD_NET=${SSHD_NET:-198.51.100}
case "$SSHD_NET" in 198.51.100 | 203.0.113) ;; *)
	echo "# SSHD_NET must be 198.51.100 or 203.0.113 (test networks only)" >&2
	exit 1
	;;
esac
SSHD_GROUP=$(id -gn nobody)
SSHD_PUBKEY_ALGOS=${SSHD_PUBKEY_ALGOS:-}
SSHD_EXTRA=${SSHD_EXTRA:-}
SSHD_DIR=""
SSHD_PID=""
SSHD_NETNS_LIST=""
SSHD_LOG=$TMP/sshd.log
SSHD_NS=""
SSHD_ADDR=""
SSHD_PORT=""

# sshd_cleanup: our processes first (sshd holds files in DIR), then the
# namespaces and the tree; then lib.sh's cleanup.
sshd_cleanup() {
	stop_pids
	for ns in $SSHD_NETNS_LIST; do
		ip netns delete "$ns" 2>/dev/null
	done
	case "$SSHD_DIR" in /run/mllp-sftp.*) rm -rf "$SSHD_DIR" ;; esac
	cleanup
}
trap sshd_cleanup EXIT

# A path ChrootDirectory accepts: each component root-owned, not g/o-writable.
sshd_path_ok() {
	local p=$1
	while :; do
		[ "$(stat -c %u "$p")" = 0 ] || return 1
		[ $((0$(stat -c %a "$p") & 022)) -eq 0 ] || return 1
		[ "$p" = / ] && return 0
		p=$(dirname "$p")
	done
}

sshd_setup() {
	SSHD_DIR=${1:-}
	[ -n "$SSHD_DIR" ] || SSHD_DIR=$(mktemp -d /run/mllp-sftp.XXXXXX) || return 1
	mkdir -p "$SSHD_DIR"
	chmod 0755 "$SSHD_DIR"
	sshd_path_ok "$SSHD_DIR" || {
		echo "# sshd_setup: $SSHD_DIR is not a root-owned, non-writable path" >&2
		return 1
	}
	[ -d /run/sshd ] || mkdir -m 0755 /run/sshd
	SSHD_ROOT=$SSHD_DIR/root
	mkdir -m 0755 "$SSHD_DIR/etc" "$SSHD_ROOT"
	for d in inbox inbox/done inbox/error outbox; do
		mkdir -m 0755 "$SSHD_ROOT/$d"
		chown "$SSHD_USER:$SSHD_GROUP" "$SSHD_ROOT/$d"
	done
	ssh-keygen -q -t ed25519 -N '' -C host-ed25519 -f "$SSHD_DIR/etc/host_ed25519" &&
		ssh-keygen -q -t rsa -b 3072 -N '' -C host-rsa -f "$SSHD_DIR/etc/host_rsa" &&
		ssh-keygen -q -t ed25519 -N '' -C host-next -f "$SSHD_DIR/etc/next_ed25519" || return 1
	: >"$SSHD_DIR/etc/authorized_keys"
	chmod 0644 "$SSHD_DIR/etc/authorized_keys"
}

# The configuration, written at each start (so SSHD_PUBKEY_ALGOS applies).
sshd_write_config() {
	local e=$SSHD_DIR/etc
	{
		printf 'ListenAddress %s\nPort %s\n' "$1" "$2"
		printf 'HostKey %s\nHostKey %s\n' "$e/host_ed25519" "$e/host_rsa"
		printf 'PidFile %s\n' "$e/sshd.pid"
		printf 'AuthorizedKeysFile %s\n' "$e/authorized_keys"
		printf 'PasswordAuthentication no\nKbdInteractiveAuthentication no\n'
		printf 'PubkeyAuthentication yes\nPermitRootLogin no\nUsePAM no\nStrictModes yes\n'
		printf 'AllowUsers %s\nLogLevel VERBOSE\n' "$SSHD_USER"
		printf 'AllowTcpForwarding no\nX11Forwarding no\nPermitTTY no\n'
		printf 'Subsystem sftp internal-sftp\nForceCommand internal-sftp\n'
		printf 'ChrootDirectory %s\n' "$SSHD_ROOT"
		if [ -n "$SSHD_PUBKEY_ALGOS" ]; then
			printf 'PubkeyAcceptedAlgorithms %s\n' "$SSHD_PUBKEY_ALGOS"
		fi
		if [ -n "$SSHD_EXTRA" ]; then
			printf '%s\n' "$SSHD_EXTRA"
		fi
	} >"$e/sshd_config"
}

sshd_netns() {
	local ns=$1
	ip netns add "$ns" || return 1
	SSHD_NETNS_LIST="$SSHD_NETNS_LIST $ns"
	ip link add "v-$ns" type veth peer name eth0 netns "$ns" || return 1
	ip addr add "$SSHD_NET.1/24" dev "v-$ns"
	ip link set "v-$ns" up
	ip -n "$ns" addr add "$SSHD_NET.2/24" dev eth0
	ip -n "$ns" link set eth0 up
	ip -n "$ns" link set lo up
}

# In NETNS, or here when it is empty.
sshd_in() {
	local ns=$1
	shift
	if [ -n "$ns" ]; then ip netns exec "$ns" "$@"; else "$@"; fi
}

sshd_start() {
	local ns=$1 addr=$2 port=$3
	SSHD_NS=$ns SSHD_ADDR=$addr SSHD_PORT=$port
	sshd_write_config "$addr" "$port"
	/usr/sbin/sshd -t -f "$SSHD_DIR/etc/sshd_config" || {
		echo "# sshd -t refused the configuration" >&2
		return 1
	}
	# Started directly (not through sshd_in) so that $! is sshd itself:
	# ip netns exec execs it.
	if [ -n "$ns" ]; then
		ip netns exec "$ns" /usr/sbin/sshd -D -e -f "$SSHD_DIR/etc/sshd_config" \
			>>"$SSHD_LOG" 2>&1 &
	else
		/usr/sbin/sshd -D -e -f "$SSHD_DIR/etc/sshd_config" >>"$SSHD_LOG" 2>&1 &
	fi
	SSHD_PID=$!
	PIDS="$PIDS $SSHD_PID"
	wait_until 10 "sshd_in '$ns' bash -c 'exec 3<>/dev/tcp/$addr/$port'" || {
		echo "# sshd did not start:" >&2
		tail -n 20 "$SSHD_LOG" >&2
		return 1
	}
}

sshd_stop() {
	[ -n "$SSHD_PID" ] && stop_pid "$SSHD_PID"
	SSHD_PID=""
}

sshd_restart() {
	sshd_stop
	sshd_start "$SSHD_NS" "$SSHD_ADDR" "$SSHD_PORT"
}

sshd_authorize() { cat "$1" >>"$SSHD_DIR/etc/authorized_keys"; }

sshd_pin() { cut -d' ' -f1,2 "$SSHD_DIR/etc/host_ed25519.pub" "$SSHD_DIR/etc/host_rsa.pub"; }
sshd_next_pin() { cut -d' ' -f1,2 "$SSHD_DIR/etc/next_ed25519.pub"; }

sshd_rotate_hostkey() {
	local e=$SSHD_DIR/etc
	mv "$e/next_ed25519" "$e/host_ed25519" && mv "$e/next_ed25519.pub" "$e/host_ed25519.pub" &&
		ssh-keygen -q -t ed25519 -N '' -C host-next -f "$e/next_ed25519" && sshd_restart
}

sshd_log_count() { grep -cE "$1" "$SSHD_LOG" 2>/dev/null || true; }

sshd_put() {
	cat >"$TMP/put.tmp" && install -o "$SSHD_USER" -g "$SSHD_GROUP" -m 0644 "$TMP/put.tmp" \
		"$SSHD_ROOT/$1/.$2" && mv "$SSHD_ROOT/$1/.$2" "$SSHD_ROOT/$1/$2"
}
