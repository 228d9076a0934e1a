#!/bin/bash
# t_sftpc (issue 14): the SFTP client module (mllp-bridge/sftpc.c, driven by
# sftpc-cli) against a real OpenSSH sshd (sshd-lib.sh: chrooted
# internal-sftp, key-only) in a network namespace of its own, reached over a
# veth pair $SSHD_NET.1 -> $SSHD_NET.2:2222 (SSHD_NET: sshd-lib.sh, 198.51.100
# unless set).
#
#   files     with an RSA 3072 key and with an Ed25519 key: ls, put (synced
#             with fsync@openssh.com), get (sha256 as sha256sum sees the
#             original), stat, mv, mkdir (twice), rm (twice: ENOENT); each
#             result is also checked on the server's disk.
#   replace   a put onto an existing file replaces it and leaves no .part.
#   max       a get of a file past max: EFBIG; at exactly max: ok.
#   window    gets keep SFTPC_READS_IN_FLIGHT reads outstanding: 5 MiB + 123
#             bytes of random data, an empty file, one chunk (32768), 40
#             chunks, all byte-exact (sha256 and length); -m at the size of
#             the 5 MiB file: ok, one byte less: EFBIG; and the 5 MiB file
#             again through a 20 Mbit/s tbf qdisc on the namespace's eth0
#             (no netem in this kernel): byte-exact, and slower than 2 s;
#             after EFBIG and after a local write error (/dev/full) with
#             reads in flight, the same connection still serves a stat (-a);
#             at 128 kbit/s a 1 s request timeout ends the get in a read
#             (ETIMEDOUT, then ECONNABORTED), and so does shutdown().
#   keys      RSA 2048: ENOKEY before any connection (no "Connection from"
#             in the sshd log); keys [unauthorized, authorized]: key=1, the
#             first one's failure logged by sshd; only the unauthorized one:
#             EACCES.
#   pins      a wrong pin: EKEYREJECTED naming the server key's SHA256
#             fingerprint (as ssh-keygen -l prints it), and sshd logged the
#             connection but no publickey attempt; pins current+next work;
#             after sshd_rotate_hostkey the old pin alone is refused and
#             current+next works, reporting the new key's fingerprint.
#   sha1      a server with PubkeyAcceptedAlgorithms ssh-rsa (SHA-1 only):
#             OpenSSH's own sftp client logs in with the same RSA key there
#             (the server is alive and takes that key), ours is refused
#             (EACCES, no "Accepted publickey").
#   cancel    the session's server process stopped (SIGSTOP): another thread
#             shut the socket down (shutdown(2), as files.c cancels) and the
#             blocked get fails within a second; with no canceller the
#             request timeout (-t 2000) ends it.
#   misc      a closed port: ECONNREFUSED; nothing written under ~/.ssh.
. tests/integration/lib.sh
. tests/integration/sshd-lib.sh

NS=sftpc$$
ADDR=$SSHD_NET.2
PORT=2222
CLI=$BIN/sftpc-cli
HOME_KH=$HOME/.ssh/known_hosts
kh_before=$(stat -c %Y:%s "$HOME_KH" 2>/dev/null || echo none)

[ -x "$CLI" ] || {
	fail "sftpc-cli is built" "$CLI missing"
	finish
}
sshd_setup "" || {
	fail "sshd_setup"
	finish
}
sshd_netns "$NS" || {
	fail "namespace $NS"
	finish
}

# ---- keys ------------------------------------------------------------------
mk() { "$CLI" keygen "$TMP/$1" "$2" ${3:+"$3"} >"$TMP/$1.info" 2>&1; }
if ! { mk ed ed25519 && mk rsa rsa 3072 && mk unauth ed25519; }; then
	fail "sftpc-cli keygen" "$(cat "$TMP"/*.info)"
	finish
fi
ssh-keygen -q -t rsa -b 2048 -N '' -f "$TMP/rsa2048"
for k in ed rsa; do
	head -n 1 "$TMP/$k.info" >"$TMP/$k.pub"
	sshd_authorize "$TMP/$k.pub"
done
sshd_authorize "$TMP/rsa2048.pub" # authorized, so only our policy refuses it
sshd_pin >"$TMP/pins"
sshd_next_pin >"$TMP/next.pin"
cat "$TMP/pins" "$TMP/next.pin" >"$TMP/pins+next"
head -n 1 "$TMP/pins" >"$TMP/old-ed.pin"
ed_fpr=$(ssh-keygen -lf "$SSHD_DIR/etc/host_ed25519.pub" | awk '{print $2}')
next_fpr=$(ssh-keygen -lf "$SSHD_DIR/etc/next_ed25519.pub" | awk '{print $2}')

sshd_start "$NS" "$ADDR" "$PORT" || {
	fail "sshd starts in $NS"
	finish
}

# c OUTNAME KEYS... -- CMD ARGS: one sftpc-cli run; stdout in $TMP/OUTNAME.out,
# stderr in $TMP/OUTNAME.err, exit code in RC.
c() {
	local out=$1 args=()
	shift
	while [ "$1" != -- ]; do
		args+=(-k "$TMP/$1")
		shift
	done
	shift
	timeout 30 "$CLI" -h "$ADDR" -p "$PORT" -u "$SSHD_USER" -H "${PINS:-$TMP/pins}" -t "${TMO:-5000}" \
		"${args[@]}" "$@" >"$TMP/$out.out" 2>"$TMP/$out.err"
	RC=$?
}
rc_is() { [ "$RC" = "$1" ]; }
err_has() { grep -qE "$2" "$TMP/$1.err"; }
err_hasf() { grep -qF "$2" "$TMP/$1.err"; } # fingerprints hold + and /
out_has() { grep -qE "$2" "$TMP/$1.out"; }
sha() { sha256sum "$1" | cut -d' ' -f1; }
srv() { echo "$SSHD_ROOT/$1"; }

# ---- files, with each client key ------------------------------------------
head -c 300001 /dev/urandom >"$TMP/body.bin" # ten SFTP chunks and a bit
# shellcheck disable=SC2034 # read by the eval'd expectations
body_sha=$(sha "$TMP/body.bin")
for k in rsa ed; do
	c "$k-ls" "$k" -- ls /
	expect "$k: connects and lists / (inbox, outbox; key=0)" \
		eval 'rc_is 0 && out_has $k-ls "^inbox	" && out_has $k-ls "^outbox	" && err_has $k-ls "^key=0 "'
	c "$k-put" "$k" -- put "$TMP/body.bin" /inbox/f.bin
	expect "$k: put, fsync'd (synced=1), same bytes on the server" \
		eval 'rc_is 0 && out_has $k-put "^synced=1$" && [ "$(sha "$(srv inbox/f.bin)")" = "$body_sha" ]'
	c "$k-get" "$k" -- get /inbox/f.bin "$TMP/$k-got.bin"
	expect "$k: get: sha256 and length printed, sha256sum of the file agrees" \
		eval 'rc_is 0 && [ "$(cat $TMP/$k-get.out)" = "$body_sha	300001" ] && [ "$(sha $TMP/$k-got.bin)" = "$body_sha" ]'
	c "$k-stat" "$k" -- stat /inbox/f.bin
	expect "$k: stat: size 300001, regular" eval 'rc_is 0 && out_has $k-stat "^300001	[0-9]+	1$"'
	c "$k-ls2" "$k" -- ls /inbox
	expect "$k: ls /inbox: f.bin regular, done/ not" \
		eval 'out_has $k-ls2 "^f.bin	300001	[0-9]+	1$" && out_has $k-ls2 "^done	[0-9]+	[0-9]+	0$"'
	c "$k-mv" "$k" -- mv /inbox/f.bin /inbox/done/f.bin
	expect "$k: mv: in done/, gone from inbox/" \
		eval 'rc_is 0 && [ -f "$(srv inbox/done/f.bin)" ] && [ ! -e "$(srv inbox/f.bin)" ]'
	c "$k-mkdir" "$k" -- mkdir "/outbox/$k"
	expect "$k: mkdir: a directory of $SSHD_USER, mode 0750" \
		eval 'rc_is 0 && [ "$(stat -c %U:%a "$(srv outbox/$k)")" = "$SSHD_USER:750" ]'
	c "$k-mkdir2" "$k" -- mkdir "/outbox/$k"
	expect "$k: mkdir of an existing directory: 0" rc_is 0
	c "$k-rm" "$k" -- rm /inbox/done/f.bin
	expect "$k: rm: gone" eval 'rc_is 0 && [ ! -e "$(srv inbox/done/f.bin)" ]'
	c "$k-rm2" "$k" -- rm /inbox/done/f.bin
	expect "$k: rm of nothing: ENOENT" eval 'rc_is 1 && err_has $k-rm2 "^ENOENT: "'
done

# ---- errors ---------------------------------------------------------------
echo first >"$TMP/a.txt"
echo second >"$TMP/b.txt"
c put-mode ed -- put "$TMP/a.txt" /outbox/mode.txt
expect "errors: a put file has mode 0640 on the server" \
	eval 'rc_is 0 && [ "$(stat -c %a "$(srv outbox/mode.txt)")" = 640 ]'
c get-none ed -- get /inbox/none.bin "$TMP/none.bin"
expect "errors: get of a missing file: ENOENT" eval 'rc_is 1 && err_has get-none "^ENOENT: "'
c put-root ed -- put "$TMP/a.txt" /denied.txt
expect "errors: put into the root-owned chroot top: EACCES, nothing left there" \
	eval 'rc_is 1 && err_has put-root "^EACCES: " && [ ! -e "$(srv denied.txt.part)" ]'
c mkdir-isdir ed -- mkdir /outbox/isdir
c put-isdir ed -- put "$TMP/a.txt" /outbox/isdir
expect "errors: put onto a directory: the rename of the .part fails" \
	eval 'rc_is 1 && err_has put-isdir "^E[A-Z]+: rename /outbox/isdir.part"'
c ls-isdir ed -- ls /outbox
expect "errors: ... and the .part is removed again (the listing has isdir)" \
	eval 'rc_is 0 && out_has ls-isdir "^isdir	" && ! out_has ls-isdir "^isdir.part	"'
mkdir -m 0755 "$(srv inbox/many)" && (cd "$(srv inbox/many)" && seq -f 'f%05g' 1 10000 | xargs touch)
c many ed -- ls /inbox/many
expect "errors: a directory of 10000 entries lists (SFTPC_LIST_MAX)" \
	eval 'rc_is 0 && [ "$(grep -c . $TMP/many.out)" -eq 10000 ]'
touch "$(srv inbox/many/f10001)"
c many1 ed -- ls /inbox/many
expect "errors: one more: E2BIG" eval 'rc_is 1 && err_has many1 "^E2BIG: "'
rm -rf "$(srv inbox/many)"

# ---- replace and max ------------------------------------------------------
c put-a ed -- put "$TMP/a.txt" /outbox/r.txt
expect "replace: the first put is there" eval '[ "$(cat "$(srv outbox/r.txt)")" = first ]'
c put-b ed -- put "$TMP/b.txt" /outbox/r.txt
expect "replace: a put onto it replaces it" \
	eval 'rc_is 0 && [ "$(cat "$(srv outbox/r.txt)")" = second ]'
c ls-out ed -- ls /outbox
expect "replace: the listing has r.txt and no .part" \
	eval 'out_has ls-out "^r.txt	" && ! out_has ls-out "\.part" && [ ! -e "$(srv outbox/r.txt.part)" ]'
c mv-over ed -- mv /outbox/r.txt /outbox/ed.txt
expect "mv to a new name" eval 'rc_is 0 && [ "$(cat "$(srv outbox/ed.txt)")" = second ]'
echo third >"$TMP/c.txt"
c put-c ed -- put "$TMP/c.txt" /outbox/s.txt
c mv-repl ed -- mv /outbox/s.txt /outbox/ed.txt
expect "mv replaces an existing target" \
	eval 'rc_is 0 && [ "$(cat "$(srv outbox/ed.txt)")" = third ] && [ ! -e "$(srv outbox/s.txt)" ]'

head -c 100000 /dev/urandom >"$TMP/max.bin"
c put-max ed -- put "$TMP/max.bin" /inbox/max.bin
c get-over ed -- -m 99999 get /inbox/max.bin "$TMP/max-got.bin"
expect "max: 100000 bytes with max 99999: EFBIG" eval 'rc_is 1 && err_has get-over "^EFBIG: "'
c get-at ed -- -m 100000 get /inbox/max.bin "$TMP/max-got.bin"
expect "max: with max 100000: ok, same bytes" \
	eval 'rc_is 0 && [ "$(sha $TMP/max-got.bin)" = "$(sha $TMP/max.bin)" ]'

# ---- window: several reads in flight ---------------------------------------
# got NAME REMOTE: the get printed the sha256 and length of the local copy of
# what was written to the server as $TMP/NAME.src, and the copy is the same.
got() {
	local want
	want="$(sha "$TMP/$1.src")	$(stat -c %s "$TMP/$1.src")"
	rc_is 0 && [ "$(cat "$TMP/$1.out")" = "$want" ] && [ "$(sha "$TMP/$1.bin")" = "$(sha "$TMP/$1.src")" ]
}
head -c $((5 * 1048576 + 123)) /dev/urandom >"$TMP/w5m.src"
: >"$TMP/wempty.src"
head -c 32768 /dev/urandom >"$TMP/wone.src"
head -c $((40 * 32768)) /dev/urandom >"$TMP/w40.src"
for w in w5m wempty wone w40; do
	cp "$TMP/$w.src" "$(srv inbox/$w.bin)"
	c "$w" ed -- get "/inbox/$w.bin" "$TMP/$w.bin"
	expect "window: $w ($(stat -c %s "$TMP/$w.src") bytes): byte-exact, sha256 and length printed" got "$w"
done
w5m_size=$(stat -c %s "$TMP/w5m.src")
cp "$TMP/w5m.src" "$TMP/w5m-at.src"
c w5m-at ed -- -m "$w5m_size" get /inbox/w5m.bin "$TMP/w5m-at.bin"
expect "window: -m $w5m_size (the size): ok, byte-exact" got w5m-at
c w5m-over ed -- -a /inbox/wone.bin -m $((w5m_size - 1)) get /inbox/w5m.bin "$TMP/w5m-over.bin"
expect "window: -m $((w5m_size - 1)) (one byte less): EFBIG, fewer bytes written, the connection still serves a stat" \
	eval 'rc_is 1 && err_has w5m-over "^EFBIG: " && [ "$(stat -c %s $TMP/w5m-over.bin)" -lt $w5m_size ] && err_has w5m-over "^after=0 32768$"'
c w5m-full ed -- -a /inbox/wone.bin get /inbox/w5m.bin /dev/full
expect "window: a local write error at the first chunk (/dev/full): ENOSPC, the replies in flight are drained, the connection still serves a stat" \
	eval 'rc_is 1 && err_has w5m-full "^ENOSPC: " && err_has w5m-full "^after=0 32768$"'
# A slow link: 128 kbit/s is 2 s per chunk, so the oldest read of a full
# window overruns a 1 s request timeout, and a cancellation hits reads in
# flight.
if ip netns exec "$NS" tc qdisc add dev eth0 root tbf rate 128kbit burst 32kbit latency 60s; then
	t0=$(date +%s%N)
	TMO=1000 c wtmo ed -- -a /inbox/wone.bin get /inbox/w5m.bin "$TMP/wtmo.bin"
	ms=$((($(date +%s%N) - t0) / 1000000))
	expect "window: 128 kbit/s, -t 1000: ETIMEDOUT in a read after ${ms} ms, later requests ECONNABORTED ($(grep -v '^key=' "$TMP/wtmo.err" | head -n 1))" \
		eval 'rc_is 1 && err_has wtmo "^ETIMEDOUT: no answer within 1000 ms: read " && err_has wtmo "^after=ECONNABORTED$" && [ $ms -lt 4000 ]'
	# A fresh qdisc: the old one still queues the timed-out session's replies.
	ip netns exec "$NS" tc qdisc replace dev eth0 root pfifo
	ip netns exec "$NS" tc qdisc replace dev eth0 root tbf rate 128kbit burst 32kbit latency 60s
	t0=$(date +%s%N)
	TMO=20000 c wcancel ed -- -a /inbox/wone.bin -X 1500 get /inbox/w5m.bin "$TMP/wcancel.bin"
	ms=$((($(date +%s%N) - t0) / 1000000))
	expect "window: 128 kbit/s, shutdown() after 1500 ms ended the get with reads in flight: ${ms} ms, later requests fail" \
		eval 'rc_is 1 && err_has wcancel "^E[A-Z]+: " && err_has wcancel "^after=E[A-Z]+$" && [ $ms -lt 3500 ]'
	ip netns exec "$NS" tc qdisc del dev eth0 root
else
	fail "window: tc qdisc tbf 128kbit in $NS"
fi
if ip netns exec "$NS" tc qdisc add dev eth0 root tbf rate 20mbit burst 32kbit latency 400ms; then
	cp "$TMP/w5m.src" "$TMP/wslow.src"
	t0=$(date +%s%N)
	c wslow ed -- get /inbox/w5m.bin "$TMP/wslow.bin"
	ms=$((($(date +%s%N) - t0) / 1000000))
	ip netns exec "$NS" tc qdisc del dev eth0 root
	expect "window: through 20 Mbit/s (tbf): byte-exact in $ms ms (the link was slow: > 2000 ms)" \
		eval 'got wslow && [ $ms -gt 2000 ]'
else
	fail "window: tc qdisc tbf in $NS"
fi

# ---- client keys ----------------------------------------------------------
conns=$(sshd_log_count 'Connection from')
expect "keys: the sshd log counts connections (alive: $conns so far)" test "$conns" -gt 0
c k2048 rsa2048 -- ls /
expect "keys: RSA 2048 refused: ENOKEY, the reason names the size" \
	eval 'rc_is 1 && err_has k2048 "^ENOKEY: .*2048 bits"'
expect "keys: ... and nothing was offered (no new connection in the sshd log)" \
	test "$(sshd_log_count 'Connection from')" -eq "$conns"

unauth_fpr=$(tail -n 1 "$TMP/unauth.info")
c order unauth ed -- ls /
expect "keys: [unauthorized, authorized]: the second authenticates (key=1)" \
	eval 'rc_is 0 && err_has order "^key=1 "'
expect "keys: ... after sshd refused the first ($unauth_fpr)" \
	eval 'grep "Failed publickey" "$SSHD_LOG" | grep -qF "$unauth_fpr"'
c only-unauth unauth -- ls /
expect "keys: only the unauthorized key: EACCES" eval 'rc_is 1 && err_has only-unauth "^EACCES: "'
c skip rsa2048 unauth -- ls /
expect "keys: [RSA 2048, unauthorized]: EACCES, the text says why RSA 2048 was skipped" \
	eval 'rc_is 1 && err_has skip "^EACCES: .*denied; skipped: .*rsa2048: RSA key of 2048 bits"'

# ---- host key pins --------------------------------------------------------
conns=$(sshd_log_count 'Connection from')
pk=$(sshd_log_count 'publickey')
expect "pins: publickey attempts show in the sshd log ($pk so far)" test "$pk" -gt 0
PINS=$TMP/next.pin c wrong ed -- ls /
expect "pins: a wrong pin: EKEYREJECTED naming the server's key $ed_fpr" \
	eval 'rc_is 1 && err_hasf wrong "EKEYREJECTED: host key ssh-ed25519 $ed_fpr is not pinned"'
expect "pins: ... sshd saw the connection" \
	test "$(sshd_log_count 'Connection from')" -eq $((conns + 1))
expect "pins: ... and no authentication attempt" test "$(sshd_log_count 'publickey')" -eq "$pk"
PINS=$TMP/pins+next c cur-next ed -- ls /
expect "pins: current+next: ok, the current key ($ed_fpr)" \
	eval 'rc_is 0 && err_hasf cur-next "fpr=$ed_fpr"'
if sshd_rotate_hostkey; then
	PINS=$TMP/old-ed.pin c old ed -- ls /
	expect "pins: after rotation the old pin alone: EKEYREJECTED ($next_fpr)" \
		eval 'rc_is 1 && err_hasf old "EKEYREJECTED: host key ssh-ed25519 $next_fpr is not pinned"'
	PINS=$TMP/pins+next c rotated ed -- ls /
	expect "pins: after rotation current+next: ok, the new key ($next_fpr)" \
		eval 'rc_is 0 && err_hasf rotated "fpr=$next_fpr"'
else
	fail "pins: sshd_rotate_hostkey"
fi
sshd_pin >"$TMP/pins" # the rotated set, for what follows

# ---- a SHA-1-only server --------------------------------------------------
SSHD_PUBKEY_ALGOS=ssh-rsa
if sshd_restart; then
	{
		sed "s/^/[$ADDR]:$PORT /" "$TMP/pins"
	} >"$TMP/known_hosts"
	cp "$TMP/rsa" "$TMP/rsa-0600" && chmod 0600 "$TMP/rsa-0600"
	acc=$(sshd_log_count 'Accepted publickey')
	echo ls | timeout 20 sftp -F /dev/null -b - -P "$PORT" -i "$TMP/rsa-0600" \
		-o IdentitiesOnly=yes -o IdentityAgent=none -o PubkeyAcceptedAlgorithms=ssh-rsa \
		-o UserKnownHostsFile="$TMP/known_hosts" -o GlobalKnownHostsFile=/dev/null \
		-o StrictHostKeyChecking=yes -o BatchMode=yes "$SSHD_USER@$ADDR" >"$TMP/openssh-sha1.out" 2>&1
	expect "sha1: OpenSSH's sftp logs in there with ssh-rsa (SHA-1) and the same key" \
		eval '[ "$(sshd_log_count "Accepted publickey")" -eq $((acc + 1)) ] && grep -q inbox $TMP/openssh-sha1.out'
	c sha1 rsa -- ls /
	expect "sha1: our client is refused (EACCES)" eval 'rc_is 1 && err_has sha1 "^EACCES: "'
	expect "sha1: ... and sshd accepted nothing more" \
		test "$(sshd_log_count 'Accepted publickey')" -eq $((acc + 1))
else
	fail "sha1: sshd restarts with PubkeyAcceptedAlgorithms ssh-rsa"
fi
SSHD_PUBKEY_ALGOS=""
sshd_restart || fail "sshd restarts with the default algorithms"

# ---- host key algorithms --------------------------------------------------
rsa_fpr=$(ssh-keygen -lf "$SSHD_DIR/etc/host_rsa.pub" | awk '{print $2}')
grep '^ssh-rsa ' "$TMP/pins" >"$TMP/rsa.pin"
PINS=$TMP/rsa.pin c hk-rsa ed -- ls /
expect "hostkey: an RSA pin alone: the server's RSA key ($rsa_fpr), rsa-sha2 signature" \
	eval 'rc_is 0 && err_hasf hk-rsa "fpr=$rsa_fpr"'
SSHD_EXTRA="HostKeyAlgorithms ssh-rsa"
if sshd_restart; then
	echo ls | timeout 20 sftp -F /dev/null -b - -P "$PORT" -i "$TMP/rsa-0600" \
		-o IdentitiesOnly=yes -o IdentityAgent=none -o HostKeyAlgorithms=ssh-rsa \
		-o UserKnownHostsFile="$TMP/known_hosts" -o GlobalKnownHostsFile=/dev/null \
		-o StrictHostKeyChecking=yes -o BatchMode=yes "$SSHD_USER@$ADDR" >"$TMP/openssh-hk.out" 2>&1
	expect "hostkey: a server signing with ssh-rsa (SHA-1) only: OpenSSH's sftp gets in" \
		grep -q inbox "$TMP/openssh-hk.out"
	PINS=$TMP/rsa.pin c hk-sha1 ed -- ls /
	expect "hostkey: ... ours refuses it in the key exchange (EPROTO)" \
		eval 'rc_is 1 && err_has hk-sha1 "^EPROTO: "'
else
	fail "hostkey: sshd restarts with HostKeyAlgorithms ssh-rsa"
fi
SSHD_EXTRA=""
sshd_restart || fail "sshd restarts without HostKeyAlgorithms"

# ---- cancellation and timeout ---------------------------------------------
c put-big ed -- put "$TMP/body.bin" /inbox/big.bin
# stop_session: SIGSTOP the user child of the newest session (its PID is in
# the sshd log) once the client has it; echo the PID.
stop_session() {
	local n0=$1 pid
	wait_until 10 '[ "$(sshd_log_count "Starting session")" -gt "$n0" ]' || return 1
	pid=$(grep -oE 'User child is on pid [0-9]+' "$SSHD_LOG" | tail -n 1 | awk '{print $NF}')
	[ -n "$pid" ] && kill -STOP "$pid" && echo "$pid"
}
n0=$(sshd_log_count 'Starting session')
t0=$(date +%s%N)
TMO=20000 c cancel ed -- -w 1000 -X 1500 get /inbox/big.bin "$TMP/cancel.bin" &
cpid=$!
spid=$(stop_session "$n0")
expect "cancel: the session's server process is stopped (pid ${spid:-none})" \
	eval '[ -n "$spid" ] && [ "$(ps -o stat= -p $spid | cut -c1)" = T ]'
wait "$cpid"
ms=$((($(date +%s%N) - t0) / 1000000))
[ -n "$spid" ] && kill -CONT "$spid"
expect "cancel: shutdown() from another thread ended the blocked get: ${ms} ms (1500 ms + < 1 s)" \
	eval '[ $ms -lt 2500 ] && err_has cancel "^E[A-Z]+: "'

n0=$(sshd_log_count 'Starting session')
t0=$(date +%s%N)
TMO=2000 c tmo ed -- -w 1000 get /inbox/big.bin "$TMP/tmo.bin" &
cpid=$!
spid=$(stop_session "$n0")
wait "$cpid"
ms=$((($(date +%s%N) - t0) / 1000000))
[ -n "$spid" ] && kill -CONT "$spid"
expect "timeout: a stopped server: ETIMEDOUT after the 1 s wait + the 2 s request timeout: ${ms} ms ($(cat "$TMP/tmo.err" | tail -n 1))" \
	eval '[ -n "$spid" ] && [ $ms -ge 3000 ] && [ $ms -lt 6000 ] && err_has tmo "^ETIMEDOUT: "'

# ---- misc -----------------------------------------------------------------
t0=$(date +%s%N)
TMO=1000 ADDR=$SSHD_NET.3 c silent ed -- ls /
ms=$((($(date +%s%N) - t0) / 1000000))
expect "misc: an address nobody answers, -t 1000: ETIMEDOUT after ${ms} ms" \
	eval 'rc_is 1 && err_has silent "^ETIMEDOUT: " && [ $ms -ge 1000 ] && [ $ms -lt 2500 ]'
c fd1 ed -- -r 1 ls /inbox
c fd6 ed -- -r 6 ls /inbox
fd1=$(sed -n 's/^fds=//p' "$TMP/fd1.err")
fd6=$(sed -n 's/^fds=//p' "$TMP/fd6.err")
expect "misc: six connections opened and closed leave no descriptor behind (${fd1:-?} after one, ${fd6:-?} after six)" \
	eval 'rc_is 0 && [ -n "$fd1" ] && [ "$fd1" -gt 2 ] && [ "$fd6" = "$fd1" ] && [ "$(grep -c "^key=0" $TMP/fd6.err)" -eq 6 ]'
PORT=2223 c refused ed -- ls /
expect "misc: a closed port: ECONNREFUSED" eval 'rc_is 1 && err_has refused "^ECONNREFUSED: "'
expect "misc: nothing written to $HOME_KH" \
	test "$(stat -c %Y:%s "$HOME_KH" 2>/dev/null || echo none)" = "$kh_before"
# lib.sh looks at *.log and *.out; sftpc-cli's stderr is in *.err.
san='ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:'
expect "misc: no sanitizer report from sftpc-cli ($(ls "$TMP"/*.err | wc -l) runs)" \
	eval '! grep -lE "$san" "$TMP"/*.err'

finish
