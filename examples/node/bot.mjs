#!/usr/bin/env node
// A bot that hands its user over to a human agent through `handover serve`.
//
// No dependencies (Node 18 or newer: global fetch). Start the service with
// `handover serve --demo`, then:
//
//   HANDOVER_URL=http://127.0.0.1:8080 HANDOVER_API_KEY=<the key it printed> node bot.mjs
//
// It starts a handover, prints the agent's messages as they come over SSE (resuming with
// Last-Event-ID if the stream drops), answers them, and exits with the final status:
// 0 for completed, 1 otherwise.

const BASE = (process.env.HANDOVER_URL ?? "http://127.0.0.1:8080").replace(/\/$/, "");
const KEY = process.env.HANDOVER_API_KEY ?? "";
const PROVIDER = process.env.HANDOVER_PROVIDER ?? "liveagent";
// What the user says after each agent message; the last one ends the chat.
const ANSWERS = ["I was charged twice for my subscription.", "Thanks, that's all. bye"];

async function call(method, path, body) {
  const response = await fetch(BASE + path, {
    method,
    headers: { Authorization: `Bearer ${KEY}`, "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  const json = text ? JSON.parse(text) : null;
  if (!response.ok) {
    throw new Error(`${method} ${path}: ${response.status} ${json?.error?.code}: ${json?.error?.message}`);
  }
  return json;
}

// Yields the handover's events over SSE, resuming after the last one on a drop.
async function* events(id) {
  let last = null;
  for (;;) {
    try {
      const headers = { Authorization: `Bearer ${KEY}`, Accept: "text/event-stream" };
      if (last !== null) headers["Last-Event-ID"] = String(last);
      const response = await fetch(`${BASE}/v1/handovers/${id}/events`, { headers });
      if (!response.ok) throw new Error(`events: ${response.status}`);
      const decoder = new TextDecoder();
      let buffer = "";
      for await (const chunk of response.body) {
        buffer += decoder.decode(chunk, { stream: true });
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const data = block.split("\n").filter((l) => l.startsWith("data: ")).map((l) => l.slice(6));
          if (data.length === 0) continue; // a keep-alive comment
          const event = JSON.parse(data.join("\n"));
          last = event.seq;
          yield event;
          if (event.type === "status") return;
        }
      }
    } catch (error) {
      console.error(`(the event stream dropped: ${error.message}; resuming after ${last})`);
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
  }
}

async function main() {
  if (!KEY) throw new Error("set HANDOVER_API_KEY to the key `handover serve --demo` printed");
  const created = await call("POST", "/v1/handovers", {
    provider: PROVIDER,
    user: { id: "user-42", name: "Jane Doe", email: "jane@example.com" },
    transcript: [
      { from: "user", text: "My invoice looks wrong." },
      { from: "bot", text: "Let me get you a human." },
    ],
  });
  console.log(`handover ${created.id}: ${created.state}`);
  const answers = [...ANSWERS];
  let status = null;
  for await (const event of events(created.id)) {
    switch (event.type) {
      case "say":
        console.log(`bot:   ${event.text}`);
        break;
      case "queue_update":
        console.log(`queue: position ${event.position}, wait ${event.estimated_wait_time_ms} ms`);
        break;
      case "agent_joined":
        console.log(`       ${event.agent} joined`);
        break;
      case "agent_message": {
        console.log(`agent: ${event.text}`);
        const answer = answers.shift();
        if (answer !== undefined) {
          console.log(`user:  ${answer}`);
          await call("POST", `/v1/handovers/${created.id}/inputs`, { type: "message", text: answer, id: `answer-${event.seq}` });
        }
        break;
      }
      case "status":
        status = event.status;
        break;
    }
  }
  const final = await call("GET", `/v1/handovers/${created.id}`);
  console.log(`final status: ${final.status.status}`);
  return status === "completed" && final.state === "ended" ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (error) => {
    console.error(`error: ${error.message}`);
    process.exit(1);
  },
);
