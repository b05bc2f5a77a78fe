// Shared by the wallboard and the reports page: strings (zh/en), sign-in, formatting.
"use strict";

const STATS = (() => {
  CTI.addStrings({
    en: {
      wallboard: "Wallboard", reports: "Reports", waiting: "Waiting", longest: "Longest wait",
      offered: "Offered", answered: "Answered", abandoned: "Abandoned", short: "Short abandons",
      sl: "Service level", sl_incl: "Inclusive service level", asa: "ASA", agents: "Agents",
      ivr: "IVR abandons", today: "Today", language: "Language", from: "From", to: "To",
      queue: "Queue", all: "All queues", show: "Show", hourly: "Hourly", daily: "Daily",
      summary: "Summary", agents_t: "Agents", staffing: "Staffing (Erlang C)", csv: "CSV",
      chart_volume: "Inbound vs answered vs abandoned by hour", chart_sl: "Service level by hour",
      state_idle: "idle", state_ringing: "ringing", state_on_call: "on call",
      state_on_hold: "on hold", state_wrapup: "wrap-up", available: "available",
    },
    zh: {
      wallboard: "实时看板", reports: "报表", waiting: "排队中", longest: "最长等待",
      offered: "呼入", answered: "接通", abandoned: "放弃", short: "短时放弃",
      sl: "服务水平", sl_incl: "服务水平（含放弃）", asa: "平均应答速度", agents: "座席",
      ivr: "IVR 放弃", today: "今日", language: "语言", from: "开始", to: "结束",
      queue: "队列", all: "全部队列", show: "查询", hourly: "按小时", daily: "按日",
      summary: "汇总", agents_t: "座席", staffing: "人力需求（Erlang C）", csv: "CSV",
      chart_volume: "每小时呼入 / 接通 / 放弃", chart_sl: "每小时服务水平",
      state_idle: "空闲", state_ringing: "振铃", state_on_call: "通话中",
      state_on_hold: "保持", state_wrapup: "话后处理", available: "就绪",
    },
  });

  function pct(x) { return x === null || x === undefined ? "–" : (100 * x).toFixed(1) + " %"; }
  function num(x, digits) {
    if (x === null || x === undefined) return "–";
    return typeof x === "number" ? x.toFixed(digits === undefined ? 0 : digits) : String(x);
  }

  // Both pages: the shared sign-in (supervisors); onReady(true) re-renders after a
  // language switch, onReady(false) starts the page once signed in.
  function start(onReady) {
    CTI.page({
      roles: ["supervisor", "admin"],
      onSignedIn: () => onReady(false),
      onLang: () => onReady(true),
    });
  }

  return { pct, num, start };
})();
