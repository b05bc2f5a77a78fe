// Live wallboard: websocket frames {"type": "wallboard", ...} only (no polling).
// Per queue: today's figures, alarms (thresholds from [stats]), the longest-waiting
// caller, and each agent's state with how long, who it talks to (number and 号码归属地),
// calls handled and AHT today. Every caller/agent text is set as text, never markup.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  let last = null;
  let lastAt = 0; // when the frame arrived (ms): state times count on from it
  let sock = null;
  let connState = "";

  CTI.addStrings({
    en: {
      state_time: "In state", talking_to: "Talking to", handled_today: "Handled today",
      aht_today: "AHT today", longest_caller: "Longest waiting",
      alarm_waiting: "Callers waiting", alarm_longest_wait: "Longest wait",
      alarm_sl: "Service level below target", alarm: "Alarm",
    },
    zh: {
      state_time: "状态时长", talking_to: "通话对象", handled_today: "今日接听",
      aht_today: "今日平均处理时长", longest_caller: "等待最久",
      alarm_waiting: "排队人数", alarm_longest_wait: "最长等待", alarm_sl: "服务水平低于目标",
      alarm: "告警",
    },
  });

  function region(r) {
    if (!r) return "";
    const lang = CTI.getLang ? CTI.getLang() : "en";
    return (lang === "zh" ? r.zh : r.en) || r.zh || r.en || "";
  }

  function elapsed(a) {
    if (a.state_s === null || a.state_s === undefined) return "";
    return CTI.fmtDuration(a.state_s + (Date.now() - lastAt) / 1000);
  }

  function alarmText(al) {
    if (al.kind === "sl") return `${CTI.t("alarm_sl")}: ${STATS.pct(al.value)} < ${STATS.pct(al.threshold)}`;
    if (al.kind === "longest_wait") {
      return `${CTI.t("alarm_longest_wait")}: ${CTI.fmtDuration(al.value)} ≥ ${CTI.fmtDuration(al.threshold)}`;
    }
    return `${CTI.t("alarm_waiting")}: ${al.value} ≥ ${al.threshold}`;
  }

  function agentRow(a) {
    const peer = a.talking_to
      ? [a.talking_to, CTI.el("small", {}, region(a.talking_to_region))]
      : [""];
    return CTI.el("tr", { dataset: { agent: a.name } },
      CTI.el("td", {}, a.name),
      CTI.el("td", { class: "state" }, CTI.t("state_" + a.state)),
      CTI.el("td", { class: "since" }, elapsed(a)),
      CTI.el("td", { class: "peer" }, ...peer),
      CTI.el("td", { class: "handled" }, String(a.handled_today)),
      CTI.el("td", { class: "aht" }, a.aht_today_s === null ? "–" : CTI.fmtDuration(a.aht_today_s)),
      CTI.el("td", {}, a.status === "available" ? CTI.t("available") : a.status));
  }

  function queueCard(q) {
    const t = q.today;
    const agents = CTI.el("table", { class: "agents" },
      CTI.el("tr", {}, CTI.el("th", {}, CTI.t("agents")), CTI.el("th", {}, ""),
        CTI.el("th", {}, CTI.t("state_time")), CTI.el("th", {}, CTI.t("talking_to")),
        CTI.el("th", {}, CTI.t("handled_today")), CTI.el("th", {}, CTI.t("aht_today")),
        CTI.el("th", {}, "")),
      q.agents.map(agentRow));
    const alarms = CTI.el("div", { class: "alarms", role: "alert" },
      q.alarms.map((al) => CTI.el("div", { dataset: { alarm: al.kind } }, alarmText(al))));
    const first = q.longest_caller;
    const longest = CTI.el("p", { class: "longest-caller" },
      first ? `${CTI.t("longest_caller")}: ${first.caller_num} ${region(first.region)} · ${CTI.fmtDuration(first.wait_s)}` : "");
    const cls = "panel queue " + q.risk + (q.alarms.length ? " alarm" : "");
    return CTI.el("section", { class: cls, dataset: { queue: q.queue } },
      CTI.el("h2", {}, q.queue),
      alarms,
      CTI.el("dl", { class: "kv" },
        CTI.el("dt", {}, CTI.t("waiting")), CTI.el("dd", { class: "big" }, String(q.waiting)),
        CTI.el("dt", {}, CTI.t("longest")), CTI.el("dd", {}, CTI.fmtDuration(q.longest_wait_s)),
        CTI.el("dt", {}, CTI.t("offered")), CTI.el("dd", {}, String(t.offered)),
        CTI.el("dt", {}, CTI.t("answered")), CTI.el("dd", {}, String(t.answered)),
        CTI.el("dt", {}, CTI.t("abandoned")), CTI.el("dd", {}, `${t.abandoned} (${CTI.t("short")}: ${t.short_abandoned})`),
        CTI.el("dt", {}, `${CTI.t("sl")} (${q.service_level_s} s)`),
        CTI.el("dd", {}, `${STATS.pct(t.service_level)} / ${STATS.pct(q.sl_target)}`),
        CTI.el("dt", {}, CTI.t("sl_incl")), CTI.el("dd", {}, STATS.pct(t.service_level_inclusive))),
      longest,
      agents);
  }

  function render() {
    $("conn").textContent = connState ? CTI.t(connState === "open" ? "connected" : connState) : "";
    if (!last) return;
    $("ivr").textContent = last.ivr_abandoned === null ? "–" : String(last.ivr_abandoned);  // null: scoped to teams
    $("queues").replaceChildren(...last.queues.map(queueCard));
  }

  // time in state counts on between frames
  setInterval(() => {
    if (!last) return;
    for (const q of last.queues) {
      for (const a of q.agents) {
        const row = document.querySelector(
          `section.queue[data-queue="${CSS.escape(q.queue)}"] tr[data-agent="${CSS.escape(a.name)}"] td.since`);
        if (row) row.textContent = elapsed(a);
      }
    }
  }, 1000);

  STATS.start((langOnly) => {
    if (langOnly) { render(); return; }
    if (sock) return;
    sock = CTI.socket((msg) => {
      if (msg.type === "wallboard") { last = msg; lastAt = Date.now(); render(); }
    }, (state) => { connState = state === "closed" ? "disconnected" : state; render(); });
  });
})();
