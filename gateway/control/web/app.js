// The fleet page: providers, the model picker (favorites first), and a streaming try-it box.
// Vanilla JS, no build step, no CDN. Everything from the network is rendered with textContent.
"use strict";

const KEY_STORE = "boocode-gateway.key";
const params = new URLSearchParams(location.search);
const REFRESH_MS = Math.max(0.2, Number(params.get("refresh") || 10)) * 1000;
const state = { key: localStorage.getItem(KEY_STORE) || "", fleet: null, favorites: [], selected: "", shown: "", since: "24h", usageShown: "" };
const $ = (id) => document.getElementById(id);

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (name === "text") node.textContent = value;
    else if (name === "class") node.className = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value);
  }
  node.append(...children);
  return node;
}

function authHeaders(extra = {}) {
  return state.key ? { ...extra, Authorization: `Bearer ${state.key}` } : extra;
}

async function errorMessage(resp) {
  try {
    const body = await resp.json();
    if (body && body.error && body.error.message) return body.error.message;
  } catch (_) { /* not JSON */ }
  return `HTTP ${resp.status}`;
}

async function api(path, options = {}) {
  const resp = await fetch(path, { ...options, headers: authHeaders(options.headers || {}) });
  if (!resp.ok) throw new Error(await errorMessage(resp));
  return resp.json();
}

function ago(iso) {
  if (!iso) return "never";
  const s = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
  return s < 60 ? `${s}s ago` : s < 3600 ? `${Math.round(s / 60)} min ago` : `${Math.round(s / 3600)} h ago`;
}

function fmtCtx(n) {
  return n ? `${n >= 1024 ? `${Math.round(n / 1024)}k` : n} ctx` : "";
}

// ---------------------------------------------------------------- fleet cards

function sparkline(points, label) {
  // the last hour's generated tokens per minute, as a line (no library: one SVG polyline)
  const NS = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(NS, "svg");
  svg.setAttribute("class", "spark");
  svg.setAttribute("viewBox", "0 0 59 20");
  svg.setAttribute("preserveAspectRatio", "none");
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", label);
  const top = Math.max(1, ...points);
  const line = document.createElementNS(NS, "polyline");
  line.setAttribute("points", points.map((v, i) => `${i},${(20 - (v / top) * 19).toFixed(1)}`).join(" "));
  svg.append(line);
  return svg;
}

const MODES = { router: "llama-server, router mode", "llama-swap": "llama-swap", "llama-server": "llama-server" };  // what it turned out to be

function renderFleet(providers) {
  const list = $("fleet");
  list.replaceChildren(...providers.map((p) => {
    const lanes = p.maxConcurrent ? `${p.inFlight} running / ${p.maxConcurrent}, ${p.queued} queued` : `${p.inFlight} running`;
    const slots = p.slots && p.slots.total ? `slots ${p.slots.busy}/${p.slots.total} busy · ` : "";
    const minutes = p.tokensPerMinute || [];
    return el("li", { class: "card", "data-provider": p.id },
      el("h3", {}, el("span", { text: p.label }), el("span", { class: `badge ${p.status}`, text: p.status })),
      el("p", { class: "muted", text: `${p.id} · ${MODES[p.mode] || p.kind}${p.group === "cloud" ? " · cloud" : ""}` }),
      el("p", { text: `${p.models.length} model${p.models.length === 1 ? "" : "s"} · ${lanes}` }),
      el("p", { class: "machine-rate", text: `${slots}${p.tokensPerSecond || 0} tok/s (last minute)` }),
      ...(minutes.some((v) => v > 0) ? [sparkline(minutes, `tokens per minute, last hour, ${p.id}`)] : []),
      el("p", { class: "muted", text: `last seen ${ago(p.lastSeen)}` }),
      ...(p.lastError ? [el("p", { class: "error", text: p.lastError })] : []));
  }));
}

// ---------------------------------------------------------------- requests (live)

const RUNNING = new Set(["queued", "connecting", "waiting", "streaming"]);

function fmtMs(ms) {
  return ms == null ? "–" : ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(1)} s`;
}

function requestRow(r) {
  const tokens = r.completionTokens != null ? `${r.promptTokens} → ${r.completionTokens}` : "–";
  const action = RUNNING.has(r.state)
    ? el("button", { type: "button", class: "cancel", "aria-label": `Cancel request ${r.id}`, text: "Cancel", onclick: () => cancelRequest(r.id) })
    : el("span", { class: "muted", text: r.error || (r.status != null ? String(r.status) : "") });
  return el("tr", { "data-request": r.id },
    el("td", { class: `state ${r.state}`, text: r.state }),
    el("td", { text: r.model || "–" }),
    el("td", { text: r.provider || "–" }),
    el("td", { text: r.client || "–" }),
    el("td", { text: fmtMs(r.ttftMs) }),
    el("td", { text: fmtMs(r.durationMs) }),
    el("td", { text: tokens }),
    el("td", {}, action));
}

async function loadRequests() {
  try {
    const data = await api("/api/requests?recent=20");
    $("requests-error").hidden = true;
    const rows = [...data.active, ...data.recent];
    $("requests-count").textContent = `${data.active.length} running`;
    const focused = document.activeElement && document.activeElement.closest("tr[data-request]");
    const keep = focused ? focused.dataset.request : null;
    $("requests").tBodies[0].replaceChildren(...rows.map(requestRow));
    if (keep) {  // keep keyboard focus across refreshes
      const again = document.querySelector(`tr[data-request="${CSS.escape(keep)}"] button`);
      if (again) again.focus();
    }
  } catch (err) {
    $("requests-error").textContent = err.message;
    $("requests-error").hidden = false;
  }
}

async function cancelRequest(id) {
  try {
    await api(`/api/requests/${encodeURIComponent(id)}/cancel`, { method: "POST" });
  } catch (err) {
    $("requests-error").textContent = err.message;
    $("requests-error").hidden = false;
  }
  loadRequests();
}

// ---------------------------------------------------------------- pools

function memberLine(m, fallback) {
  const state = m.health === "cooling" ? `cooling down${m.coolingS != null ? ` (${Math.ceil(m.coolingS)}s)` : ""}`
    : m.health === "probe" ? "next request probes it" : m.status;
  return el("li", { "data-member": m.id },
    el("span", { class: `badge ${m.health === "ok" ? m.status : "stale"}`, text: state }), " ",
    el("code", { text: m.id }),
    el("span", { class: "muted", text: ` · ${m.loaded ? "loaded" : "not loaded"} · ${m.inFlight} running${fallback ? " · fallback" : ""}` }));
}

function renderPools(pools) {
  $("pools-section").hidden = !pools.length;
  $("pools").replaceChildren(...pools.map((p) => el("li", { class: "card", "data-pool": p.id },
    el("h3", { text: p.id }),
    el("p", { class: "muted", text: `${p.kind === "auto" ? "every machine that lists it" : "named in the registry"}${p.contextWindow ? ` · ${fmtCtx(p.contextWindow)}` : ""}` }),
    el("ul", { class: "members" }, ...p.members.map((m) => memberLine(m, false)),
      ...(p.fallback ? [memberLine(p.fallback, true)] : [])))));
}

// ---------------------------------------------------------------- model picker

function modelRow(m, favorite, mode) {
  const current = m.id === state.selected;
  return el("li", { class: "model" },
    el("button", {
      type: "button", class: "star", "aria-pressed": String(favorite), "data-star": m.id,
      "aria-label": `${favorite ? "Remove" : "Add"} ${m.id} ${favorite ? "from" : "to"} favorites`,
      title: favorite ? "Remove from favorites" : "Add to favorites",
      text: favorite ? "★" : "☆", onclick: () => toggleFavorite(m.id),
    }),
    el("button", {
      type: "button", class: "pick", "data-pick": m.id, "aria-current": String(current),
      text: m.id, onclick: () => select(m.id),
    }),
    el("span", { class: "ctx", text: fmtCtx(m.contextWindow) }),
    ...(mode === undefined ? [] : stateControls(m, mode)));
}

function poolRow(p) {
  return el("li", { class: "model" },
    el("button", {
      type: "button", class: "pick", "data-pick": p.id, "aria-current": String(p.id === state.selected),
      text: p.id, onclick: () => select(p.id),
    }),
    el("span", { class: "ctx", text: fmtCtx(p.contextWindow) }));
}

function renderPicker(data) {
  const favs = new Set(state.favorites);
  const groups = [];
  groups.push(el("div", { class: "group", id: "favorites", "aria-label": "Favorites" },
    el("h3", { text: "★ Favorites" }),
    data.favorites.length
      ? el("ul", {}, ...data.favorites.map((m) => modelRow(m, true)))
      : el("p", { class: "muted", text: "No favorites available. Star a model below." })));
  for (const p of data.providers) {
    if (p.status === "offline" || !p.models.length) continue;
    groups.push(el("div", { class: "group", "data-group": p.id, "aria-label": p.label },
      el("h3", { text: `${p.label} (${p.id})${p.status === "stale" ? " · stale" : ""}` }),
      el("ul", {}, ...p.models.map((m) => modelRow(m, favs.has(m.id), p.mode)))));
  }
  if (data.pools.length) {  // pickable; not starred (favorites are machines' models)
    groups.push(el("div", { class: "group", "data-group": "pools", "aria-label": "Pools" },
      el("h3", { text: "Pools" }),
      el("ul", {}, ...data.pools.map(poolRow))));
  }
  const focused = document.activeElement;
  const focusKey = focused && (focused.dataset.star ? ["star", focused.dataset.star] : focused.dataset.pick ? ["pick", focused.dataset.pick] : null);
  const inFavorites = focused && focused.closest && focused.closest("#favorites") !== null;
  $("picker").replaceChildren(...groups);
  if (focusKey) {  // keep keyboard focus across refreshes
    const scope = inFavorites ? $("favorites") : $("picker");
    const again = scope.querySelector(`[data-${focusKey[0]}="${CSS.escape(focusKey[1])}"]`);
    if (again) again.focus();
  }
  const select = $("model");
  const ids = [...new Set([...data.favorites.map((m) => m.id),
    ...data.providers.filter((p) => p.status !== "offline").flatMap((p) => p.models.map((m) => m.id)),
    ...data.pools.map((p) => p.id)])];
  select.replaceChildren(...ids.map((id) => el("option", { value: id, text: id })));
  if (!ids.includes(state.selected)) state.selected = ids[0] || "";
  select.value = state.selected;
}

function select(id) {
  state.selected = id;
  $("model").value = id;
  for (const b of document.querySelectorAll("[data-pick]")) b.setAttribute("aria-current", String(b.dataset.pick === id));
}

async function toggleFavorite(id) {
  try {
    const current = (await api("/api/settings")).favorite_models || [];
    const next = current.includes(id) ? current.filter((f) => f !== id) : [...current, id];
    await api("/api/settings", {
      method: "PATCH", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ favorite_models: next }),
    });
    await load(true);
  } catch (err) {
    showFleetError(err.message);
  }
}

// ---------------------------------------------------------------- load / unload a model

const CAN_LOAD = new Set(["router", "llama-swap"]);  // a plain llama-server has its one model loaded

function stateControls(m, mode) {
  if (!m.state) return [];  // a cloud model
  const badge = el("span", { class: `state ${m.state}`, "data-state": m.id, text: m.state });
  if (!CAN_LOAD.has(mode) || m.state === "loading") return [badge];
  const action = m.state === "loaded" ? "unload" : "load";
  return [badge, el("button", {
    type: "button", class: "load", "data-load": m.id, "data-action": action,
    "aria-label": `${action === "load" ? "Load" : "Unload"} ${m.id}`,
    text: action === "load" ? "Load" : "Unload", onclick: (e) => changeModel(e.currentTarget, m.id, action),
  })];
}

async function changeModel(button, id, action) {
  button.disabled = true;
  button.textContent = action === "load" ? "Loading…" : "Unloading…";
  let failure = "";
  try {
    await api(`/api/models/${action}`, {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ model: id }),
    });
  } catch (err) {
    failure = `${action} ${id}: ${err.message}`;
  }
  await load(true);
  if (failure) showFleetError(failure);
}

// ---------------------------------------------------------------- loading

function showFleetError(message) {
  const box = $("fleet-error");
  box.textContent = message || "";
  box.hidden = !message;
}

async function load(force = false) {
  try {
    const [data, settings] = await Promise.all([api("/api/models?favorites=1"), api("/api/settings"), loadUsage(force)]);
    state.favorites = settings.favorite_models || [];
    const shown = JSON.stringify([data, state.favorites]);
    if (force || shown !== state.shown) {  // re-render only on change: no jumps, focus kept
      state.shown = shown;
      renderFleet(data.providers);
      renderPools(data.pools);
      renderPicker(data);
    }
    $("updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
    showFleetError("");
  } catch (err) {
    showFleetError(err.message);
  }
}

// ---------------------------------------------------------------- usage

function fmtNum(n) {
  return n >= 1e6 ? `${(n / 1e6).toFixed(1)}M` : n >= 1e4 ? `${Math.round(n / 1e3)}k` : String(n);
}

function renderUsage(rows) {
  $("usage-empty").hidden = rows.length > 0;
  $("usage").hidden = rows.length === 0;
  $("usage").querySelector("tbody").replaceChildren(...rows.map((r) => el("tr", { "data-usage": `${r.provider}/${r.model}` },
    el("td", { text: r.provider }), el("td", { text: r.model || "(other)" }),
    el("td", { text: fmtNum(r.requests) }), el("td", { text: fmtNum(r.promptTokens) }),
    el("td", { text: r.promptTokens ? `${Math.round((100 * r.cachedTokens) / r.promptTokens)}%` : "–" }),
    el("td", { text: fmtNum(r.completionTokens) }),
    el("td", { text: r.tokensPerSecond == null ? "–" : String(r.tokensPerSecond) }))));
}

async function loadUsage(force = false) {
  const since = state.since;
  let data;
  try {
    data = await api(`/api/usage?since=${since}&group_by=provider,model`);
  } catch (err) {  // the usage panel's own trouble: the fleet above stays as it is
    $("usage-empty").textContent = `Usage unavailable: ${err.message}`;
    $("usage-empty").hidden = false;
    return;
  }
  if (since !== state.since) return;  // the period changed while this was on its way
  $("usage-empty").textContent = "No tokens counted in this period yet.";
  const shown = JSON.stringify([since, data.rows]);
  if (force || shown !== state.usageShown) {
    state.usageShown = shown;
    renderUsage(data.rows);
  }
}

function pickPeriod(since) {
  state.since = since;
  for (const b of document.querySelectorAll("[data-since]")) b.setAttribute("aria-pressed", String(b.dataset.since === since));
  loadUsage(true);
}

// ---------------------------------------------------------------- try a prompt

async function send(event) {
  event.preventDefault();
  const model = $("model").value;
  const reply = $("reply");
  const error = $("try-error");
  reply.textContent = "";
  error.hidden = true;
  for (const id of ["stat-machine", "stat-ttft", "stat-tps"]) $(id).textContent = "…";
  $("send").disabled = true;
  const started = performance.now();
  let first = null;
  let pieces = 0;
  let usage = null;
  const fail = (message) => { error.textContent = message; error.hidden = false; };
  try {
    const resp = await fetch("/v1/chat/completions", {
      method: "POST",
      headers: authHeaders({ "Content-Type": "application/json" }),
      body: JSON.stringify({
        model, stream: true, stream_options: { include_usage: true },
        messages: [{ role: "user", content: $("prompt").value }],
      }),
    });
    $("stat-machine").textContent = resp.headers.get("X-Gateway-Provider") || "–";
    if (!resp.ok) { fail(await errorMessage(resp)); return; }
    const reader = resp.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        for (const line of block.split("\n")) {
          if (!line.startsWith("data:")) continue;  // ": keep-alive" comments and others
          const data = line.slice(5).trim();
          if (data === "[DONE]") continue;
          let event;
          try { event = JSON.parse(data); } catch (_) { continue; }
          if (event.error) { fail(event.error.message || "the stream failed"); continue; }
          if (event.usage) usage = event.usage;
          const delta = event.choices && event.choices[0] && event.choices[0].delta;
          if (delta && delta.content) {
            if (first === null) {
              first = performance.now();
              $("stat-ttft").textContent = `${Math.round(first - started)} ms`;
            }
            pieces += 1;
            reply.textContent += delta.content;
          }
        }
      }
    }
    const tokens = usage && usage.completion_tokens ? usage.completion_tokens : pieces;
    const secs = first === null ? 0 : (performance.now() - first) / 1000;
    $("stat-tps").textContent = secs > 0 ? (tokens / secs).toFixed(1) : "–";
    if (first === null) $("stat-ttft").textContent = "–";
  } catch (err) {
    fail(err.message);
  } finally {
    $("send").disabled = false;
    load();  // the card's running count has changed
  }
}

// ---------------------------------------------------------------- start

function start() {
  $("base-url").textContent = `${location.origin}/v1`;
  $("api-key").value = state.key;
  $("key-form").addEventListener("submit", (e) => {
    e.preventDefault();
    state.key = $("api-key").value.trim();
    if (state.key) localStorage.setItem(KEY_STORE, state.key); else localStorage.removeItem(KEY_STORE);
    load(true);
  });
  $("model").addEventListener("change", (e) => select(e.target.value));
  $("try-form").addEventListener("submit", send);
  $("refresh").addEventListener("click", () => load(true));
  for (const b of document.querySelectorAll("[data-since]")) b.addEventListener("click", () => pickPeriod(b.dataset.since));
  load(true);
  setInterval(load, REFRESH_MS);
  loadRequests();
  setInterval(() => { if (!document.hidden) loadRequests(); }, Math.min(REFRESH_MS, 2000));
}

start();

// ---------------------------------------------------------------- arena
// One prompt to 2-4 models (POST /api/arena, one SSE stream), the answers side by side, a vote.

const LETTERS = "ABCD";
const arena = { picked: [], shown: "", battle: null, models: [], results: {}, blind: false, controller: null, voted: false };

function arenaIds(data) {
  return [...new Set([...data.favorites.map((m) => m.id),
    ...data.providers.filter((p) => p.status !== "offline").flatMap((p) => p.models.map((m) => m.id)),
    ...data.pools.map((p) => p.id)])];
}

function renderArenaPicks(data) {
  const favs = new Set(data.favorites.map((m) => m.id));
  const ids = arenaIds(data);
  arena.picked = arena.picked.filter((id) => ids.includes(id));
  const shown = JSON.stringify([ids, [...favs]]);
  if (shown === arena.shown) return;
  arena.shown = shown;
  $("arena-picks").replaceChildren(...ids.map((id) => el("label", {},
    el("input", { type: "checkbox", value: id, "data-arena-pick": id, onchange: arenaPick }),
    favs.has(id) ? el("span", { class: "fav", "aria-label": "favorite", text: "★" }) : "",
    id)));
  syncArenaPicks();
}

function arenaPick(event) {
  const id = event.target.value;
  arena.picked = event.target.checked ? [...arena.picked.filter((p) => p !== id), id] : arena.picked.filter((p) => p !== id);
  syncArenaPicks();
}

function syncArenaPicks() {
  for (const box of document.querySelectorAll("[data-arena-pick]")) {
    box.checked = arena.picked.includes(box.value);
    box.disabled = !box.checked && arena.picked.length >= 4;
  }
}

function arenaName(i) {
  return arena.blind && !arena.voted ? `Model ${LETTERS[i]}` : `${LETTERS[i]} · ${arena.models[i]}`;
}

function arenaFigures(result, reveal) {
  if (result.error) return `failed: ${result.error.message || result.error.code}`;
  const parts = [];
  if (reveal && result.provider) parts.push(`on ${result.provider}`);
  parts.push(`first token ${fmtMs(result.ttftMs)}`);
  parts.push(`${result.tokensPerSecond == null ? "–" : result.tokensPerSecond} tok/s`);
  if (result.completionTokens != null) parts.push(`${result.completionTokens} tokens`);
  return parts.join(" · ");
}

function renderArenaColumns() {
  $("arena-answers").replaceChildren(...arena.models.map((model, i) => el("article", { class: "contestant", "data-arena-col": String(i) },
    el("h3", { text: arenaName(i) }),
    el("pre", { class: "reply", "aria-live": "polite", "aria-label": `Answer ${LETTERS[i]}` }),
    el("p", { class: "figures", text: "waiting…" }))));
}

function arenaColumn(model) {
  const i = arena.models.indexOf(model);
  return i < 0 ? null : document.querySelector(`[data-arena-col="${i}"]`);
}

function showArenaResult(result) {
  const col = arenaColumn(result.model);
  if (!col) return;
  arena.results[result.model] = result;
  const line = col.querySelector(".figures");
  line.textContent = arenaFigures(result, !arena.blind || arena.voted);
  line.classList.toggle("error", Boolean(result.error));
}

function arenaEvent(event) {
  if (event.battle) {
    arena.battle = event.battle;
    arena.models = event.models;
    renderArenaColumns();
  } else if (event.done) {
    showArenaResult(event);
  } else if (event.text || event.reasoning) {
    const col = arenaColumn(event.model);
    if (col && event.text) col.querySelector(".reply").textContent += event.text;
    if (col && col.querySelector(".figures").textContent === "waiting…") col.querySelector(".figures").textContent = "streaming…";
  }
}

function showArenaError(message) {
  $("arena-error").textContent = message || "";
  $("arena-error").hidden = !message;
}

async function startArena(event) {
  event.preventDefault();
  showArenaError("");
  if (arena.picked.length < 2) { showArenaError("Pick 2 to 4 models."); return; }
  Object.assign(arena, { battle: null, models: [], results: {}, voted: false, blind: $("arena-blind").checked });
  $("arena-answers").replaceChildren();
  $("arena-vote").hidden = true;
  $("arena-voted").hidden = true;
  arena.controller = new AbortController();
  $("arena-start").disabled = true;
  $("arena-stop").hidden = false;
  try {
    const resp = await fetch("/api/arena", {
      method: "POST", signal: arena.controller.signal,
      headers: authHeaders({ "Content-Type": "application/json" }),
      body: JSON.stringify({ models: arena.picked, messages: [{ role: "user", content: $("arena-prompt").value }] }),
    });
    if (!resp.ok) { showArenaError(await errorMessage(resp)); return; }
    const reader = resp.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        for (const line of block.split("\n")) {
          if (!line.startsWith("data:")) continue;
          const data = line.slice(5).trim();
          if (data === "[DONE]") continue;
          try { arenaEvent(JSON.parse(data)); } catch (_) { /* not JSON */ }
        }
      }
    }
    if (arena.battle) showVote();
  } catch (err) {
    if (err.name !== "AbortError") showArenaError(err.message);
    else showArenaError("Stopped: every answer was cancelled.");
  } finally {
    arena.controller = null;
    $("arena-start").disabled = false;
    $("arena-stop").hidden = true;
  }
}

function showVote() {
  const box = $("arena-vote");
  const better = arena.models.length === 2 ? "better" : "best";
  box.replaceChildren(
    ...arena.models.map((model, i) => el("button", { type: "button", "data-vote": model, text: `${LETTERS[i]} is ${better}`, onclick: () => vote(model) })),
    el("button", { type: "button", "data-vote": "", text: "Tie", onclick: () => vote(null) }));
  box.hidden = false;
}

async function vote(winner) {
  for (const b of document.querySelectorAll("[data-vote]")) b.disabled = true;
  try {
    const data = await api("/api/arena/votes", {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ battle: arena.battle, winner }),
    });
    arena.voted = true;
    arena.models.forEach((model, i) => {  // the names, shown now
      const col = arenaColumn(model);
      col.querySelector("h3").textContent = arenaName(i);
      if (arena.results[model]) showArenaResult(arena.results[model]);
    });
    $("arena-vote").hidden = true;
    $("arena-voted").textContent = winner === null ? "Vote recorded: a tie." : `Vote recorded: ${winner} won.`;
    $("arena-voted").hidden = false;
    renderLeaderboard(data.rows);
  } catch (err) {
    showArenaError(err.message);
    for (const b of document.querySelectorAll("[data-vote]")) b.disabled = false;
  }
}

function renderLeaderboard(rows) {
  $("leaderboard-empty").hidden = rows.length > 0;
  $("leaderboard").hidden = rows.length === 0;
  $("leaderboard").tBodies[0].replaceChildren(...rows.map((r, i) => el("tr", { "data-rank": r.model },
    el("td", { text: String(i + 1) }), el("td", { text: r.model }), el("td", { text: String(r.rating) }),
    el("td", { text: String(r.wins) }), el("td", { text: String(r.losses) }), el("td", { text: String(r.ties) }))));
}

// ---------------------------------------------------------------- bench

function renderBench(results) {
  $("bench-empty").hidden = results.length > 0;
  $("bench").hidden = results.length === 0;
  $("bench").tBodies[0].replaceChildren(...results.map((r) => el("tr", { "data-bench": `${r.provider} ${r.model}` },
    el("td", { text: r.provider }), el("td", { text: r.model }),
    el("td", { text: r.promptPerSecond == null ? "–" : String(r.promptPerSecond) }),
    el("td", { text: r.tokensPerSecond == null ? "–" : String(r.tokensPerSecond) }),
    el("td", { text: fmtMs(r.ttftMs) }),
    el("td", { title: r.measured, text: ago(r.measured) }),
    el("td", { class: "muted", text: [r.loaded ? `loaded first (${fmtMs(r.firstTtftMs)})` : "", r.source === "wall" ? "wall clock" : ""].filter(Boolean).join(" · ") }))));
}

async function loadArenaAndBench() {
  try {
    const [models, board, bench] = await Promise.all([
      api("/api/models?favorites=1"), api("/api/arena/leaderboard"), api("/api/bench")]);
    renderArenaPicks(models);
    renderLeaderboard(board.rows);
    renderBench(bench.results);
  } catch (_) { /* the fleet panel above shows what is wrong (a key, the gateway gone) */ }
}

function startArenaAndBench() {
  $("arena-form").addEventListener("submit", startArena);
  $("arena-stop").addEventListener("click", () => { if (arena.controller) arena.controller.abort(); });
  $("key-form").addEventListener("submit", () => setTimeout(loadArenaAndBench, 0));
  loadArenaAndBench();
  setInterval(() => { if (!document.hidden && !arena.controller) loadArenaAndBench(); }, REFRESH_MS);
}

startArenaAndBench();

// ---------------------------------------------------------------- keys (managed API keys)

async function loadKeys() {
  let data;
  try {
    data = await api("/api/keys");
  } catch (err) {  // an admin key is needed, or the gateway is older: the rest of the page stays
    $("keys-empty").textContent = `Keys unavailable: ${err.message}`;
    $("keys-empty").hidden = false;
    $("keys").hidden = true;
    return;
  }
  const keys = data.keys || [];
  $("keys-empty").textContent = "No managed keys.";
  $("keys-empty").hidden = keys.length > 0;
  $("keys").hidden = keys.length === 0;
  const limit = (n) => (n == null ? "–" : fmtNum(n));
  $("keys").querySelector("tbody").replaceChildren(...keys.map((k) => el("tr", {},
    el("td", { text: k.label }),
    el("td", { text: k.models.length ? k.models.join(", ") : "any" }),
    el("td", { text: limit(k.requestsPerMinute) }),
    el("td", { text: limit(k.tokensPerDay) }),
    el("td", { text: fmtNum(k.requestsToday) }),
    el("td", { class: k.tokensPerDay != null && k.tokensToday >= k.tokensPerDay ? "over" : "", text: fmtNum(k.tokensToday) }),
    el("td", { class: k.expired ? "over" : "", text: k.expires ? k.expires.slice(0, 10) + (k.expired ? " (expired)" : "") : "never" }))));
}

loadKeys();
setInterval(() => { if (!document.hidden) loadKeys(); }, REFRESH_MS);
