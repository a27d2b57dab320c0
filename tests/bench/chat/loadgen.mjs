// The chat fan-out load generator, the same for every server of the benchmark.
//
//   node loadgen.mjs '<config JSON>'      (tests/bench/bench_chat.py builds the config)
//
// The main process forks `workers` children that open `sockets` subscriber sockets
// between them (spread over `urls`), then publishes `rate` messages/s through
// `publishers` sockets for `warmup` + `seconds`. Each message carries its send time
// (µs, performance.timeOrigin + performance.now(): one clock for every process here).
// Only deliveries received inside the measured window count: delivered/s, and the
// latency histogram (0.1 ms buckets) from which p50/p99 come. The last stdout line is
// the result as JSON.
//
// mode "centrifugo": the Centrifugo client protocol (JSON), for VideoPick and Centrifugo;
// mode "plain": the message itself is the frame, for the ws broadcast peer.
import { fork } from "node:child_process";
import { performance } from "node:perf_hooks";
import { fileURLToPath } from "node:url";
import { WebSocket } from "ws";

const BUCKET_MS = 0.1;
const BUCKETS = 600_000; // 60 s; anything later lands in the last bucket
const MARK = '"text":"b ';
const nowMs = () => performance.timeOrigin + performance.now();

// --- worker: subscriber sockets ---------------------------------------------------------

function runWorker() {
  const hist = new Uint32Array(BUCKETS);
  // VideoPick's pushes carry the decision time ("ts", ms): send → decision, apart.
  const decidedHist = new Uint32Array(BUCKETS);
  let decided = 0;
  const sockets = [];
  let t0 = Infinity;
  let t1 = -Infinity;
  let inWindow = 0; // deliveries received inside [t0, t1)
  let ofWindow = 0; // deliveries of messages sent inside [t0, t1), whenever received
  let closedEarly = 0;
  let finishing = false;
  let cpuAtGo = null;
  let wallAtGo = 0;
  const closeCodes = {};

  // Every send time in a frame: scans for the marker, so a batched frame costs one pass.
  function scan(text, t) {
    let at = text.indexOf(MARK);
    while (at !== -1) {
      const start = at + MARK.length;
      const end = text.indexOf(" ", start);
      const sentUs = Number(text.slice(start, end));
      const sent = sentUs / 1000;
      if (t >= t0 && t < t1) {
        inWindow++;
        const bucket = Math.min(BUCKETS - 1, Math.max(0, Math.floor((t - sent) / BUCKET_MS)));
        hist[bucket]++;
        const tsAt = text.indexOf('"ts":', end);
        if (tsAt !== -1 && tsAt - end < 8) {
          const decidedAt = Number.parseInt(text.slice(tsAt + 5, tsAt + 20), 10);
          decidedHist[Math.min(BUCKETS - 1, Math.max(0, Math.floor((decidedAt - sent) / BUCKET_MS)))]++;
          decided++;
        }
      }
      if (sent >= t0 && sent < t1) ofWindow++;
      at = text.indexOf(MARK, end);
    }
  }

  function open(config, url) {
    return new Promise((resolve) => {
      const ws = new WebSocket(url, { perMessageDeflate: false });
      let ready = false;
      const done = (ok, why) => {
        if (!ready) {
          ready = true;
          resolve({ ok, why });
        }
      };
      ws.on("open", () => {
        if (config.mode === "plain") {
          done(true);
          return;
        }
        ws.send(
          `{"id":1,"connect":{}}\n{"id":2,"subscribe":{"channel":${JSON.stringify(config.channel)}}}`,
        );
      });
      ws.on("message", (data) => {
        const t = nowMs();
        const text = data.toString();
        if (config.mode === "plain") {
          scan(text, t);
          return;
        }
        for (const line of text.split("\n")) {
          if (line.startsWith('{"push"')) scan(line, t);
          else if (line === "{}") ws.send("{}"); // the server's ping: pong
          else if (!ready && line.startsWith('{"id":2,')) {
            done(!line.startsWith('{"id":2,"error"'), line.slice(0, 200));
          } else if (!ready && line.startsWith('{"id":1,"error"')) done(false, line.slice(0, 200));
        }
      });
      ws.on("error", (err) => done(false, String(err)));
      ws.on("close", (code) => {
        done(false, `closed ${code}`);
        if (!finishing) {
          closedEarly++;
          closeCodes[code] = (closeCodes[code] || 0) + 1;
        }
      });
      sockets.push(ws);
    });
  }

  // The main process is gone (finished or failed): nobody wants these sockets.
  process.on("disconnect", () => process.exit(0));
  process.on("message", async (msg) => {
    if (msg.cmd === "start") {
      const { config, index } = msg;
      let connected = 0;
      const failures = [];
      const mine = [];
      for (let g = index; g < config.sockets; g += config.workers) mine.push(g);
      for (let i = 0; i < mine.length; i += config.connect_concurrency) {
        const batch = mine.slice(i, i + config.connect_concurrency);
        const results = await Promise.all(batch.map((g) => open(config, config.urls[g % config.urls.length])));
        for (const r of results) {
          if (r.ok) connected++;
          else if (failures.length < 5) failures.push(r.why);
        }
      }
      process.send({ cmd: "ready", connected, failed: mine.length - connected, failures });
    } else if (msg.cmd === "go") {
      t0 = msg.t0;
      t1 = msg.t1;
      cpuAtGo = process.cpuUsage();
      wallAtGo = nowMs();
    } else if (msg.cmd === "finish") {
      finishing = true;
      const cpu = process.cpuUsage(cpuAtGo);
      // Stop the inflow first: a saturated server may still be sending its backlog.
      for (const ws of sockets) ws.terminate();
      const buckets = [];
      for (let i = 0; i < BUCKETS; i++) if (hist[i]) buckets.push([i, hist[i]]);
      const decidedBuckets = [];
      for (let i = 0; i < BUCKETS; i++) if (decidedHist[i]) decidedBuckets.push([i, decidedHist[i]]);
      process.send(
        {
          cmd: "result",
          inWindow,
          ofWindow,
          closedEarly,
          closeCodes,
          buckets,
          decidedBuckets,
          decided,
          cpu: (cpu.user + cpu.system) / 1000 / (nowMs() - wallAtGo),
        },
        // Exit once the result is through the pipe (a wide histogram is megabytes).
        () => process.exit(0),
      );
    }
  });
}

// --- main: publishers and the verdict ---------------------------------------------------

function openPublisher(config, url, token) {
  return new Promise((resolve, reject) => {
    const full = config.mode === "plain" ? `${url}?role=pub` : url;
    const ws = new WebSocket(full, { perMessageDeflate: false });
    const stats = { ok: 0, errors: 0, firstError: "" };
    ws.on("open", () => {
      if (config.mode === "plain") resolve({ ws, stats });
      else ws.send(`{"id":1,"connect":{"token":${JSON.stringify(token)}}}`);
    });
    ws.on("message", (data) => {
      for (const line of data.toString().split("\n")) {
        if (line === "{}") ws.send("{}");
        else if (line.startsWith('{"id":1,')) {
          if (line.includes('"error"')) reject(new Error(`publisher connect: ${line}`));
          else resolve({ ws, stats });
        } else if (line.startsWith('{"id":')) {
          if (line.includes('"error"')) {
            stats.errors++;
            if (!stats.firstError) stats.firstError = line.slice(0, 200);
          } else stats.ok++;
        }
      }
    });
    ws.on("error", reject);
  });
}

function waitFor(children, cmd, timeoutMs) {
  return Promise.all(
    children.map(
      (child) =>
        new Promise((resolve, reject) => {
          const timer = setTimeout(() => reject(new Error(`no ${cmd} in ${timeoutMs} ms`)), timeoutMs);
          const on = (msg) => {
            if (msg.cmd === cmd) {
              clearTimeout(timer);
              child.off("message", on);
              resolve(msg);
            }
          };
          child.on("message", on);
        }),
    ),
  );
}

function percentile(hist, total, p) {
  if (!total) return null;
  const rank = Math.ceil(total * p);
  let seen = 0;
  for (const [bucket, count] of hist) {
    seen += count;
    if (seen >= rank) return (bucket + 1) * BUCKET_MS;
  }
  return null;
}

async function runMain(config) {
  const self = fileURLToPath(import.meta.url);
  const children = [];
  for (let index = 0; index < config.workers; index++) {
    const child = fork(self, ["--worker"], { stdio: ["ignore", "inherit", "inherit", "ipc"] });
    children.push(child);
    child.send({ cmd: "start", config, index });
  }
  const ready = await waitFor(children, "ready", config.connect_timeout_s * 1000);
  const connected = ready.reduce((n, r) => n + r.connected, 0);
  const failures = ready.flatMap((r) => r.failures);

  const publishers = [];
  for (let i = 0; i < config.publishers; i++) {
    publishers.push(await openPublisher(config, config.urls[i % config.urls.length], config.token));
  }
  const start = nowMs();
  const t0 = start + config.warmup * 1000;
  const t1 = t0 + config.seconds * 1000;
  for (const child of children) child.send({ cmd: "go", t0, t1 });

  let sent = 0;
  let sentInWindow = 0;
  let id = 1;
  const channel = JSON.stringify(config.channel);
  await new Promise((resolve) => {
    const timer = setInterval(() => {
      const t = nowMs();
      if (t >= t1) {
        clearInterval(timer);
        resolve();
        return;
      }
      const due = Math.floor(((t - start) / 1000) * config.rate);
      while (sent < due) {
        const ts = Math.round(nowMs() * 1000);
        const text = `b ${ts} ${sent}`;
        const { ws } = publishers[sent % publishers.length];
        id++;
        if (config.mode === "plain") ws.send(`{"text":"${text}"}`);
        else ws.send(`{"id":${id},"publish":{"channel":${channel},"data":{"text":"${text}"}}}`);
        if (ts / 1000 >= t0) sentInWindow++;
        sent++;
      }
    }, 2);
  });
  await new Promise((resolve) => setTimeout(resolve, config.drain * 1000));
  // A saturated worker reads its backlog before this message: give it time.
  const finished = waitFor(children, "result", 180_000);
  for (const child of children) child.send({ cmd: "finish" });
  const results = await finished;
  for (const { ws } of publishers) ws.terminate();

  const merged = new Map();
  const mergedDecided = new Map();
  let decided = 0;
  let inWindow = 0;
  let ofWindow = 0;
  let closedEarly = 0;
  const closeCodes = {};
  for (const r of results) {
    inWindow += r.inWindow;
    ofWindow += r.ofWindow;
    closedEarly += r.closedEarly;
    for (const [code, n] of Object.entries(r.closeCodes)) closeCodes[code] = (closeCodes[code] || 0) + n;
    for (const [bucket, count] of r.buckets) merged.set(bucket, (merged.get(bucket) || 0) + count);
    for (const [bucket, count] of r.decidedBuckets) mergedDecided.set(bucket, (mergedDecided.get(bucket) || 0) + count);
    decided += r.decided;
  }
  const hist = [...merged.entries()].sort((a, b) => a[0] - b[0]);
  const decidedHist = [...mergedDecided.entries()].sort((a, b) => a[0] - b[0]);
  const expected = sentInWindow * connected;
  const pubStats = publishers.map((p) => p.stats);
  const result = {
    connected,
    failed: config.sockets - connected,
    failures,
    rate: config.rate,
    seconds: config.seconds,
    offered_per_s: config.rate * connected,
    sent,
    sent_in_window: sentInWindow,
    delivered_per_s: inWindow / config.seconds,
    p50_ms: percentile(hist, inWindow, 0.5),
    p99_ms: percentile(hist, inWindow, 0.99),
    decided_p50_ms: percentile(decidedHist, decided, 0.5),
    decided_p99_ms: percentile(decidedHist, decided, 0.99),
    max_ms: hist.length ? (hist[hist.length - 1][0] + 1) * BUCKET_MS : null,
    delivered_of_window: ofWindow,
    expected_of_window: expected,
    loss: expected ? 1 - ofWindow / expected : null,
    publish_ok: pubStats.reduce((n, s) => n + s.ok, 0),
    publish_errors: pubStats.reduce((n, s) => n + s.errors, 0),
    first_publish_error: pubStats.map((s) => s.firstError).find((e) => e) || "",
    closed_early: closedEarly,
    close_codes: closeCodes,
    loadgen_cpu_per_worker: results.map((r) => Math.round(r.cpu * 100) / 100),
  };
  console.log(JSON.stringify(result));
  for (const child of children) if (child.connected) child.disconnect();
}

if (process.argv[2] === "--worker") runWorker();
else {
  const defaults = { workers: 2, publishers: 4, warmup: 2, seconds: 10, drain: 3, connect_concurrency: 50, connect_timeout_s: 180, token: "" };
  runMain({ ...defaults, ...JSON.parse(process.argv[2]) }).catch((err) => {
    console.error(err);
    process.exit(1);
  });
}
