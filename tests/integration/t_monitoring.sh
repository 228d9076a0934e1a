#!/bin/bash
# The monitoring files the appliance ships (issue 13), checked against a real
# bridge in about 20 s (6 of them Prometheus waiting for its first scrape):
#   1. rootfs/etc/prometheus/mllp-edge.rules.yml passes `promtool check rules`,
#      and tests/prometheus/mllp-edge.test.yml passes `promtool test rules`;
#      every alert has a case where it fires and one where it must not; a rule
#      with a broken threshold makes those tests fail.
#   2. rootfs/usr/share/mllp-edge/grafana/mllp-edge.json is importable, has
#      the panels operators need, and its queries parse (promtool).
#   3. every metric name (and label value) the rules and the dashboard use is
#      on the /metrics of a real mllp-bridge. The bridge runs under
#      tests/tools/ipc-send, a stand-in supervisor, so that the supervisor's
#      appliance_* metrics (which the bridge publishes from the supervisor's
#      IPC_TUNNELS snapshots, metrics.c put_appliance) are on the page too,
#      and with destinations and the HTTPS API so that mllp_out_* and
#      mllp_https_* are, and with one SFTP pull channel and one push channel
#      (issue 14) so that mllp_sftp_* are, every outcome with them. A renamed
#      metric fails this; so does a copy of the rules with one name changed
#      (the check proves it can fail).
#   4. a real Prometheus (Debian's, loopback only) loads the rules, scrapes
#      that bridge, evaluates every rule without error, fires nothing while
#      all is well, and fires exactly the expected alerts once the stand-in
#      supervisor reports a tunnel down, a DH group 2 SA and a restart, and a
#      wider gate lets the SFTP pull channel try its server, which refuses
#      the connection (SftpDown pending; its for: 10m is promtool's to test).
# shellcheck disable=SC2016 # conditions are quoted to be evaluated later
. tests/integration/lib.sh

RULES=rootfs/etc/prometheus/mllp-edge.rules.yml
RTEST=tests/prometheus/mllp-edge.test.yml
DASH=rootfs/usr/share/mllp-edge/grafana/mllp-edge.json
CHECK=tests/prometheus/monitoring.py
MLLP=11001 DEST=11002 HTTPS=18601 UP=18602 OBS_PORT=19301 PROM_PORT=19302
# The SFTP channels' server: a loopback address outside the first gate
# (127.0.0.0/9) and inside the second (127.0.0.0/8), where nothing listens.
SFTP_SRV=127.200.0.1:19303
CONF=$TMP/bridge.yaml

if ! command -v promtool >/dev/null; then
	fail "promtool is installed (scripts/deps.sh installs Debian's prometheus package)"
	finish
fi

# ---- 1. the rules ------------------------------------------------------------

promtool check rules "$RULES" >"$TMP/check.out" 2>&1
rc=$?
nalerts=$(grep -c '^ *- alert: ' "$RULES")
expect "promtool check rules: $nalerts alerts, all valid" \
	grep -q "SUCCESS: $nalerts rules found" "$TMP/check.out"
[ "$rc" -eq 0 ] || cat "$TMP/check.out"

promtool test rules "$RTEST" >"$TMP/test.out" 2>&1
rc=$?
expect "promtool test rules: every case passes" test "$rc" -eq 0
[ "$rc" -eq 0 ] || head -n 40 "$TMP/test.out"

# Each alert: at least one evaluation expecting it and one expecting nothing.
awk '/^ *- alert: / {print $3}' "$RULES" | sort >"$TMP/alerts"
awk '/alertname:/ {a = $2} /exp_alerts: \[\]/ {print a, "quiet"} /exp_alerts: *$/ {print a, "fires"}' \
	"$RTEST" | sort -u >"$TMP/cases"
missing=$(while read -r a; do
	grep -qx "$a fires" "$TMP/cases" || echo "$a:fires"
	grep -qx "$a quiet" "$TMP/cases" || echo "$a:quiet"
done <"$TMP/alerts")
expect "promtool tests: each of the $(wc -l <"$TMP/alerts") alerts has a firing and a quiet case" \
	test -s "$TMP/alerts" -a -z "$missing"
[ -z "$missing" ] || echo "# without a case: $missing"

# The tests can fail: the same tests against a copy of the rules whose
# tunnel alert looks for tunnels that are up.
mkdir -p "$TMP/mut/rootfs/etc/prometheus" "$TMP/mut/tests/prometheus"
cp "$RTEST" "$TMP/mut/tests/prometheus/"
sed 's/expr: appliance_tunnel_up == 0/expr: appliance_tunnel_up == 1/' "$RULES" \
	>"$TMP/mut/$RULES"
expect "promtool tests fail when a rule is broken (TunnelDown on tunnels that are up)" \
	eval '! cmp -s "$RULES" "$TMP/mut/$RULES" &&
		! promtool test rules "$TMP/mut/$RTEST" >"$TMP/mut.out" 2>&1 &&
		grep -q "alertname: MllpEdgeTunnelDown" "$TMP/mut.out"'

# ---- 2. the dashboard --------------------------------------------------------

python3 "$CHECK" dashboard "$DASH" >"$TMP/dash.out" 2>&1
rc=$?
expect "dashboard: importable JSON with the expected panels ($(grep -o '[0-9]* panels' "$TMP/dash.out"))" \
	test "$rc" -eq 0
[ "$rc" -eq 0 ] || cat "$TMP/dash.out"
# Its queries parse as PromQL: promtool reads them as recording rules.
python3 "$CHECK" as-rules "$DASH" >"$TMP/dash.rules.yml"
nq=$(grep -c 'record:' "$TMP/dash.rules.yml")
promtool check rules "$TMP/dash.rules.yml" >"$TMP/dashq.out" 2>&1
rc=$?
expect "dashboard: its $nq queries are valid PromQL (promtool)" \
	test "$rc" -eq 0 -a "$nq" -gt 20
[ "$rc" -eq 0 ] || cat "$TMP/dashq.out"

# ---- 3. every name on a real /metrics ----------------------------------------

# SFTP: a client key, and a pin of another key (the server is never reached).
mkdir -m 0700 "$TMP/keys"
if ! ssh-keygen -q -t ed25519 -N '' -C edge -f "$TMP/keys/edge.key" ||
	! ssh-keygen -q -t ed25519 -N '' -C host -f "$TMP/keys/host"; then
	fail "ssh-keygen made the SFTP keys"
	finish
fi
PIN=$(cut -d' ' -f1,2 "$TMP/keys/host.pub")

TOKEN=monitoring-test-token-0123456789
printf '%s *\n' "$TOKEN" >"$TMP/tokens"
chmod 600 "$TMP/tokens"
cat >"$CONF" <<EOF
spool: $TMP/spool.db
observability: { listen: 127.0.0.1:$OBS_PORT }
tunnels:
  - name: hosp-a
    source: swanctl
    children:
      - name: hosp-a-mllp
        local_ts: [127.0.0.1/32]
        remote_ts: [127.0.0.0/8]
integrations:
  - name: lab
    listen: 127.0.0.1:$MLLP
    sources: [127.0.0.0/8]
    upstream: { url: "https://localhost:$UP/v1", ca_file: $CERTS/ca.pem, timeout: 5s }
  - name: lab-files
    sftp:
      server: $SFTP_SRV
      user: edge
      key: $TMP/keys/edge.key
      host_keys: ["$PIN"]
      dir: /outbox
      timeout: 2s
    upstream: { url: "https://localhost:$UP/v1", ca_file: $CERTS/ca.pem, timeout: 5s }
destinations:
  - { name: lis, address: 127.0.0.1:$DEST }
  - name: lis-files
    sftp:
      server: $SFTP_SRV
      user: edge
      key: $TMP/keys/edge.key
      host_keys: ["$PIN"]
      dir: /inbox
https:
  listen: 127.0.0.2:$HTTPS # outside local_ts: the API is never reached through a tunnel
  cert: $CERTS/server.pem
  key: $CERTS/server.key
  tokens_file: $TMP/tokens
EOF
"$BIN/mllp-bridge" -n -c "$CONF" >"$TMP/n.out" 2>&1 || {
	fail "the scenario's configuration is valid" "$(cat "$TMP/n.out")"
	finish
}

# ipc-send runs the bridge with -S; its commands go to fd 3.
mkfifo "$TMP/ctl"
"$BIN/ipc-send" "$BIN/mllp-bridge" -c "$CONF" <"$TMP/ctl" >"$TMP/ipc.out" 2>>"$TMP/bridge.log" &
LINK_PID=$!
PIDS="$PIDS $LINK_PID"
exec 3>"$TMP/ctl"
wait_until 10 'grep -q "event=started" "$TMP/bridge.log"' || {
	fail "the linked bridge started" "$(tail -n 20 "$TMP/bridge.log")"
	finish
}
# One command at a time: ipc-send reads stdin with fgets() after poll(), so a
# second line that arrived with the first waits in stdio's buffer until more
# input comes.
echo "gate 127.0.0.0/9" >&3
wait_until 5 'grep -q "^sent gate" "$TMP/ipc.out"'
echo "tunnels 2 hosp-a:1:21:21:1790000000" >&3
wait_until 5 'grep -q "^sent tunnels" "$TMP/ipc.out"'
wait_until 5 '[ "$(metric appliance_tunnel_up 2>/dev/null)" = 1 ]'
curl -sf --max-time 5 "http://127.0.0.1:$OBS_PORT/metrics" >"$TMP/metrics.txt"
expect "the bridge's /metrics carries the supervisor's view (appliance_tunnel_up{tunnel=\"hosp-a\"} 1)" \
	grep -qx 'appliance_tunnel_up{tunnel="hosp-a"} 1' "$TMP/metrics.txt"
# Both channels, every outcome even at 0; the pull channel waits for the gate
# (nothing tried), the push channel has nothing to write (nothing tried).
expect "the bridge's /metrics has both SFTP channels with every session and file outcome" \
	eval 'grep -qx "mllp_sftp_waiting_gate{channel=\"lab-files\",direction=\"pull\"} 1" "$TMP/metrics.txt" &&
		grep -qx "mllp_sftp_queued{channel=\"lis-files\",direction=\"push\"} 0" "$TMP/metrics.txt" &&
		test "$(grep -c "^mllp_sftp_sessions_total{.*} 0$" "$TMP/metrics.txt")" -eq 6 &&
		test "$(grep -c "^mllp_sftp_files_total{.*} 0$" "$TMP/metrics.txt")" -eq 10'

for f in "$RULES" "$DASH"; do
	python3 "$CHECK" names "$TMP/metrics.txt" "$f" >"$TMP/names.out" 2>&1
	rc=$?
	expect "every metric and label value in $(basename "$f") is on the bridge's /metrics ($(grep -o '[0-9]* metric names' "$TMP/names.out"))" \
		test "$rc" -eq 0
	[ "$rc" -eq 0 ] || grep -v 'metric names checked' "$TMP/names.out"
done

# The check can fail: a copy of the rules with one metric renamed, and one
# with a label value no sample has.
sed 's/mllp_spool_oldest_age_seconds/mllp_spool_oldest_seconds/' "$RULES" >"$TMP/renamed.yml"
python3 "$CHECK" names "$TMP/metrics.txt" "$TMP/renamed.yml" >"$TMP/renamed.out" 2>&1
rc=$?
expect "a renamed metric fails the check (mllp_spool_oldest_seconds)" \
	eval 'test "$rc" -ne 0 && grep -q "mllp_spool_oldest_seconds is not on /metrics" "$TMP/renamed.out"'
sed 's/limit="gate"/limit="tunnel"/' "$RULES" >"$TMP/relabel.yml"
python3 "$CHECK" names "$TMP/metrics.txt" "$TMP/relabel.yml" >"$TMP/relabel.out" 2>&1
rc=$?
expect "a label value no sample has fails the check (limit=\"tunnel\")" \
	eval 'test "$rc" -ne 0 && grep -q "no sample with limit=\"tunnel\"" "$TMP/relabel.out"'
sed 's/outcome="hostkey_mismatch"/outcome="host_key_mismatch"/' "$RULES" >"$TMP/relabel2.yml"
python3 "$CHECK" names "$TMP/metrics.txt" "$TMP/relabel2.yml" >"$TMP/relabel2.out" 2>&1
rc=$?
expect "an SFTP outcome no sample has fails the check (outcome=\"host_key_mismatch\")" \
	eval '! cmp -s "$RULES" "$TMP/relabel2.yml" && test "$rc" -ne 0 &&
		grep -q "no sample with outcome=\"host_key_mismatch\"" "$TMP/relabel2.out"'

# ---- 4. a real Prometheus with the shipped rules, scraping that bridge --------

# It scrapes and evaluates every second, on loopback only, and has no
# Alertmanager: its /api/v1/alerts is what it would send. First it sees the
# state above (hosp-a up, 2 bridge restarts); then the supervisor reports
# hosp-a down, hosp-b with a CHILD_SA of DH group 2, and one more restart.
cat >"$TMP/prometheus.yml" <<EOF
global: { scrape_interval: 1s, evaluation_interval: 1s }
rule_files: [$PWD/$RULES]
scrape_configs:
  - job_name: mllp-edge
    static_configs: [{ targets: ['127.0.0.1:$OBS_PORT'] }]
EOF
prom_api() { curl -sf --max-time 5 "http://127.0.0.1:$PROM_PORT/api/v1/$1"; }
# alerts: "STATE ALERTNAME [tunnel=T sa=S channel=C]" per active alert, sorted.
alerts() {
	prom_api alerts | python3 -c '
import json, sys
for a in json.load(sys.stdin)["data"]["alerts"]:
    l = a["labels"]
    extra = "".join(f" {k}={l[k]}" for k in ("tunnel", "sa", "channel") if k in l)
    print(a["state"], l["alertname"] + extra)' | sort
}
prometheus --config.file="$TMP/prometheus.yml" --storage.tsdb.path="$TMP/prom" \
	--web.listen-address="127.0.0.1:$PROM_PORT" >"$TMP/prometheus.log" 2>&1 &
PROM_PID=$!
PIDS="$PIDS $PROM_PID"
wait_until 20 'prom_api "query?query=appliance_bridge_restarts_total" | grep -q "\"2\""' ||
	fail "Prometheus scraped the bridge" "$(tail -n 5 "$TMP/prometheus.log")"
# Prometheus applies its targets every 5 s: the first scrape comes ~5 s in.
healthy() { prom_api rules | grep -o '"health":"ok"' | wc -l; }
wait_until 5 '[ "$(healthy)" -eq "$nalerts" ]'
sleep 1.1 # one more evaluation, surely after the first scrape
nhealthy=$(healthy)
expect "Prometheus loaded the shipped rules and evaluates them: $nhealthy of $nalerts healthy" \
	test "$nhealthy" -eq "$nalerts"
got=$(alerts)
expect "Prometheus: nothing fires while all is well" test -z "$got"
[ -z "$got" ] || printf '# got:\n%s\n' "$got"
echo "tunnels 3 hosp-a:0:0:0:1790000100 hosp-b:1:21:2:1790000100" >&3
wait_until 5 'grep -q "^sent tunnels n=2" "$TMP/ipc.out"'
# The gate now covers the SFTP server: the pull channel tries it at once and
# its sessions fail (connection refused) while the tunnel is up.
echo "gate 127.0.0.0/8" >&3
wait_until 5 'grep -q "^sent gate generation=2" "$TMP/ipc.out"'
want='firing MllpEdgeBridgeRestarted
firing MllpEdgeSAWrongDHGroup tunnel=hosp-b sa=child
pending MllpEdgeTunnelDown tunnel=hosp-a
pending SftpDown channel=lab-files'
wait_until 20 '[ "$(alerts)" = "$want" ]'
got=$(alerts)
expect "Prometheus: the restart and DH group 2 fire, the tunnel down and the failing SFTP pull channel are pending (for: 2m, 10m); nothing else" \
	test "$got" = "$want"
[ "$got" = "$want" ] || printf '# got:\n%s\n' "$got"
stop_pid "$PROM_PID"

(echo close >&3) 2>/dev/null # ipc-send may be gone already (SIGPIPE)
exec 3>&-
wait "$LINK_PID"
link_rc=$?
PIDS=$(echo "$PIDS" | tr ' ' '\n' | grep -vx "$LINK_PID" | tr '\n' ' ')
expect "closing the link stops the bridge cleanly" test "$link_rc" -eq 0

finish
