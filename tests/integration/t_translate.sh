#!/bin/bash
# The outbound translator (issue 12) from outside: translate-cli on every
# golden JSON of tests/translate gives exactly its .hl7 (Latin-1 for names
# containing "latin1"); refusals print "422 PATH: REASON" or 413; every
# golden message goes through an independent parser (python3-hl7, via
# tests/translate/roundtrip.py) and gives back PID-3, PID-5, MRG-1, the OBX-5
# values and per-order OBX-1 set IDs, ORC-1 and SCH as the JSON gave them.
# The round trip is first shown to fail on corrupted copies.
. tests/integration/lib.sh

GOLD=tests/translate
PY=/usr/bin/python3 # python3-hl7 is Debian's: not pyenv's python3 on PATH
CLI=$BIN/translate-cli

n=0
for j in "$GOLD"/*.json; do
	[ -f "$j" ] || continue
	name=$(basename "$j" .json)
	opt=""
	case $name in *latin1*) opt=--latin1 ;; esac
	# shellcheck disable=SC2086
	if "$CLI" $opt "$j" >"$TMP/$name.hl7" 2>"$TMP/$name.err" &&
		cmp -s "$TMP/$name.hl7" "${j%.json}.hl7"; then
		ok "golden $name"
	else
		fail "golden $name" "$(head -c 300 "$TMP/$name.err")"
	fi
	n=$((n + 1))
done
[ "$n" -ge 23 ] || fail "golden files" "only $n in $GOLD"

# refused NAME WANT_EXIT PATTERN FILE [ARGS]: the CLI exits WANT_EXIT and
# its stderr matches PATTERN.
refused() {
	local what=$1 want=$2 pat=$3 out rc
	shift 3
	out=$("$CLI" "$@" 2>&1 >/dev/null)
	rc=$?
	if [ "$rc" -eq "$want" ] && grep -qE "$pat" <<<"$out"; then
		ok "$what"
	else
		fail "$what" "exit $rc: $out"
	fi
}
doc() { printf '{"Meta":{"DataModel":"PatientAdmin","EventType":"NewPatient"},"Patient":{"Demographics":{%s}}}' "$1"; }

doc '"DOB":"2026-02-30"' >"$TMP/date.json"
refused "an impossible date: 422 with its path" 1 \
	'^422 \$\.Patient\.Demographics\.DOB: impossible day' "$TMP/date.json"
doc '"LastName":"a\u000bb"' >"$TMP/vt.json"
refused "VT in a name: 422" 1 '^422 \$\.Patient\.Demographics\.LastName: .*U\+000B' "$TMP/vt.json"
doc '"LastName":"\u0141ukasz"' >"$TMP/l1.json"
refused "a character outside Latin-1: 422" 1 'U\+0141 cannot be represented' --latin1 "$TMP/l1.json"
printf '{"Meta":{},"Meta":{}}' >"$TMP/dup.json"
refused "a duplicate key: 422" 1 '^422 \$: .*duplicate' "$TMP/dup.json"
head -c $((1024 * 1024 + 1)) /dev/zero | tr '\0' ' ' >"$TMP/big.json"
refused "more than 1 MiB: 413" 1 '^413 ' "$TMP/big.json"

# The round trip must be able to fail: names swapped in a copy.
if ! "$PY" -c 'import hl7' 2>"$TMP/import.err"; then
	fail "python3-hl7 importable" "$(cat "$TMP/import.err")"
fi
mkdir -p "$TMP/gold"
cp "$GOLD"/*.json "$GOLD"/*.hl7 "$TMP/gold/"
sed -i 's/Sample^Alex/Alex^Sample/' "$TMP/gold/adt_a01_arrival_inpatient.hl7"
# the second order's first OBX numbered on from the first order's
sed -i 's/\rOBX|1|NM|2345-7^/\rOBX|13|NM|2345-7^/' "$TMP/gold/oru_r01_panel.hl7"
sed -i 's/|142|/|124|/' "$TMP/gold/oru_r01_single.hl7"
sed -i 's/\rORC|NW|/\rORC|XO|/' "$TMP/gold/orm_o01_new.hl7"
out=$("$PY" "$GOLD/roundtrip.py" "$TMP/gold" 2>&1)
rc=$?
# seen NAME FILE WHAT: the corrupted copy of FILE failed on WHAT.
seen() {
	if [ "$rc" -ne 0 ] && grep -q "^not ok - roundtrip $2: $3" <<<"$out"; then
		ok "$1"
	else
		fail "$1" "exit $rc: $(grep "roundtrip $2" <<<"$out")"
	fi
}
seen "round trip sees swapped PID-5 components" adt_a01_arrival_inpatient PID-5
seen "round trip sees an OBX-1 that does not restart per order" oru_r01_panel "OBX-1 13"
seen "round trip sees a changed OBX-5 value" oru_r01_single "OBX-5"
seen "round trip sees the wrong ORC-1" orm_o01_new "ORC-1 XO"

out=$("$PY" "$GOLD/roundtrip.py" "$GOLD" 2>&1)
rc=$?
echo "$out"
[ "$rc" -eq 0 ] || fail "round trip through python3-hl7" "exit $rc"
finish
