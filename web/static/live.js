// live.js follows one batteryswap stream (CONTRACT.md §4): EventSource where
// the browser has it, long-poll (?transport=poll&since=) where it does not.

const RETRY_MIN_MS = 1000;
const RETRY_MAX_MS = 30000;
const SETTLE_MS = 3000;
const POLL_TIMEOUT_S = 25;

/**
 * connect follows the stream at path until the returned function is called.
 *
 * handlers maps event types to functions that receive each event's payload,
 * in delivery order. onState receives "live", "reconnecting" or "resumed".
 * params are extra query parameters (such as access_token). canRetry is
 * awaited before a failed stream is reopened by us; false ends the stream.
 */
export function connect(path, { handlers, params = {}, onState = () => {}, canRetry = async () => true }) {
  const types = new Set(["connection_established", "snapshot", ...Object.keys(handlers)]);
  let lastId = "";
  let opened = false; // some connection succeeded: the next one is a resume
  let resuming = false; // the current connection continues from a cursor
  let down = false;
  let stopped = false;
  let delay = RETRY_MIN_MS;
  let retryTimer = 0;
  let settleTimer = 0;
  let source = null;
  let abort = null;

  function setState(state) {
    clearTimeout(settleTimer);
    onState(state);
    if (state === "resumed") settleTimer = setTimeout(() => onState("live"), SETTLE_MS);
  }

  function up() {
    delay = RETRY_MIN_MS;
    if (opened && !down) return;
    resuming = opened;
    opened = true;
    down = false;
    setState(resuming ? "resumed" : "live");
  }

  function fail() {
    if (down) return;
    down = true;
    setState("reconnecting");
  }

  function deliver(type, data, id) {
    if (id) lastId = id;
    // A snapshot replaces the client's state, so nothing is left to catch up on.
    if (type === "snapshot") setState("live");
    else if (type === "connection_established" && resuming) setState("resumed");
    try {
      handlers[type]?.(data);
    } catch (err) {
      console.error(`batteryswap: ${type} handler failed`, err);
    }
  }

  function later(reopen) {
    const wait = delay * (0.5 + Math.random() / 2);
    delay = Math.min(delay * 2, RETRY_MAX_MS);
    retryTimer = setTimeout(async () => {
      if (stopped) return;
      if (await canRetry()) reopen();
      else stop();
    }, wait);
  }

  function openSource() {
    const query = new URLSearchParams(params);
    // The browser resumes by itself with Last-Event-ID; a stream we recreate
    // after it gave up carries the cursor in the URL instead.
    if (lastId) query.set("last_event_id", lastId);
    const qs = query.toString();
    const es = new EventSource(qs ? `${path}?${qs}` : path);
    source = es;
    es.addEventListener("open", up);
    es.addEventListener("error", () => {
      fail();
      if (es.readyState === EventSource.CLOSED) later(openSource);
    });
    for (const type of types) {
      es.addEventListener(type, (e) => {
        let data;
        try {
          data = JSON.parse(e.data);
        } catch {
          return;
        }
        deliver(type, data, e.lastEventId || data.id);
      });
    }
  }

  async function poll() {
    while (!stopped) {
      const query = new URLSearchParams({ ...params, transport: "poll", timeout: String(POLL_TIMEOUT_S) });
      if (lastId) query.set("since", lastId);
      abort = new AbortController();
      try {
        const res = await fetch(`${path}?${query}`, { headers: { Accept: "application/json" }, signal: abort.signal });
        if (res.status === 400 && lastId) {
          lastId = ""; // cursor refused: start afresh, which brings a snapshot
          continue;
        }
        if (!res.ok) throw new Error(`${path}: HTTP ${res.status}`);
        const body = await res.json();
        up();
        for (const ev of body.events || []) deliver(ev.type, ev, ev.id);
        if (body.last_event_id) lastId = body.last_event_id;
      } catch (err) {
        if (stopped) return;
        console.warn("batteryswap: poll failed", err);
        fail();
        later(poll);
        return;
      }
    }
  }

  function stop() {
    stopped = true;
    clearTimeout(retryTimer);
    clearTimeout(settleTimer);
    source?.close();
    abort?.abort();
  }

  if (window.EventSource) openSource();
  else poll();
  return stop;
}
