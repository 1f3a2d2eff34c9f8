// The agent-chat-ui call sequence (see LANGGRAPH.md), driven with the official JS SDK.
//
//   node tests/js/chat_flow.mjs http://127.0.0.1:PORT
//
// Serves examples/chat (graph "chat"). Prints ONE JSON object of observations
// on stdout and asserts nothing: tests/test_chat_flow.py does. A step that
// throws is recorded as {"failed": "..."} and the sequence goes on, so one
// missing server feature does not hide the others.
//
// What useStream (React, @langchain/langgraph-sdk/react) does is copied
// here, with the SDK's own branching helpers: the head checkpoint sent with
// each turn (thread_id removed), history {limit: 10} after every run, the
// parent checkpoint of a message for edit and regenerate.

import { randomUUID } from "node:crypto";
import { Client } from "@langchain/langgraph-sdk";
// The branching helpers useStream uses; the "./ui" entry would also load
// @langchain/core (an optional peer), so the file is imported by its path.
import {
  getBranchContext,
  getMessagesMetadataMap,
} from "./node_modules/@langchain/langgraph-sdk/dist/ui/branching.js";

const GRAPH = "chat";
// What agent-chat-ui's submit sends (streamMode ["values"], plus "messages-tuple"
// tracked by useStream and "custom" for its onCustomEvent).
const STREAM = {
  streamMode: ["values", "messages-tuple", "custom"],
  streamSubgraphs: true,
  streamResumable: true,
  onDisconnect: "continue",
};
// Seconds between two tokens of the slow turns, long enough to leave mid-run.
const SLOW = { configurable: { token_delay: 0.05 } };
// Events read before the "page reload" of the slow turns.
const EVENTS_BEFORE_LEAVING = 6;

const url = process.argv[2];
if (!url) {
  console.error("usage: node chat_flow.mjs SERVER_URL");
  process.exit(2);
}
// No retries: a missing route should fail at once, not after the back-off.
const client = new Client({ apiUrl: url, callerOptions: { maxRetries: 0 } });
const obs = {};

// Each step is named on stderr: a flow that hangs shows where.
let stepNumber = 0;
function trace(what) {
  stepNumber += 1;
  console.error(`chat_flow: ${stepNumber} ${what}`);
}

async function attempt(fn) {
  try {
    return await fn();
  } catch (error) {
    return { failed: String(error?.message ?? error).slice(0, 500) };
  }
}

function text(message) {
  const content = message?.content;
  if (typeof content === "string") return content;
  if (Array.isArray(content)) {
    return content.map((b) => (typeof b === "string" ? b : (b?.text ?? ""))).join("");
  }
  return "";
}

function withoutThreadId(checkpoint) {
  if (checkpoint == null) return undefined;
  const { thread_id: _, ...rest } = checkpoint;
  return rest;
}

function human(words) {
  return { id: randomUUID(), type: "human", content: [{ type: "text", text: words }] };
}

function historySummary(history) {
  if (!Array.isArray(history)) return history;
  return history.map((s) => ({
    checkpoint_id: s.checkpoint?.checkpoint_id ?? null,
    parent_id: s.parent_checkpoint?.checkpoint_id ?? null,
    next: s.next,
    messages: (s.values?.messages ?? []).map(text),
    message_ids: (s.values?.messages ?? []).map((m) => m.id ?? null),
    tasks: (s.tasks ?? []).map((t) => ({ id: t.id, name: t.name, interrupts: t.interrupts ?? [] })),
    interrupts: s.interrupts ?? null,
    has_interrupt_value: "__interrupt__" in (s.values ?? {}),
    created_at: s.created_at ?? null,
  }));
}

function threadSummary(thread) {
  if (thread?.failed) return thread;
  return {
    thread_id: thread.thread_id,
    status: thread.status,
    interrupts: thread.interrupts ?? null,
    metadata: thread.metadata ?? {},
    values_keys: Object.keys(thread.values ?? {}),
    first_message: text(thread.values?.messages?.[0]),
    messages: (thread.values?.messages ?? []).map(text),
  };
}

function partsSummary(parts) {
  const values = parts.filter((p) => p.event === "values").map((p) => p.data);
  const last = values.at(-1) ?? {};
  return {
    events: parts.map((p) => p.event),
    ids: parts.map((p) => p.id ?? null),
    tokens: parts
      .filter((p) => p.event === "messages" && Array.isArray(p.data))
      .map((p) => (typeof p.data[0]?.content === "string" ? p.data[0].content : ""))
      .join(""),
    custom: parts.filter((p) => p.event === "custom").map((p) => p.data),
    errors: parts.filter((p) => p.event === "error").map((p) => p.data),
    last_values_messages: (last.messages ?? []).map(text),
    last_values_interrupt: last.__interrupt__ ?? null,
  };
}

// One thread as useStream keeps it: its id, the last history fetched, the branch shown.
class ChatSession {
  threadId = null;
  history = [];
  branch = "";

  context() {
    return getBranchContext(this.branch, this.history);
  }

  head() {
    return this.context().threadHead?.checkpoint ?? null;
  }

  // thread.getMessagesMetadata(message), as agent-chat-ui calls it.
  metadataOf(messageId) {
    const map = getMessagesMetadataMap({
      initialValues: {},
      history: this.history,
      getMessages: (values) => (Array.isArray(values?.messages) ? values.messages : []),
      branchContext: this.context(),
    });
    return map.find((m) => m.messageId === messageId);
  }

  async refetch() {
    this.history = await client.threads.getHistory(this.threadId, { limit: 10 });
    return this.history;
  }

  // useStream's submit(values, options) with agent-chat-ui's options.
  async submit(values, options = {}) {
    const explicit = options.checkpoint;
    const before = this.context();
    if (explicit?.checkpoint_id != null) {
      this.branch = before.branchByCheckpoint[explicit.checkpoint_id]?.branch ?? "";
    }
    // An explicit null means "no checkpoint", as in useStream.
    const checkpoint =
      explicit === null ? undefined : withoutThreadId(explicit ?? before.threadHead?.checkpoint);
    if (!this.threadId) {
      this.threadId = (await client.threads.create({ metadata: options.metadata })).thread_id;
    }
    trace(`runs.stream ${JSON.stringify({ input: values, command: options.command, checkpoint })}`);
    const parts = [];
    let runId = null;
    let streamError = null;
    try {
      for await (const part of client.runs.stream(this.threadId, GRAPH, {
        ...STREAM,
        input: values,
        command: options.command,
        config: options.config,
        checkpoint,
        onRunCreated: (meta) => {
          runId = meta.run_id;
        },
      })) {
        parts.push(part);
      }
    } catch (error) {
      streamError = String(error?.message ?? error).slice(0, 500);
    }
    trace("history, thread");
    const history = await attempt(() => this.refetch());
    const thread = await attempt(() => client.threads.get(this.threadId));
    return {
      run_id: runId,
      sent_checkpoint: checkpoint ?? null,
      stream_error: streamError,
      ...partsSummary(parts),
      history: historySummary(history),
      thread: threadSummary(thread),
    };
  }
}

// Start a slow run, leave after a few events as a reloaded page does, then
// join its stream from the last id seen; once it ended, replay it from "-1"
// (what useStream's reconnectOnMount sends) and join it like /wait.
async function leaveAndRejoin(threadId, start) {
  const controller = new AbortController();
  let runId = null;
  const first = [];
  const source = start(controller.signal, (meta) => {
    runId = meta.run_id;
  });
  for await (const part of source) {
    first.push(part);
    if (part.event === "metadata" && runId == null) runId = part.data?.run_id ?? null;
    if (first.length >= EVENTS_BEFORE_LEAVING) {
      controller.abort();
      break;
    }
  }
  const lastEventId = first.at(-1)?.id;
  trace(`joinStream ${threadId} ${runId} Last-Event-ID ${lastEventId}`);
  const rest = [];
  const rejoin = await attempt(async () => {
    for await (const part of client.runs.joinStream(threadId, runId, { lastEventId })) {
      rest.push(part);
    }
  });
  trace("joinStream Last-Event-ID -1, runs.get, runs.join");
  const replay = [];
  const replayed = await attempt(async () => {
    for await (const part of client.runs.joinStream(threadId, runId, { lastEventId: "-1" })) {
      replay.push(part);
    }
  });
  // The SDK reads and joins runs by thread only.
  const run = threadId == null ? null : await attempt(() => client.runs.get(threadId, runId));
  const joined = threadId == null ? null : await attempt(() => client.runs.join(threadId, runId));
  return {
    run_id: runId,
    last_event_id: lastEventId ?? null,
    first: partsSummary(first),
    rest: partsSummary(rest),
    rest_error: rejoin?.failed ?? null,
    replay: partsSummary(replay),
    replay_error: replayed?.failed ?? null,
    run_status: run?.failed ? run : (run?.status ?? null),
    joined: joined?.failed ? joined : joined && { messages: (joined.messages ?? []).map(text) },
  };
}

// 1. The front end checks the server.
obs.info_ok = await attempt(async () => (await fetch(`${url}/info`)).ok);

// 2. The sidebar: threads of this graph.
const sidebar = () =>
  attempt(async () =>
    (await client.threads.search({ metadata: { graph_id: GRAPH }, limit: 100, offset: 0 })).map(
      (t) => threadSummary(t),
    ),
  );
obs.sidebar_before = await sidebar();

// 3-5. A new thread, two turns; the second must see the first (checkpoints).
const chat = new ChatSession();
const firstMessage = human("hi, I am Ada");
obs.first = await attempt(() => chat.submit({ messages: [firstMessage] }));
obs.thread_id = chat.threadId;
const secondMessage = human("what did I say first?");
obs.second = await attempt(() => chat.submit({ messages: [secondMessage] }));
obs.state_after_second = await attempt(async () => {
  const state = await client.threads.getState(chat.threadId);
  return historySummary([state])[0];
});

// 7. Edit the second message: a fork from the parent of the state where it first appeared.
obs.edit = await attempt(async () => {
  const meta = chat.metadataOf(secondMessage.id);
  const parent = meta?.firstSeenState?.parent_checkpoint ?? null;
  const turn = await chat.submit(
    { messages: [{ type: "human", content: "what is my name?" }] },
    { checkpoint: parent },
  );
  return {
    fork_from: parent?.checkpoint_id ?? null,
    ...turn,
    head_after: chat.head()?.checkpoint_id ?? null,
  };
});

// 7. Regenerate the last answer: no input, the parent checkpoint of the answer.
obs.regenerate = await attempt(async () => {
  const messages = chat.context().threadHead?.values?.messages ?? [];
  const answer = messages.at(-1);
  const parent = chat.metadataOf(answer?.id)?.firstSeenState?.parent_checkpoint ?? null;
  const turn = await chat.submit(undefined, { checkpoint: parent });
  return { fork_from: parent?.checkpoint_id ?? null, old_answer_id: answer?.id ?? null, ...turn };
});

// 6. An interrupt: the graph asks for approval.
obs.approve = await attempt(() => chat.submit({ messages: [human("please approve the deploy")] }));
obs.state_interrupted = await attempt(
  async () => historySummary([await client.threads.getState(chat.threadId)])[0],
);
obs.join_interrupted = await attempt(() => client.runs.join(chat.threadId, obs.approve.run_id));

// 6. "Mark as resolved" (agent-chat-ui sends input {} with the command).
obs.goto_end = await attempt(() => chat.submit({}, { command: { goto: "__end__" } }));

// 6. Resume with a value.
obs.resume = await attempt(() => chat.submit({}, { command: { resume: "yes, ship it" } }));

// Leave a slow run mid-way and rejoin it with Last-Event-ID: on the thread...
obs.rejoin = await attempt(() =>
  leaveAndRejoin(chat.threadId, (signal, onRunCreated) =>
    client.runs.stream(chat.threadId, GRAPH, {
      ...STREAM,
      input: { messages: [human("tell me slowly what I said first")] },
      config: SLOW,
      checkpoint: withoutThreadId(chat.head()),
      signal,
      onRunCreated,
    }),
  ),
);
await attempt(() => chat.refetch());

// ...and a thread-less run, joined at GET /runs/{run_id}/stream.
obs.rejoin_threadless = await attempt(() =>
  leaveAndRejoin(null, (signal, onRunCreated) =>
    client.runs.stream(null, GRAPH, {
      ...STREAM,
      input: { messages: [human("a run without a thread, slowly")] },
      config: SLOW,
      signal,
      onRunCreated,
    }),
  ),
);

// 5. History, newest first, as the thread is opened again.
obs.history_final = await attempt(async () =>
  historySummary(await client.threads.getHistory(chat.threadId, { limit: 10 })),
);
obs.thread_final = await attempt(async () =>
  threadSummary(await client.threads.get(chat.threadId)),
);

// 2. The sidebar again: the thread is found by its graph.
obs.sidebar_after = await sidebar();

process.stdout.write(`${JSON.stringify(obs)}\n`);
