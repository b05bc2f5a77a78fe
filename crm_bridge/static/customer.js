// One customer: the editable card (with the admin's custom fields), contacts, merge, and
// the timeline: calls (recordings play inline), notes, dispositions, messages,
// opportunities and owner changes. Text from the server is only ever set as text.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const id = Number(new URLSearchParams(location.search).get("id"));
  let me = null, customer = null, fields = [], dispositions = [], timeline = [], templates = [];

  const fail = (e) => { $("error").textContent = CTI.t("error") + ": " + (e.message || e); };
  const label = (obj) => (CTI.getLang() === "zh" ? obj.label_zh : obj.label_en);

  function fillCard() {
    const c = customer;
    $("c-title").textContent = c.name;
    document.title = c.name;
    $("c-owner").textContent = c.owner || CTI.t("in_pool");
    $("c-region").textContent = c.region || "–";
    $("c-last").textContent = CTI.fmtTime(c.last_contact_at) || "–";
    $("claim").hidden = !!c.owner;
    $("f-name").value = c.name;
    $("f-kind").value = c.kind;
    $("f-company").value = c.company;
    $("f-tier").value = c.tier;
    $("f-tags").value = (c.tags || []).join(", ");
    $("f-notes").value = c.notes;
    $("custom").replaceChildren(...fields.map((f) => {
      const value = (c.custom || {})[f.key];
      let input;
      if (f.kind === "choice") {
        input = CTI.el("select", { dataset: { key: f.key, kind: f.kind } },
          CTI.el("option", { value: "" }, ""), f.choices.map((x) => CTI.el("option", { value: x }, x)));
      } else {
        input = CTI.el("input", { dataset: { key: f.key, kind: f.kind },
          type: f.kind === "number" ? "number" : f.kind === "date" ? "date" : "text",
          step: f.kind === "number" ? "any" : null, maxlength: f.kind === "text" ? 1024 : null });
      }
      input.value = value === undefined || value === null ? "" : String(value);
      return CTI.el("label", { class: "custom-field" }, CTI.el("span", {}, label(f)), input);
    }));
    $("contacts").replaceChildren(...c.contacts.map((k) => CTI.el("tr", {},
      CTI.el("td", {}, k.name), CTI.el("td", {}, k.title),
      CTI.el("td", { class: "birthday" }, k.birthday || ""),
      CTI.el("td", {}, k.phones.map((p) => CTI.el("div", {}, p.raw))),
      CTI.el("td", {}, k.emails.map((e) => CTI.el("div", {}, e))))));
  }

  function customValues() {
    const out = {};
    $("custom").querySelectorAll("[data-key]").forEach((n) => {
      const v = n.value.trim();
      if (v === "") out[n.dataset.key] = null;
      else out[n.dataset.key] = n.dataset.kind === "number" ? Number(v) : v;
    });
    return out;
  }

  async function save(ev) {
    ev.preventDefault();
    $("card-state").textContent = "";
    $("error").textContent = "";
    const tags = $("f-tags").value.split(/[,，]/).map((t) => t.trim()).filter(Boolean);
    try {
      customer = await CTI.api("PATCH", `/api/v1/customers/${id}`, {
        name: $("f-name").value.trim(), kind: $("f-kind").value, company: $("f-company").value.trim(),
        tier: $("f-tier").value.trim(), tags, notes: $("f-notes").value, custom: customValues(),
      });
      fillCard();
      $("card-state").textContent = CTI.t("saved");
      await loadTimeline();
    } catch (e) { fail(e); }
  }

  // --- timeline -------------------------------------------------------------------------

  function item(kind, at, ...body) {
    return { kind, at: at || "", node: CTI.el("li", { class: kind },
      CTI.el("span", { class: "when" }, CTI.fmtTime(at)), ...body) };
  }

  function callItem(i) {
    const text = [];
    if (i.queue) text.push(`${CTI.t("queue")} ${i.queue}`);
    if (i.agent) text.push(`${CTI.t("agent")} ${i.agent}`);
    if (i.outcome) text.push(`${CTI.t("outcome")} ${i.outcome}`);
    if (i.talk_s) text.push(`${CTI.t("talk")} ${CTI.fmtDuration(i.talk_s)}`);
    const parts = [CTI.el("b", {}, i.kind === "call" ? CTI.t("call") : CTI.t("note")), " ",
      CTI.el("span", {}, text.join(" · "))];
    if (i.disposition) parts.push(" ", CTI.el("span", { class: "tag disposition" }, dispLabel(i.disposition)));
    if (i.notes) parts.push(CTI.el("div", { class: "body" }, i.notes));
    if (i.recording && i.recording.startsWith("/api/v1/recordings/")) {
      const audio = CTI.el("audio", { controls: true, preload: "none", hidden: true });
      const play = CTI.el("button", { type: "button", class: "play" }, CTI.t("play"));
      play.addEventListener("click", async () => {
        try {
          const { url } = await CTI.api("POST", `${i.recording}/play-url`);
          audio.src = url;
          audio.hidden = false;
          play.hidden = true;
          await audio.play();
        } catch (e) { fail(e); }
      });
      parts.push(CTI.el("div", {}, play, audio));
    }
    return item(i.kind === "call" ? "call" : "note", i.started_at, ...parts);
  }

  function dispLabel(code) {
    const d = dispositions.find((x) => x.code === code);
    return d ? label(d) : code;
  }

  const OWNER_ACTIONS = new Set(["claim", "reassign", "pool_return", "merge"]);

  function auditItem(a) {
    if (a.action === "merge") {
      const merged = a.changes.merged || {};
      return item("owner", a.at, CTI.el("b", {}, CTI.t("merge")), " ",
        CTI.el("span", {}, `${merged.name || ""} (#${merged.id || ""}) · ${a.actor}`));
    }
    const [from, to] = a.changes.owner || [null, null];
    return item("owner", a.at, CTI.el("b", {}, CTI.t("owner_change")), " ",
      CTI.el("span", { class: "body" }, `${from || CTI.t("pool")} → ${to || CTI.t("pool")} (${a.actor})`));
  }

  function leadItem(l) {
    const text = `${l.title} · ${CTI.t("stage")} ${l.status}` +
      (l.value !== null && l.value !== undefined ? ` · ${CTI.t("value")} ${l.value}` : "") +
      (l.expected_close ? ` · ${CTI.t("expected_close")} ${l.expected_close}` : "");
    return item("opportunity", l.updated_at || l.created_at, CTI.el("b", {}, CTI.t("opportunity")), " ",
      CTI.el("span", { class: "body" }, text));
  }

  function messageItem(m) {
    return item("message", m.created_at, CTI.el("b", {}, `${CTI.t("message")} (${m.channel})`), " ",
      CTI.el("span", { class: "status" }, m.status + (m.error ? ` (${m.error})` : "")), " ",
      CTI.el("span", { class: "muted" }, m.to),
      CTI.el("div", { class: "body" }, m.subject ? `${m.subject}\n${m.body}` : m.body));
  }

  async function optional(path, key) {
    try { return (await CTI.api("GET", path))[key]; } catch (e) { return e.status === 404 ? [] : Promise.reject(e); }
  }

  async function loadTimeline() {
    const [interactions, audit, leads, messages] = await Promise.all([
      CTI.api("GET", `/api/v1/customers/${id}/interactions?limit=200`).then((r) => r.interactions),
      CTI.api("GET", `/api/v1/customers/${id}/audit`).then((r) => r.audit),
      CTI.api("GET", `/api/v1/leads?customer_id=${id}`).then((r) => r.leads),
      optional(`/api/v1/messages?customer_id=${id}`, "messages"),
    ]);
    timeline = [
      ...interactions.map(callItem),
      ...audit.filter((a) => a.entity === "customer" && OWNER_ACTIONS.has(a.action)).map(auditItem),
      ...leads.map(leadItem),
      ...messages.map(messageItem),
    ].sort((a, b) => (a.at < b.at ? 1 : a.at > b.at ? -1 : 0));
    $("timeline").replaceChildren(...timeline.map((x) => x.node));
  }

  function fillMessageForm() {
    $("msg-form").hidden = templates.length === 0;
    const current = $("msg-template").value;
    $("msg-template").replaceChildren(...templates.map((t) =>
      CTI.el("option", { value: t.id, dataset: { channel: t.channel } }, `${t.name} (${t.channel === "sms" ? "SMS" : CTI.t("email")})`)));
    if (current) $("msg-template").value = current;
    fillTo();
  }

  function fillTo() {
    const t = templates.find((x) => String(x.id) === $("msg-template").value);
    const all = (customer ? customer.contacts : []).flatMap((k) =>
      t && t.channel === "email" ? k.emails : k.phones.map((p) => p.e164));
    $("msg-to").replaceChildren(...[...new Set(all)].map((a) => CTI.el("option", { value: a }, a)));
  }

  async function sendMessage(ev) {
    ev.preventDefault();
    $("msg-state").textContent = "";
    try {
      const m = await CTI.api("POST", "/api/v1/messages", { customer_id: id,
        template_id: Number($("msg-template").value), to: $("msg-to").value || null });
      $("msg-state").textContent = m.status;
      await loadTimeline();
      // the delivery status follows within a moment
      setTimeout(() => loadTimeline().catch(fail), 1500);
    } catch (e) { fail(e); }
  }

  async function load() {
    $("error").textContent = "";
    try {
      const [c, f, d] = await Promise.all([
        CTI.api("GET", `/api/v1/customers/${id}`),
        CTI.api("GET", "/api/v1/crm/custom-fields"),
        CTI.api("GET", "/api/v1/dispositions"),
      ]);
      customer = c; fields = f.fields; dispositions = d.dispositions;
      $("note-disp").replaceChildren(CTI.el("option", { value: "" }, ""),
        ...dispositions.map((x) => CTI.el("option", { value: x.code }, label(x))));
      fillCard();
      templates = await optional("/api/v1/message-templates", "templates");
      fillMessageForm();
      await loadTimeline();
    } catch (e) { fail(e); }
  }

  async function addNote(ev) {
    ev.preventDefault();
    try {
      await CTI.api("POST", "/api/v1/interactions", { customer_id: id, kind: "note",
        notes: $("note-text").value, disposition: $("note-disp").value });
      $("note-text").value = "";
      await loadTimeline();
    } catch (e) { fail(e); }
  }

  async function addContact(ev) {
    ev.preventDefault();
    const body = { name: $("k-name").value.trim(), title: $("k-title").value.trim() };
    if ($("k-birthday").value) body.birthday = $("k-birthday").value;
    if ($("k-phone").value.trim()) body.phones = [$("k-phone").value.trim()];
    if ($("k-email").value.trim()) body.emails = [$("k-email").value.trim()];
    try {
      await CTI.api("POST", `/api/v1/customers/${id}/contacts`, body);
      $("contact-form").reset();
      customer = await CTI.api("GET", `/api/v1/customers/${id}`);
      fillCard();
    } catch (e) { fail(e); }
  }

  async function findDuplicate(ev) {
    ev.preventDefault();
    try {
      const q = new URLSearchParams({ q: $("merge-q").value.trim(), limit: "20" });
      const { customers } = await CTI.api("GET", "/api/v1/customers?" + q.toString());
      $("merge-list").replaceChildren(...customers.filter((c) => c.id !== id).map((c) => {
        const btn = CTI.el("button", { type: "button", class: "merge", dataset: { id: c.id } }, CTI.t("merge"));
        btn.addEventListener("click", async () => {
          if (!confirm(CTI.t("merge_confirm"))) return;
          try {
            customer = await CTI.api("POST", `/api/v1/customers/${id}/merge`, { duplicate_id: c.id });
            $("merge-list").replaceChildren();
            fillCard();
            await loadTimeline();
          } catch (e) { fail(e); }
        });
        return CTI.el("li", {}, CTI.el("span", {}, `${c.name} ${c.company ? "(" + c.company + ")" : ""} #${c.id} `), btn);
      }));
    } catch (e) { fail(e); }
  }

  async function claim() {
    try {
      customer = { ...customer, ...(await CTI.api("POST", `/api/v1/pool/${id}/claim`)) };
      fillCard();
      await loadTimeline();
    } catch (e) { fail(e); }
  }

  CTI.page({
    onSignedIn: async (who) => { me = who; await load(); },
    onLang: () => { if (customer) { fillCard(); loadTimeline().catch(fail); } },
  });
  $("card").addEventListener("submit", save);
  $("note-form").addEventListener("submit", addNote);
  $("contact-form").addEventListener("submit", addContact);
  $("merge-find").addEventListener("submit", findDuplicate);
  $("claim").addEventListener("click", claim);
  $("msg-template").addEventListener("change", fillTo);
  $("msg-form").addEventListener("submit", sendMessage);
})();
