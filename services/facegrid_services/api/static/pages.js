// facegrid dashboard pages beside the live view: People, Person, Schedules, Reports.
// Uses app.js's helpers (API, api, td, fmt, can, viewerTz, $).  Hash routes:
// #/live, #/people, #/person/<id>, #/schedules, #/reports.  Every control is a
// real button, link, input or select, so the pages work from the keyboard.
"use strict";

const WEEKDAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
const STATUS_LABEL = { present: "present", late: "late", left_early: "left early",
                       absent: "absent", off: "off", holiday: "holiday",
                       upcoming: "upcoming" };
const pages = { groups: [], schedules: [] };

function el(tag, props = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === "class") e.className = v;
    else if (k === "data") Object.assign(e.dataset, v);
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (v !== undefined && v !== null && v !== false) e.setAttribute(k, v === true ? "" : v);
  }
  e.append(...children.filter((c) => c !== null && c !== undefined));
  return e;
}
function showError(where, e) { $(where).textContent = e.message || String(e); }
function clearError(where) { $(where).textContent = ""; }
function isoDay(d) { return d.toISOString().slice(0, 10); }
function monthRange(month) {  // "YYYY-MM" -> [first, last] as YYYY-MM-DD
  const [y, m] = month.split("-").map(Number);
  const last = new Date(Date.UTC(y, m, 0));
  return [`${month}-01`, isoDay(last)];
}
async function json(path, opts) { return (await api(path, opts)).json(); }
async function send(path, method, body) {
  return api(path, { method, headers: { "Content-Type": "application/json" },
                     body: body === undefined ? undefined : JSON.stringify(body) });
}

// --- routing ----------------------------------------------------------------------------
function route() {
  const hash = location.hash || "#/live";
  const [, page, arg] = hash.split("/");
  const name = ["people", "person", "schedules", "reports"].includes(page) ? page : "live";
  document.querySelectorAll("#app > section").forEach((s) => {
    s.hidden = (s.dataset.page || "live") !== name;
  });
  document.querySelectorAll("#nav a").forEach((a) => {
    if (a.dataset.page === (name === "person" ? "people" : name)) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  });
  const load = { people: loadPeople, person: () => loadPerson(Number(arg)),
                 schedules: loadSchedules, reports: loadReportsPage }[name];
  if (load) load().catch((e) => showError(`${name}-error`, e));
}

// --- People ---------------------------------------------------------------------------------
async function loadGroupsAndSchedules() {
  pages.groups = (await json(`${API}/groups?limit=1000`)).items;
  pages.schedules = (await json(`${API}/schedules?limit=1000`)).items;
}
async function loadPeople() {
  clearError("people-error");
  const q = $("people-q").value.trim();
  const params = new URLSearchParams({ limit: "200" });
  if (q) params.set("q", q);
  const page = await json(`${API}/people?${params}`);
  $("people-body").replaceChildren(...page.items.map((p) => {
    const n = Object.values(p.embeddings).reduce((a, b) => a + b, 0);
    const link = el("a", { href: `#/person/${p.id}` }, p.name);
    const actions = el("td");
    if (can("erase_people")) {
      actions.append(el("button", { type: "button", class: "danger", data: { erase: p.id },
        onclick: () => confirmErase(p) }, "Erase"));
    }
    return el("tr", { data: { person: p.id } }, el("td", {}, link),
      td(p.external_id || ""), td(String(n)), actions);
  }));
  $("people-count").textContent = `${page.total} people`;
  $("people-empty").hidden = page.items.length > 0;
}
function confirmErase(person) {
  const dlg = $("erase-dialog");
  $("erase-name").textContent = person.name;
  $("erase-typed").value = "";
  clearError("erase-error");
  dlg.dataset.person = person.id;
  dlg.dataset.name = person.name;
  dlg.showModal();
  $("erase-typed").focus();
}
async function doErase(ev) {
  ev.preventDefault();
  const dlg = $("erase-dialog");
  if ($("erase-typed").value !== dlg.dataset.name) {
    $("erase-error").textContent = "Type the person's name exactly to confirm.";
    return;
  }
  try {
    await api(`${API}/people/${dlg.dataset.person}`, { method: "DELETE" });
    dlg.close();
    await loadPeople();
  } catch (e) { showError("erase-error", e); }
}

// --- Person: calendar of statuses, evidence, corrections -------------------------------------
async function loadPerson(id) {
  clearError("person-error");
  const person = await json(`${API}/people/${id}`);
  $("person-name").textContent = person.name;
  $("person-card").dataset.person = id;
  // The person's own schedule, or (empty value) the one of their groups.
  await loadGroupsAndSchedules();
  const own = $("person-schedule");
  own.replaceChildren(el("option", { value: "" }, "their groups’ schedule"),
    ...pages.schedules.map((s) => el("option", { value: String(s.id) }, s.name)));
  own.value = person.schedule_id === null ? "" : String(person.schedule_id);
  own.disabled = !can("manage_schedules");
  if (!$("person-month").value) $("person-month").value = todayIn(viewerTz).slice(0, 7);
  $("correction-form").hidden = !can("correct_attendance");
  await loadCalendar();
}
async function loadCalendar() {
  const id = $("person-card").dataset.person;
  const [start, end] = monthRange($("person-month").value);
  const body = await json(`${API}/statuses?${new URLSearchParams(
    { start, end, person_id: id, tz: viewerTz })}`);
  const days = body.items.length ? body.items[0].days : [];
  const first = new Date(`${start}T00:00:00Z`).getUTCDay();  // 0 = Sunday
  const cells = [];
  for (let i = 0; i < (first + 6) % 7; i++) cells.push(el("div", { class: "day blank" }));
  for (const d of days) {
    const label = STATUS_LABEL[d.status];
    const extra = d.status === "late" ? ` +${d.late_minutes} min` : "";
    cells.push(el("button", {
      type: "button", class: `day st-${d.status}${d.corrected ? " corrected" : ""}`,
      data: { day: d.day, status: d.status },
      "aria-label": `${d.day}: ${label}${extra}${d.corrected ? " (corrected)" : ""}`,
      onclick: () => loadEvidence(d.day),
    }, el("span", { class: "num" }, d.day.slice(8)), el("span", { class: "st" }, label + extra)));
  }
  $("calendar").replaceChildren(...WEEKDAYS.map((w) => el("div", { class: "wd" }, w)), ...cells);
  const trail = await json(`${API}/corrections?${new URLSearchParams(
    { person_id: id, start, end, limit: "100" })}`);
  $("corrections-body").replaceChildren(...trail.items.map((c) => el("tr", {},
    td(c.day), td(c.kind.replaceAll("_", " ")), td(fmt(c.at, viewerTz)), td(c.reason),
    td(c.made_by), td(`${c.before.status} → ${c.after.status}`))));
  $("corrections-empty").hidden = trail.items.length > 0;
}
async function loadEvidence(day) {
  const id = $("person-card").dataset.person;
  const ev = await json(`${API}/people/${id}/days/${day}?tz=${encodeURIComponent(viewerTz)}`);
  $("evidence-title").textContent = `${day}: ${STATUS_LABEL[ev.status.status]}` +
    (ev.status.corrected ? " (corrected)" : "");
  $("evidence-body").replaceChildren(...ev.sightings.map((s) => el("tr", {},
    td(s.viewer_local), td(s.node_id), td(`${s.node_local_time} (${s.node_timezone})`),
    td(`${s.drift_offset_ms.toFixed(1)} ms`), td(String(s.lamport)), td(s.score.toFixed(2)))));
  $("evidence-empty").hidden = ev.sightings.length > 0;
  $("evidence").hidden = false;
  $("correction-day").value = day;
}
async function addCorrection(ev) {
  ev.preventDefault();
  clearError("person-error");
  const day = $("correction-day").value;
  const kind = $("correction-kind").value;
  // Local wall times of the site day, sent with the viewer's offset (new Date in this zone).
  const at = new Date(`${day}T${$("correction-at").value}`).toISOString();
  const untilValue = $("correction-until").value;
  const body = { person_id: Number($("person-card").dataset.person), day, kind, at,
                 reason: $("correction-reason").value };
  if (untilValue) body.until = new Date(`${day}T${untilValue}`).toISOString();
  try {
    await send(`${API}/corrections`, "POST", body);
    $("correction-reason").value = "";
    await loadCalendar();
    await loadEvidence(day);
  } catch (e) { showError("person-error", e); }
}

// --- Schedules and groups ----------------------------------------------------------------------
function shiftsText(shifts) {
  const byTime = new Map();
  for (const s of shifts) {
    const k = `${s.start}–${s.end}`;
    byTime.set(k, (byTime.get(k) || []).concat(WEEKDAYS[s.weekday]));
  }
  return [...byTime].map(([k, days]) => `${days.join(" ")} ${k}`).join("; ") || "no shifts";
}
async function loadSchedules() {
  clearError("schedules-error");
  await loadGroupsAndSchedules();
  const editable = can("manage_schedules");
  $("schedule-form").hidden = !editable;
  $("group-form").hidden = !editable;
  $("schedules-body").replaceChildren(...pages.schedules.map((s) => el("tr",
    { data: { schedule: s.id } }, td(s.name), td(s.timezone), td(shiftsText(s.shifts)),
    td(`${s.grace_late_min} / ${s.grace_early_min} min`))));
  $("schedules-empty").hidden = pages.schedules.length > 0;
  const names = new Map(pages.schedules.map((s) => [s.id, s.name]));
  $("groups-body").replaceChildren(...pages.groups.map((g) => el("tr", { data: { group: g.id } },
    td(g.name), td(g.schedule_id ? names.get(g.schedule_id) || `#${g.schedule_id}` : "—"),
    td(String(g.members)))));
  $("groups-empty").hidden = pages.groups.length > 0;
  $("group-schedule").replaceChildren(new Option("no schedule", ""),
    ...pages.schedules.map((s) => new Option(s.name, s.id)));
}
async function createSchedule(ev) {
  ev.preventDefault();
  clearError("schedules-error");
  const days = [...document.querySelectorAll("#schedule-days input:checked")].map((c) => Number(c.value));
  const shifts = days.map((weekday) => ({ weekday, start: $("schedule-start").value,
                                           end: $("schedule-end").value }));
  try {
    await send(`${API}/schedules`, "POST", {
      name: $("schedule-name").value, timezone: $("schedule-tz").value, shifts,
      grace_late_min: Number($("schedule-grace").value),
      grace_early_min: Number($("schedule-grace").value) });
    $("schedule-name").value = "";
    await loadSchedules();
  } catch (e) { showError("schedules-error", e); }
}
async function createGroup(ev) {
  ev.preventDefault();
  clearError("schedules-error");
  const sid = $("group-schedule").value;
  try {
    await send(`${API}/groups`, "POST", { name: $("group-name").value,
                                            schedule_id: sid ? Number(sid) : null });
    $("group-name").value = "";
    await loadSchedules();
  } catch (e) { showError("schedules-error", e); }
}

// --- Reports -----------------------------------------------------------------------------------
async function loadReportsPage() {
  clearError("reports-error");
  await loadGroupsAndSchedules();
  const sel = $("period-group");
  const keep = sel.value;
  sel.replaceChildren(new Option("everyone", ""), ...pages.groups.map((g) => new Option(g.name, g.id)));
  sel.value = keep;
  if (!$("period-start").value) {
    const [start, end] = monthRange(todayIn(viewerTz).slice(0, 7));
    $("period-start").value = start;
    $("period-end").value = end;
  }
  await loadPeriod();
}
function periodQuery(format) {
  const q = new URLSearchParams({ start: $("period-start").value, end: $("period-end").value,
                                  tz: viewerTz, format, limit: "1000" });
  if ($("period-group").value) q.set("group_id", $("period-group").value);
  return q;
}
async function loadPeriod() {
  const body = await json(`${API}/statuses?${periodQuery("json")}`);
  $("period-body").replaceChildren(...body.items.map((p) => el("tr", { data: { person: p.person_id } },
    el("td", {}, el("a", { href: `#/person/${p.person_id}` }, p.person_name)),
    td(p.groups.join(", ")), td(String(p.present)), td(String(p.late)),
    td(String(p.late_minutes)), td(String(p.absent)), td(p.on_site_hours.toFixed(1)))));
  $("period-empty").hidden = body.items.length > 0;
}
async function download(format) {
  try {
    const res = await api(`${API}/statuses?${periodQuery(format)}`);
    const url = URL.createObjectURL(await res.blob());
    const a = el("a", { href: url,
      download: `statuses_${$("period-start").value}_${$("period-end").value}.${format}` });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 1000);
  } catch (e) { showError("reports-error", e); }
}

// --- wiring --------------------------------------------------------------------------------------
function fillZoneSelect(sel) {
  let zones = [];
  try { zones = Intl.supportedValuesOf("timeZone"); } catch (e) { zones = []; }
  if (!zones.includes("UTC")) zones.unshift("UTC");
  if (!zones.includes(viewerTz)) zones.unshift(viewerTz);
  sel.replaceChildren(...zones.map((z) => new Option(z, z, false, z === viewerTz)));
}
document.addEventListener("facegrid:signed-in", () => {
  $("nav").hidden = false;
  fillZoneSelect($("schedule-tz"));
  route();
});
document.addEventListener("facegrid:signed-out", () => { $("nav").hidden = true; });
window.addEventListener("hashchange", route);
$("people-form").addEventListener("submit", (ev) => { ev.preventDefault(); loadPeople(); });
$("erase-form").addEventListener("submit", doErase);
$("erase-cancel").addEventListener("click", () => $("erase-dialog").close());
$("person-month").addEventListener("change", () => loadCalendar().catch((e) => showError("person-error", e)));
$("person-schedule").addEventListener("change", async () => {
  clearError("person-error");
  try {
    const value = $("person-schedule").value;
    await send(`${API}/people/${$("person-card").dataset.person}`, "PATCH",
               { schedule_id: value === "" ? null : Number(value) });
    await loadCalendar();
  } catch (e) { showError("person-error", e); }
});
$("correction-form").addEventListener("submit", addCorrection);
$("schedule-form").addEventListener("submit", createSchedule);
$("group-form").addEventListener("submit", createGroup);
$("period-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  loadPeriod().catch((e) => showError("reports-error", e));
});
$("period-csv").addEventListener("click", () => download("csv"));
$("period-xlsx").addEventListener("click", () => download("xlsx"));
