// map.js draws stations on an SVG map placed by their own coordinates: no
// tiles, nothing fetched, so it works offline. Each marker is coloured by
// availability (data-availability) and shows its count of ready packs.

const PAD = 28; // px kept free around the outermost markers
const RADIUS = 13; // px, a marker's circle
const MIN_SPAN = 0.005; // degrees: one station, or all in one spot, still fit
const M_PER_DEG = 111320;

/** availability sums a station up for its marker's colour. */
export function availability(s) {
  if (s.presence === "offline") return "offline";
  if (s.status !== "open") return "closed";
  if (s.available_batteries > 0) return "available";
  if (s.charging_batteries > 0) return "charging";
  return "empty";
}

export const AVAILABILITY_LABEL = {
  available: "packs ready",
  charging: "charging only",
  empty: "no packs",
  closed: "closed",
  offline: "offline",
};

export class StationMap {
  /**
   * svg is an <svg> from the page (its namespace comes from there). onSelect
   * receives a station id when one is chosen by click, Enter, Space or arrows;
   * onFit whether the map shows only some stations (see fit).
   */
  constructor(svg, { onSelect, describe, onFit = () => {} }) {
    this.svg = svg;
    this.ns = svg.namespaceURI;
    this.onSelect = onSelect;
    this.describe = describe; // station -> extra text for its label and tag
    this.onFit = onFit;
    this.fitIds = null; // when set, the view frames only these stations (and you)
    this.markers = new Map(); // id -> { g, station }
    this.selected = null;
    this.you = null;
    this.due = false; // a relayout is queued
    this.bg = this.el("rect", { class: "map-bg", x: 0, y: 0 });
    this.scale = this.el("g", { class: "scale", "aria-hidden": "true" });
    this.youMark = this.el("g", { class: "you", "aria-hidden": "true" });
    this.youMark.append(this.el("circle", { r: 6 }), this.el("circle", { r: 2.5, class: "you-dot" }));
    this.layer = this.el("g", { class: "markers" });
    svg.append(this.bg, this.scale, this.youMark, this.layer);
    svg.addEventListener("click", (ev) => {
      const g = ev.target.closest?.("[data-marker-id]");
      if (g) this.choose(Number(g.dataset.markerId));
    });
    svg.addEventListener("keydown", (ev) => this.key(ev));
    new ResizeObserver(() => this.layout()).observe(svg);
  }

  el(tag, attrs = {}) {
    const e = document.createElementNS(this.ns, tag);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
    return e;
  }

  /** update draws station s (a full station) anew, adding it if new. */
  update(s) {
    let m = this.markers.get(s.id);
    const moved = !m || m.station.latitude !== s.latitude || m.station.longitude !== s.longitude;
    if (!m) {
      const g = this.el("g", { class: "marker", "data-marker-id": s.id, role: "button", tabindex: -1, "aria-pressed": "false" });
      g.append(this.el("circle", { r: RADIUS }), this.el("text", { class: "count", dy: "0.35em" }), this.el("text", { class: "tag", y: RADIUS + 13 }));
      m = { g, station: {} };
      this.markers.set(s.id, m);
      this.layer.append(g);
    }
    m.station = { ...s };
    this.paint(m);
    if (moved) this.relayout();
  }

  // relayout lays the map out once after the current task's changes (a
  // snapshot adds every station in one go).
  relayout() {
    if (this.due) return;
    this.due = true;
    queueMicrotask(() => {
      this.due = false;
      this.roving();
      this.layout();
    });
  }

  paint({ g, station: s }) {
    const kind = availability(s);
    const extra = this.describe?.(s) || "";
    g.dataset.availability = kind;
    g.querySelector(".count").textContent = String(s.available_batteries || 0);
    g.querySelector(".tag").textContent = kind === "offline" ? extra : "";
    g.setAttribute(
      "aria-label",
      `${s.name}: ${s.available_batteries || 0} ready, ${s.charging_batteries || 0} charging, ${AVAILABILITY_LABEL[kind]}${extra ? `, ${extra}` : ""}`,
    );
  }

  /** refresh repaints the offline markers, whose "last seen" follows the clock. */
  refresh() {
    for (const m of this.markers.values()) if (m.station.presence === "offline") this.paint(m);
  }

  remove(id) {
    this.markers.get(id)?.g.remove();
    this.markers.delete(id);
    if (this.selected === id) this.selected = null;
    this.relayout();
  }

  /** fit frames the stations ids and the rider's location; null frames every station. */
  fit(ids) {
    this.fitIds = ids?.length ? new Set(ids) : null;
    this.onFit(Boolean(this.fitIds));
    this.relayout();
  }

  /** setYou marks the rider's location (or clears it with null). */
  setYou(loc) {
    this.you = loc;
    this.relayout();
  }

  // layout fits every station into the drawing, north up, with a local
  // equirectangular projection (fine at city scale), and redraws the scale bar.
  layout() {
    const w = this.svg.clientWidth || 600;
    const h = this.svg.clientHeight || 360;
    this.svg.setAttribute("viewBox", `0 0 ${w} ${h}`);
    this.bg.setAttribute("width", w);
    this.bg.setAttribute("height", h);
    const all = [...this.markers.values()].map((m) => m.station).filter((s) => !this.fitIds || this.fitIds.has(s.id));
    if (this.fitIds && this.you) all.push({ latitude: this.you.lat, longitude: this.you.lon });
    if (!all.length) {
      this.youMark.setAttribute("visibility", "hidden");
      this.scale.replaceChildren();
      return;
    }
    const box = { s: Infinity, n: -Infinity, w: Infinity, e: -Infinity };
    for (const { latitude: lat, longitude: lon } of all) {
      Object.assign(box, { s: Math.min(box.s, lat), n: Math.max(box.n, lat), w: Math.min(box.w, lon), e: Math.max(box.e, lon) });
    }
    const lat0 = (box.s + box.n) / 2;
    const lon0 = (box.w + box.e) / 2;
    const k = Math.max(Math.cos((lat0 * Math.PI) / 180), 0.01);
    const spanX = Math.max((box.e - box.w) * k, MIN_SPAN);
    const spanY = Math.max(box.n - box.s, MIN_SPAN);
    const scale = Math.min((w - 2 * PAD) / spanX, (h - 2 * PAD) / spanY); // px per degree of latitude
    const at = (lat, lon) => [w / 2 + (lon - lon0) * k * scale, h / 2 - (lat - lat0) * scale];
    for (const { g, station: s } of this.markers.values()) {
      const [x, y] = at(s.latitude, s.longitude);
      g.setAttribute("transform", `translate(${x.toFixed(1)} ${y.toFixed(1)})`);
    }
    const you = this.you && at(this.you.lat, this.you.lon);
    const inside = you && you[0] >= 0 && you[0] <= w && you[1] >= 0 && you[1] <= h;
    this.youMark.setAttribute("visibility", inside ? "visible" : "hidden");
    if (inside) this.youMark.setAttribute("transform", `translate(${you[0].toFixed(1)} ${you[1].toFixed(1)})`);
    this.drawScale(M_PER_DEG / scale, h);
  }

  drawScale(metresPerPx, h) {
    const target = metresPerPx * 100;
    const step = 10 ** Math.floor(Math.log10(target));
    const metres = [5, 2, 1].map((f) => f * step).find((m) => m <= target) || step;
    const px = metres / metresPerPx;
    const text = metres >= 1000 ? `${metres / 1000} km` : `${metres} m`;
    const y = h - 10;
    const line = this.el("path", { d: `M10 ${y - 5} V${y} H${(10 + px).toFixed(1)} V${y - 5}` });
    const label = this.el("text", { x: 14, y: y - 8 });
    label.textContent = text;
    this.scale.replaceChildren(line, label);
  }

  /** select marks station id as chosen (null: none) without calling onSelect. */
  select(id) {
    this.selected = id;
    for (const [mid, { g }] of this.markers) g.setAttribute("aria-pressed", String(mid === id));
    const g = this.markers.get(id)?.g;
    // Drawn last, on top of its neighbours (moving a node blurs it: only once).
    if (g && g !== this.layer.lastChild) this.layer.append(g);
    this.roving();
  }

  choose(id, focus = false) {
    if (this.fitIds && !this.fitIds.has(id)) this.fit(null); // out of view: show all
    this.select(id);
    this.onSelect(id);
    if (focus) this.markers.get(id)?.g.focus();
  }

  /** focus moves the keyboard focus to the map (its one marker in the Tab order). */
  focus() {
    this.layer.querySelector('[tabindex="0"]')?.focus();
  }

  // roving keeps one marker in the Tab order: the chosen one, else the first.
  roving() {
    const ids = this.order();
    const stop = this.markers.has(this.selected) ? this.selected : ids[0];
    for (const [id, { g }] of this.markers) g.setAttribute("tabindex", id === stop ? "0" : "-1");
  }

  order() {
    return [...this.markers.keys()].sort((a, b) => a - b);
  }

  key(ev) {
    const g = ev.target.closest?.("[data-marker-id]");
    if (!g) return;
    const id = Number(g.dataset.markerId);
    const ids = this.order();
    const i = ids.indexOf(id);
    const to = {
      ArrowRight: ids[i + 1],
      ArrowDown: ids[i + 1],
      ArrowLeft: ids[i - 1],
      ArrowUp: ids[i - 1],
      Home: ids[0],
      End: ids[ids.length - 1],
      Enter: id,
      " ": id,
    }[ev.key];
    if (to === undefined) return;
    ev.preventDefault();
    this.choose(to, true);
  }
}
