// One EventSource per browser. Loaded as a SharedWorker, it serves every tab of
// the origin over a single connection (Chromium allows only 6 per origin over
// HTTP/1.1, so a 7th tab with its own EventSource would hang). Where there is no
// SharedWorker, the page loads this file as a plain script and uses Hub directly.
"use strict";

// EventSource only reports named events it has a listener for.
const KNOWN_TYPES = [
  "message", "tick", "resync", "shutdown", "created", "progress", "done", "failed",
];

class Hub {
  constructor() {
    this.ports = new Map(); // port -> topics (array)
    this.source = null;
    this.url = "";
    this.lastEventId = "";
    this.state = "connecting";
    this.everOpen = false;
    this.types = new Set();
  }

  attach(port) {
    this.ports.set(port, ["time"]);
    port.onmessage = (msg) => this.command(port, msg.data);
    this.send(port, { kind: "state", state: this.state });
  }

  command(port, msg) {
    if (msg.kind === "topics") {
      this.ports.set(port, msg.topics);
      this.reconnect();
    } else if (msg.kind === "listen-type") {
      this.listenFor(msg.type);
    } else if (msg.kind === "bye") {
      this.ports.delete(port);
      this.reconnect();
    }
  }

  topics() {
    const all = new Set();
    for (const topics of this.ports.values()) topics.forEach((t) => all.add(t));
    return [...all].sort();
  }

  reconnect() {
    const topics = this.topics();
    const query = new URLSearchParams(topics.map((t) => ["topic", t]));
    if (this.lastEventId) query.set("lastEventId", this.lastEventId);
    const url = "/events?" + query.toString();
    if (this.source && this.url.split("&lastEventId")[0] === url.split("&lastEventId")[0]) return;
    if (this.source) this.source.close();
    if (topics.length === 0) { this.source = null; return; }
    this.url = url;
    this.source = new EventSource(url);
    this.types = new Set();
    KNOWN_TYPES.forEach((t) => this.listenFor(t));
    this.source.onopen = () => { this.everOpen = true; this.setState("live"); };
    this.source.onerror = () => {
      this.setState(this.everOpen ? "reconnecting" : "connecting");
    };
  }

  listenFor(type) {
    if (!this.source || this.types.has(type)) return;
    this.types.add(type);
    this.source.addEventListener(type, (e) => {
      if (e.lastEventId) this.lastEventId = e.lastEventId;
      this.deliver({ kind: "event", type, id: e.lastEventId, data: e.data });
    });
  }

  setState(state) {
    this.state = state;
    for (const port of this.ports.keys()) this.send(port, { kind: "state", state });
  }

  deliver(msg) {
    for (const port of this.ports.keys()) this.send(port, msg);
  }

  send(port, msg) {
    port.postMessage(msg);
  }
}

if (typeof SharedWorkerGlobalScope !== "undefined" && self instanceof SharedWorkerGlobalScope) {
  const hub = new Hub();
  self.onconnect = (e) => { const port = e.ports[0]; hub.attach(port); port.start(); };
} else {
  self.BroadcasterHub = Hub;
}
