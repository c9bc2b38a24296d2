// The emulator's agent desk: plain JavaScript (ES2020), no framework, no external resources.
//
// It reads and drives the emulator through its control API only:
//   GET  /_emulator/info                        {"protocol":"miaw"}
//   GET  /_emulator/conversations               [ConversationView]
//   GET  /_emulator/conversations/{id}          ConversationView
//   POST /_emulator/conversations/{id}/agent    an agent action
//   GET  /_emulator/changes                     SSE: `event: change`, `data: {"conversation":"<id>"}`
// When the change stream is unavailable it polls the list every 2 s instead.
"use strict";

(() => {
  const API = "/_emulator";
  const POLL_MS = 2000;
  const TYPING_IDLE_MS = 2000;
  const INBOUND_TYPING_STALE_MS = 60000;
  const LONG_TEXT = 600;

  const $ = (id) => document.getElementById(id);
  const el = {
    protocol: $("protocol"),
    agent: $("agent"),
    connection: $("connection"),
    showEnded: $("show-ended"),
    summary: $("queue-summary"),
    list: $("conversations"),
    title: $("chat-title"),
    details: $("details"),
    state: $("conv-state"),
    user: $("conv-user"),
    agentNow: $("conv-agent"),
    queue: $("conv-queue"),
    accept: $("accept"),
    transfer: $("transfer"),
    end: $("end"),
    messages: $("messages"),
    typing: $("typing"),
    composer: $("composer"),
    answer: $("answer"),
    send: $("send"),
    status: $("status"),
  };

  // ---- state ----------------------------------------------------------------------------

  /** id -> ConversationView, in the emulator's creation order. */
  const conversations = new Map();
  /** id -> what this page observed itself: when it first saw each customer entry. */
  const observed = new Map();
  /** Local clock minus the emulator's clock (ms), estimated from agent records as they arrive. */
  let skew = null;
  let protocol = null;
  let selected = new URLSearchParams(location.search).get("c");
  /** id -> draft text of the answer box. */
  const drafts = new Map();
  /** id -> customer messages already shown while the conversation was selected. */
  const read = new Map();
  /** The list's `li` elements by conversation id (kept, so focus survives updates). */
  const items = new Map();
  /** Keys of the message items rendered for the selected conversation, in order. */
  let renderedKeys = [];
  let renderedFor = null;
  let busy = false;
  const typing = { conversation: null, on: false, timer: null };

  // ---- helpers --------------------------------------------------------------------------

  const serverNow = () => Date.now() - (skew ?? 0);

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

  function duration(ms) {
    const s = Math.max(0, Math.round(ms / 1000));
    if (s < 60) return `${s} s`;
    const m = Math.floor(s / 60);
    if (m < 60) return `${m} min ${String(s % 60).padStart(2, "0")} s`;
    return `${Math.floor(m / 60)} h ${String(m % 60).padStart(2, "0")} min`;
  }

  function clock(ms) {
    if (ms == null) return null;
    const d = new Date(ms + (skew ?? 0));
    return d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
  }

  function setStatus(message, isError = false) {
    text(el.status, message);
    el.status.classList.toggle("error", isError);
  }

  function setConnection(mode, message) {
    el.connection.classList.toggle("live", mode === "live");
    el.connection.classList.toggle("polling", mode === "polling");
    text(el.connection, message);
  }

  async function api(path, options = {}) {
    const init = { headers: { Accept: "application/json" }, cache: "no-store", ...options };
    if (options.body !== undefined) {
      init.method = options.method || "POST";
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(options.body);
    }
    const response = await fetch(API + path, init);
    const body = await response.text();
    let json = null;
    try {
      json = body ? JSON.parse(body) : null;
    } catch {
      json = null;
    }
    if (!response.ok) {
      const error = new Error((json && json.error) || body || `HTTP ${response.status}`);
      error.status = response.status;
      throw error;
    }
    return json;
  }

  // ---- reading a conversation -----------------------------------------------------------

  /** The provider behind this emulator, guessed from the creation data until /info answers. */
  function guessProtocol(view) {
    const meta = (view && view.meta) || {};
    if ("routingAttributes" in meta) return "miaw";
    if ("custom_attributes" in meta) return "liveagent";
    if ("prechatDetails" in meta) return "salesforce";
    if ("categories" in meta) return "ringcentral";
    if ("customAttributes" in meta) return "genesys";
    if ("user" in meta) return "8x8";
    return null;
  }

  function first(...values) {
    for (const v of values) {
      if (typeof v === "string" && v.trim() !== "") return v.trim();
      if (typeof v === "number") return String(v);
    }
    return null;
  }

  /** Who the end user is: a `user` the emulator names, else the creation data, else the owner. */
  function userOf(view) {
    if (typeof view.user === "string" && view.user) return view.user;
    if (view.user && typeof view.user === "object") {
      const named = first(view.user.name, view.user.display_name, view.user.id);
      if (named) return named;
    }
    const m = view.meta || {};
    const u = (m.user && typeof m.user === "object" && m.user) || {};
    const from = (m.from && typeof m.from === "object" && m.from) || {};
    const attrs = { ...(m.customAttributes || {}), ...(m.custom_attributes || {}), ...(m.routingAttributes || {}) };
    const full = (a, b) => [a, b].filter((x) => typeof x === "string" && x).join(" ");
    return (
      first(
        u.name,
        u.displayName,
        full(u.firstName, u.lastName),
        m.visitorName,
        from.nickname,
        full(from.firstName, from.lastName),
        attrs.name,
        attrs.user_name,
        attrs.userName,
        attrs.customer_name,
        u.userId,
        u.id,
      ) ||
      first(view.owner) ||
      "unknown user"
    );
  }

  /** Where the conversation is: state, current agent, queue, since when it waits. */
  function summarize(view) {
    let agent = null;
    let queued = null;
    let waitingSince = view.created_at_ms ?? null;
    let transferring = false;
    for (const record of view.agent || []) {
      if (waitingSince == null) waitingSince = record.at_ms;
      switch (record.action) {
        case "queued":
          queued = record;
          break;
        case "joined":
          agent = record.agent;
          transferring = false;
          queued = null;
          break;
        case "left":
          agent = null;
          transferring = !!record.transfer;
          queued = null;
          waitingSince = record.at_ms;
          break;
        default:
          break;
      }
    }
    if (waitingSince == null) {
      const seen = observed.get(view.id);
      waitingSince = seen ? seen.created - (skew ?? 0) : serverNow();
    }
    const state = view.ended ? "ended" : agent && !view.transferring ? "active" : "waiting";
    return { state, agent, queued, waitingSince, transferring: transferring || view.transferring };
  }

  /**
   * What the customer side did, in order, each with
   * - `at`: when, on the emulator's clock (null when unknown),
   * - `anchor`: how many agent records came before it (it sits between agent record
   *   `anchor` and `anchor + 1`),
   * - for messages, `from`: "bot" (the transcript the connector sent) or "user".
   *
   * Uses `customer_log` (entries with `at_ms`, `after_agent_seq` and `from`) when the
   * emulator provides it. Otherwise `customer`, placed by when this page first saw each
   * entry (entries there when the page loaded come first), and a message counts as the
   * bot transcript when no agent had joined before it.
   */
  function customerEntries(view) {
    const agents = view.agent || [];
    const firstJoin = agents.find((r) => r.action === "joined");
    const joinedBefore = (anchor) => !!firstJoin && firstJoin.seq <= anchor;
    const anchorAt = (at) => agents.filter((r) => r.at_ms < at).length;
    const logged = Array.isArray(view.customer_log);
    const entries = logged ? view.customer_log : view.customer || [];
    const seen = observed.get(view.id);
    return entries.map((entry, i) => {
      const sight = !logged && seen ? seen.customer[i] : null;
      let at = null;
      if (typeof entry.at_ms === "number") at = entry.at_ms;
      else if (sight) at = sight.at - (skew ?? 0);
      let anchor;
      if (typeof entry.after_agent_seq === "number") anchor = entry.after_agent_seq;
      else if (typeof entry.at_ms === "number") anchor = anchorAt(entry.at_ms);
      else if (sight) anchor = sight.anchor;
      else anchor = 0;
      let from = entry.from;
      if (from !== "bot" && from !== "user") {
        if (sight || typeof entry.at_ms === "number" || typeof entry.after_agent_seq === "number") {
          from = joinedBefore(anchor) ? "user" : "bot";
        } else {
          from = firstJoin ? "user" : "bot";
        }
      }
      return { ...entry, key: `c${entry.seq ?? i + 1}`, at, anchor, from };
    });
  }

  /** Remembers when this page first saw each customer entry, and the clock skew. */
  function observe(view, initial) {
    const now = Date.now();
    let seen = observed.get(view.id);
    if (!seen) {
      seen = { created: now, customer: [], agents: 0 };
      observed.set(view.id, seen);
    }
    const agents = view.agent || [];
    for (let i = seen.customer.length; i < (view.customer || []).length; i += 1) {
      // After the agent records seen before, ahead of those that arrive with it (an answer
      // follows what it answers). Entries there when the page loaded have no known place.
      seen.customer.push(initial ? null : { at: now, anchor: seen.agents });
    }
    for (const record of agents.slice(seen.agents)) {
      if (!initial && typeof record.at_ms === "number") {
        const candidate = now - record.at_ms;
        skew = skew == null ? candidate : Math.min(skew, candidate);
      }
    }
    seen.agents = Math.max(seen.agents, agents.length);
  }

  /** The conversation's items, oldest first: messages and notable agent-side events. */
  function timeline(view) {
    const out = [];
    let botPart = 0;
    const customer = customerEntries(view);
    const botTotal = customer.filter((c) => c.kind === "message" && c.from === "bot").length;
    for (const [i, c] of customer.entries()) {
      const base = { key: c.key, at: c.at, pos: c.anchor + 0.5, order: i };
      if (c.kind === "message") {
        const label = c.from === "bot" ? `Bot transcript · part ${(botPart += 1)} of ${botTotal}` : "User";
        out.push({ ...base, kind: "message", from: c.from, label, text: c.text ?? "" });
      } else if (c.kind === "file") {
        out.push({ ...base, kind: "message", from: "user", label: "User · file", text: `📎 ${c.name} (${c.media_type}, ${c.size} bytes)` });
      } else if (c.kind === "closed") {
        out.push({ ...base, kind: "event", text: "The customer side closed the conversation." });
      }
    }
    for (const r of view.agent || []) {
      const base = { key: r.id, at: r.at_ms, pos: r.seq, order: r.seq };
      switch (r.action) {
        case "message":
          out.push({ ...base, kind: "message", from: "agent", label: r.agent || "Agent", text: r.text ?? "" });
          break;
        case "file": {
          const file = r.file || {};
          const caption = r.caption ? `${r.caption}\n` : "";
          out.push({ ...base, kind: "message", from: "agent", label: r.agent || "Agent", text: `${caption}📎 ${file.name} (${file.media_type})` });
          break;
        }
        case "joined":
          out.push({ ...base, kind: "event", text: `${r.agent} joined.` });
          break;
        case "left":
          out.push({ ...base, kind: "event", text: r.transfer ? `${r.agent} left to transfer the conversation.` : `${r.agent} left.` });
          break;
        case "queued": {
          const parts = [];
          if (r.position != null) parts.push(`position ${r.position}`);
          if (r.wait_secs != null) parts.push(`about ${duration(r.wait_secs * 1000)} to wait`);
          out.push({ ...base, kind: "event", text: `Queued${parts.length ? `: ${parts.join(", ")}` : ""}.` });
          break;
        }
        case "ended":
          out.push({ ...base, kind: "event", text: "The agent ended the conversation." });
          break;
        default:
          break; // typing is shown as an indicator, not in the log
      }
    }
    // Agent record n sits at n, a customer entry after agent record a at a + 0.5; each
    // side keeps its own order.
    return out.sort((a, b) => a.pos - b.pos || a.order - b.order);
  }

  function inboundTyping(view) {
    if (view.ended) return false;
    const entries = customerEntries(view);
    for (let i = entries.length - 1; i >= 0; i -= 1) {
      const e = entries[i];
      if (e.kind === "typing") {
        if (!e.on) return false;
        return e.at == null || serverNow() - e.at < INBOUND_TYPING_STALE_MS;
      }
      if (e.kind === "message" || e.kind === "closed") return false;
    }
    return false;
  }

  const customerMessages = (view) => (view.customer || []).filter((c) => c.kind === "message").length;

  // ---- rendering ------------------------------------------------------------------------

  function renderList() {
    const showEnded = el.showEnded.checked;
    const rows = [];
    const counts = { waiting: 0, active: 0, ended: 0 };
    let index = 0;
    for (const view of conversations.values()) {
      const s = summarize(view);
      counts[s.state] += 1;
      rows.push({ view, s, index: (index += 1) });
    }
    const group = { waiting: 0, active: 1, ended: 2 };
    rows.sort((a, b) => group[a.s.state] - group[b.s.state] || (a.s.state === "ended" ? b.index - a.index : a.index - b.index));
    const total = rows.length;
    text(
      el.summary,
      total === 0 ? "No conversations yet. Start a handover to see it here." : `${counts.waiting} waiting · ${counts.active} active · ${counts.ended} ended`,
    );
    const focused = document.activeElement && el.list.contains(document.activeElement) ? document.activeElement : null;
    const wanted = [];
    for (const { view, s } of rows) {
      if (s.state === "ended" && !showEnded && view.id !== selected) continue;
      wanted.push(listItem(view, s));
    }
    for (const [id, li] of items) {
      if (!conversations.has(id)) {
        li.remove();
        items.delete(id);
      }
    }
    const current = Array.from(el.list.children);
    const same = current.length === wanted.length && current.every((node, i) => node === wanted[i]);
    if (!same) {
      el.list.replaceChildren(...wanted);
      if (focused && el.list.contains(focused)) focused.focus();
    }
  }

  function listItem(view, s) {
    let li = items.get(view.id);
    if (!li) {
      li = make("li");
      const button = make("button");
      button.type = "button";
      button.dataset.id = view.id;
      button.append(make("span", "who"), make("span", "unread"), make("span", "cid"), make("span", "meta"));
      button.addEventListener("click", () => select(view.id));
      li.append(button);
      items.set(view.id, li);
    }
    const button = li.firstChild;
    const [who, unread, cid, meta] = button.children;
    const user = userOf(view);
    text(who, user);
    text(cid, view.id);
    const provider = protocol || guessProtocol(view) || "emulator";
    const parts = [provider];
    if (s.state === "waiting") {
      if (s.queued && s.queued.position != null) parts.push(`queue position ${s.queued.position}`);
      parts.push(`waiting ${duration(serverNow() - s.waitingSince)}`);
      if (s.transferring) parts.push("transfer");
    } else if (s.state === "active") {
      parts.push(`with ${s.agent}`);
    }
    meta.replaceChildren(make("span", `state state-${s.state}`, s.state), document.createTextNode(` ${parts.join(" · ")}`));
    const fresh = view.id === selected ? 0 : Math.max(0, customerMessages(view) - (read.get(view.id) ?? 0));
    text(unread, fresh ? `${fresh} new` : "");
    button.setAttribute("aria-current", view.id === selected ? "true" : "false");
    button.setAttribute(
      "aria-label",
      `${user}, ${s.state}${s.state === "waiting" && s.queued && s.queued.position != null ? `, queue position ${s.queued.position}` : ""}, ${provider}, conversation ${view.id}${fresh ? `, ${fresh} new messages` : ""}`,
    );
    return li;
  }

  function renderMessage(item) {
    if (item.kind === "event") {
      const li = make("li", "event");
      li.dataset.key = item.key;
      li.append(document.createTextNode(item.text));
      const when = clock(item.at);
      if (when) li.append(document.createTextNode(` (${when})`));
      return li;
    }
    const li = make("li", "message");
    li.dataset.key = item.key;
    li.dataset.from = item.from;
    const from = make("span", "from");
    from.append(document.createTextNode(item.label));
    const when = clock(item.at);
    if (when) {
      const time = make("time", null, when);
      time.dateTime = new Date(item.at + (skew ?? 0)).toISOString();
      from.append(document.createTextNode(" · "), time);
    }
    if (item.from === "bot") from.append(document.createTextNode(` · ${item.text.length} characters`));
    const body = make("span", item.text.length > LONG_TEXT ? "text long" : "text", item.text);
    if (item.text.length > LONG_TEXT) body.tabIndex = 0;
    li.append(from, body);
    return li;
  }

  function renderSelected() {
    const view = selected ? conversations.get(selected) : null;
    if (!view) {
      text(el.title, selected ? `Conversation ${selected} (not found)` : "No conversation selected");
      el.details.hidden = true;
      if (renderedFor !== null || renderedKeys.length) {
        el.messages.replaceChildren(make("li", "placeholder", "Pick a conversation on the left to see what the contact center received."));
        renderedKeys = [];
        renderedFor = null;
      }
      text(el.typing, "");
      updateControls(null, null);
      return;
    }
    const s = summarize(view);
    text(el.title, `Conversation ${view.id}`);
    el.details.hidden = false;
    text(el.state, s.transferring && s.state === "waiting" ? "waiting (transfer)" : s.state);
    text(el.user, userOf(view));
    text(el.agentNow, s.agent || "none");
    text(
      el.queue,
      s.state === "waiting"
        ? `${s.queued && s.queued.position != null ? `position ${s.queued.position}, ` : ""}waiting ${duration(serverNow() - s.waitingSince)}`
        : "–",
    );
    read.set(view.id, customerMessages(view));

    const list = timeline(view);
    const keys = list.map((i) => i.key);
    const prefix = renderedFor === view.id && renderedKeys.length <= keys.length && renderedKeys.every((k, i) => k === keys[i]);
    const nearBottom = el.messages.scrollHeight - el.messages.scrollTop - el.messages.clientHeight < 60;
    if (!prefix) {
      const nodes = list.map(renderMessage);
      if (nodes.length === 0) nodes.push(make("li", "placeholder", "Nothing received yet."));
      el.messages.replaceChildren(...nodes);
      el.messages.scrollTop = el.messages.scrollHeight;
    } else if (keys.length > renderedKeys.length) {
      const placeholder = el.messages.querySelector(".placeholder");
      if (placeholder) placeholder.remove();
      for (const item of list.slice(renderedKeys.length)) el.messages.append(renderMessage(item));
      if (nearBottom) el.messages.scrollTop = el.messages.scrollHeight;
    }
    renderedKeys = keys;
    renderedFor = view.id;

    text(el.typing, inboundTyping(view) ? "The user is typing…" : "");
    updateControls(view, s);
  }

  function me() {
    return el.agent.value.trim() || "Ann";
  }

  function updateControls(view, s) {
    const open = !!view && !view.ended;
    el.accept.disabled = busy || !open || (s.state === "active" && s.agent === me());
    el.transfer.disabled = busy || !open || !s.agent;
    el.end.disabled = busy || !open;
    el.answer.disabled = !open;
    el.send.disabled = busy || !open || el.answer.value.trim() === "";
  }

  function render() {
    renderList();
    renderSelected();
  }

  // ---- loading --------------------------------------------------------------------------

  function store(view, initial) {
    observe(view, initial);
    conversations.set(view.id, view);
    if (!protocol) {
      const guess = guessProtocol(view);
      if (guess) text(el.protocol, guess);
    }
  }

  let loadedOnce = false;

  async function loadAll() {
    const list = await api("/conversations");
    const initial = !loadedOnce;
    loadedOnce = true;
    // The list is in creation order; keep it.
    conversations.clear();
    for (const view of list) store(view, initial);
  }

  async function loadOne(id) {
    try {
      const view = await api(`/conversations/${encodeURIComponent(id)}`);
      store(view, false);
    } catch (error) {
      if (error.status === 404) conversations.delete(id);
      else throw error;
    }
  }

  // Changes are coalesced: one refresh at a time, whatever arrived meanwhile in the next one.
  const pending = new Set();
  let pendingAll = false;
  let flushing = false;
  let flushTimer = null;

  function schedule(id) {
    if (id == null) pendingAll = true;
    else pending.add(String(id));
    if (!flushTimer && !flushing) flushTimer = setTimeout(flush, 30);
  }

  async function flush() {
    flushTimer = null;
    flushing = true;
    try {
      while (pendingAll || pending.size) {
        const ids = Array.from(pending);
        const all = pendingAll || ids.length > 20 || ids.some((id) => !conversations.has(id));
        pending.clear();
        pendingAll = false;
        if (all) await loadAll();
        else for (const id of ids) await loadOne(id);
        render();
      }
      if (el.status.classList.contains("error") && el.status.dataset.kind === "load") setStatus("");
    } catch (error) {
      setStatus(`Could not read the conversations: ${error.message}`, true);
      el.status.dataset.kind = "load";
    } finally {
      flushing = false;
      if ((pendingAll || pending.size) && !flushTimer) flushTimer = setTimeout(flush, 500);
    }
  }

  // ---- live updates ---------------------------------------------------------------------

  let pollTimer = null;
  let source = null;

  function startPolling(reason) {
    if (pollTimer) return;
    setConnection("polling", `${reason}; polling every ${POLL_MS / 1000} s`);
    pollTimer = setInterval(() => schedule(null), POLL_MS);
    schedule(null);
  }

  function stopPolling() {
    if (pollTimer) clearInterval(pollTimer);
    pollTimer = null;
  }

  function connect() {
    if (typeof EventSource !== "function") {
      startPolling("No live updates in this browser");
      return;
    }
    source = new EventSource(`${API}/changes`);
    const onChange = (event) => {
      let id = null;
      try {
        id = JSON.parse(event.data).conversation ?? null;
      } catch {
        id = null;
      }
      schedule(id);
    };
    source.addEventListener("change", onChange);
    source.onmessage = onChange;
    source.onopen = () => {
      stopPolling();
      setConnection("live", "Live");
      schedule(null); // whatever happened while disconnected
    };
    source.onerror = () => {
      startPolling("Live updates interrupted");
      if (source.readyState === EventSource.CLOSED) {
        // The stream is not served (or refused): keep polling, try again later.
        source.close();
        source = null;
        setTimeout(connect, 15000);
      }
    };
  }

  // ---- acting ---------------------------------------------------------------------------

  async function act(action, done) {
    const id = selected;
    if (!id) return false;
    busy = true;
    renderSelected();
    try {
      await api(`/conversations/${encodeURIComponent(id)}/agent`, { body: action });
      if (done) setStatus(done);
      schedule(id);
      return true;
    } catch (error) {
      const message = error.status === 409 ? "The conversation has ended." : error.message;
      setStatus(`Could not ${action.action === "message" ? "send" : action.action}: ${message}`, true);
      schedule(id);
      return false;
    } finally {
      busy = false;
      renderSelected();
    }
  }

  function postTyping(id, on) {
    // Fire and forget: a lost typing indicator is harmless.
    api(`/conversations/${encodeURIComponent(id)}/agent`, { body: { action: "typing", agent: me(), on } }).catch(() => {});
  }

  function typingStop() {
    clearTimeout(typing.timer);
    typing.timer = null;
    if (typing.on && typing.conversation) postTyping(typing.conversation, false);
    typing.on = false;
  }

  function typingInput() {
    const view = selected && conversations.get(selected);
    if (!view || view.ended) return;
    if (el.answer.value.trim() === "") {
      typingStop();
      return;
    }
    if (!typing.on || typing.conversation !== selected) {
      typingStop();
      typing.conversation = selected;
      typing.on = true;
      postTyping(selected, true);
    }
    clearTimeout(typing.timer);
    typing.timer = setTimeout(typingStop, TYPING_IDLE_MS);
  }

  async function send() {
    const value = el.answer.value;
    if (!selected || value.trim() === "" || busy) return;
    const id = selected;
    const sent = await act({ action: "message", agent: me(), text: value }, null);
    if (sent) {
      if (selected === id) {
        // Only clear what was sent: text typed while the request was out stays.
        el.answer.value = el.answer.value === value ? "" : el.answer.value;
        drafts.delete(id);
      }
      typingStop();
      setStatus("Sent.");
      renderSelected();
    }
  }

  function select(id) {
    if (selected === id) {
      el.answer.focus();
      return;
    }
    typingStop();
    if (selected) drafts.set(selected, el.answer.value);
    selected = id;
    el.answer.value = drafts.get(id) || "";
    const url = new URL(location.href);
    url.searchParams.set("c", id);
    history.replaceState(null, "", url);
    setStatus("");
    render();
    schedule(id);
  }

  // ---- wiring ---------------------------------------------------------------------------

  el.composer.addEventListener("submit", (event) => {
    event.preventDefault();
    send();
  });
  el.answer.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      send();
    }
  });
  el.answer.addEventListener("input", () => {
    typingInput();
    el.send.disabled = busy || el.answer.disabled || el.answer.value.trim() === "";
  });
  el.answer.addEventListener("blur", () => {
    if (el.answer.value.trim() === "") typingStop();
  });
  el.accept.addEventListener("click", () => act({ action: "joined", agent: me() }, `You (${me()}) joined the conversation.`));
  el.transfer.addEventListener("click", () => {
    const view = selected && conversations.get(selected);
    const agent = (view && summarize(view).agent) || me();
    typingStop();
    act({ action: "left", agent, transfer: true }, `${agent} left; the conversation waits for another agent.`);
  });
  el.end.addEventListener("click", () => {
    typingStop();
    act({ action: "ended" }, "You ended the conversation.");
  });
  el.showEnded.addEventListener("change", renderList);
  el.agent.addEventListener("input", () => renderSelected());
  el.agent.value = sessionStorage.getItem("desk-agent") || el.agent.value;
  el.agent.addEventListener("change", () => sessionStorage.setItem("desk-agent", me()));

  // Arrow keys move between conversations in the list.
  el.list.addEventListener("keydown", (event) => {
    if (event.key !== "ArrowDown" && event.key !== "ArrowUp") return;
    const buttons = Array.from(el.list.querySelectorAll("button"));
    const at = buttons.indexOf(document.activeElement);
    if (at < 0) return;
    event.preventDefault();
    const next = buttons[Math.min(buttons.length - 1, Math.max(0, at + (event.key === "ArrowDown" ? 1 : -1)))];
    next.focus();
  });

  window.addEventListener("pagehide", typingStop);

  // Waiting times and the inbound typing indicator follow the clock.
  setInterval(() => {
    if (conversations.size) render();
  }, 1000);

  api("/info")
    .then((info) => {
      if (info && info.protocol) {
        protocol = info.protocol;
        text(el.protocol, protocol);
        document.title = `Agent desk · ${protocol} emulator`;
        renderList();
      }
    })
    .catch(() => {});

  schedule(null);
  connect();
})();
