// The service's live view: read-only, plain JavaScript (ES2020), no external resources.
//
// Reads, with `Authorization: Bearer <API key>`:
//   GET /v1/handovers?limit=N                  {"handovers":[{id, provider, state, last_seq, status, owner, epoch, callback, …}]}
//   GET /v1/handovers/{id}                     one handover (when it is not in the list)
//   GET /v1/handovers/{id}/events?after=N&wait_ms=M   long-poll: {"events":[…],"last_seq":N}
// The key is asked for on the page and kept in sessionStorage (this tab only).
"use strict";

(() => {
  const KEY_STORAGE = "handover-ui-key";
  const REFRESH_MS = 2000;
  const LIMIT = 500;
  const WAIT_MS = 20000;
  const STATES = ["starting", "queued", "active", "ended"];

  const $ = (id) => document.getElementById(id);
  const el = {
    form: $("key-form"),
    key: $("key"),
    forget: $("forget"),
    connection: $("connection"),
    stateFilter: $("state-filter"),
    providerFilter: $("provider-filter"),
    summary: $("summary").tBodies[0],
    limit: $("limit"),
    handovers: $("handovers"),
    rows: $("handovers").tBodies[0],
    empty: $("empty"),
    title: $("detail-title"),
    detail: $("detail"),
    provider: $("d-provider"),
    state: $("d-state"),
    owner: $("d-owner"),
    epoch: $("d-epoch"),
    seq: $("d-seq"),
    callback: $("d-callback"),
    status: $("d-status"),
    events: $("events").tBodies[0],
  };

  let key = sessionStorage.getItem(KEY_STORAGE) || "";
  let handovers = [];
  let selected = new URLSearchParams(location.search).get("h");
  let refreshTimer = null;
  let follower = null; // { id, controller }
  let lastEventSeq = 0;

  // ---- helpers --------------------------------------------------------------------------

  function text(node, value) {
    const s = value == null ? "" : String(value);
    if (node.textContent !== s) node.textContent = s;
  }

  function make(tag, className, content) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (content != null) node.textContent = content;
    return node;
  }

  function setConnection(message, kind) {
    text(el.connection, message);
    el.connection.classList.toggle("ok", kind === "ok");
    el.connection.classList.toggle("error", kind === "error");
  }

  class ApiError extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  async function call(path, options = {}) {
    const response = await fetch(path, {
      headers: { Authorization: `Bearer ${key}`, Accept: "application/json" },
      cache: "no-store",
      signal: options.signal,
    });
    const body = await response.text();
    let json = null;
    try {
      json = body ? JSON.parse(body) : null;
    } catch {
      json = null;
    }
    if (!response.ok) {
      const error = (json && json.error) || {};
      throw new ApiError(response.status, error.code || "", error.message || body || `HTTP ${response.status}`);
    }
    return json;
  }

  const stateOf = (h) => (typeof h.state === "string" ? h.state : "unknown");
  const statusOf = (h) => (h.status && typeof h.status === "object" ? h.status.status : h.status) || "";

  function callbackText(callback) {
    if (!callback) return "none";
    const parts = [`acked seq ${callback.acked_seq ?? 0}`];
    if (callback.failed) parts.push("failed for good");
    else if (callback.attempts) parts.push(`retrying (${callback.attempts} failed attempts)`);
    else parts.push("ok");
    if (callback.last_error) parts.push(callback.last_error);
    return parts.join(" · ");
  }

  const callbackBad = (callback) => !!callback && (callback.failed || callback.attempts > 0);

  function statusText(h) {
    const status = statusOf(h);
    if (!status) return "";
    const error = h.status && h.status.error;
    return error ? `${status}: ${error.reason || ""} ${error.message || ""}`.trim() : status;
  }

  function stateBadge(state) {
    return make("span", `state state-${state}`, state);
  }

  /** The event's payload: everything but what the columns show, as compact JSON. */
  function payload(event) {
    const rest = {};
    for (const [k, v] of Object.entries(event)) {
      if (k !== "type" && k !== "seq" && k !== "handover_id") rest[k] = v;
    }
    return Object.keys(rest).length ? JSON.stringify(rest) : "";
  }

  // ---- the list -------------------------------------------------------------------------

  function visible() {
    const state = el.stateFilter.value;
    const provider = el.providerFilter.value;
    return handovers.filter((h) => (!state || stateOf(h) === state) && (!provider || h.provider === provider));
  }

  function renderFilters() {
    const providers = Array.from(new Set(handovers.map((h) => h.provider))).sort();
    const current = Array.from(el.providerFilter.options).slice(1).map((o) => o.value);
    const wanted = Array.from(new Set([...providers, el.providerFilter.value].filter(Boolean))).sort();
    if (current.join("\n") !== wanted.join("\n")) {
      const value = el.providerFilter.value;
      el.providerFilter.replaceChildren(new Option("all", ""), ...wanted.map((p) => new Option(p, p)));
      el.providerFilter.value = value;
    }
  }

  function renderSummary() {
    const counts = new Map();
    const total = { all: 0 };
    for (const h of handovers) {
      const row = counts.get(h.provider) || { all: 0 };
      row[stateOf(h)] = (row[stateOf(h)] || 0) + 1;
      row.all += 1;
      counts.set(h.provider, row);
      total[stateOf(h)] = (total[stateOf(h)] || 0) + 1;
      total.all += 1;
    }
    const rows = [];
    const line = (label, provider, row) => {
      const tr = make("tr");
      const th = make("th", null, label);
      th.scope = "row";
      tr.append(th);
      for (const state of [...STATES, ""]) {
        const td = make("td");
        const n = row[state || "all"] || 0;
        const button = make("button", null, String(n));
        button.type = "button";
        const pressed = el.stateFilter.value === state && el.providerFilter.value === provider;
        button.setAttribute("aria-pressed", pressed ? "true" : "false");
        button.setAttribute("aria-label", `${n} ${state || "in any state"} at ${label}: show them`);
        button.addEventListener("click", () => {
          el.stateFilter.value = state;
          el.providerFilter.value = provider;
          render();
        });
        td.append(button);
        tr.append(td);
      }
      rows.push(tr);
    };
    for (const provider of Array.from(counts.keys()).sort()) line(provider, provider, counts.get(provider));
    if (counts.size !== 1) line("all providers", "", total);
    el.summary.replaceChildren(...rows);
  }

  function renderRows() {
    const focusedId =
      document.activeElement && el.rows.contains(document.activeElement) ? document.activeElement.dataset.id : null;
    const list = visible();
    const groups = new Map(STATES.map((s) => [s, []]));
    for (const h of list) {
      const state = stateOf(h);
      if (!groups.has(state)) groups.set(state, []);
      groups.get(state).push(h);
    }
    const rows = [];
    for (const [state, members] of groups) {
      if (!members.length) continue;
      const head = make("tr", "group");
      const th = make("th", null, `${state} (${members.length})`);
      th.colSpan = 8;
      th.scope = "colgroup";
      head.append(th);
      rows.push(head);
      for (const h of members) rows.push(row(h));
    }
    el.rows.replaceChildren(...rows);
    el.empty.hidden = list.length > 0;
    if (focusedId) {
      const again = el.rows.querySelector(`button[data-id="${CSS.escape(focusedId)}"]`);
      if (again) again.focus();
    }
  }

  function row(h) {
    const tr = make("tr");
    tr.dataset.id = h.id;
    if (h.id === selected) tr.classList.add("selected");
    const idCell = make("td");
    const button = make("button", "link", h.id);
    button.type = "button";
    button.dataset.id = h.id;
    button.setAttribute("aria-current", h.id === selected ? "true" : "false");
    button.setAttribute("aria-label", `Show the events of handover ${h.id}`);
    button.addEventListener("click", () => select(h.id));
    idCell.append(button);
    const state = make("td");
    state.append(stateBadge(stateOf(h)));
    const callback = make("td", callbackBad(h.callback) ? "bad" : null, h.callback ? callbackText(h.callback) : "none");
    tr.append(
      idCell,
      make("td", null, h.provider),
      state,
      make("td", null, h.last_seq ?? ""),
      make("td", "mono", h.owner ?? "–"),
      make("td", null, h.epoch ?? ""),
      callback,
      make("td", statusOf(h) === "error" ? "bad" : null, statusText(h)),
    );
    return tr;
  }

  // ---- the selected handover ------------------------------------------------------------

  function renderDetail(h) {
    if (!selected) {
      text(el.title, "No handover selected");
      el.detail.hidden = true;
      return;
    }
    text(el.title, `Handover ${selected}`);
    if (!h) return;
    el.detail.hidden = false;
    text(el.provider, h.provider);
    el.state.replaceChildren(stateBadge(stateOf(h)));
    text(el.owner, h.owner ?? (stateOf(h) === "ended" ? "none (ended)" : "none"));
    text(el.epoch, h.epoch ?? "–");
    text(el.seq, h.last_seq ?? "–");
    text(el.callback, callbackText(h.callback));
    el.callback.classList.toggle("bad", callbackBad(h.callback));
    text(el.status, statusText(h) || "–");
  }

  function appendEvents(events) {
    for (const event of events) {
      if (typeof event.seq === "number" && event.seq <= lastEventSeq) continue;
      const tr = make("tr", event.type === "status" ? "status" : null);
      tr.dataset.seq = event.seq;
      tr.append(make("td", null, event.seq), make("td", null, event.type), make("td", null, payload(event)));
      el.events.append(tr);
      if (typeof event.seq === "number") lastEventSeq = event.seq;
    }
  }

  async function follow(id, signal) {
    let after = 0;
    let failures = 0;
    while (!signal.aborted) {
      try {
        const page = await call(
          `/v1/handovers/${encodeURIComponent(id)}/events?after=${after}&wait_ms=${WAIT_MS}`,
          { signal },
        );
        failures = 0;
        const events = (page && page.events) || [];
        appendEvents(events);
        after = page && typeof page.last_seq === "number" ? page.last_seq : after;
        if (events.some((e) => e.type === "status")) return;
        const known = handovers.find((h) => h.id === id);
        if (!events.length && known && stateOf(known) === "ended") return;
      } catch (error) {
        if (signal.aborted) return;
        if (error instanceof ApiError && error.status === 401) return refused();
        if (error instanceof ApiError && error.status === 404) {
          text(el.title, `Handover ${id} (not found)`);
          return;
        }
        failures += 1;
        await new Promise((resolve) => setTimeout(resolve, Math.min(10000, 1000 * failures)));
      }
    }
  }

  function select(id) {
    selected = id;
    const url = new URL(location.href);
    url.searchParams.set("h", id);
    history.replaceState(null, "", url);
    startFollowing();
    render();
  }

  function startFollowing() {
    if (follower && follower.id === selected) return;
    if (follower) follower.controller.abort();
    follower = null;
    el.events.replaceChildren();
    lastEventSeq = 0;
    if (!selected || !key) return;
    const controller = new AbortController();
    follower = { id: selected, controller };
    follow(selected, controller.signal).finally(() => {
      if (follower && follower.controller === controller) follower.done = true;
    });
  }

  // ---- refreshing -----------------------------------------------------------------------

  function render() {
    renderFilters();
    renderSummary();
    renderRows();
    renderDetail(handovers.find((h) => h.id === selected) || detailFallback);
  }

  let detailFallback = null;

  async function refresh() {
    refreshTimer = null;
    if (!key) return;
    try {
      const page = await call(`/v1/handovers?limit=${LIMIT}`);
      handovers = Array.isArray(page && page.handovers) ? page.handovers : [];
      detailFallback = null;
      if (selected && !handovers.some((h) => h.id === selected)) {
        // Older than the list's window: read it alone (without owner and epoch, unless given).
        try {
          detailFallback = await call(`/v1/handovers/${encodeURIComponent(selected)}`);
        } catch (error) {
          if (!(error instanceof ApiError && error.status === 404)) throw error;
        }
      }
      setConnection(`Connected · ${handovers.length} handovers · refreshed ${new Date().toLocaleTimeString()}`, "ok");
      render();
      if (follower && follower.done && follower.id === selected) {
        // The log was complete; nothing to follow unless the handover is not ended yet.
        const h = handovers.find((x) => x.id === selected) || detailFallback;
        if (h && stateOf(h) !== "ended") {
          follower = null;
          startFollowing();
        }
      }
    } catch (error) {
      if (error instanceof ApiError && error.status === 401) return refused();
      if (error instanceof ApiError && error.status === 404) {
        setConnection("This service does not list handovers (GET /v1/handovers); is the live view enabled?", "error");
      } else {
        setConnection(`Could not refresh: ${error.message}; retrying`, "error");
      }
    }
    schedule();
  }

  function schedule() {
    clearTimeout(refreshTimer);
    if (key) refreshTimer = setTimeout(refresh, REFRESH_MS);
  }

  function refused() {
    key = "";
    sessionStorage.removeItem(KEY_STORAGE);
    clearTimeout(refreshTimer);
    if (follower) follower.controller.abort();
    follower = null;
    setConnection("The API key was refused. Enter a key of this service.", "error");
    el.key.focus();
  }

  function start() {
    setConnection("Connecting…");
    startFollowing();
    clearTimeout(refreshTimer);
    refresh();
  }

  // ---- wiring ---------------------------------------------------------------------------

  el.form.addEventListener("submit", (event) => {
    event.preventDefault();
    const value = el.key.value.trim();
    if (!value) return;
    key = value;
    sessionStorage.setItem(KEY_STORAGE, key);
    el.key.value = "";
    el.key.placeholder = "key stored for this tab";
    if (follower) follower.controller.abort();
    follower = null;
    start();
  });
  el.forget.addEventListener("click", () => {
    key = "";
    sessionStorage.removeItem(KEY_STORAGE);
    clearTimeout(refreshTimer);
    if (follower) follower.controller.abort();
    follower = null;
    handovers = [];
    el.key.placeholder = "";
    render();
    setConnection("Key forgotten. Enter the API key to start.");
    el.key.focus();
  });
  el.stateFilter.addEventListener("change", render);
  el.providerFilter.addEventListener("change", render);
  el.limit.textContent = String(LIMIT);

  if (key) {
    el.key.placeholder = "key stored for this tab";
    start();
  } else {
    render();
    el.key.focus();
  }
})();
