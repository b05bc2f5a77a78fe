// Live wallboard: websocket frames {"type": "wallboard", ...} only (no polling).
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  let last = null;
  let sock = null;
  let connState = "";

  function queueCard(q) {
    const t = q.today;
    const agents = CTI.el("table", {},
      CTI.el("tr", {}, CTI.el("th", {}, CTI.t("agents")), CTI.el("th", {}, ""), CTI.el("th", {}, "")),
      q.agents.map((a) => CTI.el("tr", {},
        CTI.el("td", {}, a.name),
        CTI.el("td", {}, CTI.t("state_" + a.state)),
        CTI.el("td", {}, a.status === "available" ? CTI.t("available") : a.status))));
    return CTI.el("section", { class: "panel queue " + q.risk, dataset: { queue: q.queue } },
      CTI.el("h2", {}, q.queue),
      CTI.el("dl", { class: "kv" },
        CTI.el("dt", {}, CTI.t("waiting")), CTI.el("dd", { class: "big" }, String(q.waiting)),
        CTI.el("dt", {}, CTI.t("longest")), CTI.el("dd", {}, CTI.fmtDuration(q.longest_wait_s)),
        CTI.el("dt", {}, CTI.t("offered")), CTI.el("dd", {}, String(t.offered)),
        CTI.el("dt", {}, CTI.t("answered")), CTI.el("dd", {}, String(t.answered)),
        CTI.el("dt", {}, CTI.t("abandoned")), CTI.el("dd", {}, `${t.abandoned} (${CTI.t("short")}: ${t.short_abandoned})`),
        CTI.el("dt", {}, `${CTI.t("sl")} (${q.service_level_s} s)`),
        CTI.el("dd", {}, `${STATS.pct(t.service_level)} / ${STATS.pct(q.sl_target)}`),
        CTI.el("dt", {}, CTI.t("sl_incl")), CTI.el("dd", {}, STATS.pct(t.service_level_inclusive))),
      agents);
  }

  function render() {
    $("conn").textContent = connState ? CTI.t(connState === "open" ? "connected" : connState) : "";
    if (!last) return;
    $("ivr").textContent = String(last.ivr_abandoned);
    $("queues").replaceChildren(...last.queues.map(queueCard));
  }

  STATS.start((langOnly) => {
    if (langOnly) { render(); return; }
    if (sock) return;
    sock = CTI.socket((msg) => { if (msg.type === "wallboard") { last = msg; render(); } },
      (state) => { connState = state === "closed" ? "disconnected" : state; render(); });
  });
})();
