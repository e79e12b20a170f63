// The mailbox console. Plain DOM, no build step. Everything from an email is set through
// textContent or attributes, never innerHTML; the HTML part is shown only in a sandboxed frame.
"use strict";

const api = "/_emulator";
const state = { mail: new Map(), selected: null, query: "" };
const $ = (id) => document.getElementById(id);

function fields(m) {
  return [m.eventId, m.tenant, m.subject, m.sender, m.operationId, ...(m.to || []), ...(m.cc || [])];
}

function matches(m, query) {
  if (!query) return true;
  const needle = query.toLowerCase();
  return fields(m).some((f) => f && String(f).toLowerCase().includes(needle));
}

function timeOf(m) {
  const d = new Date(m.receivedAt);
  return d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
}

function badge(m) {
  const span = document.createElement("span");
  const outcome = m.deliveryStatus || m.outcome;
  span.className = "badge " + (/fail|bounce|suppress|quarantin|spam|expire/i.test(outcome) ? "failed" : "ok");
  span.textContent = m.errorCode ? `${outcome}: ${m.errorCode}` : outcome;
  return span;
}

function row(m) {
  const li = document.createElement("li");
  li.className = "message";
  li.dataset.operationId = m.operationId;
  li.dataset.eventId = m.eventId || "";
  li.setAttribute("role", "option");
  li.setAttribute("aria-selected", String(state.selected === m.operationId));
  const to = document.createElement("span");
  to.className = "to";
  to.textContent = (m.to || []).join(", ");
  const time = document.createElement("span");
  time.className = "time";
  time.textContent = timeOf(m);
  const subject = document.createElement("span");
  subject.className = "subject";
  subject.textContent = m.subject;
  if (m.outcome !== "Succeeded" || m.deliveryStatus) subject.appendChild(badge(m));
  const ids = document.createElement("span");
  ids.className = "ids mono";
  ids.textContent = [m.eventId || "(no event id)", m.tenant].filter(Boolean).join(" · ");
  li.append(to, time, subject, ids);
  li.addEventListener("click", () => select(m.operationId));
  return li;
}

function render() {
  const list = $("messages");
  const shown = [...state.mail.values()].filter((m) => matches(m, state.query)).reverse();
  list.replaceChildren(...shown.map(row));
  $("count").textContent = state.query ? `${shown.length} of ${state.mail.size}` : String(state.mail.size);
  $("empty").hidden = shown.length > 0;
  $("empty").textContent = state.mail.size === 0
    ? "No email captured yet. Send one and it appears here."
    : "No email matches the search.";
}

function add(m) {
  const known = state.mail.has(m.operationId);
  state.mail.set(m.operationId, m);
  if (known) { render(); return; }
  if (!matches(m, state.query)) { render(); return; }
  const list = $("messages");
  list.prepend(row(m));
  $("count").textContent = state.query ? `${list.children.length} of ${state.mail.size}` : String(state.mail.size);
  $("empty").hidden = true;
}

function setTab(name) {
  for (const b of document.querySelectorAll(".tabs button")) b.setAttribute("aria-selected", String(b.dataset.tab === name));
  for (const p of document.querySelectorAll("[data-panel]")) p.hidden = p.dataset.panel !== name;
  if (name === "raw" && state.selected) loadRaw(state.selected);
}

async function loadRaw(id) {
  const response = await fetch(`${api}/messages/${encodeURIComponent(id)}/raw`);
  $("d-raw").textContent = response.ok ? await response.text() : "The source is not available.";
}

async function select(id) {
  state.selected = id;
  for (const li of document.querySelectorAll(".message")) li.setAttribute("aria-selected", String(li.dataset.operationId === id));
  const response = await fetch(`${api}/messages/${encodeURIComponent(id)}`);
  if (!response.ok) { closeDetail(); return; }
  const m = await response.json();
  if (state.selected !== id) return;
  history.replaceState(null, "", `#${encodeURIComponent(id)}`);
  $("detail").hidden = false;
  document.body.classList.add("reading");
  $("d-subject").textContent = m.subject;
  $("d-from").textContent = m.sender;
  $("d-to").textContent = [...m.to, ...m.cc.map((a) => `cc ${a}`), ...m.bcc.map((a) => `bcc ${a}`)].join(", ");
  $("d-received").textContent = new Date(m.receivedAt).toLocaleString();
  $("d-event").textContent = m.eventId || "—";
  $("d-tenant").textContent = m.tenant || "—";
  $("d-operation").textContent = m.operationId;
  $("d-outcome").replaceChildren(badge(m));
  $("html-frame").src = `${api}/messages/${encodeURIComponent(id)}/html`;
  $("d-text").textContent = m.plainText ?? "This email has no text part.";
  const rows = Object.entries(m.headers).map(([k, v]) => {
    const tr = document.createElement("tr");
    const name = document.createElement("td");
    name.textContent = k;
    const value = document.createElement("td");
    value.textContent = v;
    tr.append(name, value);
    return tr;
  });
  $("d-headers").tBodies[0].replaceChildren(...rows);
  $("d-raw").textContent = "";
  $("att-count").textContent = m.attachments.length ? `(${m.attachments.length})` : "";
  const items = m.attachments.map((a, i) => {
    const li = document.createElement("li");
    const link = document.createElement("a");
    link.href = `${api}/messages/${encodeURIComponent(id)}/attachments/${i}`;
    link.download = a.name;
    link.textContent = a.name;
    li.append(link, ` — ${a.contentType}, ${a.size.toLocaleString()} bytes`);
    return li;
  });
  if (!items.length) {
    const li = document.createElement("li");
    li.textContent = "No attachments.";
    items.push(li);
  }
  $("d-attachments").replaceChildren(...items);
  if (!document.querySelector(".tabs button[aria-selected='true']")?.dataset.tab) setTab("html");
  if (document.querySelector(".tabs button[aria-selected='true']").dataset.tab === "raw") loadRaw(id);
}

function closeDetail() {
  state.selected = null;
  $("detail").hidden = true;
  document.body.classList.remove("reading");
  history.replaceState(null, "", location.pathname + location.search);
  for (const li of document.querySelectorAll(".message")) li.setAttribute("aria-selected", "false");
}

function remove(id) {
  state.mail.delete(id);
  document.querySelector(`.message[data-operation-id="${CSS.escape(id)}"]`)?.remove();
  if (state.selected === id) closeDetail();
  render();
}

function connect() {
  const events = new EventSource(`${api}/events`);
  events.onopen = () => { $("live").textContent = "live"; $("live").classList.add("on"); };
  events.onerror = () => { $("live").textContent = "reconnecting…"; $("live").classList.remove("on"); };
  events.addEventListener("added", (e) => add(JSON.parse(e.data)));
  events.addEventListener("updated", (e) => {
    const m = JSON.parse(e.data);
    add(m);
    if (state.selected === m.operationId) $("d-outcome").replaceChildren(badge(m));
  });
  events.addEventListener("removed", (e) => remove(JSON.parse(e.data).operationId));
  events.addEventListener("cleared", () => { state.mail.clear(); closeDetail(); render(); });
  return events;
}

async function load() {
  const response = await fetch(`${api}/messages?summary=1`);
  const list = await response.json();
  for (const m of list) state.mail.set(m.operationId, m);
  render();
}

function init() {
  const params = new URLSearchParams(location.search);
  state.query = params.get("q") || "";
  $("search").value = state.query;
  let timer = 0;
  $("search").addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      state.query = $("search").value.trim();
      const url = new URL(location.href);
      if (state.query) url.searchParams.set("q", state.query); else url.searchParams.delete("q");
      history.replaceState(null, "", url);
      render();
    }, 120);
  });
  for (const b of document.querySelectorAll(".tabs button")) b.addEventListener("click", () => setTab(b.dataset.tab));
  for (const b of document.querySelectorAll(".viewport-toggle button")) {
    b.addEventListener("click", () => {
      for (const other of document.querySelectorAll(".viewport-toggle button")) other.setAttribute("aria-pressed", String(other === b));
      $("html-frame").classList.toggle("mobile", b.dataset.width === "mobile");
    });
  }
  $("back").addEventListener("click", closeDetail);
  $("delete-one").addEventListener("click", async () => {
    if (!state.selected) return;
    const id = state.selected;
    const response = await fetch(`${api}/messages/${encodeURIComponent(id)}`, { method: "DELETE" });
    if (response.ok || response.status === 404) remove(id);
  });
  $("delete-all").addEventListener("click", async () => {
    if (!confirm("Delete every captured email?")) return;
    await fetch(`${api}/messages`, { method: "DELETE" });
  });
  // Subscribe before the first load so nothing sent in between is missed; the map de-duplicates.
  connect();
  load().then(() => {
    const id = decodeURIComponent(location.hash.slice(1));
    if (id) select(id);
  });
}

init();
