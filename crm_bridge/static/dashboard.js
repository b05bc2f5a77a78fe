// Sales dashboard (销售仪表盘): pipeline by stage, won this period vs target, activities per
// agent and a daily trend, drawn with Apache ECharts (/vendor/echarts/); the figures are
// also in tables. Agent names and other server text reach ECharts as data (rendered as
// text on a canvas), and the page's own DOM only via textContent.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const STAGES = ["new", "contacted", "qualified", "proposal", "won", "lost"];
  let data = null;
  const charts = {};
  const fmt = (v) => Number(v || 0).toLocaleString(CTI.getLang() === "zh" ? "zh-CN" : "en-GB");

  function chart(id) {
    if (!charts[id]) charts[id] = echarts.init($(id), null, { renderer: "canvas" });
    return charts[id];
  }

  async function load() {
    $("error").textContent = "";
    const p = new URLSearchParams();
    if ($("from").value) p.set("from", $("from").value);
    if ($("to").value) p.set("to", $("to").value);
    try {
      data = await CTI.api("GET", "/api/v1/crm/dashboard?" + p.toString());
      if (!$("from").value) { $("from").value = data.from; }
      render();
    } catch (e) { $("error").textContent = CTI.t("error") + ": " + e.message; }
  }

  function render() {
    if (!data) return;
    const stage = (s) => CTI.t("st_" + s);
    const open = data.pipeline.filter((r) => r.stage !== "won" && r.stage !== "lost");
    $("won-value").textContent = fmt(data.won.value);
    $("won-count").textContent = `${data.won.count}`;
    $("target").textContent = data.target ? fmt(data.target) : "–";
    $("target-pct").textContent = data.target ? `${Math.round((100 * data.won.value) / data.target)} %` : "";
    $("open-value").textContent = fmt(open.reduce((a, r) => a + r.value, 0));
    $("open-count").textContent = String(open.reduce((a, r) => a + r.count, 0));
    $("pipeline-rows").replaceChildren(...data.pipeline.map((r) => CTI.el("tr", { dataset: { stage: r.stage } },
      CTI.el("td", {}, stage(r.stage)), CTI.el("td", { class: "count" }, String(r.count)),
      CTI.el("td", { class: "value" }, fmt(r.value)))));
    $("activity-rows").replaceChildren(...data.activities.map((r) => CTI.el("tr", { dataset: { agent: r.agent } },
      CTI.el("td", {}, r.agent), CTI.el("td", { class: "calls" }, String(r.calls)),
      CTI.el("td", { class: "notes" }, String(r.notes)))));
    chart("chart-pipeline").setOption({
      tooltip: { trigger: "axis" }, legend: { data: [CTI.t("count"), CTI.t("value")] },
      xAxis: { type: "category", data: STAGES.map(stage) },
      yAxis: [{ type: "value", name: CTI.t("count"), minInterval: 1 }, { type: "value", name: CTI.t("value") }],
      series: [
        { name: CTI.t("count"), type: "bar", data: data.pipeline.map((r) => r.count) },
        { name: CTI.t("value"), type: "line", yAxisIndex: 1, data: data.pipeline.map((r) => r.value) },
      ],
    }, true);
    chart("chart-activities").setOption({
      tooltip: { trigger: "axis" }, legend: { data: [CTI.t("calls"), CTI.t("notes_n")] },
      xAxis: { type: "category", data: data.activities.map((r) => r.agent) },
      yAxis: { type: "value", minInterval: 1 },
      series: [
        { name: CTI.t("calls"), type: "bar", stack: "a", data: data.activities.map((r) => r.calls) },
        { name: CTI.t("notes_n"), type: "bar", stack: "a", data: data.activities.map((r) => r.notes) },
      ],
    }, true);
    chart("chart-trend").setOption({
      tooltip: { trigger: "axis" },
      legend: { data: [CTI.t("new_leads"), CTI.t("calls"), CTI.t("won_value")] },
      dataZoom: [{ type: "inside" }, { type: "slider" }],
      xAxis: { type: "category", data: data.trend.map((r) => r.day) },
      yAxis: [{ type: "value", minInterval: 1 }, { type: "value", name: CTI.t("won_value") }],
      series: [
        { name: CTI.t("new_leads"), type: "line", data: data.trend.map((r) => r.new_leads) },
        { name: CTI.t("calls"), type: "line", data: data.trend.map((r) => r.calls) },
        { name: CTI.t("won_value"), type: "bar", yAxisIndex: 1, data: data.trend.map((r) => r.won_value) },
      ],
    }, true);
  }

  CTI.page({ onSignedIn: load, onLang: render });
  $("period").addEventListener("submit", (ev) => { ev.preventDefault(); load(); });
  window.addEventListener("resize", () => Object.values(charts).forEach((c) => c.resize()));
})();
