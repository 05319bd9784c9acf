// One event stream per browser. Loaded as a SharedWorker, it serves every tab of
// the origin over a single connection (Chromium allows only 6 per origin over
// HTTP/1.1, so a 7th tab with its own stream would hang). Where there is no
// SharedWorker, the page loads sse.js and this file as plain scripts and uses
// Hub directly.
//
// It reads /events with fetch() and SSEParser rather than EventSource, so that
// it sees every event type, and after a refused or dropped connection it knows
// why, waits as the server asks (Retry-After, retry:), and tries again.
"use strict";

if (typeof self.SSEParser === "undefined") importScripts("/static/sse.js");

const FIRST_DELAY_MS = 1000; // until the stream's `retry:` says otherwise
const MAX_BACKOFF_MS = 30_000;
const MAX_RETRY_AFTER_MS = 600_000;
const CLIENTS_EVERY_MS = 30_000;

/** The wait after the nth failure in a row: doubling, capped, and jittered
 * (half to all of it) so that browsers cut off together come back spread out. */
function backoff(failures, baseMs) {
  const ceiling = Math.min(MAX_BACKOFF_MS, baseMs * 2 ** failures);
  return ceiling / 2 + Math.random() * (ceiling / 2);
}

/** Retry-After in ms (delay-seconds or an HTTP date), or null. */
function retryAfterMs(header) {
  if (!header) return null;
  const ms = /^\s*\d+\s*$/.test(header) ? Number(header) * 1000 : Date.parse(header) - Date.now();
  if (Number.isNaN(ms)) return null;
  return Math.min(MAX_RETRY_AFTER_MS, Math.max(0, ms));
}

/** Why a non-200 answer refused us, from the API's JSON error body if it has one. */
async function refusal(response) {
  let detail = response.statusText || "HTTP error";
  try {
    const body = await response.json();
    if (typeof body.error === "string") detail = body.error;
  } catch {
    /* not our JSON (a proxy's error page, say): the status line will do */
  }
  return `${detail} (${response.status})`;
}

class Hub {
  constructor() {
    this.ports = new Map(); // port -> {topics, visible}
    this.lastEventId = "";
    this.retryMs = FIRST_DELAY_MS;
    this.failures = 0;
    this.everLive = false;
    this.status = { state: "connecting" };
    this.controller = null; // the stream being opened or read
    this.timer = null; // the next attempt, while waiting
    this.key = ""; // the topics of the current stream
    this.token = ""; // a JWT for private topics, when a page was given one
    this.clients = null;
    this.clientsTimer = null;
    // Back on the network: no need to sit out the rest of a backoff.
    self.addEventListener("online", () => this.retryNow());
  }

  attach(port) {
    this.ports.set(port, { topics: ["time"], visible: true });
    port.onmessage = (msg) => this.command(port, msg.data);
    port.postMessage({ kind: "state", ...this.status });
    this.announceTabs();
  }

  command(port, msg) {
    if (msg.kind === "bye") {
      this.ports.delete(port);
      this.announceTabs();
      this.topicsChanged();
      return;
    }
    if (!this.ports.has(port)) {
      // A page back from the back-forward cache, after its "bye".
      this.ports.set(port, { topics: [], visible: true });
      this.announceTabs();
    }
    if (msg.kind === "topics") {
      this.ports.get(port).topics = msg.topics;
      this.topicsChanged();
    } else if (msg.kind === "visible") {
      this.ports.get(port).visible = msg.visible;
      if (msg.visible) this.refreshClients();
    } else if (msg.kind === "retry-now") {
      this.retryNow();
    } else if (msg.kind === "token") {
      // Sent as a header; a cookie token needs nothing here, fetch sends it.
      this.token = msg.token;
      this.connect();
    }
  }

  retryNow() {
    if (this.controller === null) this.connect();
  }

  topics() {
    const all = new Set();
    for (const { topics } of this.ports.values()) topics.forEach((t) => all.add(t));
    return [...all].sort();
  }

  topicsChanged() {
    if (this.topics().join("\n") === this.key && (this.controller || this.timer !== null)) return;
    // While waiting out a delay, the next attempt picks the new topics up.
    if (this.timer === null) this.connect();
  }

  connect() {
    clearTimeout(this.timer);
    this.timer = null;
    if (this.controller) this.controller.abort();
    this.controller = null;
    const topics = this.topics();
    this.key = topics.join("\n");
    if (topics.length === 0) return;
    const controller = new AbortController();
    this.controller = controller;
    // The last failure's reason stays on show while this attempt is under way.
    const { reason } = this.status;
    this.setStatus({ state: this.everLive ? "reconnecting" : "connecting", reason });
    this.read(topics, controller.signal).then((ended) => {
      if (this.controller !== controller) return; // replaced on purpose: not a failure
      this.controller = null;
      this.retryLater(ended);
    });
  }

  /** Open and read one stream; resolves with why and when to try again. */
  async read(topics, signal) {
    const url = "/events?" + new URLSearchParams(topics.map((t) => ["topic", t]));
    const headers = { Accept: "text/event-stream" };
    if (this.lastEventId) headers["Last-Event-ID"] = this.lastEventId;
    if (this.token) headers.Authorization = "Bearer " + this.token;
    let response;
    try {
      response = await fetch(url, { headers, signal, cache: "no-store" });
    } catch {
      return { reason: "cannot reach the server" };
    }
    if (!response.ok) {
      const wait = retryAfterMs(response.headers.get("Retry-After"));
      // A 4xx says the request itself is wrong (a bad topic, a refused token):
      // asking again unchanged would get the same answer, so wait for a change.
      const fatal = response.status >= 400 && response.status < 500 &&
        response.status !== 408 && response.status !== 429;
      return { reason: await refusal(response), wait, stop: fatal };
    }
    const type = response.headers.get("Content-Type") || "";
    if (!type.startsWith("text/event-stream")) {
      response.body?.cancel().catch(() => {});
      return { reason: `not an event stream (${type || "no Content-Type"})` };
    }
    this.failures = 0;
    this.everLive = true;
    this.setStatus({ state: "live" });
    this.refreshClients();
    return this.pump(response.body, signal);
  }

  async pump(body, signal) {
    let goodbye = null;
    const parser = new SSEParser({
      onEvent: (event) => {
        if (event.type === "shutdown") goodbye = reasonOf(event.data, "server shutting down");
        this.deliver({ kind: "event", ...event });
      },
      onRetry: (ms) => { this.retryMs = Math.max(ms, 100); },
    }, this.lastEventId);
    // The parser strips a leading BOM itself, as the SSE spec asks.
    const reader = body.pipeThrough(new TextDecoderStream("utf-8", { ignoreBOM: true })).getReader();
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        parser.feed(value);
        this.lastEventId = parser.lastEventId; // an `id:` alone moves it too
      }
    } catch {
      if (!signal.aborted) return { reason: goodbye || "connection lost" };
    }
    return { reason: goodbye || "the server ended the stream" };
  }

  retryLater({ reason, wait = null, stop = false }) {
    if (stop) {
      this.setStatus({ state: "stopped", reason });
      return;
    }
    // Retry-After is the server's word; otherwise back off from its retry: hint.
    const delay = wait === null ? backoff(this.failures, this.retryMs) : wait + Math.random() * 500;
    this.failures += 1;
    const retryAt = Date.now() + delay;
    this.setStatus({ state: this.everLive ? "reconnecting" : "connecting", reason, retryAt });
    this.timer = setTimeout(() => this.connect(), delay);
  }

  /** How many streams the server holds: on going live, and now and then while
   * a tab is visible, for the whole browser at once. */
  async refreshClients() {
    clearTimeout(this.clientsTimer);
    const anyVisible = [...this.ports.values()].some((p) => p.visible);
    if (anyVisible) this.clientsTimer = setTimeout(() => this.refreshClients(), CLIENTS_EVERY_MS);
    let clients = null;
    try {
      clients = (await (await fetch("/healthz", { cache: "no-store" })).json()).clients;
    } catch {
      /* shown as unknown */
    }
    this.clients = typeof clients === "number" ? clients : null;
    this.deliver({ kind: "clients", clients: this.clients });
  }

  announceTabs() {
    this.deliver({ kind: "tabs", tabs: this.ports.size });
    if (this.clients !== null) this.deliver({ kind: "clients", clients: this.clients });
  }

  setStatus(status) {
    this.status = status;
    this.deliver({ kind: "state", ...status });
  }

  deliver(msg) {
    for (const port of this.ports.keys()) port.postMessage(msg);
  }
}

function reasonOf(data, otherwise) {
  try {
    const reason = JSON.parse(data).reason;
    return typeof reason === "string" ? reason : otherwise;
  } catch {
    return otherwise;
  }
}

if (typeof SharedWorkerGlobalScope !== "undefined" && self instanceof SharedWorkerGlobalScope) {
  const hub = new Hub();
  self.onconnect = (e) => { const port = e.ports[0]; hub.attach(port); port.start(); };
} else {
  self.BroadcasterHub = Hub;
}
