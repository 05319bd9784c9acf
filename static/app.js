"use strict";
// The page: connects to the hub (shared by every tab), shows what arrives, and
// publishes. Event data is only ever set as textContent, never parsed as HTML.

const MAX_ROWS = 100;
const $ = (id) => document.getElementById(id);

function connectHub() {
  if (typeof SharedWorker !== "undefined") {
    const worker = new SharedWorker("/static/hub.js", { name: "broadcaster" });
    worker.port.start();
    return worker.port;
  }
  // Fallback: a hub inside this page, talking through a MessageChannel.
  return new Promise((resolve) => {
    const script = document.createElement("script");
    script.src = "/static/hub.js";
    script.onload = () => {
      const channel = new MessageChannel();
      new self.BroadcasterHub().attach(channel.port1);
      channel.port1.start();
      channel.port2.start();
      resolve(channel.port2);
    };
    document.head.appendChild(script);
  });
}

function parseTopics(text) {
  return text.split(/[\s,]+/).filter((t) => t.length > 0);
}

function showEvent(msg) {
  const row = document.createElement("li");
  row.className = "event event-" + msg.type;
  row.dataset.id = msg.id;
  row.dataset.type = msg.type;
  const label = document.createElement("span");
  label.className = "label";
  const isMessage = msg.type === "message" || msg.type === "tick";
  label.textContent = isMessage ? "Message " + msg.id : [msg.type, msg.id].filter(Boolean).join(" ");
  const body = document.createElement("span");
  body.className = "data";
  body.textContent = msg.data;
  row.append(label, " — ", body);
  const list = $("events");
  list.prepend(row);
  while (list.children.length > MAX_ROWS) list.lastElementChild.remove();
}

function showState(state) {
  const el = $("state");
  el.textContent = state;
  el.dataset.state = state;
}

async function refreshClients() {
  try {
    const answer = await (await fetch("/healthz")).json();
    $("clients").textContent = String(answer.clients);
  } catch {
    $("clients").textContent = "?";
  }
}

async function publish(port, form) {
  const body = { topic: form.topic.value, data: form.data.value };
  if (form.event.value) {
    body.event = form.event.value;
    port.postMessage({ kind: "listen-type", type: form.event.value });
  }
  const headers = { "Content-Type": "application/json" };
  if (form.token.value) headers.Authorization = "Bearer " + form.token.value;
  const result = $("publish-result");
  try {
    const resp = await fetch("/publish", { method: "POST", headers, body: JSON.stringify(body) });
    const answer = await resp.json();
    result.textContent = resp.ok ? "published as " + answer.id : "error " + resp.status + ": " + answer.error;
    result.dataset.ok = String(resp.ok);
  } catch (err) {
    result.textContent = "error: " + err;
    result.dataset.ok = "false";
  }
}

async function main() {
  const port = await connectHub();
  port.onmessage = (e) => {
    if (e.data.kind === "state") showState(e.data.state);
    else if (e.data.kind === "event") showEvent(e.data);
  };
  const topicsForm = $("topics-form");
  const sendTopics = () => port.postMessage({ kind: "topics", topics: parseTopics(topicsForm.topics.value) });
  topicsForm.addEventListener("submit", (e) => { e.preventDefault(); sendTopics(); });
  $("publish-form").addEventListener("submit", (e) => { e.preventDefault(); publish(port, e.target); });
  window.addEventListener("pagehide", () => port.postMessage({ kind: "bye" }));
  sendTopics();
  refreshClients();
  setInterval(refreshClients, 5000);
}

main();
