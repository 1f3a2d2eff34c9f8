// A run with a webhook, created through the JS SDK (tests/test_webhooks.py).
//
//   node tests/js/webhook.mjs http://127.0.0.1:PORT WEBHOOK_URL
//
// Prints the run's id on stdout; the Python test checks what the receiver got.

import { Client } from "@langchain/langgraph-sdk";

const [url, webhook] = process.argv.slice(2);
if (!url || !webhook) {
  console.error("usage: node webhook.mjs SERVER_URL WEBHOOK_URL");
  process.exit(2);
}
const client = new Client({ apiUrl: url, callerOptions: { maxRetries: 0 } });
const run = await client.runs.create(null, "echo", { input: { via: "js" }, webhook });
console.log(run.run_id);
