#!/usr/bin/env python3
"""hostile-peers.py: the hostile and careless MLLP peers of issue 8
(tests/integration/t_hostile_all.sh, t_hostile.sh), run from the hospital's
addresses inside the tunnel against the edge's listeners, for
tests/e2e/e2e_hostile.sh. Each peer records what it got back; the summary
is one JSON object on stdout when every peer is done (or at --secs).

  hostile-peers.py --edge 203.0.113.1 --secs S [--sizes k=v,...]

Peers (one thread each; the idle ones share a thread):
  flood-read-N   empty frames (SB EB CR) to the adt port (release 1), all
                 written at once, answers read: one AR "empty frame" each
  flood-noread   empty frames to the adt port, never reading an answer: the
                 bridge's reader must pause (answers bounded), and the
                 writer blocks; holds until the end. Starts once the
                 flood-read and random peers are done, and writes
                 "BYTES FRAMES" to --noread-file when it stopped sending
  idle           many connections from one address to the lab port, no
                 byte sent: up to connections.per_source (256) stay open,
                 the rest are closed at once without a byte
  half-N         half a frame (SB "MSH|^~\\&|") to the adt port, then
                 nothing: no answer, kept open (frame_timeout is 30 s)
  slow           one good ADT message, a byte every --slow-ms: answered AA
                 (relayed from the upstream) with MSA-2 = its MSH-10
  huge           a frame past max_frame (16 MiB) to the adt port: AR
                 "frame exceeds max_frame", then the connection is closed
  random         random bytes to the adt port: junk discarded, any frame
                 they happen to hold refused; never an AA/CA
"""
import argparse
import json
import os
import select
import socket
import sys
import threading
import time

SB, EB, CR = b"\x0b", b"\x1c", b"\x0d"
ADT_PORT, LAB_PORT = 9961, 9960


def connect(src, dst, port, timeout=10):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((src, 0))
    s.settimeout(timeout)
    s.connect((dst, port))
    return s


def frames(buf):
    """Complete MLLP frames in buf, and the rest."""
    out = []
    while True:
        a = buf.find(SB)
        if a < 0:
            return out, b""
        b = buf.find(EB + CR, a)
        if b < 0:
            return out, buf[a:]
        out.append(buf[a + 1:b])
        buf = buf[b + 2:]


def ack_info(payload):
    """(MSA-1, MSA-2, ERR text) of an HL7 ACK payload."""
    code = ctl = err = ""
    for seg in payload.replace(b"\n", b"\r").split(b"\r"):
        f = seg.split(b"|")
        if f[0] == b"MSA":
            code = f[1].decode("latin-1") if len(f) > 1 else ""
            ctl = f[2].decode("latin-1") if len(f) > 2 else ""
        elif f[0] == b"ERR":
            err += " ".join(x.decode("latin-1") for x in f[1:] if x)
    return code, ctl, err


def read_answers(s, want, until):
    """Reads frames until want of them came, the peer closed, or until."""
    buf, got, how = b"", [], "timeout"
    while len(got) < want and time.time() < until:
        s.settimeout(max(0.05, until - time.time()))
        try:
            d = s.recv(65536)
        except socket.timeout:
            break
        except OSError as e:
            how = "error: %s" % e
            break
        if not d:
            how = "eof"
            break
        buf += d
        fs, buf = frames(buf)
        got += fs
    else:
        how = "done" if len(got) >= want else how
    return got, how


def peer_flood_read(a, r, name, src):
    n = a.flood_frames
    s = connect(src, a.edge, ADT_PORT)
    t0 = time.time()
    w = threading.Thread(target=s.sendall, args=((SB + EB + CR) * n,))
    w.start()
    got, how = read_answers(s, n, t0 + a.secs)
    w.join(1)
    codes = {}
    errs = set()
    for p in got:
        c, _, e = ack_info(p)
        codes[c] = codes.get(c, 0) + 1
        errs.add(e)
    r[name] = {"sent": n, "answers": len(got), "codes": codes, "errs": sorted(errs)[:3],
               "how": how, "secs": round(time.time() - t0, 2)}
    s.close()


def peer_flood_noread(a, r, name, src, stop, after):
    # after the flooders that read and the random bytes, so that every AR
    # counted from here on is this peer's
    for t in after:
        t.join(a.secs)
    s = connect(src, a.edge, ADT_PORT)
    s.setblocking(False)
    chunk = (SB + EB + CR) * 21845  # 64 KiB
    sent, blocked_at = 0, None
    t0 = time.time()
    while not stop.is_set() and sent < a.noread_bytes:
        _, w, _ = select.select([], [s], [], 0.2)
        if not w:
            if blocked_at is None:
                blocked_at = time.time()
            if time.time() - blocked_at >= 2:
                break  # the bridge stopped reading this peer
            continue
        blocked_at = None
        try:
            sent += s.send(chunk)
        except BlockingIOError:
            continue
        except OSError as e:
            r[name] = {"error": str(e), "sent": sent}
            return
    r[name + "-sending"] = {"sent": sent, "frames": sent // 3, "blocked": blocked_at is not None,
                            "secs": round(time.time() - t0, 2)}
    open(a.noread_file, "w").write("%d %d\n" % (sent, sent // 3))
    stop.wait()
    r[name] = {"sent": sent, "frames": sent // 3, "blocked_writer": blocked_at is not None}
    s.close()


def peer_idle(a, r, name, src, stop):
    socks, refused = [], 0
    for i in range(a.idle):
        s = socket.socket()
        s.bind((src, 0))
        s.settimeout(10)
        try:
            s.connect((a.edge, LAB_PORT))
        except OSError:
            refused += 1
            s.close()
            continue
        socks.append(s)
    time.sleep(1.0)
    stop.wait()
    open_, closed, data = 0, 0, 0
    for s in socks:
        s.setblocking(False)
        try:
            d = s.recv(4096)
            if d:
                data += 1
            else:
                closed += 1
        except BlockingIOError:
            open_ += 1
        except OSError:
            closed += 1
        s.close()
    r[name] = {"tried": a.idle, "connect_failed": refused, "open_at_end": open_,
               "closed_without_byte": closed, "got_bytes": data}


def peer_half(a, r, name, src, stop):
    s = connect(src, a.edge, ADT_PORT)
    s.sendall(SB + b"MSH|^~\\&|")
    stop.wait()
    s.setblocking(False)
    try:
        d = s.recv(4096)
        state = "data" if d else "eof"
    except BlockingIOError:
        state = "open"
    except OSError as e:
        state = "error: %s" % e
    r[name] = {"state": state}
    s.close()


def peer_slow(a, r, name, src):
    mid = "SLOW1"
    msg = (SB + ("MSH|^~\\&|APP|ADT|REDOX|CLOUD|20261129120000||ADT^A01^ADT_A01|%s|P|2.5.1\r"
                 "PID|1||SLOWPID77^^^H^MR||SLOWSON^SLOWENA\r" % mid).encode() + EB + CR)
    s = connect(src, a.edge, ADT_PORT)
    t0 = time.time()
    for i in range(len(msg)):
        s.sendall(msg[i:i + 1])
        time.sleep(a.slow_ms / 1000.0)
    t1 = time.time()
    got, how = read_answers(s, 1, t1 + 15)
    c, ctl, e = ack_info(got[0]) if got else ("", "", "")
    r[name] = {"bytes": len(msg), "send_secs": round(t1 - t0, 2), "code": c, "msa2": ctl,
               "want": mid, "answer_ms": round((time.time() - t1) * 1000), "how": how}
    s.close()


def peer_huge(a, r, name, src):
    s = connect(src, a.edge, ADT_PORT)
    s.setblocking(False)
    head = SB + b"MSH|^~\\&|APP|ADT|REDOX|CLOUD|20261129120000||ADT^A01^ADT_A01|HUGE1|P|2.5.1\rNTE|1||"
    total = a.huge_mib << 20
    chunk = b"x" * 65536
    sent, buf, answers, how = 0, b"", [], "timeout"
    todo = head
    t0 = time.time()
    until = t0 + a.secs + 5
    while time.time() < until:
        rd, wr, _ = select.select([s], [s] if sent < total else [], [], 0.2)
        if rd:
            try:
                d = s.recv(65536)
            except OSError as e:
                how = "reset" if isinstance(e, ConnectionResetError) else "error: %s" % e
                break
            if not d:
                how = "eof"
                break
            buf += d
            fs, buf = frames(buf)
            answers += fs
        if wr:
            if not todo:
                todo = chunk
            try:
                n = s.send(todo)
            except BlockingIOError:
                continue
            except OSError as e:
                how = "reset while sending" if isinstance(e, (ConnectionResetError, BrokenPipeError)) else "error: %s" % e
                break
            sent += n
            todo = todo[n:]
    info = [ack_info(p) for p in answers]
    r[name] = {"sent": sent, "answers": [[c, e] for c, _, e in info], "how": how,
               "secs": round(time.time() - t0, 2)}
    s.close()


def peer_random(a, r, name, src, stop):
    data = os.urandom(a.random_kib << 10)
    s = connect(src, a.edge, ADT_PORT)
    t0 = time.time()
    w = threading.Thread(target=s.sendall, args=(data,))
    w.start()
    got, how = read_answers(s, 1 << 30, t0 + 5)
    w.join(5)
    codes, errs = {}, set()
    for p in got:
        c, _, e = ack_info(p)
        codes[c] = codes.get(c, 0) + 1
        errs.add(e.split(" E ")[-1])
    r[name] = {"sent": len(data), "answers": len(got), "codes": codes, "how": how,
               "errs": sorted(errs)}
    s.close()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--edge", default="203.0.113.1")
    p.add_argument("--secs", type=float, default=15)
    p.add_argument("--flooders", type=int, default=16)
    p.add_argument("--flood-frames", type=int, default=5000)
    p.add_argument("--noread-bytes", type=int, default=4 << 20)
    p.add_argument("--noread-file", default="/dev/null")
    p.add_argument("--idle", type=int, default=300)
    p.add_argument("--half", type=int, default=20)
    p.add_argument("--slow-ms", type=float, default=20)
    p.add_argument("--huge-mib", type=int, default=17)
    p.add_argument("--random-kib", type=int, default=4096)
    a = p.parse_args()
    r, stop, ts = {}, threading.Event(), []

    def run(fn, *args):
        def wrap():
            try:
                fn(a, r, *args)
            except Exception as e:  # a peer that could not even connect
                r[args[0]] = {"error": "%s: %s" % (type(e).__name__, e)}
        t = threading.Thread(target=wrap)
        t.start()
        ts.append(t)

    for i in range(a.flooders):
        run(peer_flood_read, "flood-read-%d" % i, "203.0.113.66")
    run(peer_random, "random", "203.0.113.66", stop)
    run(peer_flood_noread, "flood-noread", "203.0.113.66", stop, list(ts))
    run(peer_idle, "idle", "203.0.113.67", stop)
    for i in range(a.half):
        run(peer_half, "half-%d" % i, "203.0.113.68", stop)
    run(peer_slow, "slow", "203.0.113.68")
    run(peer_huge, "huge", "203.0.113.67")
    time.sleep(a.secs)
    stop.set()
    for t in ts:
        t.join(30)
    json.dump(r, sys.stdout, sort_keys=True)
    print()


if __name__ == "__main__":
    main()
