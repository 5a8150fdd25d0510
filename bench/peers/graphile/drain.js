// The queue peer of `galantis bench queue`: graphile-worker 0.17 draining the
// same bulk of no-op jobs, timed from the runner's start to the last
// completion. Prints one JSON line.
//
//   node drain.js POSTGRES_URL [JOBS=20000] [default|batched]
//
// default: concurrency 10, one job locked and completed at a time.
// batched: local queue of 500 locked jobs, completions batched (a crash
// re-runs every locked or uncompleted job of the batch).
"use strict";
const { run, runMigrations, makeWorkerUtils, Logger } = require("graphile-worker");
const { Pool } = require("pg");

async function main() {
  const [url, jobsArg, modeArg] = process.argv.slice(2);
  if (!url) throw new Error("usage: node drain.js POSTGRES_URL [JOBS] [default|batched]");
  const jobs = Number(jobsArg || 20000);
  const mode = modeArg || "default";
  const logger = new Logger(() => () => {});
  const pgPool = new Pool({ connectionString: url, max: 20 });
  pgPool.on("error", (e) => console.error(e));
  await runMigrations({ pgPool, logger });
  const utils = await makeWorkerUtils({ pgPool, logger });
  for (let left = jobs; left > 0; left -= 1000) {
    const n = Math.min(left, 1000);
    await utils.addJobs(Array.from({ length: n }, () => ({ identifier: "noop", payload: {} })));
  }
  await utils.release();

  const worker =
    mode === "batched"
      ? { concurrentJobs: 10, localQueue: { size: 500 }, completeJobBatchDelay: 0, failJobBatchDelay: 0 }
      : { concurrentJobs: 10 };
  let done = 0;
  let finished;
  const allDone = new Promise((resolve) => (finished = resolve));
  const started = process.hrtime.bigint();
  const runner = await run({
    pgPool,
    logger,
    noHandleSignals: true,
    preset: { worker: { ...worker, pollInterval: 1000 } },
    taskList: {
      noop: async () => {
        done += 1;
        if (done >= jobs) finished();
      },
    },
  });
  let completed = 0;
  await allDone;
  // Completion may lag the task in batched mode: wait until the table is empty.
  for (;;) {
    const r = await pgPool.query("select count(*)::int as n from graphile_worker._private_jobs");
    completed = jobs - r.rows[0].n;
    if (r.rows[0].n === 0) break;
    await new Promise((res) => setTimeout(res, 5));
  }
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  await runner.stop();
  await pgPool.end();
  process.stdout.write(
    JSON.stringify({ peer: "graphile-worker", version: require("graphile-worker/package.json").version, mode, jobs, completed, seconds, jobs_per_s: jobs / seconds }) + "\n",
  );
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
