/*
 * app.js drives the batteryswap live dashboard (CONTRACT.md §3–5).
 *
 * Stable DOM hooks; browser tests rely on them, so keep them:
 *   #conn-status[data-state]   "live" | "reconnecting" | "resumed" (station stream);
 *       its [data-field="delay"]: the latest event's delivery delay
 *   [data-station-id="N"]      station card, containing
 *       [data-field="available"], [data-field="charging"], [data-field="booked"],
 *       [data-field="total"]   plain numbers
 *       [data-field="name"], [data-field="address"], [data-field="message"],
 *       [data-field="status"]  (data-status: open | closed | maintenance)
 *       [data-field="presence"] "Offline · last seen …" (the card has data-presence)
 *       [data-field="fresh"]   "updated N s ago"
 *       button[data-action="book"], [data-field="feedback"]
 *   #map [data-marker-id="N"]  a station's marker (data-availability: available |
 *                              charging | empty | closed | offline; aria-pressed when chosen);
 *                              #map .you (the "near me" location); #map-all (shows every station)
 *   #station-detail [data-detail-id="N"]  the chosen station, the same fields as a card
 *   #near-form      #near-location ("lat,lon"), #near-available, #near-geo;
 *                   #near-list li[data-near-id="N"] [data-field="distance"]
 *   #login-form     #login-email, #login-password
 *   #register-form  #register-email, #register-password, #register-name
 *   #account, #logout-button
 *   #my-booking     [data-field="status"] (booking status), [data-field="countdown"],
 *                   #collect-form (#return-serial, #return-charge), #cancel-booking
 *   #notifications  #unread-count (number), li[data-notification-id] button[data-action="read"]
 *   #admin (admins only):
 *     #create-station-form  #station-name, #station-address, #station-lat, #station-lon, #station-status
 *     #add-battery-form     #add-battery-station (station id), #add-battery-serial,
 *                           #add-battery-charge, #add-battery-capacity
 *     #station-update-form  #update-station, #update-status, #update-message
 *     #notify-form          #notify-user, #notify-level, #notify-title, #notify-message
 *     #batteries-form       #batteries-station; #battery-list li[data-battery-id] form
 * Every form has a p.form-msg for its outcome; field errors appear as p.field-error
 * after the input, which gets aria-invalid="true".
 */
import { connect } from "./live.js";
import { StationMap } from "./map.js";

const TOKEN_KEY = "bs_token";
const COUNTS = {
  available: "available_batteries",
  charging: "charging_batteries",
  booked: "booked_batteries",
  total: "total_batteries",
};
const STATION_EVENTS = ["inventory_update", "battery_booked", "battery_collected", "battery_added", "station_status"];
const BOOKING_EVENTS = [
  "booking_confirmed",
  "booking_ready",
  "booking_expiring",
  "booking_cancelled",
  "booking_expired",
  "booking_collected",
];
const STATUS_LABEL = { open: "Open", closed: "Closed", maintenance: "Maintenance" };
const CONN_LABEL = { live: "Live", reconnecting: "Reconnecting…", resumed: "Resumed" };
const BOOKING_HINT = {
  confirmed: "Your battery is charging; you can collect it once it is ready.",
  ready: "Your battery is ready: collect it before the time runs out.",
  collected: "Collected. Enjoy the ride!",
  cancelled: "This booking was cancelled.",
  expired: "This booking expired before it was collected.",
};

const state = {
  token: sessionStorage.getItem(TOKEN_KEY) || "",
  user: null,
  stations: new Map(), // id -> { station, card, busy }
  selected: null, // id of the station chosen on the map
  detail: null, // its card in #station-detail
  near: [], // the last "near me" answer: [{ id, distance_m }]
  map: null,
  pending: new Map(), // id of a station being fetched -> events that arrived meanwhile
  booking: null,
  unread: [],
  unreadMore: false, // older unread notifications exist than unread holds
  stopNotifications: null,
};

const $ = (sel, root = document) => root.querySelector(sel);
const field = (root, name) => root.querySelector(`[data-field="${name}"]`);
const isActive = (b) => b?.status === "confirmed" || b?.status === "ready";
const num = (v) => (v === null || v === "" ? undefined : Number(v));
const report = (err) => console.warn("batteryswap:", err);

// The server's clock, as far as this page can tell: a fresh stream's
// connection_established carries the server's time when it was sent. An
// offset under a second is taken for network latency and ignored; a larger
// one is this device's clock being off, which would skew "N s ago", the
// delivery delay and the booking countdown.
let clockOffset = 0;
const serverNow = () => Date.now() - clockOffset;
function syncClock(ev) {
  const t = Date.parse(ev.timestamp);
  if (!Number.isFinite(t)) return;
  const off = Date.now() - t;
  clockOffset = Math.abs(off) > 1000 ? off : 0;
}

function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  el.append(...children);
  return el;
}

// ---- API -------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, body) {
    const e = body?.error || {};
    super(e.message || `Request failed (HTTP ${status}).`);
    this.status = status;
    this.code = e.code || "";
    this.fields = e.fields || {};
  }
}

async function api(method, path, body, headers = {}) {
  const init = { method, headers: { Accept: "application/json", ...headers }, credentials: "same-origin" };
  if (state.token) init.headers.Authorization = `Bearer ${state.token}`;
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const res = await fetch(`api/v1${path}`, init);
  const data = res.status === 204 ? null : await res.json().catch(() => null);
  if (!res.ok) {
    if (res.status === 401 && state.user && !path.startsWith("/auth/")) {
      signedOut("Your session has ended. Please sign in again.");
    }
    throw new ApiError(res.status, data);
  }
  return data;
}

function errorText(err) {
  return err instanceof ApiError ? err.message : "Could not reach the server. Check your connection and try again.";
}

function randomKey() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

// ---- Forms -----------------------------------------------------------------

function say(form, text, isError = false) {
  const msg = $(".form-msg", form);
  msg.textContent = text;
  msg.classList.toggle("error", isError);
}

function clearErrors(form) {
  for (const p of form.querySelectorAll(".field-error")) p.remove();
  for (const el of form.querySelectorAll("[aria-invalid]")) {
    el.removeAttribute("aria-invalid");
    el.removeAttribute("aria-describedby");
  }
  say(form, "");
}

function showError(form, err) {
  if (!(err instanceof ApiError)) report(err);
  const unmatched = [];
  let first = null;
  for (const [name, text] of Object.entries(err.fields || {})) {
    const input = form.elements.namedItem(name);
    if (!(input instanceof HTMLElement) || !input.id) {
      unmatched.push(`${name} ${text}`);
      continue;
    }
    const label = $(`label[for="${input.id}"]`, form)?.firstChild?.textContent.trim() || name;
    const p = h("p", { class: "field-error", id: `${input.id}-error` }, `${label} ${text}.`);
    input.after(p);
    input.setAttribute("aria-invalid", "true");
    input.setAttribute("aria-describedby", p.id);
    first ||= input;
  }
  say(form, [errorText(err), ...unmatched].join(" "), true);
  first?.focus();
}

// onSubmit runs fn(formData, form) on submit; its resolved string is shown as
// the outcome, a rejection as errors next to the form and its fields.
function onSubmit(form, fn) {
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    if (form.getAttribute("aria-busy") === "true") return;
    clearErrors(form);
    form.setAttribute("aria-busy", "true");
    try {
      const msg = await fn(new FormData(form), form);
      if (msg) say(form, msg);
    } catch (err) {
      showError(form, err);
    } finally {
      form.removeAttribute("aria-busy");
    }
  });
}

// ---- Stations --------------------------------------------------------------

// ago says how long ago an RFC 3339 time was, coarsely ("12 s ago").
function ago(iso) {
  const t = Date.parse(iso);
  if (!Number.isFinite(t)) return "";
  const s = Math.max(0, Math.round((serverNow() - t) / 1000));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return `on ${new Date(t).toLocaleDateString()}`;
}

// lastSeen says when an offline station was last heard from (a zero time: never).
const lastSeen = (s) => (Date.parse(s.last_seen_at) > 0 ? `last seen ${ago(s.last_seen_at)}` : "never seen");

function distance(m) {
  if (typeof m !== "number") return "";
  if (m < 1000) return `${Math.round(m / 10) * 10} m`;
  return `${(m / 1000).toFixed(m < 10000 ? 1 : 0)} km`;
}

// stationCard builds a station's card; prefix keeps element ids unique when
// the same station is drawn twice (on the board and as the map's choice).
function stationCard(id, prefix = "station") {
  const tallies = Object.keys(COUNTS).map((k) =>
    h(
      "div",
      { class: `tally ${k}` },
      h("dt", {}, h("span", { class: "swatch", "aria-hidden": "true" }), k[0].toUpperCase() + k.slice(1)),
      h("dd", { "data-field": k }, "0"),
    ),
  );
  return h(
    "article",
    { class: "card", "data-station-id": id, "aria-labelledby": `${prefix}-${id}-name` },
    h(
      "div",
      { class: "card-head" },
      h("h3", { id: `${prefix}-${id}-name`, "data-field": "name" }),
      h("span", { class: "badge", "data-field": "status" }),
    ),
    h("p", { class: "address", "data-field": "address" }),
    h("p", { class: "presence", "data-field": "presence" }),
    h("p", { class: "message", "data-field": "message" }),
    h(
      "div",
      { class: "bar", "aria-hidden": "true" },
      ...["available", "charging", "booked"].map((k) => h("span", { class: `seg ${k}` })),
    ),
    h("dl", { class: "tallies" }, ...tallies),
    h(
      "div",
      { class: "card-foot" },
      h("span", { class: "muted" }, `Station #${id} · `, h("time", { "data-field": "fresh" })),
      h("button", { type: "button", class: "primary", "data-action": "book" }, "Book"),
    ),
    h("p", { class: "feedback", "data-field": "feedback", "aria-live": "polite" }),
  );
}

function paintCard(card, s, busy) {
  field(card, "name").textContent = s.name;
  const badge = field(card, "status");
  badge.textContent = STATUS_LABEL[s.status] || s.status;
  badge.dataset.status = s.status;
  field(card, "address").textContent = s.address || "";
  const message = field(card, "message");
  message.textContent = s.message || "";
  message.hidden = !s.message;
  const offline = s.presence === "offline";
  card.dataset.presence = s.presence || "online";
  const presence = field(card, "presence");
  presence.textContent = offline ? `Offline · ${lastSeen(s)}` : "";
  presence.hidden = !offline;
  paintFresh(card, s);
  for (const [k, key] of Object.entries(COUNTS)) {
    const n = s[key] || 0;
    field(card, k).textContent = String(n);
    const seg = $(`.seg.${k}`, card);
    if (seg) seg.style.width = s.total_batteries ? `${(100 * n) / s.total_batteries}%` : "0";
  }
  const book = $('[data-action="book"]', card);
  book.disabled =
    busy || offline || s.status !== "open" || (s.available_batteries || 0) + (s.charging_batteries || 0) < 1;
  book.setAttribute("aria-label", `Book a battery at ${s.name}`);
}

function paintFresh(card, s) {
  const fresh = field(card, "fresh");
  fresh.dateTime = s.updated_at || "";
  fresh.textContent = s.updated_at ? `updated ${ago(s.updated_at)}` : "";
  if (s.presence === "offline") field(card, "presence").textContent = `Offline · ${lastSeen(s)}`;
}

function renderStation(entry, flash = false) {
  const { station: s, card } = entry;
  paintCard(card, s, entry.busy);
  if (flash) {
    card.classList.remove("flash");
    void card.offsetWidth; // restart the animation
    card.classList.add("flash");
  }
  if (state.selected === s.id) paintCard(state.detail, s, entry.busy);
  state.map.update(s);
  if (state.near.some((n) => n.id === s.id)) renderNear();
}

function applyStation(s, flash = false) {
  let entry = state.stations.get(s.id);
  const named = entry?.station.name;
  if (!entry) {
    entry = { station: {}, card: stationCard(s.id), busy: false };
    state.stations.set(s.id, entry);
    const next = [...$("#board").children].find((c) => Number(c.dataset.stationId) > s.id);
    $("#board").insertBefore(entry.card, next || null);
    $("#board-empty").hidden = true;
  }
  // Events can arrive out of commit order with a fetched station: freshness only goes forward.
  if (s.updated_at && entry.station.updated_at && Date.parse(s.updated_at) < Date.parse(entry.station.updated_at)) {
    s = { ...s, updated_at: entry.station.updated_at };
  }
  Object.assign(entry.station, s);
  renderStation(entry, flash);
  if (named !== entry.station.name) renderStationOptions();
}

// chooseStation shows station id (null: none) beside the map, as a card of its own.
function chooseStation(id) {
  const entry = state.stations.get(id);
  state.selected = entry ? id : null;
  state.map.select(state.selected);
  const box = $("#station-detail");
  if (!entry) {
    state.detail = null;
    box.replaceChildren(h("p", { class: "muted" }, "No station chosen."));
    return;
  }
  const card = stationCard(id, "detail");
  card.removeAttribute("data-station-id");
  card.dataset.detailId = id;
  state.detail = card;
  box.replaceChildren(card);
  paintCard(card, entry.station, entry.busy);
}

function renderStationOptions() {
  const options = [...state.stations.values()].map(({ station: s }) => h("option", { value: s.id }, s.name));
  $("#station-options").replaceChildren(...options);
}

function onSnapshot(ev) {
  const ids = new Set((ev.stations || []).map((s) => s.id));
  for (const [id, entry] of state.stations) {
    if (ids.has(id)) continue;
    entry.card.remove();
    state.stations.delete(id);
    state.map.remove(id);
    if (state.selected === id) chooseStation(null);
  }
  for (const s of ev.stations || []) applyStation(s);
  const empty = $("#board-empty");
  empty.textContent = "No stations yet.";
  empty.hidden = state.stations.size > 0;
  renderStationOptions();
  showBooking(state.booking);
}

function onStationEvent(ev) {
  if (!state.stations.has(ev.station_id)) {
    fetchStation(ev.station_id, ev);
    return;
  }
  const before = state.stations.get(ev.station_id).station;
  const patch = { id: ev.station_id };
  if (ev.station_name) patch.name = ev.station_name;
  if (ev.timestamp) patch.updated_at = ev.timestamp;
  for (const key of Object.values(COUNTS)) if (typeof ev[key] === "number") patch[key] = ev[key];
  if (ev.type === "station_status") {
    Object.assign(patch, { status: ev.status, message: ev.message });
    if (ev.presence) patch.presence = ev.presence;
    if (ev.last_seen_at) patch.last_seen_at = ev.last_seen_at;
    else if (ev.presence === "offline" && before.presence !== "offline") fetchLastSeen(ev.station_id);
  }
  applyStation(patch, true);
}

// fetchLastSeen fills in when a station that just went offline was last
// heard from (station_status does not say); only that field is taken, so a
// fetch that races newer events cannot roll their counts back.
async function fetchLastSeen(id) {
  try {
    const s = await api("GET", `/stations/${id}`);
    if (state.stations.has(id)) applyStation({ id, last_seen_at: s.last_seen_at });
  } catch (err) {
    report(err);
  }
}

// fetchStation loads a station first heard of in ev. The fetched state is at
// least as new as ev; events that arrive while it loads are applied after it.
async function fetchStation(id, ev) {
  if (state.pending.has(id)) {
    state.pending.get(id).push(ev);
    return;
  }
  state.pending.set(id, []);
  try {
    applyStation(await api("GET", `/stations/${id}`), true);
    for (const queued of state.pending.get(id)) onStationEvent(queued);
  } catch (err) {
    report(err);
  } finally {
    state.pending.delete(id);
  }
}

// book books a battery at entry's station; feedback is the message next to
// the Book button that was pressed (on the board or beside the map).
async function book(entry, feedback) {
  if (!state.user) {
    feedback.textContent = "Sign in to book a battery.";
    $("#login-email").focus();
    return;
  }
  entry.busy = true;
  renderStation(entry);
  feedback.textContent = "Booking…";
  try {
    const b = await api("POST", "/bookings", { station_id: entry.station.id }, { "Idempotency-Key": randomKey() });
    feedback.textContent = `Booked battery #${b.battery_id}.`;
    showBooking(b);
  } catch (err) {
    feedback.textContent = errorText(err);
    if (err.code === "active_booking_exists") loadBookings().catch(report);
  } finally {
    entry.busy = false;
    renderStation(entry);
  }
}

function onBookClick(ev) {
  const button = ev.target.closest('[data-action="book"]');
  if (!button) return;
  const card = button.closest(".card");
  const entry = state.stations.get(Number(card.dataset.stationId || card.dataset.detailId));
  if (entry) book(entry, field(card, "feedback"));
}

// showDelay puts the latest event's delivery delay (its arrival here minus
// its commit on the server, on the server's clock) into the connection indicator.
function showDelay(ev) {
  const t = Date.parse(ev.timestamp);
  if (!Number.isFinite(t)) return;
  const ms = Math.max(0, serverNow() - t);
  const el = field($("#conn-status"), "delay");
  el.textContent = ms < 1000 ? `delay ${ms} ms` : `delay ${(ms / 1000).toFixed(1)} s`;
  el.dataset.ms = String(ms);
  el.hidden = false;
}

function startStations() {
  state.map = new StationMap($("#map"), {
    onSelect: chooseStation,
    describe: (s) => (s.presence === "offline" ? lastSeen(s) : ""),
    onFit: (fitted) => {
      $("#map-all").hidden = !fitted;
    },
  });
  $("#map-all").addEventListener("click", () => {
    state.map.fit(null);
    state.map.focus();
  });
  const handlers = { connection_established: syncClock, snapshot: onSnapshot };
  for (const type of STATION_EVENTS) {
    handlers[type] = (ev) => {
      showDelay(ev);
      onStationEvent(ev);
    };
  }
  connect("stream/stations", {
    handlers,
    // The board shows current counts: a phone that falls behind gets the
    // newest per station instead of being cut off (CONTRACT §4).
    params: { delivery: "latest" },
    onState: (s) => {
      const el = $("#conn-status");
      el.dataset.state = s;
      field(el, "label").textContent = CONN_LABEL[s];
      if (s === "reconnecting") field(el, "delay").hidden = true;
    },
  });
  $("#board").addEventListener("click", onBookClick);
  $("#station-detail").addEventListener("click", onBookClick);
  // Freshness ticks: "updated N s ago", "last seen …" on cards and the map.
  setInterval(() => {
    for (const { station, card } of state.stations.values()) paintFresh(card, station);
    const chosen = state.stations.get(state.selected);
    if (chosen) paintFresh(state.detail, chosen.station);
    state.map.refresh();
    renderNear();
  }, 1000);
}

// ---- Near me ---------------------------------------------------------------

// parseLocation reads "lat,lon" (spaces allowed); null when it is not two numbers.
function parseLocation(text) {
  const m = /^\s*(-?\d+(?:\.\d+)?)\s*[,;\s]\s*(-?\d+(?:\.\d+)?)\s*$/.exec(text || "");
  return m ? { lat: Number(m[1]), lon: Number(m[2]) } : null;
}

// nearItem draws one "near me" row, or updates it in place (keeping focus).
function nearItem({ id, distance_m: d }, li = null) {
  const s = state.stations.get(id)?.station;
  if (!s) return null;
  li ||= h(
    "li",
    { "data-near-id": id },
    h("button", { type: "button", class: "link", "data-action": "show" }),
    h("span", { class: "distance", "data-field": "distance" }, distance(d)),
    h("span", { class: "muted", "data-field": "what" }),
  );
  const offline = s.presence === "offline";
  li.dataset.presence = s.presence || "online";
  const button = $('[data-action="show"]', li);
  button.textContent = s.name;
  button.setAttribute("aria-label", `Show ${s.name} on the map`);
  field(li, "what").textContent = offline
    ? `Offline · ${lastSeen(s)}`
    : s.status !== "open"
      ? STATUS_LABEL[s.status] || s.status
      : `${s.available_batteries || 0} ready · ${s.charging_batteries || 0} charging`;
  return li;
}

// renderNear updates the "near me" rows in place; fresh draws the last
// answer anew.
function renderNear(fresh = false) {
  const list = $("#near-list");
  if (fresh) {
    list.replaceChildren(...state.near.map((n) => nearItem(n)).filter(Boolean));
    return;
  }
  for (const n of state.near) {
    const li = $(`[data-near-id="${n.id}"]`, list);
    if (li) nearItem(n, li);
  }
}

function startNear() {
  const form = $("#near-form");
  const input = $("#near-location");
  const geo = $("#near-geo");
  geo.hidden = !navigator.geolocation;
  geo.addEventListener("click", () => {
    clearErrors(form);
    say(form, "Finding your location…");
    navigator.geolocation.getCurrentPosition(
      ({ coords }) => {
        input.value = `${coords.latitude.toFixed(5)},${coords.longitude.toFixed(5)}`;
        form.requestSubmit();
      },
      (err) => {
        say(form, `Your location is not available (${err.message || "denied"}). Type it as latitude,longitude.`, true);
        input.focus();
      },
      { timeout: 10000, maximumAge: 60000 },
    );
  });
  onSubmit(form, async (fd) => {
    const loc = parseLocation(fd.get("near"));
    if (!loc) {
      throw new ApiError(422, { error: { message: "Type your location as latitude,longitude.", fields: { near: "must be two numbers, such as 51.5074,-0.1278" } } });
    }
    const query = new URLSearchParams({ near: `${loc.lat},${loc.lon}`, limit: "10" });
    if (fd.get("available")) query.set("available", "true");
    const { stations } = await api("GET", `/stations?${query}`);
    for (const s of stations) if (!state.stations.has(s.id)) applyStation(s);
    state.near = stations.map(({ id, distance_m }) => ({ id, distance_m }));
    state.map.setYou(loc);
    state.map.fit(state.near.slice(0, 3).map((n) => n.id)); // you and the closest few
    renderNear(true);
    if (!stations.length) return "No stations near there.";
    return `The ${stations.length === 1 ? "nearest station" : `${stations.length} nearest stations`}, closest first.`;
  });
  $("#near-list").addEventListener("click", (ev) => {
    const button = ev.target.closest('[data-action="show"]');
    if (!button) return;
    const id = Number(button.closest("li").dataset.nearId);
    state.map.choose(id, true);
    $("#map").scrollIntoView?.({ block: "nearest" });
  });
}

// ---- My booking ------------------------------------------------------------

function showBooking(b) {
  state.booking = b;
  const panel = $("#my-booking");
  field(panel, "none").hidden = Boolean(b);
  field(panel, "details").hidden = !b;
  if (!b) return;
  const status = field(panel, "status");
  status.textContent = b.status;
  status.dataset.status = b.status;
  field(panel, "hint").textContent = BOOKING_HINT[b.status] || "";
  const station = state.stations.get(b.station_id)?.station;
  field(panel, "station").textContent = station ? `${station.name} (#${b.station_id})` : `#${b.station_id}`;
  field(panel, "battery").textContent = `#${b.battery_id}`;
  field(panel, "timer").hidden = !isActive(b);
  const collect = $("#collect-form");
  collect.hidden = !isActive(b);
  $('[type="submit"]', collect).disabled = b.status !== "ready";
  tick();
}

function tick() {
  const b = state.booking;
  if (!isActive(b)) return;
  const el = field($("#my-booking"), "countdown");
  const left = Math.ceil((Date.parse(b.expires_at) - serverNow()) / 1000);
  el.dateTime = b.expires_at;
  el.title = `Until ${new Date(b.expires_at).toLocaleTimeString()}`;
  el.textContent =
    left > 0 ? `${Math.floor(left / 60)}:${String(left % 60).padStart(2, "0")}` : "Time is up";
}

async function loadBookings() {
  if (!state.user) return;
  // The list is newest first, and a rider's active booking is always their
  // newest. user_id keeps an admin to their own (users only ever see theirs).
  const { bookings } = await api("GET", `/bookings?user_id=${state.user.id}&limit=1`);
  const active = bookings.find((b) => b.user_id === state.user?.id && isActive(b));
  showBooking(active || null);
}

async function refreshBooking(id) {
  const b = await api("GET", `/bookings/${id}`);
  if (!state.user) return;
  if (!state.booking || state.booking.id === b.id || isActive(b)) showBooking(b);
}

function startBookingPanel() {
  const form = $("#collect-form");
  onSubmit(form, async (fd) => {
    const serial = fd.get("return_serial_number").trim();
    const charge = num(fd.get("return_charge_percent"));
    let body;
    if (serial || charge !== undefined) body = { return_serial_number: serial || undefined, return_charge_percent: charge };
    showBooking(await api("POST", `/bookings/${state.booking.id}/collect`, body));
    form.reset();
    return "Collected.";
  });
  const cancel = $("#cancel-booking");
  cancel.addEventListener("click", async () => {
    clearErrors(form);
    cancel.disabled = true;
    try {
      showBooking(await api("POST", `/bookings/${state.booking.id}/cancel`));
      $("#booking-title").focus();
    } catch (err) {
      showError(form, err);
    } finally {
      cancel.disabled = false;
    }
  });
  setInterval(tick, 1000);
}

// ---- Notifications ---------------------------------------------------------

function noteItem(n) {
  return h(
    "li",
    { class: `note level-${n.level}`, "data-notification-id": n.id },
    h("p", { class: "note-title" }, h("span", { class: "level" }, n.level), " ", n.title || n.type),
    h("p", {}, n.message),
    h("time", { datetime: n.created_at }, new Date(n.created_at).toLocaleString()),
    h("button", { type: "button", class: "link", "data-action": "read", "aria-label": `Mark “${n.title}” as read` }, "Mark as read"),
  );
}

// renderNotes shows the unread notifications; more says there are older ones
// than the list holds (the snapshot's unread_more, a list's next_cursor).
function renderNotes(list, more = false) {
  state.unread = [...list].sort((a, b) => b.id - a.id);
  state.unreadMore = more;
  const panel = $("#notifications");
  $("#unread-count").textContent = more ? `${state.unread.length}+` : String(state.unread.length);
  field(panel, "empty").hidden = state.unread.length > 0;
  field(panel, "list").replaceChildren(...state.unread.map(noteItem));
}

async function loadUnread() {
  const { notifications, next_cursor: next } = await api("GET", "/notifications?unread=true");
  if (state.user) renderNotes(notifications, next != null);
}

let unreadTimer = 0;
// onNotificationEvent shows a live event and refetches the unread list, since
// a live event's id is the event id, not the notification id.
function onNotificationEvent(ev) {
  field($("#notifications"), "latest").textContent = ev.title ? `${ev.title}: ${ev.message}` : ev.message || "";
  clearTimeout(unreadTimer);
  unreadTimer = setTimeout(() => loadUnread().catch(report), 250);
  if (ev.booking_id) refreshBooking(ev.booking_id).catch(report);
}

function startNotifications() {
  const handlers = { snapshot: (ev) => renderNotes(ev.unread || [], ev.unread_more === true), notification: onNotificationEvent };
  for (const type of BOOKING_EVENTS) handlers[type] = onNotificationEvent;
  return connect("stream/notifications", {
    handlers,
    // EventSource cannot send headers; the cookie covers sessions from login.
    params: state.token ? { access_token: state.token } : {},
    canRetry: async () => {
      try {
        await api("GET", "/me");
        return true;
      } catch (err) {
        return !(err instanceof ApiError && err.status === 401);
      }
    },
  });
}

function startNotificationPanel() {
  const list = field($("#notifications"), "list");
  list.addEventListener("click", async (ev) => {
    const button = ev.target.closest('[data-action="read"]');
    if (!button) return;
    const li = button.closest("li");
    const id = Number(li.dataset.notificationId);
    const next = li.nextElementSibling || li.previousElementSibling;
    const hadFocus = li.contains(document.activeElement);
    button.disabled = true;
    try {
      await api("POST", `/notifications/${id}/read`);
      renderNotes(state.unread.filter((n) => n.id !== id), state.unreadMore);
      if (hadFocus) {
        const target = next && $(`[data-notification-id="${next.dataset.notificationId}"] button`, list);
        (target || $("#notes-title")).focus();
      }
    } catch (err) {
      button.disabled = false;
      field($("#notifications"), "latest").textContent = errorText(err);
    }
  });
}

// ---- Session ---------------------------------------------------------------

function showPanels(user) {
  $("#auth").hidden = Boolean(user);
  $("#account").hidden = !user;
  $("#my-booking").hidden = !user;
  $("#notifications").hidden = !user;
  $("#admin").hidden = user?.role !== "admin";
}

function signedIn(user, token) {
  state.user = user;
  if (token) {
    state.token = token;
    sessionStorage.setItem(TOKEN_KEY, token);
  }
  field($("#account"), "user").textContent = `${user.name || user.email}${user.role === "admin" ? " (admin)" : ""}`;
  $("#auth-msg").textContent = "";
  showPanels(user);
  state.stopNotifications?.();
  state.stopNotifications = startNotifications();
  loadBookings().catch(report);
}

function signedOut(message = "") {
  clearTimeout(unreadTimer);
  state.stopNotifications?.();
  state.stopNotifications = null;
  state.user = null;
  state.token = "";
  sessionStorage.removeItem(TOKEN_KEY);
  showBooking(null);
  renderNotes([]);
  field($("#notifications"), "latest").textContent = "";
  showPanels(null);
  $("#auth-msg").textContent = message;
}

function startAuth() {
  onSubmit($("#login-form"), async (fd, form) => {
    const { user, token } = await api("POST", "/auth/login", { email: fd.get("email"), password: fd.get("password") });
    form.reset();
    signedIn(user, token);
    $("#booking-title").focus();
  });
  onSubmit($("#register-form"), async (fd, form) => {
    const { user, token } = await api("POST", "/auth/register", {
      email: fd.get("email"),
      password: fd.get("password"),
      name: fd.get("name"),
    });
    form.reset();
    signedIn(user, token);
    $("#booking-title").focus();
  });
  $("#logout-button").addEventListener("click", async () => {
    await api("POST", "/auth/logout").catch(report);
    signedOut("You are signed out.");
    $("#login-email").focus();
  });
}

// ---- Admin -----------------------------------------------------------------

function batteryItem(b, note = "") {
  const form = h(
    "form",
    { class: "telemetry", "aria-label": `Telemetry for battery ${b.serial_number}` },
    h(
      "p",
      {},
      h("strong", {}, b.serial_number),
      ` #${b.id} · ${b.charge_percent}% · health ${b.health_percent}% `,
      h("span", { class: "badge", "data-status": b.status }, b.status),
    ),
    h(
      "div",
      { class: "row" },
      h(
        "div",
        { class: "field" },
        h("label", { for: `charge-${b.id}` }, "Charge (%)"),
        h("input", { id: `charge-${b.id}`, name: "charge_percent", type: "number", min: 0, max: 100, value: b.charge_percent }),
      ),
      h(
        "div",
        { class: "field" },
        h("label", { for: `status-${b.id}` }, "Status"),
        h(
          "select",
          { id: `status-${b.id}`, name: "status" },
          ...["", "available", "charging", "maintenance"].map((v) => h("option", { value: v }, v || "(unchanged)")),
        ),
      ),
      h("button", { type: "submit" }, "Send"),
    ),
    h("p", { class: "form-msg", "aria-live": "polite" }, note),
  );
  const li = h("li", { "data-battery-id": b.id }, form);
  onSubmit(form, async (fd) => {
    const body = { charge_percent: num(fd.get("charge_percent")) };
    if (fd.get("status")) body.status = fd.get("status");
    const updated = await api("PATCH", `/batteries/${b.id}`, body);
    const hadFocus = li.contains(document.activeElement);
    const fresh = batteryItem(updated, "Sent.");
    li.replaceWith(fresh);
    if (hadFocus) $('[type="submit"]', fresh).focus();
  });
  return li;
}

function startAdmin() {
  onSubmit($("#create-station-form"), async (fd, form) => {
    const s = await api("POST", "/stations", {
      name: fd.get("name"),
      address: fd.get("address"),
      latitude: num(fd.get("latitude")),
      longitude: num(fd.get("longitude")),
      status: fd.get("status") || undefined,
    });
    form.reset();
    // The card arrives through the stream, as for every other viewer.
    return `Station “${s.name}” created as #${s.id}.`;
  });
  onSubmit($("#add-battery-form"), async (fd, form) => {
    const b = await api("POST", `/stations/${num(fd.get("station_id"))}/batteries`, {
      serial_number: fd.get("serial_number"),
      charge_percent: num(fd.get("charge_percent")),
      capacity_kwh: num(fd.get("capacity_kwh")),
    });
    form.elements.serial_number.value = "";
    return `Battery ${b.serial_number} added to station #${b.station_id} (${b.status}).`;
  });
  const update = $("#station-update-form");
  // Prefill what the station has now, so changing its status keeps its message.
  update.elements.station_id.addEventListener("input", (ev) => {
    const s = state.stations.get(Number(ev.target.value))?.station;
    if (!s) return;
    update.elements.status.value = s.status;
    update.elements.message.value = s.message || "";
  });
  onSubmit(update, async (fd) => {
    const s = await api("PATCH", `/stations/${num(fd.get("station_id"))}`, {
      status: fd.get("status"),
      message: fd.get("message"),
    });
    applyStation(s, true);
    return `Station “${s.name}” is ${s.status}.`;
  });
  onSubmit($("#notify-form"), async (fd, form) => {
    const n = await api("POST", "/notifications", {
      user_id: num(fd.get("user_id")),
      title: fd.get("title"),
      message: fd.get("message"),
      level: fd.get("level"),
    });
    form.elements.title.value = "";
    form.elements.message.value = "";
    return `Notification #${n.id} sent.`;
  });
  onSubmit($("#batteries-form"), async (fd) => {
    const id = num(fd.get("station_id"));
    const { batteries } = await api("GET", `/stations/${id}/batteries`);
    $("#battery-list").replaceChildren(...batteries.map((b) => batteryItem(b)));
    return `${batteries.length} ${batteries.length === 1 ? "battery" : "batteries"} at station #${id}.`;
  });
}

// ---- Start -----------------------------------------------------------------

startStations();
startNear();
startBookingPanel();
startNotificationPanel();
startAuth();
startAdmin();
api("GET", "/me").then(signedIn, (err) => {
  // A sign-in that finished while this was in flight wins.
  if (err.status === 401 && !state.user) signedOut();
  else report(err);
});
