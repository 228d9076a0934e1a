#!/usr/bin/python3
"""roundtrip.py [DIR]: every golden HL7 message of DIR (default: this file's
directory) parses with an independent parser (python3-hl7, Debian), and
gives back what its JSON gave: MSH-9's trigger (from the file name), PID-3
repetitions (ID, IDType), PID-5 components (LastName, FirstName,
MiddleName), MRG-1 repetitions for a merge. ORU: the OBX-5 values
(unescaped) are the JSON's Orders[].Results[].Value in order, OBX-1 counts
1, 2, ... from each OBR, OBR-1 counts the orders. ORM: ORC-1 is NW, XO or
CA for New, Update, Cancel. SIU: an SCH segment. No raw LF, VT or FS
anywhere. Prints "ok - ..." / "not ok - ..." per file; exit 1 on any
failure, or when fewer than MIN_FILES files are found (a test that cannot
see its input fails).

/usr/bin/python3 on purpose: python3-hl7 is a Debian package, another
python3 on PATH (pyenv) would not see it."""
import glob
import json
import os
import sys

import hl7

MIN_FILES = 23
ORC_1 = {"New": "NW", "Update": "XO", "Cancel": "CA"}


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


def names(msg):
    return [str(seg[0]) for seg in msg]


def check_oru(msg, doc):
    """OBX-5 values in order, OBX-1 restarting per OBR, OBR-1 per order."""
    want = [given(r, "Value") for o in doc["Orders"] for r in (o.get("Results") or [])]
    got, order, setid = [], 0, 0
    for seg in msg:
        name = str(seg[0])
        if name == "OBR":
            order += 1
            setid = 0
            if str(seg[1]) != str(order):
                return "OBR-1 %s, want %d" % (seg[1], order)
        elif name == "OBX":
            setid += 1
            if str(seg[1]) != str(setid):
                return "OBX-1 %s in order %d, want %d" % (seg[1], order, setid)
            got.append(msg.unescape(str(seg[5])) if len(seg) > 5 else "")
    if got != want:
        return "OBX-5 %r, JSON %r" % (got, want)
    if order != len(doc["Orders"]):
        return "%d OBR, JSON %d orders" % (order, len(doc["Orders"]))
    return None


def check_model(msg, doc):
    model, event = doc["Meta"]["DataModel"], doc["Meta"]["EventType"]
    if model == "Results":
        return check_oru(msg, doc)
    if model == "Order":
        got = str(msg.segment("ORC")[1])
        return None if got == ORC_1[event] else "ORC-1 %s, want %s" % (got, ORC_1[event])
    if model == "Scheduling" and "SCH" not in names(msg):
        return "no SCH segment"
    return None


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
    why = check_model(msg, doc)
    if why:
        return why
    if "Patient" not in doc:
        return None if "PID" not in names(msg) else "a PID without a Patient"
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
    if len(files) < MIN_FILES:
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
