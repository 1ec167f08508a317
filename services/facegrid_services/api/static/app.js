// facegrid dashboard: plain JS, no build step, no CDN.  The API sends UTC;
// this page shows every time in the viewer's zone (Intl.DateTimeFormat), the
// report in the zone chosen in its selector.
"use strict";

const TOKEN_KEY = "facegrid.adminToken";
// facegrid.contract.API_PREFIX (a unit test keeps the two equal).
const API = "/api/v1";
const $ = (id) => document.getElementById(id);
const viewerTz = Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
const state = { lastSightingId: 0, timers: [], sightings: [], me: null };
// What the signed-in token's role may do (GET auth/me of the API): the page hides the rest.
function can(what) { return !!state.me && state.me.can.includes(what); }

function token() { return sessionStorage.getItem(TOKEN_KEY); }

async function api(path, opts = {}) {
  const headers = Object.assign({ Authorization: `Bearer ${token()}` }, opts.headers || {});
  const res = await fetch(path, Object.assign({}, opts, { headers }));
  if (res.status === 401) { signOut("The token was refused."); throw new Error("unauthorized"); }
  if (!res.ok) {
    let detail = res.statusText;
    try { detail = (await res.json()).detail || detail; } catch (e) { /* not JSON */ }
    throw new Error(`${res.status}: ${typeof detail === "string" ? detail : JSON.stringify(detail)}`);
  }
  return res;
}

function setConn(ok, text) {
  const el = $("conn");
  el.textContent = text;
  el.className = "pill " + (ok ? "ok" : "bad");
}

// --- time formatting ------------------------------------------------------------
const formatters = new Map();
function fmt(iso, tz, withDate = true) {
  const key = tz + withDate;
  if (!formatters.has(key)) {
    const o = { timeZone: tz, hour: "2-digit", minute: "2-digit", second: "2-digit",
                hourCycle: "h23", timeZoneName: "short" };
    if (withDate) Object.assign(o, { year: "numeric", month: "2-digit", day: "2-digit" });
    formatters.set(key, new Intl.DateTimeFormat(undefined, o));
  }
  return formatters.get(key).format(new Date(iso));
}
function ago(seconds) {
  if (seconds === null || seconds === undefined) return "never";
  if (seconds < 60) return `${Math.round(seconds)} s ago`;
  if (seconds < 3600) return `${Math.round(seconds / 60)} min ago`;
  return `${(seconds / 3600).toFixed(1)} h ago`;
}
function td(text, cls) {
  const c = document.createElement("td");
  c.textContent = text;
  if (cls) c.className = cls;
  return c;
}

// --- live sightings ---------------------------------------------------------------
async function pollSightings() {
  const q = new URLSearchParams({ limit: "50" });
  if (state.lastSightingId) q.set("after_id", String(state.lastSightingId));
  const page = await (await api(`${API}/sightings?${q}`)).json();
  const fresh = page.items.filter((s) => s.id > state.lastSightingId);
  if (!fresh.length) return;
  state.lastSightingId = Math.max(state.lastSightingId, ...fresh.map((s) => s.id));
  state.sightings = fresh.concat(state.sightings)
    .sort((a, b) => (a.corrected_utc < b.corrected_utc ? 1 : -1)).slice(0, 50);
  const body = $("sightings-body");
  body.replaceChildren(...state.sightings.map((s) => {
    const tr = document.createElement("tr");
    tr.dataset.id = s.id;
    if (fresh.includes(s)) tr.className = "new";
    const t = td(fmt(s.corrected_utc, viewerTz));
    t.dataset.utc = s.corrected_utc;
    tr.append(t, td(s.node_id),
      s.recognised ? td(s.person_name || `#${s.person_id}`) : td("unknown", "unknown"),
      td(s.score.toFixed(2)));
    return tr;
  }));
  $("sightings-empty").hidden = state.sightings.length > 0;
}

// --- presences: one row per person in view --------------------------------------------
function who(p) {
  if (p.status === "recognised") return td(p.person_name || `#${p.person_id}`);
  if (p.status === "pending") return td("judging…", "muted");
  return td(p.stranger_id ? `unknown #${p.stranger_id}` : "unknown", "unknown");
}
async function pollPresences() {
  const page = await (await api(`${API}/presences?limit=50`)).json();
  $("presences-body").replaceChildren(...page.items.map((p) => {
    const tr = document.createElement("tr");
    tr.dataset.id = p.id;
    tr.dataset.status = p.status;
    const span = td(`${fmt(p.first_seen, viewerTz)} – ${fmt(p.last_seen, viewerTz, false)}`);
    span.dataset.utc = p.first_seen;
    tr.append(who(p), td(p.node_id), span, td(p.score.toFixed(2)), td(String(p.frames)));
    return tr;
  }));
  $("presences-empty").hidden = page.items.length > 0;
}
async function pollStrangers() {
  const page = await (await api(`${API}/strangers?limit=20`)).json();
  const repeat = page.items.filter((s) => s.presences > 1);
  $("strangers-body").replaceChildren(...repeat.map((s) => {
    const tr = document.createElement("tr");
    tr.dataset.id = s.id;
    const act = document.createElement("td");
    if (can("erase_people")) {
      const b = document.createElement("button");
      b.type = "button";
      b.textContent = "Erase";
      b.addEventListener("click", async () => {
        await api(`${API}/strangers/${s.id}`, { method: "DELETE" });
        pollStrangers();
      });
      act.append(b);
    }
    tr.append(td(s.label, "unknown"), td(`${s.presences}×`), td(String(s.seen_today)),
      td(s.nodes.join(", ")), td(fmt(s.last_seen, viewerTz)), act);
    return tr;
  }));
  $("strangers-empty").hidden = repeat.length > 0;
}

// --- camera fleet -------------------------------------------------------------------
async function pollFleet() {
  const nodes = (await (await api(`${API}/nodes?limit=1000`)).json()).items;
  $("fleet-body").replaceChildren(...nodes.map((n) => {
    const tr = document.createElement("tr");
    tr.dataset.node = n.node_id;
    const badge = document.createElement("span");
    badge.className = `badge ${n.status}`;
    badge.textContent = n.status;
    const st = document.createElement("td");
    st.append(badge);
    const hb = td(ago(n.heartbeat_age_s));
    if (n.last_heartbeat_at) hb.title = fmt(n.last_heartbeat_at, viewerTz);
    tr.append(td(n.node_id), st, hb, td(n.fps.toFixed(1)),
      td(`${n.drift_offset_ms.toFixed(1)} ms`), td(n.model));
    return tr;
  }));
  $("fleet-empty").hidden = nodes.length > 0;
}

// --- alerts ----------------------------------------------------------------------------
async function pollAlerts() {
  const page = await (await api(`${API}/alerts?limit=20`)).json();
  $("alerts-list").replaceChildren(...page.items.map((a) => {
    const li = document.createElement("li");
    li.dataset.id = a.id;
    if (a.acknowledged_at) li.className = "acked";
    const text = document.createElement("div");
    text.className = "text";
    const title = document.createElement("strong");
    title.textContent = a.message || `${a.kind}: ${a.count}`;
    const meta = document.createElement("div");
    meta.className = "muted small";
    meta.textContent = `${fmt(a.window_start, viewerTz)} · ${a.nodes.join(", ")}` +
      (a.acknowledged_at ? ` · acknowledged by ${a.acknowledged_by}` : "");
    text.append(title, meta);
    li.append(text);
    if (!a.acknowledged_at && can("acknowledge_alerts")) {
      const b = document.createElement("button");
      b.type = "button";
      b.textContent = "Acknowledge";
      b.className = "ack";
      b.addEventListener("click", async () => {
        b.disabled = true;
        // No "by": the server records the signed-in token's name.
        await api(`${API}/alerts/${a.id}/acknowledge`, { method: "POST" });
        await pollAlerts();
      });
      li.append(b);
    }
    return li;
  }));
  $("alerts-empty").hidden = page.items.length > 0;
}

// --- attendance report --------------------------------------------------------------------
function todayIn(tz) {
  // en-CA formats dates as YYYY-MM-DD.
  return new Intl.DateTimeFormat("en-CA", { timeZone: tz, year: "numeric", month: "2-digit",
                                             day: "2-digit" }).format(new Date());
}
function fillZones() {
  const sel = $("report-tz");
  let zones = [];
  try { zones = Intl.supportedValuesOf("timeZone"); } catch (e) { zones = []; }
  if (!zones.includes("UTC")) zones.unshift("UTC");
  if (!zones.includes(viewerTz)) zones.unshift(viewerTz);
  sel.replaceChildren(...zones.map((z) => new Option(z, z, false, z === viewerTz)));
}
function reportQuery(format) {
  return new URLSearchParams({ day: $("report-day").value, tz: $("report-tz").value, format,
                               limit: "1000" });
}
async function loadReport() {
  const tz = $("report-tz").value;
  const page = await (await api(`${API}/attendance?${reportQuery("json")}`)).json();
  $("report-body").replaceChildren(...page.items.map((r) => {
    const tr = document.createElement("tr");
    tr.dataset.person = r.person_id;
    const cin = td(fmt(r.check_in, tz), "check-in");
    cin.dataset.utc = r.check_in;
    const cout = td(fmt(r.check_out, tz), "check-out");
    cout.dataset.utc = r.check_out;
    const cams = r.check_in_node === r.check_out_node ? r.check_in_node
      : `${r.check_in_node} → ${r.check_out_node}`;
    tr.append(td(r.person_name), cin, cout, td(String(r.sightings)), td(cams));
    return tr;
  }));
  $("report-empty").hidden = page.items.length > 0;
  $("report-body").dataset.tz = tz;
}
async function downloadCsv() {
  const res = await api(`${API}/attendance?${reportQuery("csv")}`);
  const url = URL.createObjectURL(await res.blob());
  const a = document.createElement("a");
  a.href = url;
  a.download = `attendance_${$("report-day").value}.csv`;
  a.click();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

// --- start, sign in, sign out ------------------------------------------------------------------
function every(ms, fn) {
  const run = () => fn().then(() => setConn(true, "live")).catch((e) => {
    if (e.message !== "unauthorized") setConn(false, "offline");
  });
  run();
  state.timers.push(setInterval(run, ms));
}
function showRole(me) {
  state.me = me;
  const el = $("role");
  el.textContent = `${me.name} · ${me.role}`;
  el.title = `may: ${me.can.join(", ")}`;
  el.hidden = false;
}
async function start() {
  try {
    showRole(await (await api(`${API}/auth/me`)).json());
  } catch (e) {
    if (e.message !== "unauthorized") setConn(false, "offline");
    return;
  }
  $("login").hidden = true;
  $("app").hidden = false;
  $("logout").hidden = false;
  $("viewer-tz").textContent = `times in ${viewerTz}`;
  $("sightings-note").textContent = `(${viewerTz})`;
  fillZones();
  $("report-day").value = todayIn(viewerTz);
  every(2000, pollPresences);
  every(2000, pollSightings);
  every(10000, pollStrangers);
  every(5000, pollFleet);
  every(10000, pollAlerts);
  loadReport().catch(() => {});
  document.dispatchEvent(new Event("facegrid:signed-in"));  // pages.js
}
function signOut(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  state.timers.forEach(clearInterval);
  state.timers = [];
  state.lastSightingId = 0;
  state.sightings = [];
  state.me = null;
  $("role").hidden = true;
  $("app").hidden = true;
  $("logout").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = message || "";
  document.dispatchEvent(new Event("facegrid:signed-out"));
}

$("login-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const value = $("token").value.trim();
  const res = await fetch(`${API}/auth/me`, { headers: { Authorization: `Bearer ${value}` } });
  if (!res.ok) { $("login-error").textContent = "That token was refused."; return; }
  sessionStorage.setItem(TOKEN_KEY, value);
  $("token").value = "";
  start();
});
$("logout").addEventListener("click", () => signOut());
$("report-form").addEventListener("submit", (ev) => { ev.preventDefault(); loadReport(); });
$("report-tz").addEventListener("change", () => loadReport());
$("report-csv").addEventListener("click", () => downloadCsv());

if (token()) start(); else signOut();
