"use strict";
// The page: connects to the hub (shared by every tab), shows what arrives, and
// publishes. Event data is only ever set as textContent, never parsed as HTML.

const MAX_ROWS = 100;
const MAX_FINISHED_JOBS = 10;
const JOB_TYPES = new Set(["created", "progress", "done", "failed"]);
const SERVER_TYPES = new Set(["resync", "shutdown"]); // styled apart
const CLEARED_KEY = "broadcaster.cleared-jobs";
const MAX_CLEARED = 200; // the server remembers 100 finished jobs
const $ = (id) => document.getElementById(id);
const jobs = new Map(); // id -> latest state
const cleared = loadCleared(); // ids of finished jobs the user cleared away
let sendTopics = () => {};
let countdown = null;

function connectHub() {
  if (typeof SharedWorker !== "undefined") {
    const worker = new SharedWorker("/static/hub.js", { name: "broadcaster" });
    worker.port.start();
    return worker.port;
  }
  // Fallback: a hub inside this page, talking through a MessageChannel.
  return loadScript("/static/sse.js").then(() => loadScript("/static/hub.js")).then(() => {
    const channel = new MessageChannel();
    new self.BroadcasterHub().attach(channel.port1);
    channel.port1.start();
    channel.port2.start();
    return channel.port2;
  });
}

function loadScript(src) {
  return new Promise((resolve, reject) => {
    const script = document.createElement("script");
    script.src = src;
    script.onload = resolve;
    script.onerror = () => reject(new Error("cannot load " + src));
    document.head.appendChild(script);
  });
}

function parseTopics(text) {
  return text.split(/[\s,]+/).filter((t) => t.length > 0);
}

function showEvent(msg) {
  const row = document.createElement("li");
  row.className = "event";
  if (SERVER_TYPES.has(msg.type)) row.classList.add("event-" + msg.type);
  row.dataset.id = msg.id;
  row.dataset.type = msg.type;
  const type = document.createElement("span");
  type.className = "type";
  type.textContent = msg.type;
  const id = document.createElement("span");
  id.className = "id";
  id.textContent = msg.idGiven === false ? "" : msg.id;
  const body = document.createElement("span");
  body.className = "data";
  body.textContent = msg.data;
  row.append(type, " ", id, " — ", body);
  const list = $("events");
  list.prepend(row);
  while (list.children.length > MAX_ROWS) list.lastElementChild.remove();
}

// The hub's connection state: live, or why it is not and when it tries again.
function showState({ state, reason, retryAt }) {
  const el = $("state");
  el.textContent = state;
  el.dataset.state = state;
  clearInterval(countdown);
  const detail = $("state-detail");
  const retry = $("retry-now");
  retry.hidden = !retryAt;
  if (state === "live" || !reason) {
    detail.textContent = "";
  } else if (state === "stopped") {
    detail.textContent = `not retrying: ${reason}. Change the topics (or the token) and Follow.`;
  } else if (!retryAt) {
    detail.textContent = "trying again; last time: " + reason;
  } else {
    const tick = () => {
      const seconds = Math.max(0, Math.round((retryAt - Date.now()) / 1000));
      detail.textContent = `next try in ${seconds} s: ${reason}`;
    };
    tick();
    countdown = setInterval(tick, 1000);
  }
}

async function publish(form) {
  const body = { topic: form.topic.value, data: form.data.value };
  if (form.event.value) body.event = form.event.value;
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

// Jobs: each has its own topic, `job.<id>`; new ones are announced on "jobs".
// Every event carries the job's whole state, so the newest one seen is the truth.
// The stream does not say which topic an event came from, so a job event is
// told apart by its type and by data that is a job's state for a job topic;
// anything else (a `done` on "orders", say) is an ordinary event.
function jobState(msg) {
  if (!JOB_TYPES.has(msg.type)) return null;
  let state;
  try {
    state = JSON.parse(msg.data);
  } catch {
    return null;
  }
  const ok = state !== null && typeof state === "object" && typeof state.id === "string" &&
    state.topic === "job." + state.id && typeof state.status === "string" &&
    typeof state.rows_done === "number";
  return ok ? state : null;
}

function isFinished(state) {
  return state.status === "done" || state.status === "failed";
}

function isNewer(state, known) {
  if (!known) return true;
  if (isFinished(known)) return false;
  return state.status !== "queued" && state.rows_done >= known.rows_done;
}

// A private job's topic needs its own token, which the hub's one stream cannot
// carry beside the page's own: the uploader polls its state with that token.
async function followPrivateJob({ status_url: url, token }) {
  const headers = { Authorization: "Bearer " + token };
  for (;;) {
    let state;
    try {
      const resp = await fetch(url, { headers, cache: "no-store" });
      if (!resp.ok) return;
      state = await resp.json();
    } catch {
      return;
    }
    showJob(state, true);
    if (isFinished(state)) return;
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
}

function showJob(state, ours = false) {
  // Someone else's private job: announced, but not this page's to show.
  if (state.private && !ours && !jobs.has(state.id)) return;
  if (cleared.has(state.id) || !isNewer(state, jobs.get(state.id))) return;
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
    $("job-list").prepend(box);
  }
  box.dataset.status = state.status;
  // Announcements on a public "jobs" topic carry no file name.
  box.querySelector(".job-name").textContent = state.filename ?? "(file name private)";
  box.querySelector("progress").value = state.status === "done" ? 100 : state.percent;
  box.querySelector(".job-text").textContent = describeJob(state);
  keepFewFinished();
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

function finishedCards() {
  return [...$("job-list").children].filter((box) => isFinished(jobs.get(box.id.slice(4))));
}

// Cards are newest first; the oldest finished ones go. Their jobs stay known,
// so a late event cannot bring a card back.
function keepFewFinished() {
  finishedCards().slice(MAX_FINISHED_JOBS).forEach((box) => box.remove());
  $("clear-jobs").hidden = finishedCards().length === 0;
}

// Every finished job goes, shown or already trimmed away, so that none of them
// comes back when the page is loaded again.
function clearFinished() {
  for (const state of jobs.values()) if (isFinished(state)) cleared.add(state.id);
  finishedCards().forEach((box) => box.remove());
  saveCleared();
  keepFewFinished();
}

function loadCleared() {
  try {
    return new Set(JSON.parse(localStorage.getItem(CLEARED_KEY) || "[]"));
  } catch {
    return new Set(); // storage disabled or garbled: nothing was cleared
  }
}

function saveCleared() {
  const ids = [...cleared].slice(-MAX_CLEARED);
  try {
    localStorage.setItem(CLEARED_KEY, JSON.stringify(ids));
  } catch {
    /* storage disabled: cleared for this page only */
  }
}

function watchedJobTopics() {
  return [...jobs.values()]
    // Another uploader's private job would get the whole stream refused (403).
    .filter((s) => (s.status === "queued" || s.status === "running") && !s.private)
    .slice(0, 20)
    .map((s) => s.topic);
}

async function loadJobs() {
  try {
    const answer = await (await fetch("/jobs")).json();
    answer.jobs.forEach((state) => showJob(state, true)); // only jobs this page may see
  } catch {
    /* the list is a convenience; live events still arrive */
  }
  $("jobs").dataset.loaded = "true";
}

async function upload(form) {
  const body = new FormData();
  body.append("file", form.file.files[0]);
  await submit("/jobs", { method: "POST", body }, $("upload-result"), (answer) => {
    if (answer.token) followPrivateJob(answer);
    return "job " + answer.id;
  });
}

function receive(msg) {
  if (msg.kind === "state") showState(msg);
  else if (msg.kind === "clients") $("clients").textContent = msg.clients === null ? "?" : String(msg.clients);
  else if (msg.kind === "tabs") $("tabs").textContent = String(msg.tabs);
  else if (msg.kind === "event") {
    const job = jobState(msg);
    if (job) showJob(job);
    else showEvent(msg);
    // Events were missed: job cards may be stale, and the list says how they ended.
    if (msg.type === "resync") loadJobs();
  }
}

async function main() {
  const port = await connectHub();
  port.onmessage = (e) => receive(e.data);
  const token = new URLSearchParams(location.search).get("access_token");
  if (token) {
    // Out of the address bar, the history and later Referer headers at once.
    history.replaceState(null, "", location.pathname);
    port.postMessage({ kind: "token", token });
  }
  const topicsForm = $("topics-form");
  sendTopics = () => port.postMessage({
    kind: "topics",
    topics: [...parseTopics(topicsForm.topics.value), "jobs", ...watchedJobTopics()],
  });
  const sendVisibility = () =>
    port.postMessage({ kind: "visible", visible: document.visibilityState === "visible" });
  $("upload-form").addEventListener("submit", (e) => { e.preventDefault(); upload(e.target); });
  $("clear-jobs").addEventListener("click", clearFinished);
  $("retry-now").addEventListener("click", () => port.postMessage({ kind: "retry-now" }));
  await loadJobs();
  topicsForm.addEventListener("submit", (e) => { e.preventDefault(); sendTopics(); });
  $("publish-form").addEventListener("submit", (e) => { e.preventDefault(); publish(e.target); });
  document.addEventListener("visibilitychange", sendVisibility);
  window.addEventListener("pagehide", () => port.postMessage({ kind: "bye" }));
  window.addEventListener("pageshow", (e) => {
    if (e.persisted) { sendVisibility(); sendTopics(); } // back from the back-forward cache
  });
  sendVisibility();
  sendTopics();
}

main();
