"use strict";
// kms web UI: a small hash-routed single page app, no external libraries or fonts.
// Everything user- or document-supplied is inserted as text (never as HTML).

const state = {
  lang: localStorage.getItem("kms-lang") || "vi",
  key: sessionStorage.getItem("kms-key") || "",
  me: null,
  lastQuery: "",
};
const FACETS = ["doc_type", "issuer", "owner_unit", "year", "language", "classification"];
const PAGE_SIZE = 10;

function t(name, ...args) {
  const value = (window.KMS_I18N[state.lang] || window.KMS_I18N.vi)[name];
  return typeof value === "function" ? value(...args) : value || name;
}

// h("a", {href: "#"}, "text", child): build DOM nodes; attributes starting with "on" become listeners.
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
    else if (name === "class") el.className = value;
    else el.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

async function api(path, options = {}) {
  const headers = { ...(options.headers || {}) };
  if (state.key) headers.authorization = "Bearer " + state.key;
  if (options.json !== undefined) {
    headers["content-type"] = "application/json";
    options.body = JSON.stringify(options.json);
  }
  const response = await fetch(path, { ...options, headers });
  if (response.status === 401) {
    signOut();
    throw new ApiError(401, t("bad_key"));
  }
  if (!response.ok) {
    let detail = response.statusText;
    try { detail = (await response.json()).detail || detail; } catch (_) { /* not JSON */ }
    throw new ApiError(response.status, typeof detail === "string" ? detail : JSON.stringify(detail));
  }
  if (response.status === 204) return null;
  const type = response.headers.get("content-type") || "";
  return type.includes("json") ? response.json() : response.blob();
}

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

function badge(level) {
  const info = window.KMS_LEVELS[level] || { vi: level || "?", en: level || "?", colour: "#57606a" };
  return h("span", { class: "badge", style: `background:${info.colour}` }, info[state.lang] || info.vi);
}

function hasRole(role) {
  const me = state.me;
  return !!me && (me.operator || me.roles.includes(role) || (role !== "auditor" && me.roles.includes("admin")));
}

// ---- diacritic-insensitive matching (for highlights in the full text) ---------------------------
function foldChar(ch) {
  if (ch === "đ") return "d";
  if (ch === "Đ") return "D";
  const base = ch.normalize("NFD").replace(/[\u0300-\u036f]/g, "");
  return base.length === 1 ? base : ch;
}
function foldKeepLength(text) { return Array.from(text, foldChar).join("").toLowerCase(); }

function termRanges(text, query) {
  const folded = foldKeepLength(text);
  const terms = [...new Set(foldKeepLength(query).split(/[^\p{L}\p{N}/-]+/u).filter((w) => w.length > 1))];
  const ranges = [];
  for (const term of terms) {
    let at = folded.indexOf(term);
    while (at !== -1) {
      const before = at === 0 ? " " : folded[at - 1];
      const after = folded[at + term.length] || " ";
      if (!/[\p{L}\p{N}]/u.test(before) && !/[\p{L}\p{N}]/u.test(after)) ranges.push([at, at + term.length]);
      at = folded.indexOf(term, at + term.length);
    }
  }
  ranges.sort((a, b) => a[0] - b[0]);
  const merged = [];
  for (const range of ranges) {
    const last = merged[merged.length - 1];
    if (last && range[0] <= last[1] + 1 && /^\s*$/.test(text.slice(last[1], range[0]))) last[1] = Math.max(last[1], range[1]);
    else merged.push([...range]);
  }
  return merged;
}

function withMarks(text, ranges) {
  const parts = [];
  let pos = 0;
  for (const [start, end] of ranges) {
    if (start < pos) continue;
    parts.push(text.slice(pos, start), h("mark", {}, text.slice(start, end)));
    pos = end;
  }
  parts.push(text.slice(pos));
  return parts;
}

// ---- shell --------------------------------------------------------------------------------------
function renderShell() {
  document.documentElement.lang = state.lang;
  document.title = "kms — " + t("app_title");
  const header = document.getElementById("header");
  const nav = h("nav", { "aria-label": "main" },
    h("a", { href: "#/" }, t("nav_search")),
    hasRole("ingestor") ? h("a", { href: "#/admin/jobs" }, t("nav_admin")) : null,
    hasRole("auditor") ? h("a", { href: "#/audit" }, t("nav_audit")) : null);
  const who = state.me
    ? h("div", { class: "who", id: "who" },
        h("span", { class: "who-name" }, state.me.user_id), " · ", h("span", {}, state.me.unit || "—"), " ",
        badge(state.me.clearance), " ",
        h("button", { type: "button", class: "link", onclick: () => { signOut(); route(); } }, t("sign_out")))
    : null;
  const langButton = h("button", {
    type: "button", class: "link", id: "lang", "aria-label": state.lang === "vi" ? "English" : "Tiếng Việt",
    onclick: () => { state.lang = state.lang === "vi" ? "en" : "vi"; localStorage.setItem("kms-lang", state.lang); route(); },
  }, state.lang === "vi" ? "EN" : "VI");
  header.replaceChildren(h("a", { href: "#/", class: "brand" }, "kms ", h("small", {}, t("app_title"))), state.me ? nav : null,
    h("div", { class: "right" }, langButton, who));
}

function signOut() {
  state.key = "";
  state.me = null;
  sessionStorage.removeItem("kms-key");
}

function view(...children) {
  const main = document.getElementById("view");
  main.replaceChildren(...children);
  return main;
}

function renderSignIn(message) {
  const input = h("input", { id: "key", type: "password", autocomplete: "off", required: true, "aria-describedby": "signin-hint" });
  const status = h("p", { role: "alert", class: "error" }, message || "");
  view(h("section", { class: "signin" },
    h("h1", {}, t("sign_in")),
    h("p", { id: "signin-hint" }, t("sign_in_hint")),
    h("form", {
      id: "signin", onsubmit: async (e) => {
        e.preventDefault();
        state.key = input.value.trim();
        try {
          state.me = await api("/api/v1/me");
          sessionStorage.setItem("kms-key", state.key);
          route();
        } catch (err) {
          status.textContent = err.message;
        }
      },
    }, h("label", { for: "key" }, t("api_key"), " ", h("small", {}, t("oidc_token"))), input,
      h("button", { type: "submit" }, t("sign_in"))),
    status));
  input.focus();
}

// ---- search -------------------------------------------------------------------------------------
function parseHash() {
  const [path, query = ""] = location.hash.replace(/^#/, "").split("?");
  return { path: path || "/", params: new URLSearchParams(query) };
}

function searchForm(params) {
  const q = h("input", { id: "q", type: "search", name: "q", required: true, maxlength: "1000", value: params.get("q") || "",
    placeholder: t("query_placeholder"), "aria-label": t("query_label") });
  const mode = h("select", { id: "mode", "aria-label": t("mode") },
    ...["hybrid", "dense", "sparse"].map((m) => h("option", { value: m, selected: params.get("mode") === m }, t("mode_" + m))));
  return h("form", {
    id: "search", role: "search", onsubmit: (e) => {
      e.preventDefault();
      const next = new URLSearchParams({ q: q.value.trim(), mode: mode.value });
      location.hash = "#/search?" + next.toString();
    },
  }, h("label", { for: "q", class: "visually-hidden" }, t("query_label")), q, mode, h("button", { type: "submit" }, t("search")));
}

function filtersFrom(params) {
  const filters = {};
  for (const field of FACETS) {
    const values = params.getAll("f_" + field);
    if (values.length) filters[field] = field === "year" ? values.map(Number) : values;
  }
  return filters;
}

function hitItem(hit, query) {
  const similarBox = h("div", { class: "similar" });
  const docLink = "#/doc/" + encodeURIComponent(hit.doc_id) + "?q=" + encodeURIComponent(query || "");
  return h("li", { class: "hit", "data-doc-id": hit.doc_id },
    h("h2", {}, h("a", { href: docLink }, hit.title || hit.doc_id)),
    h("div", { class: "meta" }, badge(hit.classification), " ",
      [hit.doc_number, hit.issuer, hit.issued_date, hit.owner_unit].filter(Boolean).join(" · ")),
    h("p", { class: "snippet" }, withMarks(hit.snippet, hit.highlights)),
    h("button", { type: "button", class: "link", onclick: () => loadSimilar(hit.doc_id, similarBox) }, t("similar")),
    similarBox);
}

async function loadSimilar(docId, box) {
  box.replaceChildren(t("loading"));
  try {
    const data = await api(`/api/v1/documents/${encodeURIComponent(docId)}/similar?k=5`);
    box.replaceChildren(h("ul", { class: "similar-list" }, data.results.map((hit) =>
      h("li", {}, h("a", { href: "#/doc/" + encodeURIComponent(hit.doc_id) }, hit.title || hit.doc_id), " ", badge(hit.classification)))));
  } catch (err) {
    box.replaceChildren(err.message);
  }
}

function facetPanel(facets, params) {
  const panel = h("aside", { class: "facets", "aria-label": t("facets") }, h("h2", {}, t("facets")));
  for (const field of FACETS) {
    const values = Object.entries(facets[field] || {});
    if (!values.length) continue;
    const chosen = new Set(params.getAll("f_" + field));
    const group = h("fieldset", { "data-facet": field }, h("legend", {}, t("facet_" + field)));
    for (const [value, count] of values.slice(0, 12)) {
      const id = `f-${field}-${value}`.replace(/[^\w-]/g, "_");
      const box = h("input", { type: "checkbox", id, checked: chosen.has(value), onchange: () => {
        const next = new URLSearchParams(params);
        next.delete("offset");
        const all = new Set(next.getAll("f_" + field));
        if (box.checked) all.add(value); else all.delete(value);
        next.delete("f_" + field);
        for (const v of all) next.append("f_" + field, v);
        location.hash = "#/search?" + next.toString();
      } });
      const label = field === "classification" ? badge(value) : value;
      group.append(h("div", { class: "facet" }, box, h("label", { for: id }, label, " ", h("span", { class: "count" }, `(${count})`))));
    }
    panel.append(group);
  }
  if ([...params.keys()].some((k) => k.startsWith("f_"))) {
    const next = new URLSearchParams({ q: params.get("q") || "", mode: params.get("mode") || "hybrid" });
    panel.append(h("a", { href: "#/search?" + next.toString() }, t("clear_filters")));
  }
  return panel;
}

function pager(total, params) {
  const offset = Number(params.get("offset") || 0);
  const go = (value) => { const next = new URLSearchParams(params); next.set("offset", String(value)); return "#/search?" + next.toString(); };
  const nav = h("nav", { class: "pager", "aria-label": "pagination" });
  if (offset > 0) nav.append(h("a", { href: go(Math.max(0, offset - PAGE_SIZE)), rel: "prev" }, t("prev")));
  nav.append(h("span", { "aria-current": "page" }, t("page", Math.floor(offset / PAGE_SIZE) + 1)));
  if (offset + PAGE_SIZE < total) nav.append(h("a", { href: go(offset + PAGE_SIZE), rel: "next" }, t("next")));
  return nav;
}

async function renderSearch(params) {
  const query = params.get("q") || "";
  state.lastQuery = query;
  const status = h("p", { id: "status", role: "status", "aria-live": "polite" }, t("searching"));
  const results = h("ol", { id: "results", start: String(Number(params.get("offset") || 0) + 1) });
  const layout = h("div", { class: "layout" }, h("div", { id: "facet-slot" }), h("div", {}, status, results, h("div", { id: "pager-slot" })));
  const saveButton = h("button", { type: "button", class: "secondary", id: "save-search" }, t("save_search"));
  view(searchForm(params), h("div", { class: "toolbar" }, saveButton), layout);
  const filters = filtersFrom(params);
  saveButton.addEventListener("click", async () => {
    try {
      await api("/api/v1/saved-searches", { method: "POST", json: { name: query.slice(0, 80), query, filters } });
      saveButton.textContent = t("saved");
      saveButton.disabled = true;
    } catch (err) { saveButton.textContent = err.message; }
  });
  try {
    const data = await api("/api/v1/search", { method: "POST", json: {
      query, mode: params.get("mode") || "hybrid", k: PAGE_SIZE, offset: Number(params.get("offset") || 0), filters } });
    results.replaceChildren(...data.results.map((hit) => hitItem(hit, query)));
    performance.mark("kms-results-rendered");
    status.textContent = data.total ? t("results_count", data.total) : t("no_results");
    layout.querySelector("#facet-slot").replaceWith(facetPanel(data.facets, params));
    layout.querySelector("#pager-slot").replaceWith(pager(data.total, params));
  } catch (err) {
    status.textContent = err.message;
    status.className = "error";
  }
}

// ---- home: search box, new for you, saved searches ---------------------------------------------
async function renderHome() {
  const alertsBox = h("section", { id: "alerts", "aria-labelledby": "alerts-title" }, h("h2", { id: "alerts-title" }, t("new_for_you")), t("loading"));
  const savedBox = h("section", { id: "saved", "aria-labelledby": "saved-title" }, h("h2", { id: "saved-title" }, t("saved_searches")));
  view(searchForm(new URLSearchParams()), h("div", { class: "home" }, alertsBox, savedBox));
  document.getElementById("q").focus();
  try {
    const [alerts, saved] = await Promise.all([api("/api/v1/alerts"), api("/api/v1/saved-searches")]);
    const items = alerts.alerts.flatMap((alert) => alert.results.map((hit) => hitItem(hit, alert.query)));
    alertsBox.replaceChildren(h("h2", { id: "alerts-title" }, t("new_for_you")),
      items.length ? h("ol", { class: "results" }, items) : h("p", {}, t("no_alerts")),
      items.length ? h("button", { type: "button", class: "secondary", onclick: async () => { await api("/api/v1/alerts/seen", { method: "POST" }); renderHome(); } }, t("mark_seen")) : null);
    savedBox.append(saved.count ? h("ul", {}, saved.data.map((s) => h("li", {},
      h("a", { href: "#/search?" + new URLSearchParams({ q: s.query }).toString() }, s.name || s.query), " ",
      h("button", { type: "button", class: "link", onclick: async () => { await api(`/api/v1/saved-searches/${s.id}`, { method: "DELETE" }); renderHome(); } }, t("delete"))))) : h("p", {}, t("none_saved")));
  } catch (err) {
    alertsBox.append(h("p", { class: "error" }, err.message));
  }
}

// ---- document page ------------------------------------------------------------------------------
const HEADING = /^(Phần|PHẦN|Chương|CHƯƠNG|Mục|MỤC|Điều|ĐIỀU)\s+[\dIVXLCDM]+\b/u;

function documentBody(text, query) {
  const toc = h("ol", { class: "toc" });
  const body = h("div", { class: "doc-text", id: "doc-text" });
  let n = 0;
  for (const block of text.split(/\n{2,}/)) {
    for (const line of block.split("\n")) {
      const clean = line.replace(/^[#*\s]+|\*+$/g, "");
      if (HEADING.test(clean)) {
        const id = "s" + ++n;
        const level = /^(Điều|ĐIỀU)/u.test(clean) ? "h4" : "h3";
        body.append(h(level, { id, tabindex: "-1" }, withMarks(clean, query ? termRanges(clean, query) : [])));
        toc.append(h("li", { class: level === "h4" ? "toc-article" : "toc-part" }, h("a", { href: "#", "data-target": id, onclick: (e) => { e.preventDefault(); const el = document.getElementById(id); el.scrollIntoView(); el.focus(); } }, clean.slice(0, 90))));
      } else if (line.trim()) {
        body.append(h("p", {}, withMarks(line, query ? termRanges(line, query) : [])));
      }
    }
  }
  return { toc, body };
}

async function download(docId, button) {
  try {
    const blob = await api(`/api/v1/documents/${encodeURIComponent(docId)}/download`);
    const url = URL.createObjectURL(blob);
    const link = h("a", { href: url, download: docId });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  } catch (err) { button.textContent = err.status === 404 ? t("unavailable") : err.message; }
}

async function renderDocument(docId, params) {
  const query = params.get("q") || state.lastQuery;
  view(h("p", {}, t("loading")));
  let doc;
  try {
    doc = await api(`/api/v1/documents/${encodeURIComponent(docId)}`);
  } catch (err) {
    view(h("a", { href: "#/", class: "back" }, t("back")), h("h1", {}, err.status === 404 ? t("not_found") : err.message));
    return;
  }
  const fields = ["doc_number", "doc_type", "issuer", "issued_date", "language", "owner_unit", "version"];
  const meta = h("dl", { class: "doc-meta" },
    h("dt", {}, t("f_classification")), h("dd", {}, badge(doc.classification)),
    fields.flatMap((f) => doc[f] === null || doc[f] === undefined ? [] : [h("dt", {}, t("f_" + f)), h("dd", {}, String(doc[f]))]));
  const { toc, body } = documentBody(doc.text, query);
  const downloadButton = h("button", { type: "button", id: "download", onclick: () => download(doc.doc_id, downloadButton) }, t("download"));
  const similarBox = h("div", { class: "similar", id: "similar" });
  view(h("a", { href: "javascript:history.back()", class: "back" }, t("back")),
    h("article", { class: "document", "data-doc-id": doc.doc_id },
      h("h1", {}, doc.title || doc.doc_id),
      h("section", { "aria-label": t("metadata") }, meta, downloadButton),
      h("div", { class: toc.childElementCount ? "doc-layout with-toc" : "doc-layout" },
        toc.childElementCount ? h("nav", { class: "doc-toc", "aria-label": t("contents") }, h("h2", {}, t("contents")), toc) : null,
        h("section", { "aria-label": t("full_text") }, body)),
      h("section", { "aria-labelledby": "similar-title" }, h("h2", { id: "similar-title" }, t("similar")), similarBox)));
  loadSimilar(doc.doc_id, similarBox);
  const first = body.querySelector("mark");
  if (first) first.scrollIntoView({ block: "center" });
}

// ---- admin --------------------------------------------------------------------------------------
const ADMIN_TABS = [["jobs", "admin_jobs"], ["upload", "admin_upload"], ["sources", "admin_sources"], ["documents", "admin_documents"], ["users", "admin_users"]];

function adminFrame(active, ...content) {
  return view(h("nav", { class: "tabs", "aria-label": t("nav_admin") },
    ADMIN_TABS.filter(([name]) => name !== "users" || hasRole("admin")).map(([name, label]) =>
      h("a", { href: "#/admin/" + name, "aria-current": name === active ? "page" : null }, t(label)))), ...content);
}

function table(columns, rows) {
  return h("div", { class: "table-wrap" }, h("table", {},
    h("thead", {}, h("tr", {}, columns.map((c) => h("th", { scope: "col" }, c)))),
    h("tbody", {}, rows.map((cells) => h("tr", {}, cells.map((cell) => h("td", {}, cell)))))));
}

async function guarded(active, load) {
  if (!hasRole("ingestor")) { view(h("p", { class: "error" }, t("forbidden"))); return; }
  adminFrame(active, h("p", {}, t("loading")));
  try { await load(); } catch (err) {
    adminFrame(active, h("p", { class: "error" }, err.status === 404 || err.status === 405 ? t("unavailable") : err.message));
  }
}

let jobsTimer = null;
async function renderJobs() {
  await guarded("jobs", async () => {
    const data = await api("/api/v1/jobs?limit=50");
    const rows = (data.data || data.jobs || []).map((job) => [
      h("a", { href: "#/admin/jobs/" + job.id }, String(job.id)), h("span", { class: "state state-" + job.state }, job.state),
      h("progress", { max: String(job.files_total || 1), value: String(job.files_done || 0), "aria-label": t("progress") }),
      `${job.files_done || 0}/${job.files_total || 0}`, String(job.chunks_written || 0),
      h("span", {}, job.error ? h("div", { class: "error" }, job.error) : null,
        job.files_failed ? h("a", { href: "#/admin/jobs/" + job.id, class: "error" }, t("files_failed", job.files_failed)) : null),
      h("span", {}, job.state === "failed" || job.state === "dead" ? h("button", { type: "button", class: "link", onclick: async () => { await api(`/api/v1/jobs/${job.id}/retry`, { method: "POST" }); renderJobs(); } }, t("retry")) : null,
        job.state === "queued" || job.state === "running" ? h("button", { type: "button", class: "link", onclick: async () => { await api(`/api/v1/jobs/${job.id}/cancel`, { method: "POST" }); renderJobs(); } }, t("cancel")) : null),
    ]);
    adminFrame("jobs", h("h1", {}, t("admin_jobs")),
      table([t("job"), t("state"), t("progress"), t("files"), t("chunks"), t("errors"), ""], rows));
    clearTimeout(jobsTimer);
    if ((data.data || data.jobs || []).some((job) => job.state === "queued" || job.state === "running")) {
      jobsTimer = setTimeout(() => { if (location.hash.startsWith("#/admin/jobs")) renderJobs(); }, 1500);
    }
  });
}

function renderUpload() {
  if (!hasRole("ingestor")) { view(h("p", { class: "error" }, t("forbidden"))); return; }
  const levels = Object.keys(window.KMS_LEVELS);
  const status = h("p", { role: "status", id: "upload-status" });
  const form = h("form", { id: "upload", class: "stack", onsubmit: async (e) => {
    e.preventDefault();
    const body = new FormData(form);
    const allow = String(body.get("allow") || "").split(/[\n,]+/).map((s) => s.trim()).filter(Boolean);
    body.delete("allow");
    for (const token of allow) body.append("allow", token);
    status.textContent = t("loading");
    try {
      const job = await api("/api/v1/ingest", { method: "POST", body });
      status.textContent = t("uploaded", job.id ?? job.job_id);
      setTimeout(() => { location.hash = "#/admin/jobs"; }, 600);
    } catch (err) { status.textContent = err.message; status.className = "error"; }
  } },
    h("label", { for: "files" }, t("files")), h("input", { id: "files", name: "files", type: "file", multiple: true, required: true }),
    h("label", { for: "classification" }, t("classification")),
    h("select", { id: "classification", name: "classification" }, levels.map((l) => h("option", { value: l }, window.KMS_LEVELS[l][state.lang]))),
    h("label", { for: "allow" }, t("allow")), h("textarea", { id: "allow", name: "allow", rows: "3" }, state.me && state.me.unit ? "unit:" + state.me.unit : "all-staff"),
    h("label", { for: "owner_unit" }, t("owner_unit")), h("input", { id: "owner_unit", name: "owner_unit", value: (state.me && state.me.unit) || "" }),
    h("button", { type: "submit" }, t("upload")), status);
  adminFrame("upload", h("h1", {}, t("admin_upload")), form);
}

async function renderJob(id) {
  await guarded("jobs", async () => {
    const job = await api(`/api/v1/jobs/${encodeURIComponent(id)}`);
    const rows = job.files.map((f) => [f.name, f.op, h("span", { class: "state state-" + f.state }, f.state),
      f.doc_id ? h("a", { href: "#/doc/" + encodeURIComponent(f.doc_id) }, f.doc_id) : "", String(f.chunks),
      f.error ? h("span", { class: "error" }, f.error) : ""]);
    adminFrame("jobs", h("p", {}, h("a", { href: "#/admin/jobs" }, t("back"))),
      h("h1", {}, `${t("job")} ${job.id} · ${job.kind}${job.source ? " · " + job.source : ""}`),
      h("p", {}, h("span", { class: "state state-" + job.state }, job.state), ` ${job.files_done}/${job.files_total} · ${t("chunks")}: ${job.chunks_written}`),
      job.error ? h("p", { class: "error" }, job.error) : null,
      table([t("files"), "op", t("state"), t("admin_documents"), t("chunks"), t("errors")], rows));
    clearTimeout(jobsTimer);
    if (job.state === "queued" || job.state === "running") {
      jobsTimer = setTimeout(() => { if (location.hash === "#/admin/jobs/" + id) renderJob(id); }, 1500);
    }
  });
}

function when(iso) {
  return iso ? new Date(iso).toLocaleString(state.lang === "vi" ? "vi-VN" : "en-GB") : t("never");
}

async function renderSources() {
  await guarded("sources", async () => {
    const data = await api("/api/v1/sources");
    const status = h("p", { role: "status", id: "sources-status" });
    const rows = data.data.map((s) => [s.name, h("code", {}, s.path), s.classification ? badge(s.classification) : "",
      s.schedule_minutes ? t("every_minutes", s.schedule_minutes) : "—", String(s.files),
      h("time", { datetime: s.last_sync_at || "" }, when(s.last_sync_at)),
      s.last_job_id ? h("a", { href: "#/admin/jobs/" + s.last_job_id, class: "state state-" + (s.last_job_state || "") },
        s.last_job_state || String(s.last_job_id)) : "—",
      h("button", { type: "button", class: "link", "aria-label": `${t("sync_now")} ${s.name}`, onclick: async () => {
        status.textContent = t("loading");
        try {
          const out = await api(`/api/v1/sources/${encodeURIComponent(s.name)}/sync`, { method: "POST" });
          status.textContent = out.job_id ? t("uploaded", out.job_id) : t("no_changes");
          renderSources();
        } catch (err) { status.textContent = err.message; status.className = "error"; }
      } }, t("sync_now"))]);
    adminFrame("sources", h("h1", {}, t("admin_sources")), status,
      rows.length ? table([t("source"), t("path"), t("classification"), t("schedule"), t("files"), t("last_sync"), t("status"), ""], rows)
        : h("p", {}, t("no_sources")));
    clearTimeout(jobsTimer);
    if (data.data.some((s) => s.last_job_state === "queued" || s.last_job_state === "running")) {
      jobsTimer = setTimeout(() => { if (location.hash.startsWith("#/admin/sources")) renderSources(); }, 1500);
    }
  });
}

async function renderAdminDocuments(params) {
  await guarded("documents", async () => {
    const status = params.get("status") || "";
    const data = await api("/api/v1/admin/documents?limit=200" + (status ? "&status=" + status : ""));
    const filter = h("nav", { class: "chips", "aria-label": t("status") },
      ["", "indexed", "failed", "deleted"].map((s) => h("a", { href: "#/admin/documents" + (s ? "?status=" + s : ""), "aria-current": s === status ? "page" : null },
        s || t("all"), s && data.by_status[s] !== undefined ? ` (${data.by_status[s]})` : "")));
    const rows = data.data.map((d) => [d.title ? h("a", { href: "#/doc/" + encodeURIComponent(d.doc_id) }, d.title) : d.doc_id,
      d.status, badge(d.classification), d.owner_unit || "", String(d.chunk_count), d.error || ""]);
    adminFrame("documents", h("h1", {}, t("admin_documents")), filter,
      table([t("admin_documents"), t("status"), t("classification"), t("unit"), t("chunks"), t("errors")], rows));
  });
}

async function renderUsers() {
  await guarded("users", async () => {
    if (!hasRole("admin")) throw new ApiError(403, t("forbidden"));
    const [users, keys] = await Promise.all([api("/api/v1/admin/users"), api("/api/v1/admin/keys")]);
    const keyBox = h("p", { id: "new-key", role: "status" });
    const userRows = users.data.map((u) => [u.user_id, u.unit, badge(u.clearance), (u.roles || []).join(", "), (u.groups || []).join(", "),
      h("button", { type: "button", class: "link", onclick: async () => {
        const created = await api(`/api/v1/admin/users/${encodeURIComponent(u.user_id)}/keys`, { method: "POST" });
        keyBox.replaceChildren(t("key_once"), " ", h("code", {}, created.key));
      } }, t("new_key"))]);
    const keyRows = keys.data.map((k) => [k.key_id, k.user_id, k.revoked_at ? "revoked" : "active",
      k.revoked_at ? "" : h("button", { type: "button", class: "link", onclick: async () => { await api(`/api/v1/admin/keys/${k.key_id}`, { method: "DELETE" }); renderUsers(); } }, t("revoke"))]);
    const form = h("form", { id: "add-user", class: "inline", onsubmit: async (e) => {
      e.preventDefault();
      const body = Object.fromEntries(new FormData(form));
      await api("/api/v1/admin/users", { method: "POST", json: { user_id: body.user_id, clearance: body.clearance, unit: body.unit,
        roles: [body.role], groups: String(body.groups || "").split(",").map((g) => g.trim()).filter(Boolean) } });
      renderUsers();
    } },
      h("label", { for: "nu-id" }, t("user")), h("input", { id: "nu-id", name: "user_id", required: true }),
      h("label", { for: "nu-unit" }, t("unit")), h("input", { id: "nu-unit", name: "unit", required: true }),
      h("label", { for: "nu-cl" }, t("clearance")), h("select", { id: "nu-cl", name: "clearance" }, Object.keys(window.KMS_LEVELS).map((l) => h("option", { value: l }, window.KMS_LEVELS[l][state.lang]))),
      h("label", { for: "nu-role" }, t("roles")), h("select", { id: "nu-role", name: "role" }, ["reader", "ingestor", "admin", "auditor"].map((r) => h("option", { value: r }, r))),
      h("label", { for: "nu-groups" }, t("groups")), h("input", { id: "nu-groups", name: "groups" }),
      h("button", { type: "submit" }, t("add_user")));
    adminFrame("users", h("h1", {}, t("admin_users")), form, keyBox,
      table([t("user"), t("unit"), t("clearance"), t("roles"), t("groups"), ""], userRows),
      h("h2", {}, t("keys")), table(["id", t("user"), t("status"), ""], keyRows));
  });
}

async function renderAudit() {
  if (!hasRole("auditor")) { view(h("p", { class: "error" }, t("forbidden"))); return; }
  view(h("p", {}, t("loading")));
  try {
    const page = await api("/api/v1/audit?limit=200");
    const verifyBox = h("p", { role: "status" });
    const rows = page.data.map((r) => [String(r.id), r.ts, r.actor, r.action, r.target || "", JSON.stringify(r.detail || {}).slice(0, 160)]);
    view(h("h1", {}, t("audit_log")),
      h("button", { type: "button", onclick: async () => { const v = await api("/api/v1/audit/verify"); verifyBox.textContent = v.ok ? `OK (${v.records})` : `${v.problem} #${v.first_bad_id}`; } }, t("verify")),
      verifyBox, table(["#", t("time"), t("actor"), t("action"), t("target"), ""], rows));
  } catch (err) {
    view(h("p", { class: "error" }, err.message));
  }
}

// ---- router -------------------------------------------------------------------------------------
async function route() {
  clearTimeout(jobsTimer);
  if (state.key && !state.me) {
    try { state.me = await api("/api/v1/me"); } catch (_) { signOut(); }
  }
  renderShell();
  if (!state.me) { renderSignIn(); return; }
  const { path, params } = parseHash();
  if (path.startsWith("/doc/")) return renderDocument(decodeURIComponent(path.slice(5)), params);
  if (path === "/search" && params.get("q")) return renderSearch(params);
  if (path === "/admin/jobs") return renderJobs();
  if (path.startsWith("/admin/jobs/")) return renderJob(path.slice(12));
  if (path === "/admin/upload") return renderUpload();
  if (path === "/admin/sources") return renderSources();
  if (path === "/admin/documents") return renderAdminDocuments(params);
  if (path === "/admin/users") return renderUsers();
  if (path === "/audit") return renderAudit();
  return renderHome();
}

window.addEventListener("hashchange", route);
route();
