// A minimal mesh coordinator on Node `socket.io` 4.8.4: the v1 subset (hello/welcome with
// resume, dispatch, job events applied by seq with cumulative acks, cancel, heartbeats, token
// rejection), built from the golden fixtures of the mesh-protocol crate. The kimaki test suite
// runs it to prove interoperability with the reference Socket.IO server.
//
//   node mesh-coordinator.mjs --fixtures <dir> [--token T] [--reject CODE] [--heartbeat-ms N]
//
// stdout: one JSON object per line: {"type":"listening","port":N}, then "connect", "rejected",
// "hello", "ack", "event", "cancel.result", "finished" (with every applied event), "bye".
// stdin: one JSON command per line: {"cmd":"dispatch","gatewayId":…,"spec":{…}},
// {"cmd":"cancel","jobId":…,"reason":"user"}, {"cmd":"reject","code":"AUTH_INVALID"|null},
// {"cmd":"quit"}.

import { createServer } from "node:http";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { randomUUID } from "node:crypto";
import { Server } from "socket.io";

const args = process.argv.slice(2);
const arg = (name, fallback) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 && i + 1 < args.length ? args[i + 1] : fallback;
};
const fixturesDir = arg("fixtures", null);
if (!fixturesDir) {
  console.error("--fixtures <mesh-protocol/tests/fixtures> is required");
  process.exit(2);
}
const fixture = (name) => JSON.parse(readFileSync(join(fixturesDir, `${name}.json`), "utf8"));
const tokens = [arg("token", "gw_at_test")];
let rejectCode = arg("reject", null);
const heartbeatMs = Number(arg("heartbeat-ms", "300"));

const out = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");
const msgId = () => randomUUID();

/** gatewayId → socket (the live session). */
const sockets = new Map();
/** jobId → {jobId, leaseId, gatewayId, ackedSeq, buffer: Map, applied: [], dispatch} */
const jobs = new Map();

const httpServer = createServer();
const io = new Server(httpServer, {
  transports: ["websocket"],
  pingInterval: 1000,
  pingTimeout: 1000,
  maxHttpBufferSize: 1e6,
});
const mesh = io.of("/mesh");

mesh.use((socket, next) => {
  const auth = socket.handshake.auth || {};
  const refuse = (code, message) => {
    const err = new Error(message);
    err.data = { code, message, retryable: code !== "AUTH_INVALID" };
    out({ type: "rejected", code, gatewayId: auth.gatewayId });
    next(err);
  };
  if (rejectCode) return refuse(rejectCode, `refused with ${rejectCode}`);
  if (!tokens.includes(auth.token)) return refuse("AUTH_INVALID", "unknown or revoked token");
  if (!auth.protocol || auth.protocol.min > 1 || auth.protocol.max < 1) {
    return refuse("PROTOCOL_UNSUPPORTED", "no common version");
  }
  next();
});

const ackFor = (job) => ({
  ...fixture("job.events.ack"),
  msgId: msgId(),
  jobId: job.jobId,
  leaseId: job.leaseId,
  ackedSeq: job.ackedSeq,
  window: 256,
});

const sendDispatch = (job) => {
  const socket = sockets.get(job.gatewayId);
  if (socket) socket.emit("job.dispatch", job.dispatch);
};

mesh.on("connection", (socket) => {
  const auth = socket.handshake.auth;
  out({ type: "connect", gatewayId: auth.gatewayId, connEpoch: auth.connEpoch });
  sockets.set(auth.gatewayId, socket);
  socket.on("disconnect", () => {
    if (sockets.get(auth.gatewayId) === socket) sockets.delete(auth.gatewayId);
  });

  socket.on("hello", (hello) => {
    out({ type: "hello", hello });
    const resume = (hello.resume?.jobs ?? []).map((claim) => {
      const job = jobs.get(claim.jobId);
      const known = job && job.leaseId === claim.leaseId;
      return {
        jobId: claim.jobId,
        leaseId: claim.leaseId,
        ackedSeq: known ? job.ackedSeq : 0,
        action: known ? "continue" : "forget",
      };
    });
    socket.emit("welcome", {
      ...fixture("welcome"),
      msgId: msgId(),
      re: hello.msgId,
      sessionId: `s_${msgId()}`,
      serverTime: new Date().toISOString(),
      heartbeatMs,
      // The fixture's example endpoints do not exist; this peer is the only one.
      endpoints: undefined,
      features: (hello.features ?? []).filter((f) => fixture("welcome").features.includes(f)),
      resume,
    });
    for (const job of jobs.values()) {
      if (job.gatewayId === auth.gatewayId && !job.acked) sendDispatch(job);
    }
  });

  socket.on("heartbeat", (hb) => {
    socket.emit("heartbeat.ok", {
      msgId: msgId(),
      re: hb.msgId,
      serverTime: new Date().toISOString(),
      leases: (hb.running ?? []).map((r) => ({
        jobId: r.jobId,
        leaseId: r.leaseId,
        expiresAt: new Date(Date.now() + 60000).toISOString(),
      })),
    });
  });

  socket.on("job.ack", (ack) => {
    const job = jobs.get(ack.jobId);
    if (job && job.leaseId === ack.leaseId) job.acked = true;
    out({ type: "ack", ack });
  });

  socket.on("job.event", (ev) => {
    const job = jobs.get(ev.jobId);
    if (!job || job.leaseId !== ev.leaseId) {
      socket.emit("mesh.error", {
        msgId: msgId(),
        re: ev.msgId,
        error: { code: "UNKNOWN_JOB", message: `no job ${ev.jobId}`, retryable: false, details: { jobId: ev.jobId } },
      });
      return;
    }
    if (ev.seq > job.ackedSeq) job.buffer.set(ev.seq, ev);
    while (job.buffer.has(job.ackedSeq + 1)) {
      const next = job.buffer.get(job.ackedSeq + 1);
      job.buffer.delete(job.ackedSeq + 1);
      job.ackedSeq = next.seq;
      job.applied.push(next);
      out({ type: "event", jobId: job.jobId, seq: next.seq, eventType: next.type });
      if (next.type === "finished") out({ type: "finished", jobId: job.jobId, events: job.applied });
    }
    socket.emit("job.events.ack", ackFor(job));
  });

  socket.on("job.cancel.result", (r) => out({ type: "cancel.result", result: r }));
  socket.on("job.input.result", (r) => out({ type: "input.result", result: r }));
  socket.on("inventory.update", (u) => out({ type: "inventory", rev: u.rev }));
  socket.on("bye", (b) => out({ type: "bye", bye: b }));
});

const commands = createInterface({ input: process.stdin });
commands.on("line", (line) => {
  let cmd;
  try {
    cmd = JSON.parse(line);
  } catch {
    out({ type: "error", message: `not JSON: ${line}` });
    return;
  }
  switch (cmd.cmd) {
    case "dispatch": {
      const template = fixture("job.dispatch");
      const jobId = `job_${msgId()}`;
      const job = {
        jobId,
        leaseId: `ls_${msgId()}`,
        gatewayId: cmd.gatewayId,
        ackedSeq: 0,
        buffer: new Map(),
        applied: [],
        acked: false,
      };
      job.dispatch = {
        ...template,
        msgId: msgId(),
        jobId,
        leaseId: job.leaseId,
        createdAt: new Date().toISOString(),
        spec: { ...template.spec, ...cmd.spec },
      };
      jobs.set(jobId, job);
      out({ type: "dispatched", jobId });
      sendDispatch(job);
      break;
    }
    case "cancel": {
      const job = jobs.get(cmd.jobId);
      const socket = job && sockets.get(job.gatewayId);
      if (socket) {
        socket.emit("job.cancel", {
          ...fixture("job.cancel"),
          msgId: msgId(),
          jobId: job.jobId,
          leaseId: job.leaseId,
          reason: cmd.reason ?? "user",
          graceMs: 1000,
        });
      }
      break;
    }
    case "reject":
      rejectCode = cmd.code ?? null;
      break;
    case "quit":
      io.close();
      process.exit(0);
  }
});
commands.on("close", () => process.exit(0));

httpServer.listen(0, "127.0.0.1", () => out({ type: "listening", port: httpServer.address().port }));
