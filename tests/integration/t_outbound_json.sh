#!/bin/bash
# Outbound JSON (issue 12), bridge alone (gate: open): Redox-style JSON posted
# over HTTPS is translated into HL7 v2 before it is stored, then sent over
# MLLP to mllp-recv. Two destinations: ehr with the hl7: defaults, legacy
# with version 2.3.1, all four MSH-3..6 names and charset latin1. Checked
# against the golden files of tests/translate: the bytes that arrive, the
# ACK-matching MSH-10, POST /v1/translate (nothing stored), Idempotency-Key,
# a matrix of hostile JSON (each a 4xx with its reason, nothing queued), the
# translation counters, and no patient data in the bridge's log.
. tests/integration/lib.sh

# Ports (loopback): 18560 HTTPS, 18561 /metrics, 18562 receiver ehr,
# 18563 receiver legacy, 10988 the unused inbound listener, 18565 its unused
# upstream.
HTTPS=18560 OBS_PORT=18561 P_EHR=18562 P_LEG=18563 MLLP=10988
GOLD=tests/translate
PY=/usr/bin/python3 # python3-hl7 is Debian's: not pyenv's python3 on PATH
CONF=$TMP/bridge.yaml
TOKEN=outbound-json-token-0123456789
TOKEN_EHR=outbound-json-ehr-only-0123456
printf '%s *\n%s ehr\n' "$TOKEN" "$TOKEN_EHR" >"$TMP/tokens"
chmod 600 "$TMP/tokens"
outbound_conf_head 18565 >"$CONF"
cat >>"$CONF" <<EOF
destinations:
  - { name: ehr, address: 127.0.0.1:$P_EHR, ack_timeout: 2s }
  - name: legacy
    address: 127.0.0.1:$P_LEG
    ack_timeout: 2s
    hl7:
      version: 2.3.1
      sending_application: EDGE-OUT
      sending_facility: CLOUD-A
      receiving_application: ADT-IN
      receiving_facility: WARD-7
      charset: latin1
https:
  listen: 127.0.0.1:$HTTPS
  cert: $CERTS/server.pem
  key: $CERTS/server.key
  tokens_file: $TMP/tokens
  max_body: 4MiB # above the translator's 1 MiB, so that its own cap answers
EOF

# ---- helpers -----------------------------------------------------------------

# api PATH FILE CONTENT-TYPE [CURL ARGS...]: POSTs FILE with the bearer token
# $TOKEN; prints "STATUS LOCATION"; the body goes to $TMP/last.body, the
# headers to $TMP/last.hdr.
api() {
	local path=$1 file=$2 ctype=$3
	shift 3
	curl -s --max-time 30 --cacert "$CERTS/ca.pem" -H "Authorization: Bearer $TOKEN" \
		-H "Content-Type: $ctype" -H 'Expect:' --data-binary "@$file" \
		-D "$TMP/last.hdr" -o "$TMP/last.body" -w '%{http_code} %header{location}\n' "$@" \
		"https://127.0.0.1:$HTTPS$path"
}
jpost() { api "/v1/destinations/$1/messages" "$2" application/json "${@:3}"; }
get() {
	curl -s --max-time 10 --cacert "$CERTS/ca.pem" -H "Authorization: Bearer $TOKEN" \
		"https://127.0.0.1:$HTTPS/v1/messages/$1"
}
# acked_with ID MSH10: GET ID shows acked, with the ACK MSA|AA|MSH10
acked_with() { get "$1" | grep -q "\"state\":\"acked\".*MSA|AA|${2:-none}\\\\r"; }
same_hl7() { check_hl7 "$@" >/dev/null; }
state_of() { get "$1" | grep -o '"state":"[a-z]*"' | cut -d'"' -f4; }
# stored DEST: rows of DEST in the spool, any state; "unreadable" when the
# spool CLI fails (a count that cannot be read is no zero).
stored() {
	local out
	out=$(spool list --state all --integration "$1") || {
		echo unreadable
		return 1
	}
	tail -n +2 <<<"$out" | grep -c .
}
ctype_is() { grep -qi "^content-type: $1"$'\r'"\?$" "$TMP/last.hdr"; }

# check_hl7 GOT GOLDEN CHARSET MSH3 MSH4 MSH5 MSH6 VERSION MSH7: GOT is GOLDEN
# byte for byte, except MSH-3..6 and MSH-12 (these values), MSH-18 ("8859/1"
# for latin1, "UNICODE UTF-8" otherwise), MSH-10 (20 upper-case hex digits)
# and, with MSH7 "now", MSH-7 and EVN-2 (the current UTC time, within 2
# minutes); with MSH7 "gold" they are the golden's. GOT must also parse with
# python3-hl7 and give back the golden's PID-5. Prints MSH-10.
check_hl7() {
	"$PY" - "$@" <<-'EOF'
		import datetime, re, sys
		import hl7
		got_f, gold_f, charset, a3, a4, a5, a6, ver, mode = sys.argv[1:]
		got, gold = open(got_f, "rb").read(), open(gold_f, "rb").read()
		def die(why):
		    sys.exit(f"{got_f}: {why}")
		segs = got.split(b"\r")
		msh = segs[0].split(b"|")
		if len(msh) < 18 or not segs[0].startswith(b"MSH|"):
		    die(f"MSH too short: {segs[0][:120]!r}")
		cid = msh[9].decode("ascii", "replace")
		if not re.fullmatch(r"[0-9A-F]{20}", cid):
		    die(f"MSH-10 {cid!r} is not 20 upper-case hex digits")
		if mode == "now":
		    t = msh[6].decode("ascii", "replace")
		    if not re.fullmatch(r"\d{14}\+0000", t):
		        die(f"MSH-7 {t!r} is not YYYYMMDDHHMMSS+0000")
		    when = datetime.datetime.strptime(t[:14], "%Y%m%d%H%M%S")
		    now = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
		    skew = abs((now - when).total_seconds())
		    if skew > 120:
		        die(f"MSH-7 {t} is {skew:.0f} s away from the current UTC time")
		want = gold.split(b"\r")
		m = want[0].split(b"|")
		m[2:6] = [s.encode() for s in (a3, a4, a5, a6)]
		m[9], m[11] = msh[9], ver.encode()
		m[17] = b"8859/1" if charset == "latin1" else b"UNICODE UTF-8"
		if mode == "now":
		    m[6] = msh[6]
		    evn = want[1].split(b"|")
		    evn[2] = msh[6]
		    want[1] = b"|".join(evn)
		want[0] = b"|".join(m)
		want = b"\r".join(want)
		if got != want:
		    i = next((i for i in range(min(len(got), len(want))) if got[i] != want[i]), None)
		    die(f"differs from the expected bytes at offset {i}: got "
		        f"{got[max(0, (i or 0) - 20):(i or 0) + 40]!r}, want "
		        f"{want[max(0, (i or 0) - 20):(i or 0) + 40]!r}")
		enc = "latin-1" if charset == "latin1" else "utf-8"
		msg = hl7.parse(got.decode(enc))
		gmsg = hl7.parse(gold.decode(enc))
		if str(msg.segment("MSH")[10]) != cid:
		    die("python3-hl7 reads another MSH-10")
		if str(msg.segment("PID")[5]) != str(gmsg.segment("PID")[5]):
		    die(f"python3-hl7 reads PID-5 {msg.segment('PID')[5]}")
		print(cid)
	EOF
}

start_recv ehr $P_EHR || exit 1
start_recv legacy $P_LEG || exit 1
start_obridge
T0=$(date +%s%N)
tr0=$(metric 'mllp_https_translations_total{outcome="translated"}')
rf0=$(metric 'mllp_https_translations_total{outcome="refused"}')

# The documents: the golden arrival as it is; the golden Latin-1 visit update
# with Zoë renamed Renée (é is U+00E9, one byte 0xE9 in ISO 8859-1); each also
# without Meta.EventDateTime, so that MSH-7 and EVN-2 are the current time.
A01=$GOLD/adt_a01_arrival_inpatient
cp "$A01.json" "$TMP/a01.json"
cp "$A01.hl7" "$TMP/a01.hl7"
sed 's/"Zoë"/"Renée"/' "$GOLD/adt_a08_visit_update_latin1.json" >"$TMP/a08.json"
LC_ALL=C sed $'s/Zo\xeb^/Ren\xe9e^/' "$GOLD/adt_a08_visit_update_latin1.hl7" >"$TMP/a08.hl7"
for d in a01 a08; do sed '/"EventDateTime"/d' "$TMP/$d.json" >"$TMP/$d-now.json"; done
expect "the documents: Renée in the JSON (UTF-8) and in the golden (0xE9), no EventDateTime in the -now copies" \
	bash -c "grep -q 'Renée' '$TMP/a08.json' && LC_ALL=C grep -q \$'Ren\\xe9e^' '$TMP/a08.hl7' &&
		! grep -q EventDateTime '$TMP/a08-now.json' && grep -q EventDateTime '$TMP/a08.json' &&
		! grep -q EventDateTime '$TMP/a01-now.json'"

# ---- 1. one document to each destination -------------------------------------
r1=$(jpost ehr "$TMP/a01.json")
expect "ehr: the golden arrival answered 202 with a Location ($r1)" \
	grep -qE '^202 /v1/messages/[0-9]+$' <<<"$r1"
expect "ehr: ... body {\"id\":N,\"state\":\"queued\"} with that id" \
	grep -qx "{\"id\":${r1##*/},\"state\":\"queued\"}" "$TMP/last.body"
r2=$(jpost legacy "$TMP/a08-now.json")
expect "legacy: the Latin-1 visit update answered 202 with a Location ($r2)" \
	grep -qE '^202 /v1/messages/[0-9]+$' <<<"$r2"
expect "both arrive" wait_until 10 'test "$(nmsg ehr)" -eq 1 -a "$(nmsg legacy)" -eq 1'
if cid1=$(check_hl7 "$TMP/ehr.d/1.hl7" "$TMP/a01.hl7" utf-8 MLLP-EDGE "" "" "" 2.5.1 gold); then
	ok "ehr: the golden HL7, MSH-3 MLLP-EDGE, MSH-4..6 empty, 2.5.1, UNICODE UTF-8, MSH-10 $cid1"
else
	fail "ehr: the golden HL7 with the default MSH values"
fi
if cid2=$(check_hl7 "$TMP/legacy.d/1.hl7" "$TMP/a08.hl7" latin1 EDGE-OUT CLOUD-A ADT-IN WARD-7 \
	2.3.1 now); then
	ok "legacy: the golden HL7 in ISO 8859-1, EDGE-OUT|CLOUD-A|ADT-IN|WARD-7, 2.3.1, 8859/1, MSH-7 now, MSH-10 $cid2"
else
	fail "legacy: the golden HL7 with its hl7: section"
fi
expect "legacy: é arrived as the one byte 0xE9, ü as 0xFC, and no UTF-8 sequence" \
	bash -c "LC_ALL=C grep -q \$'Ren\\xe9e^' '$TMP/legacy.d/1.hl7' &&
		LC_ALL=C grep -q \$'M\\xfcller^' '$TMP/legacy.d/1.hl7' &&
		! LC_ALL=C grep -q \$'\\xc3' '$TMP/legacy.d/1.hl7'"
expect "the receivers logged the same MSH-10s ($(arrivals ehr) $(arrivals legacy))" \
	test "$(arrivals ehr)" = "${cid1:-none}" -a "$(arrivals legacy)" = "${cid2:-none}"
expect "ehr: GET reaches acked" wait_until 5 "test \"\$(state_of ${r1##*/})\" = acked"
expect "legacy: GET reaches acked" wait_until 5 "test \"\$(state_of ${r2##*/})\" = acked"
expect "ehr: the ACK that decided it answers its MSH-10 (MSA|AA|$cid1)" acked_with "${r1##*/}" "$cid1"
expect "legacy: the ACK that decided it answers its MSH-10 (MSA|AA|$cid2)" acked_with "${r2##*/}" "$cid2"
spool show "${r2##*/}" >"$TMP/show2.out" 2>&1
expect "legacy: the spool row is HL7 v2 with the control ID (spool show)" \
	bash -c "grep -q '^content_type: *x-application/hl7-v2+er7\$' '$TMP/show2.out' &&
		grep -q '^control_id: *${cid2:-none}\$' '$TMP/show2.out'"
expect "two MSH-10s, not the same" test "${cid1:-x}" != "${cid2:-x}"
lap "deliveries done"

# ---- 2. POST /v1/translate: the HL7, nothing stored ----------------------------
n_ehr=$(stored ehr) n_leg=$(stored legacy)
expect "the spool counts are readable (ehr $n_ehr, legacy $n_leg)" test "$n_ehr" -eq 1 -a "$n_leg" -eq 1
r=$(api /v1/translate "$TMP/a01.json" application/json)
cp "$TMP/last.body" "$TMP/tr1.hl7"
expect "translate: 200 ($r)" test "${r%% *}" = 200
expect "translate: Content-Type x-application/hl7-v2+er7; charset=utf-8" \
	ctype_is 'x-application/hl7-v2+er7; charset=utf-8'
expect "translate: the golden HL7 with the default MSH values" \
	same_hl7 "$TMP/tr1.hl7" "$TMP/a01.hl7" utf-8 MLLP-EDGE "" "" "" 2.5.1 gold
r=$(api '/v1/translate?destination=legacy' "$TMP/a08.json" 'application/json; charset=utf-8')
cp "$TMP/last.body" "$TMP/tr2.hl7"
expect "translate?destination=legacy: 200 ($r)" test "${r%% *}" = 200
expect "translate?destination=legacy: Content-Type ...; charset=iso-8859-1" \
	ctype_is 'x-application/hl7-v2+er7; charset=iso-8859-1'
expect "translate?destination=legacy: the golden HL7 with legacy's MSH values, in ISO 8859-1" \
	same_hl7 "$TMP/tr2.hl7" "$TMP/a08.hl7" latin1 EDGE-OUT CLOUD-A ADT-IN WARD-7 2.3.1 gold
expect "translate: two answers, two MSH-10s" \
	test "$(head -c 200 "$TMP/tr1.hl7" | cut -d'|' -f10)" != "$(head -c 200 "$TMP/tr2.hl7" | cut -d'|' -f10)"
# refusals: STATUS PATH CONTENT-TYPE TOKEN REASON
while IFS='|' read -r want path ctype tok why; do
	r=$(TOKEN=$tok api "$path" "$TMP/a01.json" "$ctype")
	expect "translate refused: $path as $ctype: $want, '$why' ($r: $(head -c 100 "$TMP/last.body"))" \
		bash -c "test '${r%% *}' = '$want' && grep -q '$why' '$TMP/last.body'"
done <<EOF
400|/v1/translate?dest=ehr|application/json|$TOKEN|the only query parameter is destination=NAME
400|/v1/translate?destination=ehr&pretty=1|application/json|$TOKEN|the only query parameter
400|/v1/translate?|application/json|$TOKEN|the only query parameter
403|/v1/translate?destination=legacy|application/json|$TOKEN_EHR|may not send to destination legacy
404|/v1/translate?destination=nope|application/json|$TOKEN|no such destination: nope
415|/v1/translate|x-application/hl7-v2+er7|$TOKEN|Content-Type must be application/json
415|/v1/translate?destination=ehr|text/plain|$TOKEN|Content-Type must be application/json
EOF
r=$(TOKEN=$TOKEN_EHR api '/v1/translate?destination=ehr' "$TMP/a01.json" application/json)
expect "translate?destination=ehr with the ehr-only token: 200 ($r)" test "${r%% *}" = 200
r=$(curl -s --max-time 10 --cacert "$CERTS/ca.pem" -H "Authorization: Bearer $TOKEN" \
	-o /dev/null -w '%{http_code}' "https://127.0.0.1:$HTTPS/v1/translate")
expect "translate: GET is 405 ($r)" test "$r" = 405
sleep 0.3
expect "translate stored nothing (spool: ehr $(stored ehr), legacy $(stored legacy))" \
	test "$(stored ehr)" -eq "$n_ehr" -a "$(stored legacy)" -eq "$n_leg"
expect "translate sent nothing (receivers: ehr $(nmsg ehr), legacy $(nmsg legacy))" \
	test "$(nmsg ehr)" -eq 1 -a "$(nmsg legacy)" -eq 1
lap "translate done"

# ---- 3. Idempotency-Key with a JSON body ------------------------------------
k1=$(jpost ehr "$TMP/a01-now.json" -H 'Idempotency-Key: adt-2026-0001')
k2=$(jpost ehr "$TMP/a01-now.json" -H 'Idempotency-Key: adt-2026-0001')
expect "Idempotency-Key: first 202, the repeat 200 with the same Location ($k1 / $k2)" \
	bash -c "grep -qE '^202 /v1/messages/[0-9]+$' <<<'$k1' && test '${k2%% *}' = 200 -a '${k1#* }' = '${k2#* }'"
expect "... the repeat's body names the first id" grep -q "\"id\":${k1##*/}," "$TMP/last.body"
expect "... the message arrives and is acked" \
	wait_until 5 "test \"\$(state_of ${k1##*/})\" = acked -a \$(nmsg ehr) -ge 2"
if cid3=$(check_hl7 "$TMP/ehr.d/2.hl7" "$TMP/a01.hl7" utf-8 MLLP-EDGE "" "" "" 2.5.1 now); then
	ok "... as the golden HL7 with MSH-7 and EVN-2 the current time (MSH-10 $cid3)"
else
	fail "... as the golden HL7 with MSH-7 and EVN-2 the current time"
fi
sleep 0.5
expect "... delivered once (ehr received $(nmsg ehr) in all), one row (spool: $(stored ehr))" \
	test "$(nmsg ehr)" -eq 2 -a "$(stored ehr)" -eq 2
lap "idempotency done"

# ---- 4. hostile JSON: a 4xx with the reason, nothing queued -------------------
doc() {
	printf '{"Meta":{"DataModel":"PatientAdmin","EventType":"NewPatient"},"Patient":{"Demographics":{%s}}}' "$1"
}
# a document whose LastName is N bytes of x
big_doc() {
	doc '"LastName":"@"' | awk -v n="$1" 'BEGIN {RS = "@"; ORS = ""}
		NR == 1 {print; s = "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
			 while (n >= 64) {print s; n -= 64} print substr(s, 1, n); next} {print}'
}
H=$TMP/hostile
mkdir -p "$H"
"$PY" -c 'import sys; sys.stdout.write("{\"a\":" * 10000 + "1" + "}" * 10000)' >"$H/deep.json"
big_doc $((10 << 20)) >"$H/10mib.json"
big_doc $((2 << 20)) >"$H/2mib.json"
printf '{"Meta":{"DataModel":"PatientAdmin","EventType":"NewPatient"},"Meta":{}}' >"$H/dup.json"
doc $'"LastName":"Hostil\xffname"' >"$H/ff.json"
doc $'"LastName":"Hostil\xc0\xafname"' >"$H/overlong.json"
doc '"LastName":"Hostil\u0000name"' >"$H/nul.json"
doc '"LastName":"Hostil\u000bname"' >"$H/vt.json"
doc $'"LastName":"Hostil\x1cname"' >"$H/fs.json"
doc '"LastName":"Hostilname","DOB":"2026-02-30"' >"$H/date.json"
printf '{"Meta":{"DataModel":"Flowsheet","EventType":"New"}}' >"$H/model.json"
printf '["Hostilname"]' >"$H/array.json"
: >"$H/empty.json"
doc '"LastName":"Hostilname"' | head -c 80 >"$H/truncated.json"
doc '"LastName" "Hostilname"' >"$H/nocolon.json"
doc '"LastName":"\u0141ukasiewicz"' >"$H/l1.json"
expect "the hostile files are what they say (10 MiB, 2 MiB, 0xFF, a raw 0x1C, 80 bytes, empty)" \
	bash -c "test \$(stat -c %s '$H/10mib.json') -gt $((10 << 20)) -a \$(stat -c %s '$H/2mib.json') -gt $((2 << 20)) &&
		LC_ALL=C grep -q \$'\\xff' '$H/ff.json' && LC_ALL=C grep -q \$'\\x1c' '$H/fs.json' &&
		test \$(stat -c %s '$H/truncated.json') -eq 80 -a ! -s '$H/empty.json'"
base_ehr=$(stored ehr) base_leg=$(stored legacy) recv_ehr=$(nmsg ehr) recv_leg=$(nmsg legacy)
expect "before the matrix: the spool and the receivers are readable (ehr $base_ehr/$recv_ehr, legacy $base_leg/$recv_leg)" \
	test "$base_ehr" -eq 2 -a "$base_leg" -eq 1 -a "$recv_ehr" -eq 2 -a "$recv_leg" -eq 1
# FILE|DESTINATION|STATUS|REASON (an extended regular expression on the body).
# Each case comes from an address of its own, 127.0.0.20 and up: the log's
# rate limit is per address, and every refusal must reach the log.
nrefused=0 ncase=0
while IFS='|' read -r f dest want why; do
	r=$(jpost "$dest" "$H/$f" --interface "127.0.0.$((20 + ncase))")
	ncase=$((ncase + 1))
	expect "hostile $f → $dest: $want, $(head -c 120 "$TMP/last.body" | tr -d '\n')" \
		bash -c "test '${r%% *}' = '$want' && grep -qE '$why' '$TMP/last.body'"
	[ "$want" = 422 ] || [ "$f" = 2mib.json ] && nrefused=$((nrefused + 1))
done <<'EOF'
deep.json|ehr|422|^\$: JSON nested deeper than 32 levels$
10mib.json|ehr|413|Payload Too Large|Request Entity Too Large
2mib.json|ehr|413|^JSON body of [0-9]+ bytes is over the limit of 1048576$
dup.json|ehr|422|^\$: invalid JSON .*duplicate object key
ff.json|ehr|422|^\$: invalid JSON .*unable to decode byte 0xff
overlong.json|ehr|422|^\$: invalid JSON .*unable to decode byte 0xc0
nul.json|ehr|422|^\$: invalid JSON .*\\u0000 is not allowed
vt.json|ehr|422|^\$\.Patient\.Demographics\.LastName: .*U\+000B
fs.json|ehr|422|^\$: invalid JSON .*control character 0x1c
date.json|ehr|422|^\$\.Patient\.Demographics\.DOB: impossible day
model.json|ehr|422|^\$\.Meta\.DataModel: unsupported data model
array.json|ehr|422|^\$: expected a JSON object$
empty.json|ehr|422|^\$: invalid JSON at line 1 column 0: .* expected near end of file
truncated.json|ehr|422|^\$: invalid JSON .*premature end of input
nocolon.json|ehr|422|^\$: invalid JSON .*.:. expected
l1.json|legacy|422|^\$\.Patient\.Demographics\.LastName: .*U\+0141 cannot be represented
EOF
sleep 0.5
expect "after the matrix: nothing stored (ehr $(stored ehr), legacy $(stored legacy))" \
	test "$(stored ehr)" -eq "$base_ehr" -a "$(stored legacy)" -eq "$base_leg"
expect "after the matrix: nothing sent (receivers: ehr $(nmsg ehr), legacy $(nmsg legacy))" \
	test "$(nmsg ehr)" -eq "$recv_ehr" -a "$(nmsg legacy)" -eq "$recv_leg"
expect "after the matrix: the bridge is running" kill -0 "$BRIDGE_PID"
r=$(jpost legacy "$TMP/a08-now.json")
expect "after the matrix: a good document is still accepted ($r)" grep -qE '^202 /v1/messages/[0-9]+$' <<<"$r"
expect "... and arrives" wait_until 5 "test \$(nmsg legacy) -eq $((recv_leg + 1))"
lap "hostile matrix done"

# ---- 5. counters ----------------------------------------------------------------
# translated: 2 deliveries, 3 translate answers, 2 keyed posts, the last post
tr1=$(metric 'mllp_https_translations_total{outcome="translated"}')
rf1=$(metric 'mllp_https_translations_total{outcome="refused"}')
expect "mllp_https_translations_total{outcome=\"translated\"} went up by 8 ($tr0 → $tr1)" \
	test "$((tr1 - tr0))" -eq 8
expect "mllp_https_translations_total{outcome=\"refused\"} went up by $nrefused ($rf0 → $rf1)" \
	test "$((rf1 - rf0))" -eq "$nrefused" -a "$nrefused" -eq 15

# ---- 6. the log -----------------------------------------------------------------
n=$(grep -cE 'event=https_refused peer=127\.0\.0\.(2[0-9]|3[0-9]):' "$TMP/bridge.log")
# (but the 10 MiB body's: the HTTP layer refuses it before the listener sees it)
expect "the log has a refusal line for each of the $ncase hostile cases but one ($n)" \
	test "$n" -eq $((ncase - 1)) -a "$ncase" -eq 16
leaks=$(LC_ALL=C grep -aoE $'Sample|Alex|Renée|Ren\xe9e|Müller|M\xfcller|Welby|Marcus|0000100234|EX-4471|V000981|12175550100|Example St|Springfield|1980-?02-?14' \
	"$TMP/bridge.log" | sort -u | tr '\n' ' ')
expect "no patient data of the delivered documents in the bridge's log (${leaks:-none})" test -z "$leaks"
leaks=$(LC_ALL=C grep -aoE 'Hostil[^ ]*|ukasiewicz' "$TMP/bridge.log" | sort -u | tr '\n' ' ')
expect "no patient data of the refused documents in the bridge's log (${leaks:-none})" test -z "$leaks"
expect "the bridge is still running" kill -0 "$BRIDGE_PID"
finish
