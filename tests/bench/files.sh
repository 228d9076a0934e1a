#!/bin/bash
# `make bench`, file channels (issue 14): SFTP pull and push against a real
# OpenSSH sshd (internal-sftp, chroot, key-only; tests/integration/sshd-lib.sh)
# in a network namespace, reached over a veth through delay-proxy 10 ms each
# way in that namespace (a 20 ms round trip, as through the VPN; this kernel
# has no netem), and nginx (tests/bench/nginx.conf.in,
# plain, as run.sh runs it) behind delay-proxy 10 ms each way: the cloud
# 20 ms away. One bridge for every row.
#
#   (p)   probes: the RTT (mllp-load -c 1 to an echo server behind the same
#         kind of proxy in the namespace), one SFTP session (connect, auth,
#         ls) and one 2 KiB get with sftpc-cli, the same client code as the
#         bridge: the per-session and per-file costs the rows are made of
#   (a)   pull: N_A small HL7 files (2 KiB) moved into /inbox at once,
#         interval 1s: drop -> all stored, drop -> all delivered upstream
#   (b)   pull: one HL7 batch file of N_B messages (~2 KiB each, split:
#         hl7-batch): drop -> stored (download + split + one transaction),
#         then -> all delivered (run 1; later runs: delivered/s for
#         BENCH_FILES_DELIVER_TIMEOUT s, the rest stays queued)
#   (c)   push: N_C files of 2 KiB posted over HTTPS by one curl (one
#         keep-alive connection): first POST -> all renamed in place
#   (d)   loop stall: mllp-load from one address at RATE msg/s in
#         back-to-back windows of WIN s on the same bridge; a batch of N_B
#         messages and then a 64 MiB unsplit file are dropped meanwhile;
#         each window is classed quiet / downloading / stored (the window in
#         which the file's spool transaction ran) and its p50/p99/max shown.
#
# (a)-(c) run RUNS times each; the report gives the median and the range.
# Nothing asserts on timing. Needs root (namespaces, tc, sshd's chroot).
#
# Addresses: 203.0.113.249/30 on our side of the veth, 203.0.113.250 in the
# namespace (delay-proxy on :22 to sshd on the namespace's 127.0.0.1:22, and
# on :2575 to an MLLP echo server, for the RTT). Loopback ports: 18801 nginx, 18802 delay-proxy,
# 18803 the bridge's HTTPS, 18804 /metrics, 11791 the bridge's MLLP listener.
#
# Environment: BUILD (build), BENCH_FILES_RUNS (3), BENCH_FILES_N_A (1000),
# BENCH_FILES_N_B (10000), BENCH_FILES_N_C (500), BENCH_FILES_RATE (500),
# BENCH_FILES_WIN (2), BENCH_FILES_DELIVER_TIMEOUT (60 s: (b)'s runs after
# the first measure the delivery rate for this long; the first waits for
# every message, up to 900 s), BENCH_FILES_BIG_MIB (64), BENCH_FILES_PARTS
# ("a c b d": the rows to run, in that order), BENCH_KEEP=1 keeps a copy of
# the temp dir (logs, configs, spool) as TMPDIR/mllp-it.XXXXXX.kept.
set -u

BUILD=${BUILD:-build}
export BUILD
RUNS=${BENCH_FILES_RUNS:-3}
N_A=${BENCH_FILES_N_A:-1000}
N_B=${BENCH_FILES_N_B:-10000}
N_C=${BENCH_FILES_N_C:-500}
RATE=${BENCH_FILES_RATE:-500}
WIN=${BENCH_FILES_WIN:-2}
DELIVER_TIMEOUT=${BENCH_FILES_DELIVER_TIMEOUT:-60}
BIG_MIB=${BENCH_FILES_BIG_MIB:-64}
PARTS=${BENCH_FILES_PARTS:-a c b d}
DELAY_MS=10 # one way, on each side of the veth and in delay-proxy
NGINX=18801 PROXY=18802 HTTPS=18803 OBS=18804 MLLP=11791
OURS=203.0.113.249 SRV=203.0.113.250
NS=fbench$$
VETH=vfb$$

here=$(dirname "$0")
log() { printf 'files bench: %s\n' "$*" >&2; }
die() {
	echo "files bench: FAILED ($*)"
	exit 1
}

[ "$(id -u)" = 0 ] || die "needs root: namespaces, sshd's chroot"
for b in mllp-bridge mllp-load delay-proxy sftpc-cli; do
	[ -x "$BUILD/bin/$b" ] || die "$BUILD/bin/$b is missing (make BUILD=$BUILD)"
done
command -v nginx >/dev/null || die "nginx not installed"
[ -x /usr/sbin/sshd ] || die "sshd not installed"
for p in $NGINX $PROXY $HTTPS $OBS $MLLP; do
	ss -ltnH "sport = :$p" | grep -q . && die "port $p is in use"
done
ip -br addr | grep -q '203\.0\.113\.24[89]\|203\.0\.113\.25[01]' && die "203.0.113.248/30 is in use"

# lib.sh: TMP, PIDS, wait_until, stop_pid, certificates ($CERTS);
# sshd-lib.sh: the sshd tree, its start and its pins. Its EXIT trap stops
# our PIDs, deletes the namespaces in SSHD_NETNS_LIST and the tree.
. tests/integration/lib.sh
. tests/integration/sshd-lib.sh
BIN=$BUILD/bin
KEEP="" # lib.sh's cleanup would keep TMP and exit 1; BENCH_KEEP copies it instead
tmp=$TMP
CERTS=$(cd "$CERTS" && pwd) # nginx resolves relative paths against its prefix

# ---- the network: the hospital's server 20 ms away ------------------------
ip netns add "$NS" || die "ip netns add"
SSHD_NETNS_LIST="$SSHD_NETNS_LIST $NS"
ip link add "$VETH" type veth peer name eth0 netns "$NS" || die "veth"
ip addr add $OURS/30 dev "$VETH"
ip link set "$VETH" up
ip -n "$NS" addr add $SRV/30 dev eth0
ip -n "$NS" link set eth0 up
ip -n "$NS" link set lo up
# This kernel has no netem (CONFIG_NET_SCH_NETEM is not set), so the 20 ms
# sit in delay-proxy, inside the namespace at the server's edge: sshd
# listens on the namespace's loopback, delay-proxy on SRV:22 in front of it.
# The same for an MLLP echo server (SRV:2575), to measure the RTT.
sshd_setup || die "sshd_setup"
sshd_start "$NS" 127.0.0.1 22 || die "sshd did not start"
ns_proxy() { # PORT TO-PORT
	ip netns exec "$NS" "$BIN/delay-proxy" --listen "$SRV:$1" --to "127.0.0.1:$2" \
		--delay-ms $DELAY_MS >"$tmp/nsproxy-$1.out" 2>&1 &
	PIDS="$PIDS $!"
}
ns_proxy 22 22
ip netns exec "$NS" "$BIN/mllp-load" --echo 127.0.0.1:2575 >"$tmp/echo.out" 2>&1 &
PIDS="$PIDS $!"
ns_proxy 2575 2575
wait_until 10 "port_open $SRV 22 && port_open $SRV 2575" || die "delay-proxy in $NS did not start"
for d in big big/done stage $(for r in $(seq 1 "$RUNS"); do echo "a$r a$r/done a$r/error"; done); do
	if ! mkdir -m 0755 "$SSHD_ROOT/$d" || ! chown "$SSHD_USER:$SSHD_GROUP" "$SSHD_ROOT/$d"; then
		die "server folder $d"
	fi
done
mkdir -p "$tmp/keys"
ssh-keygen -q -t ed25519 -N '' -C bench -f "$tmp/keys/bench.key" || die ssh-keygen
sshd_authorize "$tmp/keys/bench.key.pub"
sshd_pin >"$tmp/pins"

# ---- the cloud: nginx 20 ms away ------------------------------------------
mkdir -p "$tmp/www"
sed -e "s#@DIR@#$CERTS#g" -e "s#@PORT@#$NGINX#g" -e "s#@LOG@#$tmp/access.log#g" \
	-e "s#pid $CERTS/nginx.pid#pid $tmp/nginx.pid#" \
	-e "s#error_log $CERTS/#error_log $tmp/#" \
	-e "s#client_body_temp_path $CERTS/#client_body_temp_path $tmp/#" \
	-e "s#root $CERTS/www#root $tmp/www#" "$here/nginx.conf.in" >"$tmp/nginx.conf"
nginx -c "$tmp/nginx.conf" -p "$tmp/" >"$tmp/nginx.out" 2>&1 &
PIDS="$PIDS $!"
"$BIN/delay-proxy" --listen 127.0.0.1:$PROXY --to 127.0.0.1:$NGINX --delay-ms $DELAY_MS \
	>"$tmp/proxy.out" 2>&1 &
PIDS="$PIDS $!"
wait_until 10 "port_open 127.0.0.1 $NGINX && port_open 127.0.0.1 $PROXY" ||
	die "nginx or delay-proxy did not start: $(head -n 3 "$tmp/nginx.out" "$tmp/proxy.out")"

# ---- the bridge -----------------------------------------------------------
TOKEN=files-bench-$(od -An -N8 -tx8 /dev/urandom | tr -d ' ')
printf '%s *\n' "$TOKEN" >"$tmp/tokens"
chmod 600 "$tmp/tokens"
UPSTREAM="{ url: \"https://localhost:$PROXY/v1/hl7\", ca_file: $CERTS/ca.pem, timeout: 60s }"
sftp_block() { # DIR MORE...
	local dir=$1
	shift
	printf '    sftp:\n      server: %s:22\n      user: %s\n      key: %s\n' $SRV \
		"$SSHD_USER" "$tmp/keys/bench.key"
	printf '      host_keys:\n'
	sed 's/^/        - /' "$tmp/pins"
	printf '      dir: %s\n' "$dir"
	for kv in "$@"; do printf '      %s\n' "$kv"; done
}
CONF=$tmp/bridge.yaml
{
	printf 'gate: open # no tunnels: the SFTP server is reached over the veth\n'
	printf 'spool: %s\nobservability: { listen: 127.0.0.1:%s }\n' "$tmp/spool.db" $OBS
	printf 'integrations:\n'
	printf '  - name: mllp\n    listen: 127.0.0.1:%s\n    sources: [127.0.0.0/8]\n' $MLLP
	printf '    upstream: %s\n' "$UPSTREAM"
	for r in $(seq 1 "$RUNS"); do
		printf '  - name: a%s\n' "$r"
		sftp_block "/a$r" 'glob: "*.hl7"' 'interval: 1s' 'split: hl7-batch'
		printf '    upstream: %s\n' "$UPSTREAM"
	done
	printf '  - name: lab\n'
	sftp_block /inbox 'glob: "*.hl7"' 'interval: 1s' 'split: hl7-batch' 'max_file: 64MiB'
	printf '    upstream: %s\n' "$UPSTREAM"
	printf '  - name: big\n'
	sftp_block /big 'interval: 1s' 'max_file: 64MiB' 'after: delete'
	printf '    upstream: %s\n' "$UPSTREAM"
	printf 'destinations:\n  - name: lis-files\n'
	sftp_block /outbox
	printf 'https:\n  listen: 127.0.0.1:%s\n  cert: %s\n  key: %s\n  tokens_file: %s\n' \
		$HTTPS "$CERTS/server.pem" "$CERTS/server.key" "$tmp/tokens"
} >"$CONF"
"$BIN/mllp-bridge" -c "$CONF" 2>"$tmp/bridge.log" &
BRIDGE_PID=$!
PIDS="$PIDS $BRIDGE_PID"
wait_until 10 "port_open 127.0.0.1 $HTTPS" || die "the bridge did not start: $(head -n 5 "$tmp/bridge.log")"

# m NAME LABELS: the sum of NAME over the label sets that contain LABELS.
m() {
	curl -s --max-time 2 "http://127.0.0.1:$OBS/metrics" | awk -v n="$1" -v l="$2" '
		($1 == n || index($1, n "{") == 1) && index($1, l) { s += $NF; f = 1 }
		END { printf "%.6f\n", f ? s : 0 }'
}
mi() { m "$@" | cut -d. -f1; }
now() { date +%s.%N; }
el() { awk -v a="$1" -v b="${2:-$(now)}" 'BEGIN { printf "%.3f", b - a }'; }
delivered() { mi mllp_delivered_total "integration=\"$1\""; }
stored() { mi mllp_sftp_files_total "channel=\"$1\",direction=\"pull\",outcome=\"stored\""; }
sessions() { mi mllp_sftp_sessions_total "channel=\"$1\""; }

# ---- the files ------------------------------------------------------------
# msg ID: one ~2 KiB ORU^R01 (segments ended by CR).
msg_awk='function msg(id,   s, i) {
	s = "MSH|^~\\&|LAB|HOSP|EDGE|CLOUD|20261201080000||ORU^R01^ORU_R01|" id "|P|2.5.1\r"
	s = s "PID|1||MRN-" id "^^^HOSP^MR||PATIENT^" id "||19700101|F\r"
	for (i = 1; length(s) < 1980; i++)
		s = s sprintf("OBX|%d|NM|GLU^Glucose^LN||%d|mg/dL|70-110|N|||F\r", i, 90 + i % 20)
	return s }'
make_small() { # DIR N PREFIX: N files of one message, ~2 KiB each
	awk -v d="$1" -v n="$2" -v p="$3" "$msg_awk"'
		BEGIN { for (k = 1; k <= n; k++) { f = sprintf("%s/%s-%05d.hl7", d, p, k)
			printf "%s", msg(p "-" k) > f; close(f) } }'
}
make_batch() { # FILE N PREFIX: FHS BHS N x MSH.. BTS FTS
	awk -v n="$2" -v p="$3" "$msg_awk"'
		BEGIN { printf "FHS|^~\\&|LAB|HOSP|EDGE|CLOUD|20261201080000\rBHS|^~\\&|LAB|HOSP|EDGE|CLOUD|20261201080000\r"
			for (k = 1; k <= n; k++) printf "%s", msg(p "-" k)
			printf "BTS|%d\rFTS|1\r", n }' >"$1"
}
# drop FILE... DIR: as the hospital's engine would, under a name that is
# not taken (in /stage, the same file system), then one rename each.
drop() {
	local dir=${*: -1}
	chown "$SSHD_USER:$SSHD_GROUP" "${@:1:$#-1}"
	mv "${@:1:$#-1}" "$SSHD_ROOT/$dir/"
}
# wait_count SECS CMD WANT: polls CMD every 50 ms until >= WANT; prints the
# time it reached it (epoch) or nothing.
wait_count() {
	local t0 lim=$1 cmd=$2 want=$3
	t0=$(now)
	while :; do
		[ "$($cmd)" -ge "$want" ] && { now; return 0; }
		[ "$(el "$t0" | cut -d. -f1)" -ge "$lim" ] && return 1
		sleep 0.05
	done
}

res=$tmp/results # "ROW RUN KEY VALUE"
: >"$res"
rec() { echo "$*" >>"$res"; }

# ---- (p) probes -------------------------------------------------------------
sleep 0.3 # the echo server behind its proxy
"$BIN/mllp-load" -t $SRV:2575 -c 1 -d 2 >"$tmp/rtt.out" 2>&1
rtt=$(grep -o 'p50=[0-9.]*' "$tmp/rtt.out" | cut -d= -f2)
cli() { "$BIN/sftpc-cli" -h $SRV -p 22 -u "$SSHD_USER" -k "$tmp/keys/bench.key" -H "$tmp/pins" "$@"; }
make_small "$tmp" 1 probe
install -o "$SSHD_USER" -m 0644 "$tmp/probe-00001.hl7" "$SSHD_ROOT/stage/probe.hl7"
t=$(now)
for i in 1 2 3 4 5; do cli ls /inbox >/dev/null 2>>"$tmp/cli.err" || die "sftpc-cli ls: $(tail -n 1 "$tmp/cli.err")"; done
p_ls=$(awk -v e="$(el "$t")" 'BEGIN { printf "%.0f", e * 200 }') # ms per session
t=$(now)
for i in 1 2 3 4 5; do cli get /stage/probe.hl7 "$tmp/probe.got" >/dev/null 2>>"$tmp/cli.err" || die "sftpc-cli get"; done
p_get=$(awk -v e="$(el "$t")" 'BEGIN { printf "%.0f", e * 200 }')
rm -f "$SSHD_ROOT/stage/probe.hl7"
log "(p) RTT (mllp-load -c 1 to an echo server through the same proxy, p50) ${rtt} ms; session (connect, auth, ls) $p_ls ms; session + get of 2 KiB $p_get ms"

# ---- (a) 1,000 small files --------------------------------------------------
# Each run has its own channel (a1, a2, ...: folder /aN, its own lane), so
# that the moves to done/ of one run (one rename each, at the next
# sessions) do not sit in front of the next run's downloads.
run_a() {
	local r=$1 ch=a$1 d0 s0 x0 m0 t0 ts td tm
	mkdir -p "$SSHD_ROOT/stage/a$r"
	make_small "$SSHD_ROOT/stage/a$r" "$N_A" "A$r"
	chown -R "$SSHD_USER:$SSHD_GROUP" "$SSHD_ROOT/stage/a$r"
	d0=$(delivered "$ch") s0=$(stored "$ch") x0=$(sessions "$ch")
	m0=$(mi mllp_sftp_files_total "channel=\"$ch\",direction=\"pull\",outcome=\"done\"")
	t0=$(now)
	mv "$SSHD_ROOT/stage/a$r"/*.hl7 "$SSHD_ROOT/a$r/"
	log "(a) run $r: $N_A files dropped"
	ts=$(wait_count 900 "stored $ch" $((s0 + N_A))) || log "(a) run $r: not all stored"
	td=$(wait_count 900 "delivered $ch" $((d0 + N_A))) || log "(a) run $r: not all delivered"
	rec a "$r" stored "$(el "$t0" "${ts:-$(now)}")"
	rec a "$r" delivered "$(el "$t0" "${td:-$(now)}")"
	rec a "$r" sessions $(($(sessions "$ch") - x0))
	# the moves to done/ (one stat, mkdir and rename each, at the start of
	# the sessions after each file's delivery)
	tm=$(wait_count 600 "mi mllp_sftp_files_total channel=\"$ch\",direction=\"pull\",outcome=\"done\"" $((m0 + N_A))) &&
		rec a "$r" moved "$(el "$t0" "$tm")"
	log "(a) run $r: $(grep "^a $r " "$res" | cut -d' ' -f3- | tr '\n' ' ')"
}
# ---- (b) one batch file ----------------------------------------------------
batch_file=$tmp/batch.hl7
make_batch "$batch_file" "$N_B" B
B_BYTES=$(stat -c %s "$batch_file")
run_b() {
	local r=$1 d0 d1 s0 c0 n0 t0 ts td lim
	cp "$batch_file" "$SSHD_ROOT/stage/batch-$r.hl7"
	d0=$(delivered lab) s0=$(stored lab)
	c0=$(m mllp_spool_commit_seconds_sum "") n0=$(mi mllp_spool_commits_total "")
	t0=$(now)
	drop "$SSHD_ROOT/stage/batch-$r.hl7" inbox
	log "(b) run $r: a batch of $N_B messages ($B_BYTES bytes) dropped"
	ts=$(wait_count 120 "stored lab" $((s0 + 1))) || log "(b) run $r: not stored"
	rec b "$r" stored "$(el "$t0" "${ts:-$(now)}")"
	rec b "$r" commit_s "$(awk -v a="$c0" -v b="$(m mllp_spool_commit_seconds_sum "")" 'BEGIN { printf "%.3f", b - a }')"
	rec b "$r" commits $(($(mi mllp_spool_commits_total "") - n0))
	d1=$(delivered lab)
	# FIFO on one lane: run r is delivered when the lane has delivered
	# every message dropped in runs 1..r
	# the first run waits for all (up to 900 s); the others measure the
	# rate for DELIVER_TIMEOUT s and leave the rest queued
	lim=$DELIVER_TIMEOUT
	[ "$r" = 1 ] && lim=900
	td=$(wait_count "$lim" "delivered lab" $((B_BASE + r * N_B)))
	if [ -n "$td" ]; then
		rec b "$r" delivered "$(el "$t0" "$td")"
	else
		rec b "$r" partial "$(($(delivered lab) - d1)) $(el "$ts")"
		log "(b) run $r: $(($(delivered lab) - d1)) delivered in the $lim s after the store"
	fi
	log "(b) run $r: $(grep "^b $r " "$res" | cut -d' ' -f3- | tr '\n' ' ')"
}

# ---- (c) push ---------------------------------------------------------------
make_small "$tmp" 1 push
run_c() {
	local r=$1 w0 t0 tp tw i
	{
		for i in $(seq 1 "$N_C"); do
			[ "$i" -gt 1 ] && echo next
			printf 'url = "https://127.0.0.1:%s/v1/destinations/lis-files/messages"\n' $HTTPS
			printf 'header = "X-File-Name: C%s-%05d.hl7"\n' "$r" "$i"
			printf 'header = "Authorization: Bearer %s"\n' "$TOKEN"
			printf 'header = "Content-Type: x-application/hl7-v2+er7"\n'
			printf 'data-binary = "@%s"\ncacert = "%s"\nsilent\noutput = "/dev/null"\n' \
				"$tmp/push-00001.hl7" "$CERTS/ca.pem"
			printf 'write-out = "%%{http_code} %%{num_connects}\\n"\n'
		done
	} >"$tmp/c$r.curl"
	w0=$(mi mllp_sftp_files_total 'channel="lis-files",direction="push",outcome="stored"')
	t0=$(now)
	curl -K "$tmp/c$r.curl" >"$tmp/c$r.codes" 2>"$tmp/c$r.err"
	tp=$(now)
	rec c "$r" posted "$(el "$t0" "$tp")"
	rec c "$r" accepted "$(grep -c '^202 ' "$tmp/c$r.codes")"
	rec c "$r" connections "$(awk '{ s += $2 } END { print s }' "$tmp/c$r.codes")"
	tw=$(wait_count 600 "mi mllp_sftp_files_total channel=\"lis-files\",direction=\"push\",outcome=\"stored\"" $((w0 + N_C))) ||
		log "(c) run $r: not all written"
	rec c "$r" written "$(el "$t0" "${tw:-$(now)}")"
	rec c "$r" in_place "$(find "$SSHD_ROOT/outbox" -maxdepth 1 -name "C$r-[0-9]*.hl7" | wc -l)"
	rec c "$r" part_left "$(find "$SSHD_ROOT/outbox" -maxdepth 1 -name '*.part' | wc -l)"
	log "(c) run $r: $(grep "^c $r " "$res" | cut -d' ' -f3- | tr '\n' ' ')"
	rm -f "$SSHD_ROOT/outbox/C$r-"*
}

# ---- (d) the loop stall -----------------------------------------------------
# window N CLASS: one mllp-load window; "N CLASS START END p50 p99 max acked
# sent" into $tmp/d.rows (START, END: epoch seconds).
field() { awk -v k="$1" '{ for (i = 1; i <= NF; i++) { n = index($i, "=")
	if (n && substr($i, 1, n - 1) == k) { v = substr($i, n + 1); sub(/ms$/, "", v) } } } END { print v }' "$2"; }
window() {
	local f=$tmp/d-$1.out t0
	t0=$(now)
	"$BIN/mllp-load" -t 127.0.0.1:$MLLP -c 4 -s 1024 -r "$RATE" -d "$WIN" >"$f" 2>"$tmp/d-$1.err"
	echo "$1 $2 $t0 $(now) $(field p50 "$f") $(field p99 "$f") $(field max "$f") $(field acked "$f") $(field sent "$f")" >>"$tmp/d.rows"
}
# stall_file CH LABEL FILE DIR: three quiet windows, FILE dropped into DIR,
# windows until CH has stored it (at most 60), and three more.
stall_file() {
	local ch=$1 label=$2 file=$3 dir=$4 s0 k
	for k in 1 2 3; do window $((wn += 1)) quiet; done
	s0=$(stored "$ch")
	echo "drop $label $(now)" >>"$tmp/d.events"
	drop "$file" "$dir"
	log "(d) $label dropped"
	k=0
	while [ "$(stored "$ch")" -le "$s0" ] && [ $k -lt 60 ]; do
		window $((wn += 1)) "dl-$label"
		k=$((k + 1))
	done
	for k in 1 2 3; do window $((wn += 1)) "after-$label"; done
}
run_d() {
	wn=0
	: >"$tmp/d.rows"
	: >"$tmp/d.events"
	cp "$batch_file" "$SSHD_ROOT/stage/d-batch.hl7"
	head -c $((BIG_MIB << 20)) /dev/urandom >"$SSHD_ROOT/stage/d-big.bin"
	d_log0=$(wc -l <"$tmp/bridge.log")
	stall_file lab batch "$SSHD_ROOT/stage/d-batch.hl7" inbox
	stall_file big big "$SSHD_ROOT/stage/d-big.bin" big
	# the big file's delivery and its deletion on the server, under load
	k=0
	while [ "$(delivered big)" -lt 1 ] && [ $k -lt 60 ]; do
		window $((wn += 1)) "post-big"
		k=$((k + 1))
	done
	for k in 1 2 3; do window $((wn += 1)) "after-post"; done
	# the bridge's file events during (d), as epoch seconds
	tail -n +"$((d_log0 + 1))" "$tmp/bridge.log" |
		grep -E 'event=sftp_file_(spooled|done)' | while read -r ts _ ev ch _; do
		t=${ts#ts=}
		echo "${ev#event=sftp_file_}(${ch#channel=}) $(date -d "${t%Z}Z" +%s.%N)"
	done | awk '{ print "ev", $1, $2 }' >>"$tmp/d.events"
	# each window gets the events that fell inside it
	awk 'NR == FNR { if ($1 == "ev") { e[++n] = $2; t[n] = $3 } next }
		{ tag = ""; for (i = 1; i <= n; i++) if (t[i] >= $3 && t[i] < $4) tag = tag " " e[i]
		  print $0 (tag == "" ? "" : " |" tag) }' "$tmp/d.events" "$tmp/d.rows" >"$tmp/d.tagged"
	cat "$tmp/d.tagged" >&2
}

# ---- run ----------------------------------------------------------------------
ulimit -n 65536 2>/dev/null
case " $PARTS " in *" a "*) for r in $(seq 1 "$RUNS"); do run_a "$r"; done ;; esac
case " $PARTS " in *" c "*) for r in $(seq 1 "$RUNS"); do run_c "$r"; done ;; esac
B_BASE=$(delivered lab)
case " $PARTS " in *" b "*) for r in $(seq 1 "$RUNS"); do run_b "$r"; done ;; esac
: >"$tmp/d.tagged"
case " $PARTS " in *" d "*)
	run_d
	big_done=$(wait_count 300 "delivered big" 1 >/dev/null && echo yes)
	;;
esac

# ---- report -------------------------------------------------------------------
# med ROW KEY: "median (min-max)" over the runs
med() {
	awk -v row="$1" -v key="$2" '$1 == row && $3 == key { v[++n] = $4 }
		END { if (!n) { print "-"; exit }
			for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (v[j] < v[i]) { t = v[i]; v[i] = v[j]; v[j] = t }
			m = (n % 2) ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
			if (v[1] == v[n]) printf "%.2f", m; else printf "%.2f (%.2f-%.2f)", m, v[1], v[n] }' "$res"
}
rate() { # ROW KEY N: N / each run's figure, median (min-max)
	awk -v row="$1" -v key="$2" -v c="$3" '$1 == row && $3 == key { v[++n] = c / $4 }
		END { if (!n) { print "-"; exit }
			for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (v[j] < v[i]) { t = v[i]; v[i] = v[j]; v[j] = t }
			m = (n % 2) ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
			if (v[1] == v[n]) printf "%.1f/s", m; else printf "%.1f/s (%.1f-%.1f)", m, v[1], v[n] }' "$res"
}
{
	printf '\nmllp-edge file channels bench, %s, %s, %s CPUs, spool on %s\n' "$(date -u +%Y-%m-%dT%H:%MZ)" \
		"$(uname -r)" "$(nproc)" "$(stat -f -c %T "$tmp")"
	printf 'sshd %s in a namespace behind delay-proxy %d ms each way (RTT p50 %s ms);\n' \
		"$(/usr/sbin/sshd -V 2>&1 | head -n 1 | cut -d, -f1)" $DELAY_MS "$rtt"
	printf 'nginx (nginx.conf.in, plain) behind delay-proxy %d ms each way; %s runs of (a)-(c): median (min-max)\n\n' \
		$DELAY_MS "$RUNS"
	printf '(p) sftpc-cli: one session (connect, auth, ls) %s ms; one session + get of 2 KiB %s ms\n' "$p_ls" "$p_get"
	printf '(a) %d files of 2 KiB: all stored %s s = %s; all delivered %s s = %s\n' \
		"$N_A" "$(med a stored)" "$(rate a stored "$N_A")" "$(med a delivered)" "$(rate a delivered "$N_A")"
	printf '    %s SFTP sessions per run; all moved to done/ %s s after the drop\n' \
		"$(med a sessions)" "$(med a moved)"
	printf '(c) %d files pushed by one curl: all 202 after %s s (%s); all renamed in place %s s = %s\n' \
		"$N_C" "$(med c posted)" "$(rate c posted "$N_C")" "$(med c written)" "$(rate c written "$N_C")"
	printf '    202s %s, TCP connections %s, files in place %s, .part left %s\n' \
		"$(med c accepted)" "$(med c connections)" "$(med c in_place)" "$(med c part_left)"
	printf '(b) batch of %d messages, %d bytes: stored %s s after the drop (spool commits meanwhile: %s s in %s)\n' \
		"$N_B" "$B_BYTES" "$(med b stored)" "$(med b commit_s)" "$(med b commits)"
	if grep -q '^b [0-9]* delivered' "$res"; then
		printf '    all delivered %s s after the drop = %s\n' "$(med b delivered)" "$(rate b delivered "$N_B")"
	fi
	grep '^b [0-9]* partial' "$res" | awk '{ printf "    run %s: %d delivered in %.1f s after it was stored = %.1f/s (BENCH_FILES_DELIVER_TIMEOUT %s s)\n", $2, $4, $5, $4 / $5, '"$DELIVER_TIMEOUT"' }'
	printf '(d) mllp-load -c 4 -s 1024 -r %s -d %s, back to back, one address; ACK latency (ms) per window:\n' "$RATE" "$WIN"
	awk -v t0="$(head -n 1 "$tmp/d.rows" | cut -d' ' -f3)" '{ tag = ""; if (NF > 9) { for (i = 11; i <= NF; i++) tag = tag " " $i }
		printf "    %3d %-11s t=%6.1f  p50 %6s  p99 %7s  max %7s  acked %4s/%-4s%s\n", $1, $2, $3 - t0, $5, $6, $7, $8, $9, tag }' "$tmp/d.tagged"
	awk '$0 !~ /\|/ && $2 == "quiet" { n++; if ($6 > p) p = $6; if ($7 > x) x = $7; a[n] = $5 }
		END { for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
			printf "    quiet windows (before each drop, no file event): %d, p50 median %s, worst p99 %s, worst max %s\n", n, a[int((n + 1) / 2)], p, x }' "$tmp/d.tagged"
	awk '/\|/ { printf "    with a file event: window %d: p50 %s, p99 %s, max %s:%s\n", $1, $5, $6, $7, substr($0, index($0, "|") + 1) }' "$tmp/d.tagged"
	printf '    the %d MiB file delivered upstream: %s\n' "$BIG_MIB" "${big_done:-no (not within 300 s)}"
	printf 'bridge log: %s lines, %s at level warn or err\n' "$(grep -c . "$tmp/bridge.log")" "$(grep -cE 'level=(warn|err)' "$tmp/bridge.log")"
} | tee "$tmp/report"
if [ "${BENCH_KEEP:-0}" = 1 ]; then
	cp -a "$tmp" "$tmp.kept" 2>/dev/null
	log "kept a copy in $tmp.kept"
fi
exit 0
