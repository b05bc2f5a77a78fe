// Opportunities (商机): a board with one column per stage and a table; move a lead to
// another stage, assign it by hand (supervisor), create one (owner by rule when empty),
// reassign stale ones. Every value from the server is set as text.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const STAGES = ["new", "contacted", "qualified", "proposal", "won", "lost"];
  let me = null, leads = [], view = "board";
  const sup = () => me && (me.role === "supervisor" || me.role === "admin");
  const fail = (e) => { $("error").textContent = CTI.t("error") + ": " + (e.message || e); };

  async function load() {
    $("error").textContent = "";
    try { leads = (await CTI.api("GET", "/api/v1/leads")).leads; render(); } catch (e) { fail(e); }
  }

  async function patch(lead, body) {
    try {
      await CTI.api("PATCH", `/api/v1/leads/${lead.id}`, body);
      await load();
    } catch (e) { fail(e); }
  }

  function stageSelect(lead) {
    const s = CTI.el("select", { class: "stage", dataset: { id: lead.id }, "aria-label": CTI.t("move_to") },
      STAGES.map((st) => CTI.el("option", { value: st }, CTI.t("st_" + st))));
    s.value = lead.status;
    s.addEventListener("change", () => patch(lead, { status: s.value }));
    return s;
  }

  function assignBox(lead) {
    if (!sup()) return null;
    const input = CTI.el("input", { class: "assign-to", maxlength: 128, size: 8, value: lead.owner || "" });
    const btn = CTI.el("button", { type: "button", class: "assign", dataset: { id: lead.id } }, CTI.t("assign"));
    btn.addEventListener("click", async () => {
      try {
        await CTI.api("POST", `/api/v1/leads/${lead.id}/assign`, { owner: input.value.trim() });
        await load();
      } catch (e) { fail(e); }
    });
    return CTI.el("span", {}, input, btn);
  }

  const money = (v) => (v === null || v === undefined ? "" : Number(v).toLocaleString(CTI.getLang() === "zh" ? "zh-CN" : "en-GB"));
  const customerLink = (l) => CTI.el("a", { href: `customer.html?id=${encodeURIComponent(l.customer_id)}` }, l.customer_name || `#${l.customer_id}`);

  function render() {
    $("board").hidden = view !== "board";
    $("table").hidden = view !== "table";
    $("board").replaceChildren(...STAGES.map((st) => {
      const here = leads.filter((l) => l.status === st);
      const total = here.reduce((a, l) => a + (l.value || 0), 0);
      return CTI.el("div", { class: "column", dataset: { stage: st } },
        CTI.el("h3", {}, `${CTI.t("st_" + st)} (${here.length}) ${money(total)}`),
        here.map((l) => CTI.el("div", { class: "card", dataset: { id: l.id } },
          CTI.el("b", { class: "title" }, l.title), CTI.el("div", {}, customerLink(l)),
          CTI.el("div", { class: "muted" }, [money(l.value), l.expected_close || "", l.owner || "–"].filter(Boolean).join(" · ")),
          stageSelect(l), assignBox(l))));
    }));
    $("rows").replaceChildren(...leads.map((l) => CTI.el("tr", { dataset: { id: l.id } },
      CTI.el("td", {}, String(l.id)), CTI.el("td", {}, l.title), CTI.el("td", {}, customerLink(l)),
      CTI.el("td", {}, stageSelect(l)), CTI.el("td", {}, money(l.value)), CTI.el("td", {}, l.expected_close || ""),
      CTI.el("td", { class: "owner" }, l.owner || "–"), CTI.el("td", {}, l.industry), CTI.el("td", {}, l.region))));
  }

  async function create(ev) {
    ev.preventDefault();
    const body = { customer_id: Number($("o-customer").value), title: $("o-title").value.trim() };
    if ($("o-value").value) body.value = Number($("o-value").value);
    if ($("o-close").value) body.expected_close = $("o-close").value;
    if ($("o-industry").value.trim()) body.industry = $("o-industry").value.trim();
    if (sup() && $("o-owner").value.trim()) body.owner = $("o-owner").value.trim();
    try {
      await CTI.api("POST", "/api/v1/leads", body);
      $("new-form").reset();
      await load();
    } catch (e) { fail(e); }
  }

  async function stale() {
    try {
      const { leads: moved } = await CTI.api("POST", "/api/v1/leads/reassign-stale");
      $("state").textContent = `${moved.length} ${CTI.t("moved")}`;
      await load();
    } catch (e) { fail(e); }
  }

  CTI.page({
    onSignedIn: async (who) => {
      me = who;
      $("stale").hidden = !sup();
      $("o-owner-label").hidden = !sup();
      await load();
    },
    onLang: render,
  });
  $("view-board").addEventListener("click", () => { view = "board"; render(); });
  $("view-table").addEventListener("click", () => { view = "table"; render(); });
  $("new-form").addEventListener("submit", create);
  $("stale").addEventListener("click", stale);
})();
