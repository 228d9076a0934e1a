#!/usr/bin/node
// forwarder.js: the comparison line of `make bench`, "a Node forwarder, ACK
// after upstream 2xx, no storage". An MLLP listener that POSTs each frame's
// payload to an HTTPS upstream and answers the sender with an HL7 ACK
// (MSA|AA|<MSH-10>) only once the upstream said 2xx, MSA|AE otherwise. It
// stores nothing: a crash loses what is in flight, and its ACK rate is its
// delivery rate.
//
//   node forwarder.js --listen 127.0.0.1:PORT --upstream https://localhost:P/v1/hl7
//                     --ca CA.pem [--timeout-ms 10000]
//
// HTTP client: node's built-in https with a keep-alive Agent, HTTP/1.1. That
// is what a typical Node integration runs: axios, got and node-fetch sit on
// https.Agent, and node's fetch (undici) speaks HTTP/1.1 too; http2 needs its
// own session API that integration code rarely uses. So each request in
// flight holds one TLS connection, and idle ones are reused.
//
// Frames on one connection are POSTed as they arrive and answered in arrival
// order. Prints "forwarder: listening on ADDR:PORT" on stderr when ready;
// SIGTERM or SIGINT prints a summary line and exits.
'use strict';

const fs = require('fs');
const https = require('https');
const net = require('net');
const crypto = require('crypto');

const SB = 0x0b;
const EB = 0x1c;
const CR = 0x0d;
const MAX_FRAME = 16 << 20; // a sender that never ends its frame is dropped

function parseArgs(argv) {
  const o = { timeoutMs: 10000 };
  for (let i = 2; i < argv.length; i += 2) {
    const k = argv[i], v = argv[i + 1];
    if (v === undefined) throw new Error(`${k} needs a value`);
    if (k === '--listen') o.listen = v;
    else if (k === '--upstream') o.upstream = new URL(v);
    else if (k === '--ca') o.ca = fs.readFileSync(v);
    else if (k === '--timeout-ms') o.timeoutMs = Number(v);
    else throw new Error(`unknown option ${k}`);
  }
  if (!o.listen || !o.upstream || !o.ca) throw new Error('--listen, --upstream and --ca are required');
  return o;
}

// MSH fields by HL7 number (fields[3] is MSH-3); [] without an MSH.
function mshFields(payload) {
  const end = payload.indexOf('\r');
  const msh = end < 0 ? payload : payload.slice(0, end);
  if (!msh.startsWith('MSH') || msh.length < 8) return [];
  const f = msh.split(msh[3]);
  return [undefined, msh[3], ...f.slice(1)];
}

function hl7Ack(payload, code) {
  const f = mshFields(payload);
  const g = (n) => f[n] || '';
  const now = new Date().toISOString().replace(/[-:T]/g, '').slice(0, 14);
  const msg = `MSH|^~\\&|${g(5)}|${g(6)}|${g(3)}|${g(4)}|${now}||ACK|${g(10)}|P|2.5.1\r` +
    `MSA|${code}|${g(10)}\r`;
  return Buffer.concat([Buffer.from([SB]), Buffer.from(msg, 'latin1'), Buffer.from([EB, CR])]);
}

function main() {
  const o = parseArgs(process.argv);
  const agent = new https.Agent({ keepAlive: true, ca: o.ca });
  const st = { conns: 0, frames: 0, ok: 0, failed: 0 };

  // Resolves true on a 2xx. The key lets the receiver count duplicates the
  // same way it does for the bridge.
  function post(body) {
    return new Promise((resolve) => {
      const req = https.request(o.upstream, {
        // family 4: the bench's receivers listen on 127.0.0.1 only, and
        // node 18 tries ::1 first for localhost without falling back.
        method: 'POST', agent, timeout: o.timeoutMs, family: 4,
        headers: {
          'Content-Type': 'application/hl7-v2', 'Content-Length': body.length,
          'Idempotency-Key': crypto.randomUUID(),
        },
      }, (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode >= 200 && res.statusCode < 300));
        res.on('error', () => resolve(false));
      });
      req.on('timeout', () => req.destroy(new Error('timeout')));
      req.on('error', () => resolve(false));
      req.end(body);
    });
  }

  const server = net.createServer((sock) => {
    st.conns++;
    sock.setNoDelay(true);
    let buf = Buffer.alloc(0);
    let tail = Promise.resolve(); // the ACKs go out in arrival order
    sock.on('data', (chunk) => {
      buf = buf.length ? Buffer.concat([buf, chunk]) : chunk;
      for (;;) {
        const sb = buf.indexOf(SB);
        if (sb < 0) { buf = Buffer.alloc(0); return; }
        const eb = buf.indexOf(EB, sb + 1);
        if (eb < 0) {
          buf = buf.subarray(sb);
          if (buf.length > MAX_FRAME) sock.destroy();
          return;
        }
        const body = buf.subarray(sb + 1, eb);
        buf = buf.subarray(eb + 1);
        st.frames++;
        const payload = body.toString('latin1');
        const done = post(Buffer.from(body));
        tail = tail.then(() => done).then((ok) => {
          ok ? st.ok++ : st.failed++;
          if (!sock.destroyed) sock.write(hl7Ack(payload, ok ? 'AA' : 'AE'));
        });
      }
    });
    sock.on('error', () => {});
  });

  const colon = o.listen.lastIndexOf(':');
  server.listen(Number(o.listen.slice(colon + 1)), o.listen.slice(0, colon), () => {
    process.stderr.write(`forwarder: listening on ${o.listen}, to ${o.upstream.href}\n`);
  });
  server.on('error', (e) => {
    process.stderr.write(`forwarder: ${e.message}\n`);
    process.exit(2);
  });
  const stop = () => {
    process.stdout.write(`forwarder conns=${st.conns} frames=${st.frames} ok=${st.ok} failed=${st.failed}\n`);
    process.exit(0);
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

try {
  main();
} catch (e) {
  process.stderr.write(`forwarder: ${e.message}\n`);
  process.exit(2);
}
