// The dashboard's page: calls the JSON API of actors/dashboard.py with the
// launch token in a header. Plain DOM, no framework, nothing from the internet;
// every value from the store is written with textContent, never as HTML.
"use strict";

const TOKEN = new URLSearchParams(location.search).get("token") || "";
const PAGE_SIZE = 20;
const $ = (id) => document.getElementById(id);

// The list's paging: the `before` cursor of each page shown, newest first.
const state = { cursors: [null], next: null, current: null, mode: "list" };

async function api(path, options = {}) {
  const init = { method: options.method || "GET", headers: { "X-Dashboard-Token": TOKEN } };
  if (options.body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(options.body);
  }
  const response = await fetch(path, init);
  const data = await response.json().catch(() => ({ error: response.statusText }));
  if (!response.ok) throw new Error(data.error || `HTTP ${response.status}`);
  return data;
}

function showError(error) {
  const box = $("error");
  box.textContent = error ? String(error.message || error) : "";
  box.hidden = !error;
}

function when(seconds) {
  return new Date(seconds * 1000).toISOString().slice(0, 16).replace("T", " ");
}

function splitTags(text) {
  return text.split(",").map((tag) => tag.trim()).filter((tag) => tag);
}

function filters() {
  const params = new URLSearchParams();
  const namespace = $("namespace").value;
  if (namespace) params.set("namespace", namespace);
  for (const tag of splitTags($("tags").value)) params.append("tag", tag);
  params.set("limit", String(PAGE_SIZE));
  return params;
}

async function loadOverview() {
  const data = await api("/api/overview");
  const counts = data.counts;
  $("database").textContent = counts.database;
  $("count-total").textContent = counts.total;
  $("count-namespaces").textContent = Object.keys(counts.by_namespace).length;
  $("count-forgotten").textContent = counts.forgotten;
  $("count-outbox").textContent = counts.outbox_pending;
  $("count-dead").textContent = counts.dead_letters;
  $("sync-state").textContent = counts.sync;
  $("sharing").textContent = counts.sharing;
  $("semantic").textContent = counts.semantic;
  $("retry-dead").disabled = counts.dead_letters === 0;
  const select = $("namespace");
  const chosen = select.value;
  select.replaceChildren(new Option("All namespaces", ""));
  for (const [name, n] of Object.entries(counts.by_namespace)) {
    select.add(new Option(`${name} (${n})`, name));
  }
  select.value = chosen in counts.by_namespace ? chosen : "";
  await loadDeadLetters(counts.dead_letters);
}

async function loadDeadLetters(total) {
  $("dead-letters").hidden = total === 0;
  const body = $("dead-table").tBodies[0];
  body.replaceChildren();
  if (total === 0) return;
  const dead = await api(`/api/dead-letters?limit=${PAGE_SIZE}`);
  for (const letter of dead.letters) {
    const tr = body.insertRow();
    tr.insertCell().textContent = when(letter.enqueued_at);
    tr.insertCell().textContent = letter.namespace;
    tr.insertCell().textContent = letter.op === "delete" ? "forget" : "store";
    tr.insertCell().textContent = letter.attempts;
    const error = tr.insertCell();
    error.className = "text";
    error.textContent = letter.last_error || "";
    tr.insertCell().append(openButton(letter.memory_id, letter.op === "delete"));
  }
}

function openButton(id, disabled = false) {
  const open = document.createElement("button");
  open.type = "button";
  open.textContent = "Open";
  open.disabled = disabled;
  open.setAttribute("aria-label", `Open memory ${id}`);
  open.addEventListener("click", () => openMemory(id).catch(showError));
  return open;
}

function renderRows(rows) {
  const body = $("results").tBodies[0];
  body.replaceChildren();
  for (const row of rows) {
    const tr = body.insertRow();
    const stored = tr.insertCell();
    stored.textContent = when(row.created_at);
    stored.className = "nowrap muted";
    tr.insertCell().textContent = row.namespace;
    const tags = tr.insertCell();
    for (const tag of row.tags) {
      const chip = document.createElement("span");
      chip.className = "tag";
      chip.textContent = tag;
      tags.append(chip, " ");
    }
    const content = tr.insertCell();
    content.className = "text";
    if (row.snippet !== undefined) appendSnippet(content, row.snippet);
    else content.textContent = row.content;
    tr.insertCell().append(openButton(row.id));
  }
}

// Recall's snippets mark the matched words [like this]: shown as <mark>, built as
// DOM nodes, so the memory's text is never parsed as HTML.
function appendSnippet(cell, snippet) {
  let at = 0;
  for (const match of snippet.matchAll(/\[([^\[\]]*)\]/g)) {
    cell.append(snippet.slice(at, match.index));
    const mark = document.createElement("mark");
    mark.textContent = match[1];
    cell.append(mark);
    at = match.index + match[0].length;
  }
  cell.append(snippet.slice(at));
}

async function loadList() {
  state.mode = "list";
  const params = filters();
  const before = state.cursors[state.cursors.length - 1];
  if (before) params.set("before", before);
  const page = await api(`/api/memories?${params}`);
  state.next = page.next_before;
  renderRows(page.memories);
  const n = state.cursors.length;
  const shown = page.memories.length;
  $("result-status").textContent = shown
    ? `Page ${n}: ${shown} ${shown === 1 ? "memory" : "memories"}, newest first`
    : "No memories here.";
  $("newer").disabled = n === 1;
  $("older").disabled = !page.next_before;
}

async function loadRecall(query) {
  state.mode = "recall";
  const params = filters();
  params.set("q", query);
  const result = await api(`/api/recall?${params}`);
  renderRows(result.hits);
  const n = result.hits.length;
  const found = n ? `${n} ${n === 1 ? "match" : "matches"}` : "No matches";
  $("result-status").textContent =
    `${found} for “${result.query}” (status ${result.status}: ${result.reason})`;
  $("newer").disabled = true;
  $("older").disabled = true;
}

async function refresh() {
  const query = $("query").value.trim();
  await (query ? loadRecall(query) : loadList());
}

async function openMemory(id) {
  const memory = await api(`/api/memories/${encodeURIComponent(id)}`);
  state.current = memory;
  $("detail-title").textContent = memory.key ? `Memory “${memory.key}”` : "Memory";
  $("detail-content").textContent = memory.content;
  const facts = $("detail-facts");
  facts.replaceChildren();
  const rows = [
    ["Id", memory.id],
    ["Namespace", memory.namespace],
    ["Key", memory.key || "—"],
    ["Stored", when(memory.created_at)],
    ["Updated", when(memory.updated_at)],
    ["Sync", memory.sync_error ? `${memory.sync_state}: ${memory.sync_error}` : memory.sync_state],
    ["Metadata", Object.keys(memory.metadata).length ? JSON.stringify(memory.metadata) : "—"],
  ];
  for (const [name, value] of rows) {
    const div = document.createElement("div");
    const dt = document.createElement("dt");
    const dd = document.createElement("dd");
    dt.textContent = name;
    dd.textContent = value;
    div.append(dt, dd);
    facts.append(div);
  }
  $("detail-tags").value = memory.tags.join(", ");
  $("tags-status").textContent = "";
  $("detail").showModal();
}

async function saveTags(event) {
  event.preventDefault();
  const id = state.current.id;
  const memory = await api(`/api/memories/${encodeURIComponent(id)}/tags`, {
    method: "POST",
    body: { tags: splitTags($("detail-tags").value) },
  });
  state.current = memory;
  $("detail-tags").value = memory.tags.join(", ");
  $("tags-status").textContent = memory.tags.length
    ? `Saved: ${memory.tags.join(", ")}`
    : "Saved: no tags";
  await Promise.all([refresh(), loadOverview()]);
}

async function forgetCurrent() {
  const id = state.current.id;
  await api(`/api/memories/${encodeURIComponent(id)}/forget`, {
    method: "POST",
    body: { confirm: true },
  });
  $("confirm").close();
  $("detail").close();
  await Promise.all([refresh(), loadOverview()]);
  $("result-status").textContent = `Forgot ${id}. ` + $("result-status").textContent;
}

async function retryDead() {
  const data = await api("/api/dead-letters/retry", { method: "POST", body: {} });
  const n = data.requeued;
  $("retry-status").textContent =
    `Requeued ${n} ${n === 1 ? "memory" : "memories"} for the next push.`;
  await loadOverview();
}

function guarded(action) {
  return (event) => {
    showError(null);
    action(event).catch(showError);
  };
}

document.addEventListener("DOMContentLoaded", () => {
  $("search-form").addEventListener("submit", guarded(async (event) => {
    event.preventDefault();
    state.cursors = [null];
    await refresh();
  }));
  $("show-all").addEventListener("click", guarded(async () => {
    $("query").value = "";
    $("tags").value = "";
    $("namespace").value = "";
    state.cursors = [null];
    await loadList();
  }));
  $("older").addEventListener("click", guarded(async () => {
    state.cursors.push(state.next);
    await loadList();
  }));
  $("newer").addEventListener("click", guarded(async () => {
    state.cursors.pop();
    await loadList();
  }));
  $("tags-form").addEventListener("submit", guarded(saveTags));
  $("close-detail").addEventListener("click", () => $("detail").close());
  $("forget").addEventListener("click", () => $("confirm").showModal());
  $("cancel-forget").addEventListener("click", () => $("confirm").close());
  $("confirm-forget").addEventListener("click", guarded(forgetCurrent));
  $("retry-dead").addEventListener("click", guarded(retryDead));
  guarded(async () => {
    await Promise.all([loadOverview(), loadList()]);
    document.body.dataset.ready = "true";
  })();
});
