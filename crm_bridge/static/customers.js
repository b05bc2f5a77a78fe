// Customers: search (any part of a number, name, company, tag), filters, paging, bulk
// assign / return to the pool, export, and a create form that warns of duplicates first.
// Every value from the server is set as text (CTI.el / textContent), never as markup.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const PAGE = 50;
  // keyset paging: a page is "customers older than the last one of the page before"
  // (`cursor`, sent as `before`), so page 100 costs what page 1 does; `back` holds the earlier cursors
  let me = null, cursor = 0, back = [], rows = [], more = false;
  const chosen = new Set();

  function params() {
    const p = new URLSearchParams();
    const add = (k, v) => { if (v) p.set(k, v); };
    add("q", $("q").value.trim());
    const mode = $("owner-mode").value;
    if (mode === "mine") p.set("owner", me.name);
    else if (mode === "pool") p.set("owner", "");
    else if (mode === "agent" && $("owner-name").value.trim()) p.set("owner", $("owner-name").value.trim());
    add("tier", $("tier").value.trim());
    add("region", $("region").value.trim());
    add("tag", $("tag").value.trim());
    add("contacted_after", $("after").value);
    add("contacted_before", $("before").value);
    return p;
  }

  async function load() {
    $("error").textContent = "";
    const p = params();
    p.set("limit", String(PAGE));
    if (cursor) p.set("before", String(cursor));
    try {
      const res = await CTI.api("GET", "/api/v1/customers?" + p.toString());
      rows = res.customers;
      more = !!res.more;
      render();
    } catch (e) { $("error").textContent = CTI.t("error") + ": " + e.message; }
  }

  function render() {
    $("rows").replaceChildren(...rows.map((c) => {
      const box = CTI.el("input", { type: "checkbox", class: "pick", dataset: { id: c.id } });
      box.checked = chosen.has(c.id);
      box.addEventListener("change", () => { box.checked ? chosen.add(c.id) : chosen.delete(c.id); counts(); });
      return CTI.el("tr", { dataset: { id: c.id } },
        CTI.el("td", {}, box),
        CTI.el("td", {}, CTI.el("a", { href: `customer.html?id=${encodeURIComponent(c.id)}`, class: "name" }, c.name)),
        CTI.el("td", {}, c.company),
        CTI.el("td", {}, c.tier),
        CTI.el("td", { class: "region" }, c.region || ""),
        CTI.el("td", {}, (c.tags || []).map((t) => CTI.el("span", { class: "tag" }, t))),
        CTI.el("td", { class: "owner" }, CTI.el("span", { class: "who" }, c.owner || CTI.t("pool")), " ", c.owner ? null : claimButton(c)),
        CTI.el("td", {}, CTI.fmtTime(c.last_contact_at)));
    }));
    $("empty").hidden = rows.length > 0;
    $("prev").disabled = back.length === 0;
    $("next").disabled = !more;
    $("page-no").textContent = `${CTI.t("page")} ${back.length + 1}`;
    $("select-all").checked = rows.length > 0 && rows.every((c) => chosen.has(c.id));
    counts();
  }

  function claimButton(c) {
    const b = CTI.el("button", { type: "button", class: "claim", dataset: { id: c.id } }, CTI.t("claim"));
    b.addEventListener("click", async () => {
      $("error").textContent = "";
      try { await CTI.api("POST", `/api/v1/pool/${c.id}/claim`); await load(); }
      catch (e) { $("error").textContent = CTI.t("error") + ": " + e.message; }
    });
    return b;
  }

  function counts() {
    $("selected-count").textContent = chosen.size ? `${chosen.size} ${CTI.t("selected")}` : "";
  }

  async function bulk(owner) {
    $("error").textContent = "";
    if (!chosen.size) return;
    try {
      await CTI.api("POST", "/api/v1/customers/bulk", { ids: [...chosen], owner });
      chosen.clear();
      await load();
    } catch (e) { $("error").textContent = CTI.t("error") + ": " + e.message; }
  }

  function newBody(force) {
    const body = { name: $("n-name").value.trim(), company: $("n-company").value.trim() };
    if ($("n-phone").value.trim()) body.phones = [$("n-phone").value.trim()];
    if ($("n-email").value.trim()) body.emails = [$("n-email").value.trim()];
    if (force) body.force = true;
    return body;
  }

  function showDups(candidates) {
    $("dup-list").replaceChildren(...candidates.map((c) => CTI.el("li", { class: "dup" },
      c.visible
        ? CTI.el("a", { href: `customer.html?id=${encodeURIComponent(c.id)}` }, c.name, c.company ? ` (${c.company})` : "")
        : CTI.el("span", { class: "muted" }, "—"),
      " ", CTI.el("span", { class: "muted" }, (c.reasons || []).join(", ")))));
    $("dups").hidden = candidates.length === 0;
    $("create-anyway").hidden = !(me && (me.role === "supervisor" || me.role === "admin"));
  }

  async function create(force) {
    $("new-error").textContent = "";
    const body = newBody(force);
    if (!body.name) return;
    try {
      if (!force) {
        const { candidates } = await CTI.api("POST", "/api/v1/customers/duplicates", body);
        if (candidates.length) { showDups(candidates); return; }
      }
      const c = await CTI.api("POST", "/api/v1/customers", body);
      location.href = `customer.html?id=${encodeURIComponent(c.id)}`;
    } catch (e) {
      if (e.status === 409 && e.body && e.body.candidates) { showDups(e.body.candidates); return; }
      $("new-error").textContent = CTI.t("error") + ": " + e.message;
    }
  }

  async function checkDups() {
    const body = newBody(false);
    if (!body.name && !body.phones && !body.emails) return;
    if (!body.name) body.name = "?";
    try {
      const { candidates } = await CTI.api("POST", "/api/v1/customers/duplicates", body);
      showDups(candidates);
    } catch { /* the create reports it */ }
  }

  function exportAs(fmt) {
    const p = params();
    p.set("format", fmt);
    CTI.download("/api/v1/customers/export?" + p.toString(), "customers." + fmt)
      .catch((e) => { $("error").textContent = CTI.t("error") + ": " + e.message; });
  }

  // --- mass send (supervisors): preview the count, then send to the filtered list ------
  function massQuery() {
    const q = {};
    for (const [k, v] of params()) q[k] = v;
    return q;
  }

  async function loadTemplates() {
    try {
      const { templates } = await CTI.api("GET", "/api/v1/message-templates");
      $("mass-template").replaceChildren(...templates.map((t) =>
        CTI.el("option", { value: t.id }, `${t.name} (${t.channel === "sms" ? "SMS" : CTI.t("email")})`)));
      $("mass-panel").hidden = templates.length === 0;
    } catch { $("mass-panel").hidden = true; }  // no messaging feature
  }

  async function massPreview() {
    $("mass-state").textContent = "";
    try {
      const p = await CTI.api("POST", "/api/v1/messages/preview",
        { template_id: Number($("mass-template").value), query: massQuery() });
      $("mass-state").textContent = `${CTI.t("to_send")}: ${p.to_send} · ${CTI.t("opted_out")}: ${p.opted_out}` +
        ` · ${CTI.t("without_address")}: ${p.without_address}` + (p.sample ? ` — ${p.sample.body}` : "");
      $("mass-state").dataset.toSend = String(p.to_send);
      $("mass-send").disabled = p.to_send === 0;
    } catch (e) { $("mass-state").textContent = CTI.t("error") + ": " + e.message; }
  }

  async function massSend(ev) {
    ev.preventDefault();
    $("mass-send").disabled = true;
    try {
      const b = await CTI.api("POST", "/api/v1/messages/mass",
        { template_id: Number($("mass-template").value), query: massQuery() });
      $("mass-state").textContent = `${CTI.t("batch")} #${b.id}: ${b.total}`;
      $("mass-state").dataset.batch = String(b.id);
    } catch (e) { $("mass-state").textContent = CTI.t("error") + ": " + e.message; }
  }

  async function loadReminders() {
    try {
      const { reminders } = await CTI.api("GET", "/api/v1/crm/reminders");
      $("reminders").replaceChildren(...reminders.map((r) => CTI.el("li", { class: "reminder " + r.kind },
        CTI.el("b", {}, CTI.t("rem_" + r.kind)), " ",
        CTI.el("a", { href: `customer.html?id=${encodeURIComponent(r.customer_id)}` }, r.customer_name),
        " · ", CTI.el("span", {}, r.kind === "dormant" ? CTI.fmtTime(r.title) : r.title))));
      $("reminders-panel").hidden = reminders.length === 0;
    } catch { $("reminders-panel").hidden = true; }
  }

  function placeholders() {
    document.querySelectorAll("[data-i18n-placeholder]").forEach((n) => {
      n.placeholder = CTI.t(n.getAttribute("data-i18n-placeholder"));
    });
  }

  CTI.page({
    onSignedIn: async (who) => {
      me = who;
      const sup = who.role === "supervisor" || who.role === "admin";
      $("assign-box").hidden = !sup;
      $("assign").hidden = !sup;
      placeholders();
      if (sup) await loadTemplates();
      await loadReminders();
      await load();
    },
    onLang: () => { placeholders(); render(); loadReminders(); },
  });
  $("filters").addEventListener("submit", (ev) => { ev.preventDefault(); cursor = 0; back = []; load(); });
  $("owner-mode").addEventListener("change", () => { $("owner-name-label").hidden = $("owner-mode").value !== "agent"; });
  $("prev").addEventListener("click", () => { cursor = back.pop() || 0; load(); });
  $("next").addEventListener("click", () => {
    if (!rows.length) return;
    back.push(cursor);
    cursor = rows[rows.length - 1].id;
    load();
  });
  $("select-all").addEventListener("change", () => {
    rows.forEach((c) => ($("select-all").checked ? chosen.add(c.id) : chosen.delete(c.id)));
    render();
  });
  $("assign").addEventListener("click", () => { if ($("assign-to").value.trim()) bulk($("assign-to").value.trim()); });
  $("to-pool").addEventListener("click", () => bulk(null));
  $("export-csv").addEventListener("click", () => exportAs("csv"));
  $("export-xlsx").addEventListener("click", () => exportAs("xlsx"));
  $("new-form").addEventListener("submit", (ev) => { ev.preventDefault(); create(false); });
  $("mass-preview").addEventListener("click", massPreview);
  $("mass-form").addEventListener("submit", massSend);
  $("filters").addEventListener("submit", () => { $("mass-send").disabled = true; });
  $("create-anyway").addEventListener("click", () => create(true));
  for (const id of ["n-phone", "n-email", "n-company"]) $(id).addEventListener("change", checkDups);
})();
