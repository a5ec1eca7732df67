// s3t operator dashboard: show the live view with the read token, refresh it in place, run the
// audit, forget with the forget token.
// Read token: taken from a #token=… URL fragment (never sent to the server; removed from the
// address bar and history at once) or typed into the page; kept in this tab's sessionStorage
// (gone when the tab closes, or on Lock); sent only in the Authorization header of GET requests
// to this same origin. A 401 drops it. The forget token lives only in its password field: never
// stored, sent only in the Authorization header of POST /forget.
"use strict";

const $ = (id) => document.getElementById(id);
const READ_KEY = "s3t-read-token";
let readToken = null;

function loadReadToken() {
  const m = /(?:^#|&)token=([^&]*)/.exec(window.location.hash);
  if (m) {
    try { readToken = decodeURIComponent(m[1]) || null; } catch (e) { readToken = null; }
    history.replaceState(null, "", window.location.pathname + window.location.search);
    if (readToken) sessionStorage.setItem(READ_KEY, readToken);
    return;
  }
  readToken = sessionStorage.getItem(READ_KEY);
}

function readHeaders(extra) {
  return Object.assign({}, extra || {}, readToken ? { Authorization: "Bearer " + readToken } : {});
}

let lockedPanel = null;

function lock(message, status) {
  readToken = null;
  sessionStorage.removeItem(READ_KEY);
  const live = $("live");
  live.replaceChildren(lockedPanel.cloneNode(true));
  for (const a of ["data-manifest", "data-generated", "data-workspace"]) live.removeAttribute(a);
  live.dataset.locked = "true";
  $("bar-info").textContent = "";
  document.title = "s3t dashboard";
  const out = $("read-result");
  out.className = message ? "result err" : "result";
  out.textContent = message || "";
  if (status) out.dataset.status = String(status); else out.removeAttribute("data-status");
}

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

async function refresh() {
  if (!readToken) { lock("Enter the read token to see the dashboard."); return; }
  const r = await fetch("/dashboard/view", { cache: "no-store", headers: readHeaders({ Accept: "text/html" }) });
  if (r.status === 401) {
    let body = null;
    try { body = await r.json(); } catch (e) { body = null; }
    lock("Refused — " + errorText(body, r.status), 401);
    return;
  }
  if (!r.ok) throw new Error("refresh failed: HTTP " + r.status);
  const doc = new DOMParser().parseFromString(await r.text(), "text/html");
  const fresh = doc.getElementById("live");
  const live = $("live");
  live.replaceChildren(...Array.from(fresh.childNodes).map((n) => document.importNode(n, true)));
  for (const a of ["data-manifest", "data-generated", "data-workspace"]) live.setAttribute(a, fresh.getAttribute(a));
  live.dataset.locked = "false";
  $("bar-info").textContent = fresh.getAttribute("data-workspace") || "";
  document.title = doc.title;
  const out = $("read-result");
  out.className = "result ok";
  out.dataset.status = "200";
  out.textContent = "Showing manifest v" + fresh.getAttribute("data-manifest") + ".";
}

async function unlock(ev) {
  ev.preventDefault();
  const token = $("read-token").value.trim();
  $("read-token").value = "";
  if (!token) { lock("Enter the read token."); return; }
  readToken = token;
  sessionStorage.setItem(READ_KEY, token);
  try { await refresh(); } catch (e) { $("read-result").className = "result err"; $("read-result").textContent = String(e); }
}

function errorText(body, status) {
  if (body && body.error) return body.error.type + ": " + body.error.message;
  return "HTTP " + status;
}

async function forget(ev) {
  ev.preventDefault();
  const out = $("forget-result");
  const token = $("token").value.trim();
  const ids = $("record-ids").value.split(/[\s,]+/).filter((s) => s.length > 0);
  const subject = $("subject").value.trim();
  out.className = "result";
  if (!token) { out.className = "result err"; out.textContent = "Enter the bearer token."; return; }
  if ((ids.length > 0) === (subject.length > 0)) {
    out.className = "result err"; out.textContent = "Give record ids or a subject (one of them)."; return;
  }
  const button = $("forget-submit");
  button.disabled = true;
  out.textContent = "Forgetting…";
  try {
    const r = await fetch("/forget", {
      method: "POST",
      headers: { "Content-Type": "application/json", Authorization: "Bearer " + token },
      body: JSON.stringify(subject ? { subject } : { record_ids: ids }),
    });
    let body = null;
    try { body = await r.json(); } catch (e) { body = null; }
    if (r.status !== 202) {
      out.className = "result err";
      out.dataset.status = String(r.status);
      out.textContent = "Refused — " + errorText(body, r.status);
      return;
    }
    out.className = "result ok";
    out.dataset.status = "202";
    out.dataset.request = body.request_id;
    out.replaceChildren(
      el("div", "", (body.created ? "Forgotten" : "Already forgotten") + ": receipt #" + body.seq + " (" + body.state + ")"),
      el("div", "mono", body.request_id),
      el("div", "", "served prefixes " + JSON.stringify(body.served_before) + " → " + JSON.stringify(body.served_after)),
    );
    $("record-ids").value = "";
    $("subject").value = "";
    await refresh();
  } catch (e) {
    out.className = "result err";
    out.textContent = String(e);
  } finally {
    button.disabled = false;
  }
}

async function audit() {
  const out = $("audit-result");
  const button = $("audit-run");
  button.disabled = true;
  out.className = "result";
  out.removeAttribute("data-ok");
  out.textContent = "Running the audit…";
  try {
    if (!readToken) { out.className = "result err"; out.textContent = "Enter the read token first."; return; }
    const r = await fetch("/audit", { cache: "no-store", headers: readHeaders() });
    const body = await r.json();
    if (r.status === 401) { lock("Refused — " + errorText(body, r.status), 401); }
    if (!r.ok) { out.className = "result err"; out.dataset.status = String(r.status); out.textContent = errorText(body, r.status); return; }
    out.className = "result " + (body.ok ? "ok" : "err");
    out.dataset.ok = String(body.ok);
    const list = el("ul");
    for (const c of body.checks) {
      const li = el("li", "check");
      li.dataset.check = c.name;
      li.dataset.ok = String(c.ok);
      li.append(el("b", c.ok ? "okt" : "badt", (c.ok ? "✓ " : "✗ ") + c.name), el("span", "", c.detail));
      list.append(li);
    }
    out.replaceChildren(el("b", "", body.ok ? "Audit passed" : "Audit FAILED"), list);
    if (body.retraining) out.append(el("div", "", "A retrain was still running; run it again when it is done."));
  } catch (e) {
    out.className = "result err";
    out.textContent = String(e);
  } finally {
    button.disabled = false;
  }
}

let timer = null;
document.addEventListener("DOMContentLoaded", () => {
  lockedPanel = $("locked").cloneNode(true);
  loadReadToken();
  $("read-form").addEventListener("submit", unlock);
  window.addEventListener("hashchange", () => {  // a #token= link opened in a tab already on this page
    if (!/(?:^#|&)token=/.test(window.location.hash)) return;
    loadReadToken();
    refresh().catch((e) => console.error(e));
  });
  $("lock").addEventListener("click", () => lock(""));
  $("forget-form").addEventListener("submit", forget);
  $("audit-run").addEventListener("click", audit);
  $("refresh").addEventListener("click", () => refresh().catch((e) => console.error(e)));
  $("auto-refresh").addEventListener("change", (ev) => {
    if (timer) { clearInterval(timer); timer = null; }
    if (ev.target.checked) timer = setInterval(() => refresh().catch((e) => console.error(e)), 5000);
  });
  const ready = () => { document.body.dataset.ready = "true"; };
  if (readToken) refresh().catch((e) => console.error(e)).finally(ready); else ready();
});
