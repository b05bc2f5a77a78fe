// The console's shell: sections, navigation (#hash), and the small form toolkit every
// section uses. Rules (as in cti.js): server text is only ever set as text (CTI.el), never
// markup; every change goes through the features' REST APIs, which validate it; an
// error shows the API's message and every problem it lists, next to the form.
"use strict";

const Console = (() => {
  const $ = (id) => document.getElementById(id);
  const el = CTI.el, t = CTI.t;
  const RANK = { agent: 0, supervisor: 1, admin: 2 };
  const sections = [];
  let me = null;
  let current = "";
  let rendering = 0;

  // A section: {id, group, title (string key), role (least role that sees it), render(view)}.
  function section(spec) { sections.push(spec); }
  function can(role) { return !!me && (RANK[me.role] ?? -1) >= RANK[role]; }
  function isAdmin() { return can("admin"); }

  function visible() { return sections.filter((s) => can(s.role || "supervisor")); }

  function drawNav() {
    const groups = [];
    for (const s of visible()) {
      if (!groups.includes(s.group)) groups.push(s.group);
    }
    const nodes = [];
    for (const g of groups) {
      nodes.push(el("div", { class: "group" }, t("group_" + g)));
      for (const s of visible().filter((x) => x.group === g)) {
        nodes.push(el("a", { href: "#" + s.id, id: "nav-" + s.id,
                             class: s.id === current ? "current" : "",
                             // the section shown: a click reloads it (no hash change)
                             onclick: (ev) => { if (location.hash === "#" + s.id) { ev.preventDefault(); route(); } },
                           }, t(s.title)));
      }
    }
    $("nav").replaceChildren(...nodes);
  }

  async function route() {
    if (!me) return;
    const list = visible();
    const wanted = location.hash.replace(/^#/, "").split("/")[0];
    const spec = list.find((s) => s.id === wanted) || list[0];
    if (!spec) return;
    current = spec.id;
    drawNav();
    const view = $("view");
    const mine = ++rendering;
    view.replaceChildren(el("p", { class: "muted" }, t("loading")));
    const holder = el("div", { class: "view", dataset: { section: spec.id } });
    try {
      await spec.render(holder);
    } catch (err) {
      const box = errorBox();
      showError(box, err);
      holder.replaceChildren(box);
    }
    if (mine === rendering) view.replaceChildren(holder);
  }

  // --- toolkit --------------------------------------------------------------------------
  function panel(title, ...children) {
    return el("section", { class: "panel" }, el("h2", {}, title), ...children);
  }
  function errorBox() { return el("div", { class: "error", role: "alert" }); }
  function noticeBox() { return el("div", { class: "notice", role: "status" }); }

  // The API's message, then each problem ("menus.main.greeting: unknown prompt") and each
  // field detail, as text.
  function showError(box, err) {
    if (!err) { box.replaceChildren(); return; }
    const body = err.body && typeof err.body === "object" ? err.body : {};
    const items = [];
    for (const p of body.problems || []) items.push(String(p));
    const details = Array.isArray(body.details) ? body.details : body.details ? [body.details] : [];
    for (const d of details) {
      if (d && typeof d === "object" && "field" in d) items.push(`${d.field}: ${d.message || ""}`);
      else if (d && typeof d === "object") items.push(JSON.stringify(d));
    }
    box.replaceChildren(
      el("strong", {}, (err.status ? err.status + " " : "") + (err.message || String(err))),
      items.length ? el("ul", {}, items.map((i) => el("li", {}, i))) : null);
  }
  function notice(box, text) {
    box.textContent = text;
    setTimeout(() => { if (box.textContent === text) box.textContent = ""; }, 6000);
  }

  function field(label, control, hint) {
    return el("label", { class: "field" }, el("span", {}, label), control,
              hint ? el("span", { class: "hint" }, hint) : null);
  }
  function input(name, value, attrs) {
    const node = el("input", { name, ...(attrs || {}) });
    node.value = value === undefined || value === null ? "" : String(value);
    return node;
  }
  function number(name, value, lo, hi) {
    return input(name, value, { type: "number", min: lo, max: hi, step: 1 });
  }
  // options: [[value, label], ...] or plain values
  function select(name, options, value, attrs) {
    const node = el("select", { name, ...(attrs || {}) },
      options.map((o) => Array.isArray(o) ? el("option", { value: o[0] }, o[1])
                                          : el("option", { value: o }, o)));
    node.value = value === undefined || value === null ? "" : String(value);
    return node;
  }
  function check(name, label, checked) {
    const box = el("input", { type: "checkbox", name });
    box.checked = !!checked;
    return el("label", { class: "check" }, box, el("span", {}, label));
  }
  function checked(form, name) { return !!form.querySelector(`[name="${name}"]`)?.checked; }
  function value(form, name) {
    const node = form.querySelector(`[name="${name}"]`);
    return node ? node.value : "";
  }
  function intValue(form, name) {
    const raw = value(form, name).trim();
    if (raw === "") return null;
    const n = Number(raw);
    return Number.isInteger(n) ? n : raw;  // let the API say what is wrong with it
  }
  function button(label, onclick, cls, attrs) {
    return el("button", { type: "button", class: cls || "", onclick, ...(attrs || {}) }, label);
  }
  // A destructive button asks in the page (a second click within 4 s), not with a dialog.
  function dangerButton(label, action, attrs) {
    let armed = null;
    const node = button(label, async () => {
      if (!armed) {
        node.textContent = t("confirm_click");
        armed = setTimeout(() => { armed = null; node.textContent = label; }, 4000);
        return;
      }
      clearTimeout(armed);
      armed = null;
      node.textContent = label;
      await action();
    }, "danger", attrs);
    return node;
  }
  // Run an API call from a form: errors into `box`, `done(result)` on success.
  async function submit(box, call, done) {
    showError(box, null);
    try {
      const result = await call();
      if (done) await done(result);
      return result;
    } catch (err) {
      showError(box, err);
      return undefined;
    }
  }
  function pretty(value) {
    if (value === undefined || value === null) return "—";
    return typeof value === "string" ? value : JSON.stringify(value, null, 2);
  }
  // Binary requests (audio in or out) with the same credentials as CTI.api; errors as
  // CTI.ApiError with the JSON body when there is one.
  async function raw(method, path, body, type) {
    const headers = {};
    const session = CTI.session;
    if (session.token) headers.Authorization = "Bearer " + session.token;  // token sign-in
    if (session.csrf && method !== "GET" && method !== "HEAD") headers["X-CSRF-Token"] = session.csrf;
    if (body !== undefined) headers["Content-Type"] = type || "application/json";
    const res = await fetch(path, { method, headers, credentials: "same-origin",
      body: body === undefined ? undefined : (typeof body === "string" || body instanceof Blob ? body : JSON.stringify(body)) });
    if (!res.ok) {
      let data = null;
      try { data = await res.json(); } catch { data = null; }
      throw new CTI.ApiError(res.status, (data && data.error) || res.statusText, data);
    }
    return res;
  }
  // Play what `path` answers (audio) in `player` (an <audio>), from a blob: no credential
  // ever goes into a URL.
  async function play(player, method, path, body) {
    const res = await raw(method, path, body);
    const blob = await res.blob();
    if (player.dataset.url) URL.revokeObjectURL(player.dataset.url);
    player.dataset.url = URL.createObjectURL(blob);
    player.src = player.dataset.url;
    player.hidden = false;
    await player.play().catch(() => {});
  }
  function goTo(id) {
    if (location.hash === "#" + id) route(); else location.hash = "#" + id;
  }

  // --- sign-in (CTI.page: the shared token sign-in) -------------------------------------
  function start() {
    CTI.page({
      roles: ["supervisor", "admin"],
      onSignedIn: async (who) => { me = who; await route(); },
      onSignedOut: () => { me = null; $("view").replaceChildren(); $("nav").replaceChildren(); },
      onLang: () => route(),
    });
    window.addEventListener("hashchange", () => route());
  }

  return { section, can, isAdmin, panel, errorBox, noticeBox, showError, notice, field, input,
           number, select, check, checked, value, intValue, button, dangerButton, submit, pretty,
           raw, play, route, goTo, start, me: () => me };
})();
