"use strict";
// The page: connects to the hub (shared by every tab), shows what arrives, and
// publishes. Event data is only ever set as textContent, never parsed as HTML.

const MAX_ROWS = 100;
const JOB_TYPES = new Set(["created", "progress", "done", "failed"]);
const $ = (id) => document.getElementById(id);
const jobs = new Map(); // id -> latest state
let sendTopics = () => {};

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
  if (state === "live") refreshClients();
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
  await submit("/publish", { method: "POST", headers, body: JSON.stringify(body) },
    $("publish-result"), (answer) => "published as " + answer.id);
}

// POST and show the outcome in `result`: `success(answer)`, or the API's error.
async function submit(url, init, result, success) {
  try {
    const resp = await fetch(url, init);
    const answer = await resp.json();
    result.textContent = resp.ok ? success(answer) : "error " + resp.status + ": " + answer.error;
    result.dataset.ok = String(resp.ok);
  } catch (err) {
    result.textContent = "error: " + err;
    result.dataset.ok = "false";
  }
}

// Jobs: each has its own topic; new ones are announced on "jobs". Every event
// carries the job's whole state, so the newest one seen is the truth.
function isNewer(state, known) {
  if (!known) return true;
  if (known.status === "done" || known.status === "failed") return false;
  return state.status !== "queued" && state.rows_done >= known.rows_done;
}

function showJob(state) {
  if (!isNewer(state, jobs.get(state.id))) return;
  jobs.set(state.id, state);
  let box = document.getElementById("job-" + state.id);
  if (!box) {
    box = document.createElement("div");
    box.id = "job-" + state.id;
    box.className = "job";
    const name = document.createElement("div");
    name.className = "job-name";
    const bar = document.createElement("progress");
    bar.max = 100;
    const text = document.createElement("div");
    text.className = "job-text";
    box.append(name, bar, text);
    $("jobs").prepend(box);
  }
  box.dataset.status = state.status;
  box.querySelector(".job-name").textContent = state.filename;
  box.querySelector("progress").value = state.status === "done" ? 100 : state.percent;
  box.querySelector(".job-text").textContent = describeJob(state);
  sendTopics();
}

function describeJob(s) {
  const of = s.total === null ? "" : " of " + s.total;
  const progress = `Rows done: ${s.rows_done}${of} (${s.percent}%), elapsed: ${s.elapsed_s}s, ${s.rows_per_s} rows/s`;
  if (s.status === "done") return `Done: ${s.rows_done} rows in table ${s.table}, ${s.elapsed_s}s`;
  if (s.status === "failed") return "Failed: " + s.error;
  if (s.status === "queued") return "Queued";
  return progress;
}

function watchedJobTopics() {
  return [...jobs.values()]
    .filter((s) => s.status === "queued" || s.status === "running")
    .slice(0, 20)
    .map((s) => s.topic);
}

async function loadJobs() {
  try {
    const answer = await (await fetch("/jobs")).json();
    answer.jobs.forEach(showJob);
  } catch {
    /* the list is a convenience; live events still arrive */
  }
}

async function upload(form) {
  const body = new FormData();
  body.append("file", form.file.files[0]);
  await submit("/jobs", { method: "POST", body }, $("upload-result"), (answer) => "job " + answer.id);
}

async function main() {
  const port = await connectHub();
  port.onmessage = (e) => {
    if (e.data.kind === "state") showState(e.data.state);
    else if (e.data.kind === "event" && JOB_TYPES.has(e.data.type)) showJob(JSON.parse(e.data.data));
    else if (e.data.kind === "event") showEvent(e.data);
  };
  const topicsForm = $("topics-form");
  sendTopics = () => port.postMessage({
    kind: "topics",
    topics: [...parseTopics(topicsForm.topics.value), "jobs", ...watchedJobTopics()],
  });
  $("upload-form").addEventListener("submit", (e) => { e.preventDefault(); upload(e.target); });
  await loadJobs();
  topicsForm.addEventListener("submit", (e) => { e.preventDefault(); sendTopics(); });
  $("publish-form").addEventListener("submit", (e) => { e.preventDefault(); publish(port, e.target); });
  window.addEventListener("pagehide", () => port.postMessage({ kind: "bye" }));
  sendTopics();
  refreshClients();
  setInterval(refreshClients, 5000);
}

main();
