// The peer in the queue benchmark: graphile-worker (installed from npm by
// scripts/bench.sh into target/bench/graphile) on the same Postgres, with the
// same workload as server/benches/queue.rs: N no-op jobs added one at a time
// by one client, then drained with 1, 2 and 4 concurrent slots; then
// add->start latency on an idle runner. Prints Markdown rows.
const path = require("path");
const { run, quickAddJob, runMigrations, Logger } = require(path.join(process.env.GRAPHILE_DIR, "node_modules", "graphile-worker"));
const { Pool } = require(path.join(process.env.GRAPHILE_DIR, "node_modules", "pg"));

const connectionString = process.env.DATABASE_URL;
const N = Number(process.env.BENCH_JOBS || 3000);
// Silent, as our workers log nothing per job at the benchmark's level.
const logger = new Logger(() => () => {});

async function pending(pool) {
  const r = await pool.query("select count(*)::int as n from graphile_worker._private_jobs");
  return r.rows[0].n;
}

async function main() {
  const pool = new Pool({ connectionString });
  await runMigrations({ pgPool: pool, logger });
  console.log("| slots | jobs | add (jobs/s, 1 client) | run (jobs/s) |");
  console.log("|---|---|---|---|");
  for (const concurrency of [1, 2, 4]) {
    await pool.query("delete from graphile_worker._private_jobs");
    let t = process.hrtime.bigint();
    for (let i = 0; i < N; i++) await quickAddJob({ pgPool: pool, logger }, "noop", {});
    const addRate = N / (Number(process.hrtime.bigint() - t) / 1e9);
    t = process.hrtime.bigint();
    const runner = await run({ pgPool: pool, concurrency, noHandleSignals: true, logger, pollInterval: 200, taskList: { noop: async () => {} } });
    while ((await pending(pool)) > 0) await new Promise((r) => setTimeout(r, 10));
    const runRate = N / (Number(process.hrtime.bigint() - t) / 1e9);
    await runner.stop();
    console.log(`| ${concurrency} | ${N} | ${addRate.toFixed(0)} | ${runRate.toFixed(0)} |`);
  }
  // Latency: 2 idle slots, jobs added one at a time.
  const latencies = [];
  const runner = await run({
    pgPool: pool, concurrency: 2, noHandleSignals: true, logger, pollInterval: 200,
    taskList: { noop: async (payload) => { latencies.push(Date.now() - payload.t); } },
  });
  await new Promise((r) => setTimeout(r, 300));
  for (let i = 0; i < 500; i++) {
    await quickAddJob({ pgPool: pool, logger }, "noop", { t: Date.now() });
    await new Promise((r) => setTimeout(r, 5));
  }
  while (latencies.length < 500) await new Promise((r) => setTimeout(r, 10));
  await runner.stop();
  latencies.sort((a, b) => a - b);
  const pct = (p) => latencies[Math.round((latencies.length - 1) * p)];
  console.log(`\ngraphile-worker add->start latency over 500 jobs (2 idle slots): p50 ${pct(0.5)} ms, p99 ${pct(0.99)} ms, max ${pct(1)} ms`);
  await pool.end();
}

main().catch((e) => { console.error(e); process.exit(1); });
