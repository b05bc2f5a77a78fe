// Reports: REST tables (hourly, daily, summary, agents, by caller region, staffing) with
// CSV links, the satisfaction survey figures (average score, answered surveys) and three
// charts drawn by Apache ECharts (/vendor/echarts/: axes, tooltips, legends, zoom over the
// hours; offered/answered by caller region); text is set with text nodes only (no innerHTML).
"use strict";

(() => {
  CTI.addStrings({
    en: { survey: "Satisfaction survey", survey_avg: "Average score",
          survey_count: "Answered surveys", regions: "By caller region",
          chart_regions: "Offered and answered by caller region", unknown_region: "unknown" },
    zh: { survey: "满意度调查", survey_avg: "平均分", survey_count: "已答问卷",
          regions: "按号码归属地", chart_regions: "按号码归属地的呼入与接通",
          unknown_region: "未知" },
  });
  const $ = (id) => document.getElementById(id);
  let data = null;
  const charts = {};

  function chart(id) {
    if (!charts[id]) charts[id] = echarts.init($(id), null, { renderer: "canvas" });
    return charts[id];
  }

  // Every hour of every day of the range (hours without calls are zero, service level
  // without calls is a gap), so one busy hour is a bar among empty hours, not a lone dot.
  function hours(rows) {
    const byKey = new Map(rows.map((r) => [`${r.day} ${String(r.hour).padStart(2, "0")}`, r]));
    const from = new Date($("from").value + "T00:00:00Z"), to = new Date($("to").value + "T00:00:00Z");
    const keys = [];
    for (let d = from; d <= to && keys.length < 24 * 366; d = new Date(d.getTime() + 86400000)) {
      const day = d.toISOString().slice(0, 10);
      for (let h = 0; h < 24; h++) keys.push(`${day} ${String(h).padStart(2, "0")}`);
    }
    for (const k of byKey.keys()) if (!keys.includes(k)) keys.push(k);
    keys.sort();
    return keys.map((k) => ({ key: k, row: byKey.get(k) }));
  }

  function charts_(rows) {
    const slots = hours(rows);
    const labels = slots.map((s) => s.key.slice(5) + ":00");
    const v = (s, k) => (s.row ? s.row[k] : 0);
    const zoom = [{ type: "inside" }, { type: "slider", height: 18 }];
    chart("chart-volume").setOption({
      tooltip: { trigger: "axis" },
      legend: { data: [CTI.t("offered"), CTI.t("answered"), CTI.t("abandoned")] },
      grid: { left: 40, right: 20, bottom: 60 },
      dataZoom: zoom,
      xAxis: { type: "category", data: labels },
      yAxis: { type: "value", minInterval: 1 },
      series: [
        { name: CTI.t("offered"), type: "bar", data: slots.map((s) => v(s, "offered")), itemStyle: { color: "#1565c0" } },
        { name: CTI.t("answered"), type: "bar", data: slots.map((s) => v(s, "answered")), itemStyle: { color: "#2e7d32" } },
        { name: CTI.t("abandoned"), type: "bar", data: slots.map((s) => v(s, "abandoned")), itemStyle: { color: "#c62828" } },
      ],
    }, true);
    const sl = slots.map((s) => (s.row && s.row.service_level !== null ? +(100 * s.row.service_level).toFixed(1) : null));
    chart("chart-sl").setOption({
      tooltip: { trigger: "axis", valueFormatter: (x) => (x === null || x === undefined ? "–" : x + " %") },
      legend: { data: [CTI.t("sl")] },
      grid: { left: 40, right: 20, bottom: 60 },
      dataZoom: zoom,
      xAxis: { type: "category", data: labels },
      yAxis: { type: "value", min: 0, max: 100, axisLabel: { formatter: "{value} %" } },
      series: [{ name: CTI.t("sl"), type: "line", data: sl, connectNulls: true, showAllSymbol: true,
                 symbolSize: 6, itemStyle: { color: "#6a1b9a" } }],
    }, true);
  }

  const COLUMNS = {
    hourly: ["queue", "day", "hour", "offered", "answered", "abandoned", "short_abandoned",
      "timed_out_or_exited", "refused", "ivr_abandoned", "call_loss_rate", "abandon_rate",
      "service_level", "service_level_inclusive", "asa_s", "avg_wait_s", "max_wait_s",
      "hold_count", "hold_s", "aht_s"],
    daily: ["queue", "day", "offered", "answered", "abandoned", "short_abandoned",
      "timed_out_or_exited", "ivr_abandoned", "call_loss_rate", "abandon_rate", "service_level",
      "service_level_inclusive", "asa_s", "max_wait_s", "aht_s", "survey_count", "survey_avg"],
    summary: ["queue", "offered", "answered", "abandoned", "short_abandoned", "timed_out_or_exited",
      "refused", "ivr_abandoned", "call_loss_rate", "abandon_rate", "service_level",
      "service_level_inclusive", "asa_s", "avg_abandon_wait_s", "avg_wait_s", "max_wait_s",
      "hold_count", "hold_s", "aht_s", "survey_count", "survey_avg"],
    agents: ["agent", "handled", "missed", "talk_s", "hold_s", "wrapup_s", "pause_s", "login_s",
      "occupancy", "aht_s", "survey_count", "survey_avg"],
    regions: ["region", "region_en", "offered", "answered", "abandoned", "short_abandoned",
      "abandon_rate", "service_level", "asa_s", "aht_s", "survey_count", "survey_avg"],
    staffing: ["queue", "day", "hour", "offered", "aht_s", "service_level_s", "target", "agents_needed"],
  };
  const RATIOS = new Set(["call_loss_rate", "abandon_rate", "service_level",
    "service_level_inclusive", "occupancy", "target"]);

  function cell(key, v) {
    if (RATIOS.has(key)) return STATS.pct(v);
    if (key === "survey_avg") return STATS.num(v, 2);
    if (typeof v === "number") return STATS.num(v, Number.isInteger(v) ? 0 : 1);
    return v === null || v === undefined ? "–" : String(v);
  }

  function table(name, rows, query) {
    const cols = COLUMNS[name];
    const link = CTI.el("a", { href: "#" }, CTI.t("csv"));
    link.addEventListener("click", async (ev) => {
      ev.preventDefault();
      await CTI.download(`/api/v1/stats/${name}?${query}&format=csv`, name + ".csv");
    });
    return CTI.el("div", {},
      CTI.el("h2", {}, CTI.t(name === "agents" ? "agents_t" : name), " ", link),
      CTI.el("div", { class: "table-wrap" }, CTI.el("table", {},
        CTI.el("tr", {}, cols.map((c) => CTI.el("th", {}, c))),
        rows.map((r) => CTI.el("tr", {}, cols.map((c) => CTI.el("td", {}, cell(c, r[c]))))))));
  }

  async function load() {
    $("error").textContent = "";
    const p = new URLSearchParams({ from: $("from").value, to: $("to").value });
    if ($("queue").value) p.set("queue", $("queue").value);
    const q = p.toString();
    try {
      const [hourly, daily, summary, agents, regions] = await Promise.all(
        ["hourly", "daily", "summary", "agents", "regions"].map(
          (n) => CTI.api("GET", `/api/v1/stats/${n}?${q}`)));
      let staffing = { rows: [] };
      if ($("queue").value) {
        staffing = await CTI.api("GET", `/api/v1/stats/staffing?day=${$("from").value}&queue=${$("queue").value}`);
      }
      data = { hourly: hourly.rows, daily: daily.rows, summary: summary.rows, agents: agents.rows,
               regions: regions.rows, staffing: staffing.rows, q };
      render();
    } catch (e) { $("error").textContent = e.message; }
  }

  // The survey figures of the range: the summary's row for the chosen queue, else "*".
  function survey() {
    const row = data.summary.find((r) => r.queue === ($("queue").value || "*"));
    $("survey-avg").textContent = STATS.num(row ? row.survey_avg : null, 2);
    $("survey-count").textContent = STATS.num(row ? row.survey_count : 0);
  }

  function regionChart(rows) {
    const name = (r) => (CTI.getLang() === "zh" ? r.region : r.region_en) || CTI.t("unknown_region");
    chart("chart-regions").setOption({
      tooltip: { trigger: "axis" },
      legend: { data: [CTI.t("offered"), CTI.t("answered")] },
      grid: { left: 40, right: 20, bottom: 60 },
      xAxis: { type: "category", data: rows.map(name) },
      yAxis: { type: "value", minInterval: 1 },
      series: [
        { name: CTI.t("offered"), type: "bar", data: rows.map((r) => r.offered), itemStyle: { color: "#1565c0" } },
        { name: CTI.t("answered"), type: "bar", data: rows.map((r) => r.answered), itemStyle: { color: "#2e7d32" } },
      ],
    }, true);
  }

  function render() {
    if (!data) return;
    const totals = data.hourly.filter((r) => r.queue === ($("queue").value || "*"));
    charts_(totals);
    survey();
    regionChart(data.regions);
    $("tables").replaceChildren(
      table("summary", data.summary, data.q), table("daily", data.daily, data.q),
      table("hourly", data.hourly, data.q), table("agents", data.agents, data.q),
      table("regions", data.regions, data.q),
      table("staffing", data.staffing, `day=${$("from").value}&queue=${$("queue").value}`));
  }

  STATS.start((langOnly) => {
    if (langOnly) { render(); return; }
    const today = new Date().toISOString().slice(0, 10);
    if (!$("from").value) { $("from").value = today; $("to").value = today; }
    $("filters").addEventListener("submit", (ev) => { ev.preventDefault(); load(); });
    window.addEventListener("resize", () => Object.values(charts).forEach((c) => c.resize()));
    load();
  });
})();
