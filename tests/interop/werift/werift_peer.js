#!/usr/bin/env node
// A werift-ice peer for interop tests, driven by JSON lines on stdin/stdout:
// the protocol of tests/interop/nice_peer.py (its docstring has the details).
//
//   node tests/interop/werift/werift_peer.js --role controlling|controlled
//        [--local-address 127.0.0.1] [--stun HOST:PORT]
//        [--turn HOST:PORT --turn-user U --turn-password P
//         --turn-transport udp|tcp|tls [--turn-ca CERT.pem]] [--relay-only]
//        [--max-life SECONDS]
//
// werift-ice (npm install in this directory: package.json, package-lock.json)
// gathers UDP host candidates on --local-address only: its interface scan is
// replaced by an empty list, the address given as an additional one, so no
// traffic leaves it. Every datagram received is sent back unchanged (those
// that come before its connect() resolved, once it has).
//
// Output: {"event": "local-description", "ufrag", "pwd", "candidates"} once
// gathering is done; {"event": "state", "state", "seconds"} on each change;
// {"event": "connected", "seconds"} when its connect() resolved;
// {"event": "error", "message"}; last {"event": "exit", "reason",
// "received", "echoed"}. Input: {"ufrag", "pwd", "candidates": [...]} (the
// remote description, end-of-candidates after it), {"cmd": "quit"}; EOF on
// stdin quits too.
"use strict";

const fs = require("fs");
const readline = require("readline");
const utils = require("werift-ice/lib/ice/src/utils");
const { Connection, Candidate } = require("werift-ice");

function parseArgs(argv) {
  const args = { role: "controlling", localAddress: "127.0.0.1", maxLife: 60 };
  for (let i = 0; i < argv.length; i++) {
    const name = argv[i];
    const value = () => argv[++i];
    if (name === "--role") args.role = value();
    else if (name === "--local-address") args.localAddress = value();
    else if (name === "--stun") args.stun = value();
    else if (name === "--turn") args.turn = value();
    else if (name === "--turn-user") args.turnUser = value();
    else if (name === "--turn-password") args.turnPassword = value();
    else if (name === "--turn-transport") args.turnTransport = value();
    else if (name === "--turn-ca") args.turnCa = value();
    else if (name === "--relay-only") args.relayOnly = true;
    else if (name === "--max-life") args.maxLife = Number(value());
    else throw new Error(`unknown argument ${name}`);
  }
  return args;
}

function address(text) {
  const at = text.lastIndexOf(":");
  return [text.slice(0, at), Number(text.slice(at + 1))];
}

function emit(event, fields) {
  process.stdout.write(JSON.stringify({ event, ...fields }) + "\n");
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  utils.getHostAddresses = () => [];
  const options = {
    useIpv4: true,
    useIpv6: false,
    additionalHostAddresses: [args.localAddress],
    interfaceAddresses: { udp4: args.localAddress },
  };
  if (args.stun) options.stunServer = address(args.stun);
  if (args.turn) {
    options.turnServer = address(args.turn);
    options.turnUsername = args.turnUser;
    options.turnPassword = args.turnPassword;
    options.turnTransport = args.turnTransport;
    if (args.turnCa) options.turnTlsOptions = { ca: fs.readFileSync(args.turnCa) };
  }
  if (args.relayOnly) options.forceTurn = true;
  const conn = new Connection(args.role === "controlling", options);
  let received = 0;
  let echoed = 0;
  let started = null;
  let done = false;
  const quit = async (reason) => {
    if (done) return;
    done = true;
    try {
      await conn.close();
    } catch (err) {
      emit("error", { message: String(err) });
    }
    emit("exit", { reason, received, echoed });
    process.exit(0);
  };
  conn.stateChanged.subscribe((state) => {
    const seconds = started === null ? null : (Date.now() - started) / 1000;
    emit("state", { state, seconds });
  });
  // werift sends nothing (silently) until its connect() has resolved and
  // started consent freshness, which can be after the other agent completed
  // and sent its first datagram: those are queued (at most 1024) and echoed
  // once it has, as the libnice peer does before it selects a pair.
  let ready = false;
  const pending = [];
  const echo = async (data) => {
    try {
      await conn.send(data);
      echoed++;
    } catch (err) {
      emit("error", { message: `send: ${err}` });
    }
  };
  conn.onData.subscribe(async (data) => {
    received++;
    if (ready) await echo(data);
    else if (pending.length < 1024) pending.push(data);
  });
  setTimeout(() => quit("max-life"), args.maxLife * 1000).unref();
  await conn.gatherCandidates();
  emit("local-description", {
    ufrag: conn.localUsername,
    pwd: conn.localPassword,
    candidates: conn.localCandidates.map((c) => "candidate:" + c.toSdp()),
  });
  const lines = readline.createInterface({ input: process.stdin });
  lines.on("close", () => quit("stdin-eof"));
  for await (const line of lines) {
    let msg;
    try {
      msg = JSON.parse(line);
    } catch (err) {
      emit("error", { message: `not JSON: ${line}` });
      continue;
    }
    if (msg.cmd === "quit") {
      await quit("quit");
    } else if (msg.ufrag !== undefined) {
      started = Date.now();
      conn.setRemoteParams({
        iceLite: false,
        usernameFragment: msg.ufrag,
        password: msg.pwd,
      });
      for (const sdp of msg.candidates) {
        await conn.addRemoteCandidate(Candidate.fromSdp(sdp.replace(/^(a=)?candidate:/, "")));
      }
      await conn.addRemoteCandidate(undefined);
      conn
        .connect()
        .then(async () => {
          ready = true;
          emit("connected", { seconds: (Date.now() - started) / 1000 });
          while (pending.length) await echo(pending.shift());
        })
        .catch((err) => emit("error", { message: `connect: ${err}` }));
    }
  }
}

main().catch((err) => {
  emit("error", { message: String(err && err.stack ? err.stack : err) });
  emit("exit", { reason: "error", received: 0, echoed: 0 });
  process.exit(1);
});
