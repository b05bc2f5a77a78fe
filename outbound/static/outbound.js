// Outbound page: an agent's lead card (preview: next, dial, skip; outcomes), and for
// supervisors the campaigns (start / pause / stop), a live view and the report with CSV
// export. Every server string goes in as text (CTI.el / textContent), never markup.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const el = CTI.el, t = CTI.t;
  const API = "/api/v1/outbound";
  const COLUMNS = ["attempts", "dialled", "answered", "contacts", "conversions", "abandoned",
                   "abandon_rate", "busy", "no_answer", "failed", "refused", "talk_s", "wait_s"];
  let me = null, selected = null, timer = null, lead = null;

  function err(id, e) { $(id).textContent = e ? (e.message || String(e)) : ""; }

  async function signedIn(who) {
    me = who;
    const supervisor = me.role === "supervisor" || me.role === "admin";
    $("campaigns-panel").hidden = !supervisor;
    await loadMyCampaigns();
    if (supervisor) await loadCampaigns();
    timer = setInterval(tick, 2000);
    await tick();
  }

  function signedOut() {
    if (timer) clearInterval(timer);
    timer = null;
    selected = null;
  }

  async function tick() {
    await refreshLead();
    if (selected) await refreshLive();
  }

  // --- the agent's lead ---------------------------------------------------------------------
  async function loadMyCampaigns() {
    try {
      const res = await CTI.api("GET", `${API}/me/campaigns`);
      $("my-campaign").replaceChildren(...res.campaigns.map(
        (c) => el("option", { value: c.id }, `${c.name}${c.title ? " — " + c.title : ""}`)));
    } catch (e) { err("lead-error", e); }
  }

  function showLead(state, card) {
    lead = card;
    $("lead-empty").hidden = !!card;
    $("lead-card").hidden = !card;
    if (!card) return;
    $("lead-name").textContent = card.name || "";
    $("lead-number").textContent = card.number;
    $("lead-region").textContent = card.region || "";
    $("lead-state").textContent = t("st_" + state);
    $("lead-fields").replaceChildren(...Object.entries(card.data || {}).flatMap(
      ([k, v]) => [el("dt", {}, k), el("dd", {}, v)]));
    $("lead-script").textContent = card.script || "";
    $("lead-dial").hidden = state !== "preview";
    $("lead-skip").hidden = state !== "preview";
  }

  async function refreshLead() {
    try {
      const res = await CTI.api("GET", `${API}/me/lead`);
      showLead(res.state, res.lead);
    } catch (e) { err("lead-error", e); }
  }

  async function nextLead() {
    err("lead-error");
    const id = $("my-campaign").value;
    if (!id) return;
    try {
      const res = await CTI.api("POST", `${API}/campaigns/${encodeURIComponent(id)}/next`);
      if (!res.lead) $("lead-error").textContent = t("none_left");
      showLead("preview", res.lead);
    } catch (e) { err("lead-error", e); }
  }

  async function leadAction(action, body) {
    if (!lead) return;
    err("lead-error");
    try {
      await CTI.api("POST", `${API}/leads/${lead.id}/${action}`, body);
      if (action === "outcome") $("lead-error").textContent = t("saved");
      await refreshLead();
    } catch (e) { err("lead-error", e); }
  }

  function outcome(kind) {
    const body = { outcome: kind, note: $("lead-note").value };
    if (kind === "callback") {
      const v = $("callback-at").value;
      body.callback_at = v ? new Date(v).toISOString() : "";
    }
    return leadAction("outcome", body);
  }

  // --- supervisors: campaigns, live, report ---------------------------------------------------
  async function loadCampaigns() {
    try {
      const res = await CTI.api("GET", `${API}/campaigns`);
      $("campaign-rows").replaceChildren(...res.campaigns.map(campaignRow));
      err("campaign-error");
    } catch (e) { err("campaign-error", e); }
  }

  function campaignRow(c) {
    const move = (to) => async () => {
      try {
        await CTI.api("POST", `${API}/campaigns/${c.id}/${to}`);
        await loadCampaigns();
        await loadMyCampaigns();
      } catch (e) { err("campaign-error", e); }
    };
    const running = c.status === "running";
    return el("tr", { dataset: { id: c.id }, class: selected && selected.id === c.id ? "selected" : "" },
      el("td", {}, c.name), el("td", {}, c.title || ""), el("td", {}, c.mode),
      el("td", { class: "status" }, c.status),
      el("td", {},
        el("button", { type: "button", class: "start", disabled: running, onclick: move("start") }, t("start")),
        el("button", { type: "button", class: "pause", disabled: !running, onclick: move("pause") }, t("pause")),
        el("button", { type: "button", class: "stop", disabled: c.status === "stopped" || c.status === "draft",
                       onclick: move("stop") }, t("stop")),
        el("button", { type: "button", class: "view", onclick: () => select(c) }, t("view"))));
  }

  async function select(c) {
    selected = c;
    $("live-name").textContent = c.name;
    $("report-name").textContent = c.name;
    $("live-panel").hidden = false;
    $("report-panel").hidden = false;
    await Promise.all([refreshLive(), refreshReport(), loadCampaigns()]);
  }

  async function refreshLive() {
    try {
      const live = await CTI.api("GET", `${API}/campaigns/${selected.id}/live`);
      const figures = [["status", live.status], ["ringing", live.ringing], ["waiting", live.waiting],
        ["connected", live.connected], ["agents_free", live.agents_free],
        ["agents_busy", live.agents_busy],
        ["abandon_rate", (100 * live.abandon_rate).toFixed(1) + " %"], ["due", live.due],
        ["window_open", live.window_open ? t("yes") : t("no")]];
      $("live-figures").replaceChildren(...figures.map(([k, v]) =>
        el("div", { dataset: { figure: k } }, el("dt", {}, t(k)), el("dd", {}, String(v)))));
    } catch (e) { /* the next tick tries again */ }
  }

  async function refreshReport() {
    const by = $("report-by").value;
    try {
      const res = await CTI.api("GET", `${API}/campaigns/${selected.id}/report?by=${by}`);
      $("report-head").replaceChildren(el("th", {}, t("by_" + by)), ...COLUMNS.map((c) => el("th", {}, t(c))));
      const row = (key, r, cls) => el("tr", { class: cls }, el("td", {}, key),
        ...COLUMNS.map((c) => el("td", {}, c === "abandon_rate" ? (100 * r[c]).toFixed(1) + " %" : String(r[c]))));
      $("report-rows").replaceChildren(...res.rows.map((r) => row(r[by], r, "")),
        row(t("total"), res.total, "total"));
      err("report-error");
    } catch (e) { err("report-error", e); }
  }

  async function exportCsv() {
    const by = $("report-by").value;
    try {
      await CTI.download(`${API}/campaigns/${selected.id}/report?by=${by}&format=csv`,
                         `campaign-${selected.name}-${by}.csv`);
    } catch (e) { err("report-error", e); }
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("next-lead").addEventListener("click", nextLead);
    $("lead-dial").addEventListener("click", () => leadAction("dial"));
    $("lead-skip").addEventListener("click", () => leadAction("skip"));
    $("outcomes").querySelectorAll("button[data-outcome]").forEach((b) =>
      b.addEventListener("click", () => outcome(b.dataset.outcome)));
    $("report-by").addEventListener("change", refreshReport);
    $("report-csv").addEventListener("click", exportCsv);
    CTI.page({ onSignedIn: signedIn, onSignedOut: signedOut, onLang: () => { if (selected) refreshReport(); } });
  });
})();
