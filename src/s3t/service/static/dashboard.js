// s3t operator dashboard: refresh in place, run the audit, forget with a bearer token.
// The token lives only in the password field of this page: it is never stored or sent anywhere
// but in the Authorization header of POST /forget to this same origin.
"use strict";

const $ = (id) => document.getElementById(id);

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

async function refresh() {
  const r = await fetch("/", { cache: "no-store", headers: { Accept: "text/html" } });
  if (!r.ok) throw new Error("refresh failed: HTTP " + r.status);
  const doc = new DOMParser().parseFromString(await r.text(), "text/html");
  const fresh = doc.getElementById("live");
  const live = $("live");
  live.replaceChildren(...Array.from(fresh.childNodes).map((n) => document.importNode(n, true)));
  for (const a of ["data-manifest", "data-generated"]) live.setAttribute(a, fresh.getAttribute(a));
  document.title = doc.title;
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
    const r = await fetch("/audit", { cache: "no-store" });
    const body = await r.json();
    if (!r.ok) { out.className = "result err"; out.textContent = errorText(body, r.status); return; }
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
  $("forget-form").addEventListener("submit", forget);
  $("audit-run").addEventListener("click", audit);
  $("refresh").addEventListener("click", () => refresh().catch((e) => console.error(e)));
  $("auto-refresh").addEventListener("change", (ev) => {
    if (timer) { clearInterval(timer); timer = null; }
    if (ev.target.checked) timer = setInterval(() => refresh().catch((e) => console.error(e)), 5000);
  });
  document.body.dataset.ready = "true";
});
