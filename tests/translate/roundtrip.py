#!/usr/bin/python3
"""roundtrip.py [DIR]: every golden HL7 message of DIR (default: this file's
directory) parses with an independent parser (python3-hl7, Debian), and
gives back what its JSON gave: MSH-9's trigger (from the file name), PID-3
repetitions (ID, IDType), PID-5 components (LastName, FirstName,
MiddleName), MRG-1 repetitions for a merge. No raw LF, VT or FS anywhere.
Prints "ok - ..." / "not ok - ..." per file; exit 1 on any failure, or
when fewer than 10 files are found (a test that cannot see its input fails).

/usr/bin/python3 on purpose: python3-hl7 is a Debian package, another
python3 on PATH (pyenv) would not see it."""
import glob
import json
import os
import sys

import hl7


def comp(msg, field, rep, c):
    """Component c (1-based) of repetition rep (0-based), unescaped; '' if absent."""
    try:
        return msg.unescape(str(field[rep][c - 1]))
    except IndexError:
        return ""


def reps(msg, field, comps):
    out = []
    for r in range(len(field)):
        out.append(tuple(comp(msg, field, r, c) for c in comps))
    # a field with no value parses as one empty repetition
    return [] if out == [tuple("" for _ in comps)] else out


def given(obj, *keys):
    for k in keys:
        obj = obj.get(k) if isinstance(obj, dict) else None
    return "" if obj is None else str(obj)


def ids(doc, owner):
    lst = (doc.get(owner) or {}).get("Identifiers") or []
    return [(given(i, "ID"), given(i, "IDType")) for i in lst if i is not None]


def check(jpath):
    name = os.path.basename(jpath)[:-5]
    raw = open(jpath[:-5] + ".hl7", "rb").read()
    doc = json.load(open(jpath, encoding="utf-8"))
    for bad in (b"\n", b"\x0b", b"\x1c"):
        if bad in raw:
            return "raw byte %r in the message" % bad
    text = raw.decode("latin-1" if b"|8859/1\r" in raw.split(b"\r")[0] + b"\r" else "utf-8")
    msg = hl7.parse(text)
    trigger = name.split("_")[1].upper()
    if str(msg.segment("MSH")[9][0][1]) != trigger:
        return "MSH-9 %s, want trigger %s" % (msg.segment("MSH")[9], trigger)
    pid = msg.segment("PID")
    if reps(msg, pid[3], (1, 4)) != ids(doc, "Patient"):
        return "PID-3 %r, JSON %r" % (reps(msg, pid[3], (1, 4)), ids(doc, "Patient"))
    dem = ("Patient", "Demographics")
    want = tuple(given(doc, *dem, k) for k in ("LastName", "FirstName", "MiddleName"))
    got = tuple(comp(msg, pid[5], 0, c) for c in (1, 2, 3))
    if got != want:
        return "PID-5 %r, JSON %r" % (got, want)
    if "PriorPatient" in doc:
        got = reps(msg, msg.segment("MRG")[1], (1, 4))
        if got != ids(doc, "PriorPatient"):
            return "MRG-1 %r, JSON %r" % (got, ids(doc, "PriorPatient"))
    return None


def main():
    d = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))
    files = sorted(glob.glob(os.path.join(d, "*.json")))
    failed = 0
    if len(files) < 10:
        print("not ok - roundtrip: only %d golden files in %s" % (len(files), d))
        return 1
    for f in files:
        name = os.path.basename(f)[:-5]
        try:
            why = check(f)
        except Exception as e:  # a parse failure is a test failure, with its reason
            why = "%s: %s" % (type(e).__name__, e)
        if why:
            failed += 1
            print("not ok - roundtrip %s: %s" % (name, why))
        else:
            print("ok - roundtrip %s" % name)
    return 1 if failed else 0


sys.exit(main())
