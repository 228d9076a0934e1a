#!/usr/bin/env python3
"""pcap-tls.py PORT[,PORT...] FILE...: proves that a capture of the edge's
cloud link carried TLS only.

Reads classic pcap files (tcpdump -w, Ethernet, full snap length) and checks
every packet:
  - ARP: allowed, counted;
  - IPv4 TCP with one of PORTS on either side: its payload is reassembled per
    direction (from the SYN on, by sequence number) and walked as TLS records:
    each record starts with a content type 20-23 (0x14 change_cipher_spec,
    0x15 alert, 0x16 handshake, 0x17 application_data), version 0x03 0x01-0x04
    and a length of at most 2^14 + 2048; a stream may end inside its last
    record (the capture stopped while it was open);
  - anything else (UDP, ICMP, TCP on another port, IPv6, ...): a violation.
No payload byte may contain "MSH|" (cleartext HL7).

Prints one line "packets=N arp=N tcp=N streams=N records=N bytes=N
cleartext_hl7=N violations=N" and the first violations; exits 0 when there is
none, 1 otherwise, 2 when a file cannot be read (a missing capture is a
failure, never a pass).
"""
import struct
import sys

TLS_TYPES = (20, 21, 22, 23)
MAX_RECORD = 16384 + 2048


def packets(path):
    with open(path, "rb") as f:
        hdr = f.read(24)
        if len(hdr) < 24:
            raise ValueError("%s: not a pcap file (%d bytes)" % (path, len(hdr)))
        magic = struct.unpack("<I", hdr[:4])[0]
        if magic in (0xA1B2C3D4, 0xA1B23C4D):
            end = "<"
        elif magic in (0xD4C3B2A1, 0x4D3CB2A1):
            end = ">"
        else:
            raise ValueError("%s: not a pcap file (magic %08x)" % (path, magic))
        snap, linktype = struct.unpack(end + "II", hdr[16:24])
        if linktype != 1:
            raise ValueError("%s: link type %d, not Ethernet" % (path, linktype))
        while True:
            ph = f.read(16)
            if len(ph) < 16:
                return
            _, _, incl, orig = struct.unpack(end + "IIII", ph)
            data = f.read(incl)
            if incl < orig:
                raise ValueError("%s: a packet was cut at %d of %d bytes "
                                 "(capture with -s 0)" % (path, incl, orig))
            yield data


def main():
    if len(sys.argv) < 3:
        sys.stderr.write(__doc__)
        return 2
    ports = {int(p) for p in sys.argv[1].split(",")}
    n = {"packets": 0, "arp": 0, "tcp": 0, "streams": 0, "records": 0, "bytes": 0,
         "cleartext_hl7": 0}
    bad = []
    streams = {}  # (src, sport, dst, dport) -> {"isn": int|None, "segs": {seq: bytes}}
    try:
        for path in sys.argv[2:]:
            for pkt in packets(path):
                n["packets"] += 1
                if b"MSH|" in pkt:
                    n["cleartext_hl7"] += 1
                eth = struct.unpack("!H", pkt[12:14])[0]
                if eth == 0x0806:
                    n["arp"] += 1
                    continue
                if eth != 0x0800:
                    bad.append("%s: ethertype 0x%04x" % (path, eth))
                    continue
                ip = pkt[14:]
                ihl = (ip[0] & 15) * 4
                total = struct.unpack("!H", ip[2:4])[0]
                proto = ip[9]
                src, dst = ip[12:16], ip[16:20]
                if proto != 6:
                    bad.append("%s: IP protocol %d %s -> %s" % (
                        path, proto, ".".join(map(str, src)), ".".join(map(str, dst))))
                    continue
                tcp = ip[ihl:total]
                sport, dport, seq = struct.unpack("!HHI", tcp[:8])
                off = (tcp[12] >> 4) * 4
                flags = tcp[13]
                payload = tcp[off:]
                n["tcp"] += 1
                if sport not in ports and dport not in ports:
                    bad.append("%s: TCP %d -> %d (not %s)" % (path, sport, dport, sys.argv[1]))
                    continue
                key = (src, sport, dst, dport)
                st = streams.setdefault(key, {"isn": None, "segs": {}})
                if flags & 0x02:  # SYN
                    st["isn"] = seq
                if payload:
                    st["segs"].setdefault(seq, payload)
    except (OSError, ValueError) as e:
        print("cannot read the capture: %s" % e)
        return 2
    for key, st in streams.items():
        if not st["segs"]:
            continue
        n["streams"] += 1
        name = "%s:%d -> %s:%d" % (".".join(map(str, key[0])), key[1],
                                   ".".join(map(str, key[2])), key[3])
        if st["isn"] is None:
            bad.append("%s: no SYN in the capture: its start cannot be checked" % name)
            continue
        data = bytearray()
        nxt = (st["isn"] + 1) & 0xFFFFFFFF
        for seq in sorted(st["segs"], key=lambda s: (s - nxt) & 0xFFFFFFFF):
            seg = st["segs"][seq]
            rel = (seq - nxt) & 0xFFFFFFFF
            if rel > 0x7FFFFFFF:  # a retransmission of bytes already taken
                skip = (nxt - seq) & 0xFFFFFFFF
                if skip >= len(seg):
                    continue
                seg, rel = seg[skip:], 0
            if rel != 0:
                bad.append("%s: a gap of %d bytes in the capture" % (name, rel))
                break
            data += seg
            nxt = (nxt + len(seg)) & 0xFFFFFFFF
        n["bytes"] += len(data)
        if b"MSH|" in data:
            n["cleartext_hl7"] += 1
        i = 0
        while i + 5 <= len(data):
            t, major, minor, ln = data[i], data[i + 1], data[i + 2], \
                struct.unpack("!H", data[i + 3:i + 5])[0]
            if t not in TLS_TYPES or major != 3 or not 1 <= minor <= 4 or ln > MAX_RECORD:
                bad.append("%s: not a TLS record at byte %d: %s" % (
                    name, i, bytes(data[i:i + 8]).hex()))
                break
            n["records"] += 1
            i += 5 + ln
    if n["cleartext_hl7"]:
        bad.append("cleartext HL7 (MSH|) in %d packets or streams" % n["cleartext_hl7"])
    print(" ".join("%s=%d" % kv for kv in n.items()) + " violations=%d" % len(bad))
    for b in bad[:10]:
        print("violation: " + b)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
