// The pipeline console: totals, two uPlot charts and tables, fed by /api/history then /api/stream.
// Everything is set with textContent; no build step.
"use strict";

const $ = (id) => document.getElementById(id);
const samples = [];
let rateChart = null;
let depthChart = null;

function fmtSeconds(s) {
  if (s === null || s === undefined) return "—";
  return s < 10 ? `${s.toFixed(2)} s` : `${s.toFixed(1)} s`;
}

function cell(text) {
  const td = document.createElement("td");
  td.textContent = String(text);
  return td;
}

function rows(tbody, entries) {
  tbody.replaceChildren(...entries.map((values) => {
    const tr = document.createElement("tr");
    tr.append(...values.map(cell));
    return tr;
  }));
}

function chartSize(el) {
  return { width: Math.max(280, el.clientWidth), height: 220 };
}

function rateData() {
  return [
    samples.map((s) => s.at),
    samples.map((s) => s.send_rate_per_minute),
    samples.map((s) => s.quota_per_minute),
  ];
}

function depthData() {
  return [
    samples.map((s) => s.at),
    samples.map((s) => s.queues.reduce((n, q) => n + q.active + q.scheduled, 0)),
    samples.map((s) => s.dead_lettered),
  ];
}

function makeCharts() {
  const style = getComputedStyle(document.documentElement);
  const color = (name) => style.getPropertyValue(name).trim();
  const axes = [{ stroke: color("--muted") }, { stroke: color("--muted") }];
  rateChart = new uPlot({
    ...chartSize($("rate-chart")),
    axes,
    series: [{}, { label: "sent/min", stroke: color("--accent"), width: 2, points: { show: false } },
             { label: "quota/min", stroke: color("--quota"), dash: [6, 4], points: { show: false } }],
  }, rateData(), $("rate-chart"));
  depthChart = new uPlot({
    ...chartSize($("depth-chart")),
    axes,
    series: [{}, { label: "waiting", stroke: color("--accent"), width: 2, points: { show: false } },
             { label: "dead-lettered", stroke: color("--bad"), points: { show: false } }],
  }, depthData(), $("depth-chart"));
  window.addEventListener("resize", () => {
    rateChart.setSize(chartSize($("rate-chart")));
    depthChart.setSize(chartSize($("depth-chart")));
  });
}

function show(s) {
  $("published").textContent = s.published ?? "—";
  $("sent").textContent = s.sent;
  $("rate").textContent = s.send_rate_per_minute === null ? "—" : `${Math.round(s.send_rate_per_minute)}/min`;
  $("quota").textContent = s.quota_per_minute ? `quota ${s.quota_per_minute}/min` : "no quota set";
  $("dead-lettered").textContent = s.dead_lettered;
  $("throttled").textContent = s.throttled;
  rows($("queues").tBodies[0], s.queues.map((q) => [q.name, q.active, q.scheduled, q.dead_lettered]));
  for (const [kind, p] of [["accepted", s.accepted_latency], ["delivered", s.delivered_latency]]) {
    const tds = document.querySelectorAll(`#latency tr[data-kind="${kind}"] td`);
    const values = p ? [fmtSeconds(p.p50), fmtSeconds(p.p95), fmtSeconds(p.p99), p.count] : ["—", "—", "—", "—"];
    values.forEach((v, i) => { tds[i].textContent = String(v); });
  }
  const reasons = Object.entries(s.dead_letters).sort((a, b) => b[1] - a[1]);
  rows($("dead-letters").tBodies[0], reasons);
  $("no-dead-letters").hidden = reasons.length > 0;
  const outcomes = Object.entries(s.delivery).sort((a, b) => b[1] - a[1]);
  rows($("delivery").tBodies[0], outcomes);
  $("no-delivery").hidden = outcomes.length > 0;
  $("workers").replaceChildren(...s.workers.map((w) => {
    const li = document.createElement("li");
    li.dataset.ready = String(w.ready);
    const name = document.createElement("span");
    name.textContent = `${w.name} (${w.url})`;
    const badge = document.createElement("span");
    badge.className = `badge ${w.ready ? "ready" : "not-ready"}`;
    badge.textContent = w.ready ? "ready" : "not ready";
    li.append(name, badge);
    return li;
  }));
  $("no-workers").hidden = s.workers.length > 0;
  $("problems").replaceChildren(...s.problems.map((p) => {
    const li = document.createElement("li");
    li.textContent = p;
    return li;
  }));
  document.body.dataset.sampledAt = String(s.at);
}

function add(s) {
  samples.push(s);
  if (samples.length > 900) samples.shift();
  show(s);
  if (rateChart) {
    rateChart.setData(rateData());
    depthChart.setData(depthData());
  }
}

async function init() {
  const response = await fetch("/api/history");
  for (const s of await response.json()) samples.push(s);
  makeCharts();
  if (samples.length) show(samples[samples.length - 1]);
  const events = new EventSource("/api/stream");
  events.onopen = () => { $("live").textContent = "live"; $("live").classList.add("on"); };
  events.onerror = () => { $("live").textContent = "disconnected"; $("live").classList.remove("on"); };
  events.addEventListener("sample", (e) => add(JSON.parse(e.data)));
}

init();
