// Satellite's dashboard: the server paints the page once; this keeps it live from
// /events (one JSON snapshot per office-state change), ticks the ages every second,
// and draws the two pictures. Plain JS, no library: the office may have no internet.
"use strict";

const $ = (selector) => document.querySelector(selector);
const SVG = "http://www.w3.org/2000/svg";
const COLOURS = ["#2f7ed8", "#e4572e", "#29a36a", "#9b5de5", "#f3a712", "#00a6a6", "#c44569"];

let snap = JSON.parse($("#snapshot").textContent);
let skew = Date.now() - snap.now; // the browser's clock minus the dashboard's

// An element with attributes and children; text goes in as text, never as HTML.
function el(tag, attrs = {}, ...children) {
  const node = tag.startsWith("svg:")
    ? document.createElementNS(SVG, tag.slice(4))
    : document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  for (const child of children) node.append(child instanceof Node ? child : String(child ?? ""));
  return node;
}

function age(at) {
  const s = Math.max(0, Math.floor((Date.now() - skew - at) / 1000));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

const fixed = (value, digits) => (value == null ? "" : Number(value).toFixed(digits));
const ageCell = (at) => el("td", { class: "age", "data-at": at }, age(at));

function render(s) {
  $("#node").textContent = s.node ?? "?";
  $("#avg").textContent = s.avg_temp == null ? "no temperature yet" : `${s.avg_temp.toFixed(1)} °C on average`;

  $("#members").replaceChildren(...s.members.map((m) =>
    el("li", { "data-node": m.node }, el("span", { class: `dot ${m.status}` }),
      el("b", {}, m.node), " ", el("span", { class: "muted" }, m.addr), " ",
      el("span", { class: `tag ${m.status}` }, m.status))));

  $("#readings").replaceChildren(...Object.entries(s.readings).map(([node, r]) =>
    el("tr", { "data-node": node, "data-at": r.at }, el("td", {}, node),
      el("td", { class: "temp" }, fixed(r.temperature, 1)),
      el("td", {}, fixed(r.humidity, 0)), el("td", {}, fixed(r.pressure, 0)),
      ageCell(r.at))));

  $("#devices").replaceChildren(...s.online_devices.map((d) =>
    el("tr", {}, el("td", {}, el("code", {}, d.mac_addr)), el("td", {}, d.ip_addr),
      el("td", {}, d.seen_by), ageCell(d.at))));

  const lights = s.targets.lights;
  const button = $("#lights");
  button.dataset.value = lights ?? "";
  button.setAttribute("aria-pressed", String(lights === "on"));
  button.textContent = `Lights: ${lights ?? "unset"}`;
  const input = $("#temperature");
  if (document.activeElement !== input && s.targets.temperature != null) input.value = s.targets.temperature;
  $("#targets").replaceChildren(...Object.keys(s.targets).sort().map((name) =>
    el("li", {}, el("b", {}, name), ` = ${JSON.stringify(s.targets[name])}`)));

  drawOverlay(s.overlay);
  drawChart(s.history);
}

function drawOverlay(overlay) {
  $("#overlay").replaceChildren(
    ...overlay.links.map((l) => el("svg:line",
      { x1: l.x1, y1: l.y1, x2: l.x2, y2: l.y2, class: l.eager ? "eager" : "lazy" })),
    ...overlay.nodes.map((n) => el("svg:g", { class: n.status, "data-node": n.id },
      el("svg:circle", { cx: n.x, cy: n.y, r: 7 }),
      el("svg:text", { x: n.lx, y: n.ly }, n.id))));
}

// A line per node over the last hour: x is time (now at the right), y the temperature.
function drawChart(history) {
  const [W, H, left, right, top, bottom] = [960, 240, 48, 24, 10, 24];
  const now = Date.now() - skew;
  const t0 = now - 3600 * 1000;
  const temps = Object.values(history).flat().map((p) => p[1]);
  const lo = Math.floor(Math.min(...temps, Infinity) - 0.5);
  const hi = Math.ceil(Math.max(...temps, -Infinity) + 0.5);
  const x = (at) => left + ((at - t0) / (now - t0)) * (W - left - right);
  const y = (t) => top + ((hi - t) / (hi - lo)) * (H - top - bottom);
  const parts = [];
  for (const [label, at] of [["−60 min", t0], ["−30 min", now - 1800e3], ["now", now]]) {
    parts.push(el("svg:text", { x: x(at), y: H - 6, class: "axis", "text-anchor": "middle" }, label));
  }
  if (temps.length) {
    for (const t of [lo, (lo + hi) / 2, hi]) {
      parts.push(el("svg:line", { x1: left, x2: W - right, y1: y(t), y2: y(t), class: "grid" }));
      parts.push(el("svg:text", { x: left - 6, y: y(t) + 4, class: "axis", "text-anchor": "end" }, `${t.toFixed(1)}°`));
    }
  }
  const legend = [];
  Object.keys(history).sort().forEach((node, i) => {
    const colour = COLOURS[i % COLOURS.length];
    const points = history[node].filter((p) => p[0] >= t0).map((p) => `${x(p[0]).toFixed(1)},${y(p[1]).toFixed(1)}`);
    parts.push(el("svg:polyline", { points: points.join(" "), stroke: colour, class: "series", "data-node": node }));
    legend.push(el("span", { class: "swatch", style: `background:${colour}` }), `${node} `);
  });
  if (!temps.length) parts.push(el("svg:text", { x: W / 2, y: H / 2, class: "axis", "text-anchor": "middle" }, "no readings yet"));
  $("#chart").replaceChildren(...parts);
  $("#legend").replaceChildren(...legend);
}

function tick() {
  for (const cell of document.querySelectorAll("td.age[data-at]")) cell.textContent = age(Number(cell.dataset.at));
}

async function setTarget(name, value) {
  const status = $("#target-status");
  status.textContent = `setting ${name}…`;
  try {
    const reply = await fetch(`/api/targets/${encodeURIComponent(name)}`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ value }),
    });
    const body = await reply.json();
    status.textContent = reply.ok ? `${name} set to ${JSON.stringify(body.value)}` : `could not set ${name}: ${body.error}`;
  } catch (err) {
    status.textContent = `could not set ${name}: ${err}`;
  }
}

$("#lights").addEventListener("click", (e) => setTarget("lights", e.currentTarget.dataset.value === "on" ? "off" : "on"));
$("#temperature-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const value = $("#temperature").valueAsNumber;
  if (Number.isFinite(value)) setTarget("temperature", value);
});

function listen() {
  const live = $("#live");
  const source = new EventSource("/events");
  source.onopen = () => { live.textContent = "live"; live.className = "live on"; };
  source.onerror = () => { live.textContent = "reconnecting"; live.className = "live off"; };
  source.onmessage = (event) => {
    snap = JSON.parse(event.data);
    skew = Date.now() - snap.now;
    $("#problem").hidden = true;
    render(snap);
  };
}

drawChart(snap.history);
setInterval(tick, 1000);
listen();
