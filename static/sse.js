// An incremental Server-Sent Events parser, following the WHATWG "event stream
// interpretation" steps. The hub reads /events with fetch() rather than
// EventSource, because EventSource reports only the named events it has a
// listener for, hides the status of a refused connection, and gives up for good
// after any non-200 answer.
"use strict";

class SSEParser {
  /**
   * onEvent({type, data, id}) is called per complete event; onRetry(ms) per
   * valid `retry:` field. `lastEventId` carries over from an earlier stream.
   */
  constructor({ onEvent, onRetry = () => {} }, lastEventId = "") {
    this.onEvent = onEvent;
    this.onRetry = onRetry;
    this.lastEventId = lastEventId;
    this.buffer = "";
    this.data = [];
    this.type = "";
    this.started = false;
    this.afterCR = false;
  }

  /** Feed decoded text as it arrives, in pieces of any size. */
  feed(text) {
    if (!this.started && text.length > 0) {
      this.started = true;
      if (text[0] === "\uFEFF") text = text.slice(1); // one leading BOM, once per stream
    }
    if (text.length === 0) return;
    // A CR that ended the previous piece was a whole line end; a LF opening
    // this piece is the second half of that CR LF, not an empty line.
    if (this.afterCR && text[0] === "\n") text = text.slice(1);
    this.afterCR = false;
    const buffer = this.buffer + text;
    let start = 0;
    for (let i = 0; i < buffer.length; i++) {
      const c = buffer[i];
      if (c !== "\r" && c !== "\n") continue;
      this.line(buffer.slice(start, i));
      if (c === "\r") {
        if (i + 1 === buffer.length) this.afterCR = true;
        else if (buffer[i + 1] === "\n") i++;
      }
      start = i + 1;
    }
    this.buffer = buffer.slice(start);
  }

  line(line) {
    if (line === "") return this.dispatch();
    if (line[0] === ":") return; // a comment
    const colon = line.indexOf(":");
    const name = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value[0] === " ") value = value.slice(1);
    if (name === "data") this.data.push(value);
    else if (name === "event") this.type = value;
    else if (name === "id" && !value.includes("\0")) {
      this.lastEventId = value;
      this.idGiven = true;
    }
    else if (name === "retry" && /^[0-9]+$/.test(value)) this.onRetry(Number(value));
  }

  dispatch() {
    const data = this.data;
    const type = this.type;
    const idGiven = this.idGiven === true;
    this.data = [];
    this.type = "";
    this.idGiven = false;
    if (data.length === 0) return;
    // `id` is the spec's lastEventId, which carries over; `idGiven` says whether
    // this event named one itself (a shutdown or resync may not), for display.
    this.onEvent({ type: type || "message", data: data.join("\n"), id: this.lastEventId, idGiven });
  }
}

self.SSEParser = SSEParser;
