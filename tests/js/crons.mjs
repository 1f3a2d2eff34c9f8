// The JS SDK's cron calls against a real runyard (tests/test_crons.py).
//
//   node tests/js/crons.mjs http://127.0.0.1:PORT
//
// Prints ONE JSON object of observations on stdout and asserts nothing:
// the Python test does. Any failure exits non-zero with the error on stderr.

import { Client } from "@langchain/langgraph-sdk";

const url = process.argv[2];
if (!url) {
  console.error("usage: node crons.mjs SERVER_URL");
  process.exit(2);
}
const client = new Client({ apiUrl: url, callerOptions: { maxRetries: 0 } });
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

const thread = await client.threads.create();
const created = await client.crons.createForThread(thread.thread_id, "echo", {
  schedule: "* * * * * *",
  input: { from: "js" },
});
const createdThreadless = await client.crons.create("echo", {
  schedule: "0 9 * * *",
  onRunCompleted: "keep",
});
const found = await client.crons.search({ assistantId: "echo" });
const count = await client.crons.count({ assistantId: "echo" });
await sleep(2000);
const fired = (await client.runs.list(thread.thread_id)).filter(
  (run) => run.metadata.cron_id === created.cron_id,
).length;
const updated = await client.crons.update(created.cron_id, { enabled: false });
await client.crons.delete(created.cron_id);
const countAfterDelete = await client.crons.count();

console.log(
  JSON.stringify({
    created,
    created_threadless: createdThreadless,
    search_ids: found.map((cron) => cron.cron_id).sort(),
    count,
    fired,
    updated,
    count_after_delete: countAfterDelete,
  }),
);
