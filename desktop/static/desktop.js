// The agent desktop, built around the call: the phone bar (status, the browser phone,
// dialling) and the current call's card (customer, notes, call control: hold, transfer,
// consultation, conference, DTMF, hang-up); ended calls collapse into a short list.
// Also the callback / lost-caller worklist and today's calls.
// Every piece of server data reaches the DOM through CTI.el / textContent (text nodes):
// caller ID names and customer fields are attacker-controlled.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const t = CTI.t, el = CTI.el;
  const cards = new Map(); // linkedid -> {msg, node}
  let me = null, sock = null, dispositions = [], todayTimer = null, tickTimer = null;
  const FINAL = new Set(["ended", "taken", "missed", "replaced", "transferred"]);
  const LIVE_WAIT = new Set(["ringing", "offered", "dialing"]);

  // --- small helpers ------------------------------------------------------------------
  function show(node, on) { node.hidden = !on; }
  function setError(node, err) { node.textContent = err ? (t("error") + ": " + (err.message || err)) : ""; }
  function enc(s) { return encodeURIComponent(String(s)); }
  function dispLabel(d) { return CTI.getLang() === "zh" ? (d.label_zh || d.code) : (d.label_en || d.code); }
  function fill(tbody, rows) {
    tbody.replaceChildren(...(rows.length ? rows : [el("tr", {}, el("td", { class: "muted" }, t("no_rows")))]));
  }

  // --- sign-in ------------------------------------------------------------------------
  let page = null; // CTI.page(): the shared sign-in

  function signedOut() {
    if (sock) sock.close();
    sock = null;
    me = null;
    cards.clear();
    $("pops").replaceChildren();
    $("recent").replaceChildren();
    if (todayTimer) clearInterval(todayTimer);
    if (tickTimer) clearInterval(tickTimer);
    window.CTIDeskSignedIn = false;
    document.dispatchEvent(new CustomEvent("cti:signed-out"));
    $("conn").textContent = "";
  }

  function start(who) {
    me = who;
    sock = CTI.socket(onMessage, onSocketState);
    loadReasons(); loadDispositions(); loadStatus(); loadWork(); loadToday(); loadQa(); loadTemplates();
    todayTimer = setInterval(loadToday, 60000);
    tickTimer = setInterval(tick, 1000);
    window.CTIDeskSignedIn = true; // the browser phone (softphone.js) registers now
    document.dispatchEvent(new CustomEvent("cti:signed-in"));
  }

  function onSocketState(state) {
    const node = $("conn");
    node.textContent = t(state === "open" ? "connected" : state === "refused" ? "refused" : "disconnected");
    node.className = "conn " + state;
    if (state === "refused") page.signOut();
    if (state === "open") loadControl();
  }

  // --- status -------------------------------------------------------------------------
  async function loadReasons() {
    let reasons = [];
    try { reasons = (await CTI.api("GET", "/api/v1/acd/pause-reasons")).reasons || []; } catch { reasons = []; }
    $("pause-reason").replaceChildren(...reasons.map((r) => el("option", { value: r }, r)));
  }

  async function loadStatus() {
    try {
      const agent = await CTI.api("GET", "/api/v1/acd/agents/" + enc(me.name));
      showStatus(agent.status, agent.reason || "");
    } catch { showStatus("", ""); }
  }

  function showStatus(status, reason) {
    $("status-value").textContent = status ? t(status) : t("status_unknown");
    $("status-value").dataset.status = status || "";
    $("status-reason").textContent = status === "paused" && reason ? "(" + reason + ")" : "";
  }

  async function setStatus(status) {
    setError($("status-error"), null);
    const body = { status };
    if (status === "paused") body.reason = $("pause-reason").value;
    try {
      const agent = await CTI.api("POST", "/api/v1/acd/agents/" + enc(me.name) + "/status", body);
      showStatus(agent.status, agent.reason || body.reason || "");
    } catch (err) { setError($("status-error"), err); }
  }

  // --- the socket -----------------------------------------------------------------------
  function onMessage(msg) {
    switch (msg.type) {
      case "pop": upsertCard(msg); break;
      case "call.update": updateCard(msg); break;
      case "agent.status":
        if (!msg.agent || msg.agent === me.name) showStatus(msg.status, msg.reason || "");
        break;
      case "pop.dismissed": removeCard(msg.linkedid); break;
      default: break;
    }
  }

  // --- pop cards ------------------------------------------------------------------------
  function upsertCard(msg) {
    const prev = cards.get(msg.linkedid);
    const entry = prev || { msg: {}, node: null, draft: null };
    entry.msg = Object.assign({}, msg);
    cards.set(msg.linkedid, entry);
    renderCard(entry);
  }

  function updateCard(msg) {
    const entry = cards.get(msg.linkedid);
    if (!entry) return;
    const { type, at, ...fields } = msg; // eslint-disable-line no-unused-vars
    Object.assign(entry.msg, fields);
    if (FINAL.has(msg.state)) entry.control = null;
    else if (msg.state === "held" && entry.control) entry.control.mode = "held";
    else if ((msg.state === "resumed" || msg.state === "answered") && entry.control
             && entry.control.mode === "held") entry.control.mode = "talking";
    renderCard(entry);
    if (msg.state === "ended") setTimeout(loadToday, 1500);
  }

  function removeCard(linkedid) {
    const entry = cards.get(linkedid);
    if (entry && entry.node) entry.node.remove();
    if (entry && entry.item) entry.item.remove();
    cards.delete(linkedid);
    place();
  }

  function field(label, value, cls) {
    if (value === undefined || value === null || value === "") return null;
    return el("div", { class: "field " + (cls || "") }, el("span", { class: "label" }, t(label)),
              el("span", { class: "value" }, String(value)));
  }

  // Keep what the agent typed across re-renders of the same card.
  function saveDraft(entry) {
    if (!entry.node) return;
    const notes = entry.node.querySelector("textarea.notes");
    const disp = entry.node.querySelector("select.disposition");
    const form = entry.node.querySelector("form.customer-form");
    const fields = {};
    if (form) for (const f of form.querySelectorAll("input[name], textarea[name]")) fields[f.name] = f.value;
    entry.draft = { notes: notes ? notes.value : "", disposition: disp ? disp.value : "",
                    focused: document.activeElement === notes, form: form ? fields : null,
                    formKind: form ? form.dataset.kind : "" };
  }

  function renderCard(entry) {
    saveDraft(entry);
    const m = entry.msg;
    const caller = m.caller || {};
    const state = m.state || "ringing";
    const node = el("article", { class: "card state-" + state, dataset: { linkedid: m.linkedid, state } },
      el("header", {},
        el("span", { class: "kind" }, t("kind_" + (m.kind || "queue"))),
        el("span", { class: "state" }, t("state_" + state)),
        m.transfer ? el("span", { class: "transfer" }, t("transfer_to") + " " + (m.transfer.target || "")) : null,
        m.queue ? el("span", { class: "queue" }, t("queue") + ": " + m.queue) : null,
        waitSpan(m)),
      el("div", { class: "caller" },
        el("span", { class: "caller-name" }, caller.name || ""),
        el("span", { class: "caller-num" }, caller.raw || ""),
        caller.e164 && caller.e164 !== caller.raw ? el("span", { class: "caller-e164" }, caller.e164) : null,
        regionSpan(caller)),
      controlBlock(entry),
      leadBlock(entry),
      notesFromBlock(m),
      customerBlock(entry),
      ivrBlock(m),
      historyBlock(m),
      wrapBlock(entry));
    if (entry.node) entry.node.replaceWith(node);
    entry.node = node;
    entry.seq = entry.seq || ++seq;
    if (entry.draft) {
      const form = node.querySelector("form.customer-form");
      if (form && entry.draft.form && form.dataset.kind === entry.draft.formKind) {
        for (const [name, value] of Object.entries(entry.draft.form)) {
          const f = form.elements.namedItem(name);
          if (f) f.value = value;
        }
      }
      node.querySelector("textarea.notes").value = entry.draft.notes;
      if (entry.draft.disposition) node.querySelector("select.disposition").value = entry.draft.disposition;
      if (entry.draft.focused) node.querySelector("textarea.notes").focus();
    }
    place();
  }

  // The current call(s) in the main area; the newest ended call stays there (for the
  // wrap-up) while no call is live; older ended calls collapse to one line each.
  let seq = 0;
  function place() {
    const all = [...cards.values()].filter((e) => e.node).sort((a, b) => b.seq - a.seq);
    const live = all.filter((e) => !FINAL.has(e.msg.state));
    const main = live.length ? live : all.slice(0, 1);
    const pops = $("pops"), recent = $("recent");
    for (const e of main) {
      if (e.item) { e.item.remove(); e.item = null; }
      pops.append(e.node); // in order, newest first
    }
    for (const e of all) {
      if (main.includes(e)) continue;
      const m = e.msg, caller = m.caller || {};
      const summary = el("summary", {},
        el("span", { class: "when" }, CTI.fmtTime(m.ended_at || m.at)), " ",
        el("span", { class: "who" }, caller.name || caller.raw || ""), " ",
        el("span", { class: "what" }, t("state_" + (m.state || "ended"))),
        m.talk_s !== null && m.talk_s !== undefined ? " " + CTI.fmtDuration(m.talk_s) : "");
      const details = el("details", {}, summary);
      const item = el("li", { class: "recent-item", dataset: { linkedid: m.linkedid } }, details);
      details.append(e.node);
      if (e.item) e.item.replaceWith(item);
      recent.prepend(item);
      e.item = item;
    }
    for (const item of [...recent.children]) { // keep the list in newest-first order
      const e = cards.get(item.dataset.linkedid);
      if (!e || e.item !== item) item.remove();
    }
    const order = all.filter((e) => e.item).map((e) => e.item);
    recent.replaceChildren(...order);
    show($("no-pops"), main.length === 0);
    show($("recent-title"), order.length > 0);
  }

  // 号码归属地: where the number is registered (the pop's caller.region, {zh, en})
  function regionSpan(caller) {
    const r = caller.region || {};
    const text = (CTI.getLang() === "zh" ? r.zh : r.en) || r.en || r.zh || "";
    return text ? el("span", { class: "caller-region", title: t("region") }, text) : null;
  }

  // --- the wait so far (ticks while the phone rings) -------------------------------------
  function waitSince(m) {
    const since = m.waiting_since ? Date.parse(m.waiting_since) : NaN;
    if (!Number.isNaN(since)) return since;
    if (m.wait_s === null || m.wait_s === undefined || !m.at) return NaN;
    return Date.parse(m.at) - m.wait_s * 1000;
  }

  function waitSeconds(m) {
    const since = waitSince(m);
    if (Number.isNaN(since)) return null;
    const until = LIVE_WAIT.has(m.state) ? Date.now()
      : m.answered_at ? Date.parse(m.answered_at) : m.ended_at ? Date.parse(m.ended_at) : Date.now();
    return Math.max(0, (until - since) / 1000);
  }

  function waitSpan(m) {
    const s = waitSeconds(m);
    if (s === null) return null;
    return el("span", { class: "wait" + (LIVE_WAIT.has(m.state) ? " live" : ""), dataset: { linkedid: m.linkedid } },
      t("wait_so_far") + " " + CTI.fmtDuration(s));
  }

  function tick() {
    for (const span of document.querySelectorAll("#pops .wait.live")) {
      const e = cards.get(span.dataset.linkedid);
      const s = e ? waitSeconds(e.msg) : null;
      if (s !== null) span.textContent = t("wait_so_far") + " " + CTI.fmtDuration(s);
    }
  }

  // --- call control -------------------------------------------------------------------------
  async function loadControl() {
    try {
      const calls = (await CTI.api("GET", "/api/v1/calls/mine")).calls || [];
      for (const c of calls) {
        const entry = cards.get(c.linkedid);
        if (entry) { entry.control = c; renderCard(entry); }
      }
    } catch { /* no call control on this server */ }
  }

  // --- the campaign lead (outbound): its imported columns and the outcome ------------------
  const OUTCOMES = ["interested", "not_interested", "wrong_number", "callback", "sale", "dnc"];
  function leadBlock(entry) {
    const lead = entry.msg.lead;
    if (!lead) return null;
    const status = el("span", { class: "lead-status muted", role: "status" });
    if (entry.leadDone) { status.textContent = t("saved") + ": " + t("outcome_" + entry.leadDone); }
    const outcome = el("select", { class: "lead-outcome", "aria-label": t("outcome") },
      OUTCOMES.map((o) => el("option", { value: o }, t("outcome_" + o))));
    const when = el("input", { class: "lead-callback-at", type: "datetime-local", "aria-label": t("outcome_callback") });
    const note = el("input", { class: "lead-note", maxlength: 2000, placeholder: t("notes") });
    const save = el("button", { type: "button", class: "lead-save" }, t("save_outcome"));
    save.addEventListener("click", async () => {
      status.textContent = "";
      const body = { outcome: outcome.value, note: note.value };
      if (outcome.value === "callback" && when.value) body.callback_at = new Date(when.value).toISOString();
      try {
        await CTI.api("POST", "/api/v1/outbound/leads/" + enc(lead.lead_id) + "/outcome", body);
        entry.leadDone = outcome.value;
        status.textContent = t("saved") + ": " + t("outcome_" + outcome.value);
        status.className = "lead-status ok";
      } catch (e) { status.textContent = t("error") + ": " + e.message; status.className = "lead-status error"; }
    });
    return el("div", { class: "lead", dataset: { leadId: lead.lead_id } },
      el("h4", {}, t("lead")),
      field("campaign", lead.campaign, "lead-campaign"),
      field("name", lead.name, "lead-name"),
      field("number", lead.number, "lead-number"),
      field("region", lead.region, "lead-region"),
      el("dl", { class: "lead-fields" }, (lead.fields || []).flatMap(([k, v]) => [
        el("dt", {}, String(k)), el("dd", {}, String(v))])),
      el("div", { class: "row" }, outcome, when, note, save, status));
  }

  function notesFromBlock(m) {
    const rows = m.notes_from || [];
    if (!rows.length) return null;
    return el("div", { class: "notes-from" }, el("h4", {}, t("notes_from")),
      el("ul", {}, rows.map((n) => el("li", {},
        el("span", { class: "who" }, n.agent || ""), ": ", el("span", { class: "text" }, n.notes || "")))));
  }

  function controlBlock(entry) {
    const m = entry.msg;
    if (FINAL.has(m.state) || LIVE_WAIT.has(m.state)) return null;
    const mode = entry.control ? entry.control.mode : (m.state === "held" ? "held" : "talking");
    const err = el("p", { class: "error cc-error", role: "alert" });
    const act = async (op, body) => {
      setError(err, null);
      try {
        const view = await CTI.api("POST", "/api/v1/calls/" + enc(m.linkedid) + "/" + op, body);
        entry.control = view;
        renderCard(entry);
      } catch (e) { setError(err, e); }
    };
    const notes = () => { const n = entry.node && entry.node.querySelector("textarea.notes"); return n ? n.value : ""; };
    const btn = (cls, label, fn) => el("button", { type: "button", class: "cc " + cls, onclick: fn }, t(label));
    const kind = el("select", { class: "cc-kind", "aria-label": t("transfer_kind") },
      ["agent", "queue", "number"].map((k) => el("option", { value: k }, t("to_" + k))));
    const target = el("input", { class: "cc-target", maxlength: 128, "aria-label": t("transfer_target") });
    const targetBody = (withNotes) => {
      const body = { [kind.value]: target.value.trim() };
      if (withNotes) body.notes = notes();
      return body;
    };
    const keypad = el("div", { class: "keypad" }, [..."123456789*0#"].map((d) =>
      el("button", { type: "button", class: "key", onclick: () => act("dtmf", { digits: d }) }, d)));
    const main = el("div", { class: "row" },
      mode === "held" ? btn("resume", "resume", () => act("resume")) : null,
      mode === "talking" ? btn("hold", "hold", () => act("hold")) : null,
      mode === "consulting" ? btn("complete", "complete_transfer", () => act("complete")) : null,
      mode === "consulting" ? btn("cancel-consult", "cancel_consult", () => act("cancel")) : null,
      btn("hangup", "hang_up", () => act("hangup")));
    const transfer = mode === "talking" ? el("div", { class: "row transfer" }, kind, target,
      btn("blind", "transfer", () => act("transfer", targetBody(true))),
      btn("consult", "consult", () => act("consult", targetBody(true))),
      btn("conference", "conference", () => {
        const body = targetBody(false);
        if (kind.value === "queue") { setError(err, t("conference_no_queue")); return; }
        act("conference", body);
      })) : null;
    const consult = entry.control && entry.control.consult
      ? el("p", { class: "muted consulting" }, t("consulting") + " " + (entry.control.consult.to || "")) : null;
    return el("div", { class: "controls", dataset: { mode } }, main, consult, transfer,
      el("details", { class: "dtmf" }, el("summary", {}, t("keypad")), keypad), err);
  }

  function customerBlock(entry) {
    const m = entry.msg, c = m.customer;
    if (!c && m.customer_pending) return el("div", { class: "customer pending muted" }, t("looking_up"));
    if (!c) return customerForm(entry, null);
    if (entry.editing) return customerForm(entry, c);
    return el("div", { class: "customer" },
      el("h3", { class: "customer-name" }, c.name || ""),
      field("company", c.company, "company"), field("tier", c.tier, "tier"),
      field("owner", c.owner, "owner"), field("tags", (c.tags || []).join(", "), "tags"),
      field("birthday", c.birthday, "birthday"), field("notes", c.notes, "customer-notes"),
      c.id ? el("button", { type: "button", class: "edit-customer",
                            onclick: () => { entry.editing = true; renderCard(entry); } }, t("edit_customer")) : null,
      c.id ? messageBlock(entry, c) : null);
  }

  // SMS / e-mail to the caller's customer (messaging feature: a template sent with
  // POST /api/v1/messages); an opted-out address is refused and says so.
  let templates = [];
  async function loadTemplates() {
    try { templates = (await CTI.api("GET", "/api/v1/message-templates")).templates || []; }
    catch { templates = []; }
    for (const entry of cards.values()) if (entry.node) renderCard(entry);
  }

  function messageBlock(entry, c) {
    if (!templates.length) return null;
    const select = el("select", { class: "msg-template", "aria-label": t("send_message") },
      templates.map((tp) => el("option", { value: tp.id }, t(tp.channel) + ": " + (tp.name || ""))));
    const status = el("span", { class: "msg-status " + (entry.msgState || "muted"), role: "status" }, entry.msgText || "");
    const send = el("button", { type: "button", class: "msg-send" }, t("send"));
    const say = (state, text) => {
      entry.msgState = state; entry.msgText = text;
      status.className = "msg-status " + state; status.textContent = text;
    };
    send.addEventListener("click", async () => {
      say("muted", "");
      try {
        const out = await CTI.api("POST", "/api/v1/messages", { customer_id: c.id, template_id: Number(select.value) });
        if (out.status === "opted_out") say("refused", t("refused") + ": " + t("opted_out") + " " + (out.to || ""));
        else say("ok", t("sent") + " (" + t("msg_" + (out.status || "queued")) + ")");
      } catch (e) { say("error", t("error") + ": " + e.message); }
    });
    return el("details", { class: "message", open: entry.msgText ? "" : null }, el("summary", {}, t("send_message")),
      el("div", { class: "row" }, select, send, status));
  }

  // New customer (prefilled with the caller's number) or edit of the known one.
  function customerForm(entry, c) {
    const m = entry.msg, caller = m.caller || {};
    const input = (name, value, attrs) => el("label", {}, el("span", {}, t(name)),
      el("input", Object.assign({ name, value: value || "", maxlength: 256 }, attrs || {})));
    const form = el("form", { class: "customer-form", dataset: { kind: c ? "edit" : "new" } },
      el("h3", {}, c ? t("edit_customer") : t("unknown_caller")),
      input("name", c ? c.name : caller.name, { required: true }),
      input("company", c && c.company),
      c ? null : input("number", caller.e164 || caller.raw, { type: "tel", maxlength: 48 }),
      input("tier", c && c.tier, { maxlength: 32 }),
      input("tags", c && (c.tags || []).join(", ")),
      el("label", {}, el("span", {}, t("notes")), el("textarea", { name: "notes", maxlength: 4000 }, (c && c.notes) || "")),
      el("div", { class: "row" },
        el("button", { type: "submit" }, c ? t("save") : t("create_customer")),
        c ? el("button", { type: "button", onclick: () => { entry.editing = false; renderCard(entry); } }, t("cancel")) : null),
      el("div", { class: "dupes" }),
      el("p", { class: "error", role: "alert" }));
    form.addEventListener("submit", (ev) => { ev.preventDefault(); submitCustomer(entry, form, c, false); });
    return form;
  }

  function formValues(form) {
    const v = (n) => { const f = form.elements.namedItem(n); return f ? f.value.trim() : ""; };
    const tags = v("tags").split(",").map((s) => s.trim()).filter(Boolean);
    return { name: v("name"), company: v("company"), tier: v("tier"), tags, notes: v("notes"), number: v("number") };
  }

  async function submitCustomer(entry, form, existing, force) {
    const err = form.querySelector(".error"), dupes = form.querySelector(".dupes");
    setError(err, null);
    const v = formValues(form);
    try {
      let customer;
      if (existing) {
        customer = await CTI.api("PATCH", "/api/v1/customers/" + enc(existing.id),
          { name: v.name, company: v.company, tier: v.tier, tags: v.tags, notes: v.notes });
      } else {
        const body = { name: v.name, company: v.company, tier: v.tier, tags: v.tags, notes: v.notes,
                       phones: v.number ? [v.number] : [] };
        if (force) body.force = true;
        customer = await CTI.api("POST", "/api/v1/customers", body);
        await linkCustomer(entry, customer.id);
      }
      entry.editing = false;
      entry.msg.customer = Object.assign({}, entry.msg.customer || {}, {
        id: customer.id, name: customer.name, company: customer.company, tier: customer.tier,
        tags: customer.tags || [], notes: customer.notes, owner: customer.owner || "" });
      renderCard(entry);
    } catch (e) {
      if (e.status === 409 && e.body && Array.isArray(e.body.candidates)) {
        showDupes(entry, form, dupes, e.body.candidates);
      } else setError(err, e);
    }
  }

  function showDupes(entry, form, box, candidates) {
    // a customer this agent may not see comes as {visible: false, reasons} only
    const items = candidates.map((cand) => cand.visible === false
      ? el("li", { class: "candidate hidden-owner" },
        el("span", { class: "cand-name" }, t("not_yours")), " ",
        el("span", { class: "muted" }, (cand.reasons || []).join("; ")))
      : el("li", { class: "candidate" },
        el("span", { class: "cand-name" }, cand.name || ""), " ",
        el("span", { class: "muted" }, [cand.company, cand.owner].filter(Boolean).join(" · ")), " ",
        el("span", { class: "muted" }, (cand.reasons || []).join("; ")), " ",
        el("button", { type: "button", onclick: () => useCandidate(entry, cand) }, t("use_this"))));
    box.replaceChildren(el("p", { class: "warning" }, t("duplicate_warning")), el("ul", {}, items),
      el("button", { type: "button", class: "force",
                     onclick: () => submitCustomer(entry, form, null, true) }, t("create_anyway")));
  }

  async function useCandidate(entry, cand) {
    try {
      await linkCustomer(entry, cand.id);
      const full = await CTI.api("GET", "/api/v1/customers/" + enc(cand.id));
      entry.msg.customer = { id: full.id, name: full.name, company: full.company, tier: full.tier,
                             tags: full.tags || [], notes: full.notes, owner: full.owner || "" };
      renderCard(entry);
    } catch (e) { setError(entry.node.querySelector(".error"), e); }
  }

  async function linkCustomer(entry, customerId) {
    try {
      await CTI.api("PUT", "/api/v1/interactions/by-call/" + enc(entry.msg.linkedid), { customer_id: customerId });
    } catch (e) {
      if (e.status !== 404) throw e;
    }
  }

  function ivrBlock(m) {
    const ivr = m.ivr || {};
    const path = ivr.path || [], collected = Object.entries(ivr.collected || {});
    if (!path.length && !collected.length) return null;
    return el("div", { class: "ivr" }, el("h4", {}, t("ivr")),
      field("ivr_path", path.join(" › "), "ivr-path"),
      collected.length ? field("ivr_digits", collected.map(([k, v]) => k + ": " + v).join(", "), "ivr-digits") : null);
  }

  function historyBlock(m) {
    const rows = m.history || [];
    if (!rows.length) return null;
    return el("div", { class: "history" }, el("h4", {}, t("history")),
      el("ul", {}, rows.map((h) => el("li", {},
        el("span", { class: "when" }, CTI.fmtTime(h.started_at)), " ",
        el("span", { class: "who" }, h.agent || ""), " ",
        el("span", { class: "disp" }, h.disposition || h.outcome || ""), " ",
        el("span", { class: "notes" }, h.notes || "")))));
  }

  function wrapBlock(entry) {
    const m = entry.msg;
    const select = el("select", { class: "disposition", "aria-label": t("disposition") },
      el("option", { value: "" }, t("choose")),
      dispositions.map((d) => el("option", { value: d.code }, dispLabel(d))));
    const notes = el("textarea", { class: "notes", maxlength: 4000, rows: 3, placeholder: t("notes") });
    const status = el("span", { class: "save-status muted", role: "status" });
    const save = el("button", { type: "button", class: "save" }, t("save_notes"));
    save.addEventListener("click", async () => {
      status.textContent = "";
      const body = { notes: notes.value };
      if (select.value) body.disposition = select.value;
      try {
        await CTI.api("PUT", "/api/v1/interactions/by-call/" + enc(m.linkedid), body);
        status.textContent = t("saved");
        status.className = "save-status ok";
      } catch (e) { status.textContent = t("error") + ": " + e.message; status.className = "save-status error"; }
    });
    const dismiss = el("button", { type: "button", class: "dismiss" }, t("dismiss"));
    dismiss.addEventListener("click", () => {
      if (!(sock && sock.send({ type: "pop.dismiss", linkedid: m.linkedid }))) removeCard(m.linkedid);
    });
    return el("div", { class: "wrapup" },
      el("label", {}, el("span", {}, t("disposition")), select),
      el("label", {}, el("span", {}, t("notes")), notes),
      el("div", { class: "row" }, save, dismiss, status));
  }

  async function loadDispositions() {
    try { dispositions = (await CTI.api("GET", "/api/v1/dispositions")).dispositions || []; }
    catch { dispositions = []; }
    for (const entry of cards.values()) renderCard(entry);
  }

  // --- click-to-call ----------------------------------------------------------------------
  async function dial(number) {
    const out = $("dial-result");
    out.textContent = t("dialing");
    try {
      const res = await CTI.api("POST", "/api/v1/acd/agents/" + enc(me.name) + "/dial", { number });
      out.textContent = t("dialing") + " " + number + " (" + (res.linkedid || "") + ")";
    } catch (e) { out.textContent = t("error") + ": " + e.message; }
  }

  // --- worklist -----------------------------------------------------------------------------
  async function loadWork() {
    setError($("work-error"), null);
    try {
      const cbs = (await CTI.api("GET", "/api/v1/acd/callbacks?status=open")).callbacks || [];
      fill($("callbacks").tBodies[0], cbs.map((cb) => el("tr", { dataset: { id: cb.id, linkedid: cb.linkedid || "" } },
        el("td", { class: "cb-number" }, cb.number || ""), el("td", {}, cb.queue || ""),
        el("td", {}, CTI.fmtTime(cb.requested_at)), el("td", {}, t("attempts") + " " + (cb.attempts || 0)),
        el("td", {}, el("button", { type: "button", class: "cb-dial", onclick: () => workAction("/api/v1/acd/callbacks/" + enc(cb.id) + "/dial", {}) }, t("dial_customer")),
          " ", el("button", { type: "button", class: "cb-close", onclick: () => workAction("/api/v1/acd/callbacks/" + enc(cb.id) + "/close", { outcome: "closed" }) }, t("close"))))));
    } catch (e) { fill($("callbacks").tBodies[0], []); if (e.status !== 404) setError($("work-error"), e); }
    try {
      const lost = (await CTI.api("GET", "/api/v1/acd/lost-callers")).lost_callers || [];
      fill($("lost").tBodies[0], lost.map((lc) => el("tr", { dataset: { id: lc.id, linkedid: lc.linkedid } },
        el("td", { class: "lost-number" }, lc.caller_num || ""),
        el("td", { class: "lost-name" }, lc.caller_name || ""), el("td", {}, lc.queue || ""),
        el("td", {}, CTI.fmtTime(lc.lost_at)), el("td", {}, CTI.fmtDuration(lc.wait_s)),
        el("td", {}, el("button", { type: "button", class: "call-back", onclick: () => dial(lc.caller_num || "") }, t("call_back")),
          " ", el("button", { type: "button", class: "close", onclick: () => workAction("/api/v1/acd/lost-callers/" + enc(lc.id) + "/close", { by: "manual" }) }, t("close"))))));
    } catch (e) { fill($("lost").tBodies[0], []); setError($("work-error"), e); }
    loadReminders();
  }

  // CRM reminders (follow-ups due, birthdays, dormant customers) for today
  async function loadReminders() {
    let rows = [];
    try { rows = (await CTI.api("GET", "/api/v1/crm/reminders")).reminders || []; } catch { rows = []; }
    show($("reminders-title"), rows.length > 0);
    $("reminders").replaceChildren(...rows.map((r) => el("li", {
      class: "reminder", dataset: { kind: r.kind || "", customerId: r.customer_id || "" } },
      el("span", { class: "reminder-kind" }, t("reminder_" + (r.kind || ""))), " ",
      el("span", { class: "reminder-customer" }, r.customer_name || ""), " ",
      el("span", { class: "reminder-title muted" }, r.title || ""), " ",
      el("span", { class: "reminder-due muted" }, r.due || ""))));
  }

  async function workAction(path, body) {
    try { await CTI.api("POST", path, body); } catch (e) { setError($("work-error"), e); }
    loadWork();
  }

  // --- QA results (quality feature: the agent's own evaluations, last 30 days) -------------
  async function loadQa() {
    const day = (ms) => new Date(Date.now() + ms).toISOString().slice(0, 10);
    const q = "?from=" + day(-30 * 86400000) + "&to=" + day(86400000);
    let rows;
    try { rows = (await CTI.api("GET", "/api/v1/quality/evaluations" + q)).evaluations || []; }
    catch { show($("qa-panel"), false); return; } // no QA on this server
    show($("qa-panel"), true);
    setError($("qa-error"), null);
    $("qa-list").replaceChildren(...rows.map((ev) => {
      const ack = ev.acknowledged_at
        ? el("span", { class: "qa-acked muted" }, t("acknowledged"))
        : el("button", { type: "button", class: "qa-ack", onclick: async () => {
          try {
            await CTI.api("POST", "/api/v1/quality/evaluations/" + enc(ev.id) + "/acknowledge", {});
          } catch (e) { setError($("qa-error"), e); }
          loadQa();
        } }, t("acknowledge"));
      const comments = (ev.comments || []).map((c) => el("li", { class: "qa-comment" }, c.text || ""));
      return el("li", { class: "qa-item", dataset: { id: ev.id } },
        el("span", { class: "when" }, CTI.fmtTime(ev.created_at)), " ",
        el("span", { class: "qa-form" }, ev.form || ""), " ",
        el("span", { class: "qa-score" }, t("score") + " " + ev.score), " ",
        el("span", { class: "qa-reviewer muted" }, ev.reviewer || ""), " ", ack,
        comments.length ? el("ul", {}, comments) : null);
    }));
  }

  // --- today's calls -----------------------------------------------------------------------
  async function loadToday() {
    if (!me) return;
    try {
      const calls = (await CTI.api("GET", "/api/v1/desktop/calls/today")).calls || [];
      fill($("today").tBodies[0], calls.map((c) => el("tr", { dataset: { linkedid: c.linkedid } },
        el("td", {}, CTI.fmtTime(c.started_at)),
        el("td", {}, [c.caller_name, c.caller_num_raw].filter(Boolean).join(" ")),
        el("td", {}, c.queue || ""), el("td", {}, c.agent || ""),
        el("td", {}, CTI.fmtDuration(c.wait_s)), el("td", {}, CTI.fmtDuration(c.talk_s)),
        el("td", {}, c.disposition || ""))));
    } catch { /* shown again on the next refresh */ }
  }

  // --- language ---------------------------------------------------------------------------
  function applyLang() {
    document.documentElement.lang = CTI.getLang() === "zh" ? "zh-CN" : "en";
    CTI.translate();
    document.title = t("title");
    for (const entry of cards.values()) renderCard(entry);
    document.dispatchEvent(new CustomEvent("cti:lang"));
    if (me) { loadStatus(); loadWork(); loadToday(); loadQa(); }
  }

  // --- start -------------------------------------------------------------------------------
  document.addEventListener("DOMContentLoaded", () => {
    $("btn-available").addEventListener("click", () => setStatus("available"));
    $("btn-pause").addEventListener("click", () => setStatus("paused"));
    $("btn-logout").addEventListener("click", () => setStatus("logged_out"));
    $("dial-form").addEventListener("submit", (ev) => { ev.preventDefault(); dial($("dial-number").value.trim()); });
    $("work-refresh").addEventListener("click", loadWork);
    $("today-refresh").addEventListener("click", loadToday);
    document.title = t("title");
    page = CTI.page({ onSignedIn: start, onSignedOut: signedOut, onLang: applyLang });
  });
})();
