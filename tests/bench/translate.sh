#!/bin/bash
# `make bench`, the translator (issue 12): JSON → HL7 v2 translations per
# second on one core, for
#   (a) a 4 KiB PatientAdmin Arrival (tests/bench/patientadmin-4k.json), target ≥ 10,000/s
#   (b) the 20-result, 2-order Results golden (tests/translate/oru_r01_panel.json),
#       target ≥ 2,000/s
# Each row says PASS or MISS against its target. translate-bench exits 1 on
# a refused document, and a missing input or tool fails the script: a rate of
# nothing is not a pass.
#
# Environment: BUILD (build), BENCH_TRANSLATE_SECS (3), BENCH_CPU (0: the
# core taskset pins the loop to; empty for no pinning).
set -u
BUILD=${BUILD:-build}
BENCH=$BUILD/bin/translate-bench
SECS=${BENCH_TRANSLATE_SECS:-3}
CPU=${BENCH_CPU-0}
here=$(dirname "$0")

fail() {
	echo "translate bench: FAILED ($*)"
	exit 1
}

[ -x "$BENCH" ] || fail "$BENCH is missing"
pin=()
[ -n "$CPU" ] && command -v taskset >/dev/null && pin=(taskset -c "$CPU")

missed=0
# row LABEL FILE TARGET
row() {
	local label=$1 file=$2 target=$3 out rate us verdict
	[ -f "$file" ] || fail "$file is missing"
	out=$("${pin[@]}" "$BENCH" "$file" "$SECS") || fail "$label: $out"
	rate=$(awk '$1 == "translations/s" { print $2 }' <<<"$out")
	us=$(awk '$1 == "us/translation" { print $2 }' <<<"$out")
	[ -n "$rate" ] || fail "$label: no rate in: $out"
	verdict=PASS
	[ "$rate" -ge "$target" ] || {
		verdict=MISS
		missed=$((missed + 1))
	}
	printf '%-44s %9s/s %8s us  target >= %6s/s  %s\n' "$label" "$rate" "$us" "$target" "$verdict"
}

printf '\ntranslate bench, %s, %s CPUs, %s s a row\n' "$(date -u +%Y-%m-%dT%H:%MZ)" "$(nproc)" "$SECS"
row "(a) PatientAdmin Arrival, $(wc -c <"$here/patientadmin-4k.json") B" \
	"$here/patientadmin-4k.json" 10000
row "(b) Results, 20 results, $(wc -c <"$here/../translate/oru_r01_panel.json") B" \
	"$here/../translate/oru_r01_panel.json" 2000
[ "$missed" -eq 0 ] || echo "translate bench: $missed target(s) missed"
