// Reports: REST tables (hourly, daily, summary, agents, staffing) with CSV links, and two
// SVG charts built with DOM calls (no library, no innerHTML).
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const SVG = "http://www.w3.org/2000/svg";
  let data = null;

  function svg(tag, attrs, text) {
    const n = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, String(v));
    if (text !== undefined) n.append(document.createTextNode(String(text)));
    return n;
  }

  function volumeChart(rows) {
    const box = $("chart-volume");
    box.replaceChildren();
    const W = 960, H = 260, L = 40, B = 30, n = Math.max(rows.length, 1);
    const max = Math.max(1, ...rows.map((r) => r.offered));
    const slot = (W - L) / n, bw = Math.max(1, Math.min(24, slot / 3 - 1));
    box.append(svg("line", { class: "axis", x1: L, y1: H - B, x2: W, y2: H - B }));
    box.append(svg("text", { x: 2, y: 12 }, max));
    rows.forEach((r, i) => {
      [["inbound", r.offered], ["answered", r.answered], ["abandoned", r.abandoned]].forEach(([cls, v], j) => {
        const h = ((H - B - 10) * v) / max;
        box.append(svg("rect", { class: cls, x: L + i * slot + j * bw, y: H - B - h, width: bw, height: h }));
      });
      if (n <= 48 || i % Math.ceil(n / 24) === 0) {
        box.append(svg("text", { x: L + i * slot, y: H - 12 }, `${r.hour}`));
      }
    });
  }

  function slChart(rows) {
    const box = $("chart-sl");
    box.replaceChildren();
    const W = 960, H = 260, L = 40, B = 30, n = Math.max(rows.length, 1), slot = (W - L) / n;
    box.append(svg("line", { class: "axis", x1: L, y1: H - B, x2: W, y2: H - B }));
    box.append(svg("text", { x: 2, y: 14 }, "100 %"));
    box.append(svg("text", { x: 2, y: H - B }, "0 %"));
    let d = "";
    rows.forEach((r, i) => {
      if (r.service_level === null) return;
      const x = L + i * slot + slot / 2, y = H - B - (H - B - 10) * r.service_level;
      d += (d ? " L " : "M ") + x.toFixed(1) + " " + y.toFixed(1);
      box.append(svg("circle", { class: "sl", cx: x, cy: y, r: 2 }));
    });
    if (d) box.append(svg("path", { class: "sl", d }));
  }

  const COLUMNS = {
    hourly: ["queue", "day", "hour", "offered", "answered", "abandoned", "short_abandoned",
      "timed_out_or_exited", "refused", "ivr_abandoned", "call_loss_rate", "abandon_rate",
      "service_level", "service_level_inclusive", "asa_s", "avg_wait_s", "max_wait_s",
      "hold_count", "hold_s", "aht_s"],
    daily: ["queue", "day", "offered", "answered", "abandoned", "short_abandoned",
      "timed_out_or_exited", "ivr_abandoned", "call_loss_rate", "abandon_rate", "service_level",
      "service_level_inclusive", "asa_s", "max_wait_s", "aht_s"],
    summary: ["queue", "offered", "answered", "abandoned", "short_abandoned", "timed_out_or_exited",
      "refused", "ivr_abandoned", "call_loss_rate", "abandon_rate", "service_level",
      "service_level_inclusive", "asa_s", "avg_abandon_wait_s", "avg_wait_s", "max_wait_s",
      "hold_count", "hold_s", "aht_s"],
    agents: ["agent", "handled", "missed", "talk_s", "hold_s", "wrapup_s", "pause_s", "login_s",
      "occupancy", "aht_s"],
    staffing: ["queue", "day", "hour", "offered", "aht_s", "service_level_s", "target", "agents_needed"],
  };
  const RATIOS = new Set(["call_loss_rate", "abandon_rate", "service_level",
    "service_level_inclusive", "occupancy", "target"]);

  function cell(key, v) {
    if (RATIOS.has(key)) return STATS.pct(v);
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
      CTI.el("table", {},
        CTI.el("tr", {}, cols.map((c) => CTI.el("th", {}, c))),
        rows.map((r) => CTI.el("tr", {}, cols.map((c) => CTI.el("td", {}, cell(c, r[c])))))));
  }

  async function load() {
    $("error").textContent = "";
    const p = new URLSearchParams({ from: $("from").value, to: $("to").value });
    if ($("queue").value) p.set("queue", $("queue").value);
    const q = p.toString();
    try {
      const [hourly, daily, summary, agents] = await Promise.all(
        ["hourly", "daily", "summary", "agents"].map((n) => CTI.api("GET", `/api/v1/stats/${n}?${q}`)));
      let staffing = { rows: [] };
      if ($("queue").value) {
        staffing = await CTI.api("GET", `/api/v1/stats/staffing?day=${$("from").value}&queue=${$("queue").value}`);
      }
      data = { hourly: hourly.rows, daily: daily.rows, summary: summary.rows, agents: agents.rows,
               staffing: staffing.rows, q };
      render();
    } catch (e) { $("error").textContent = e.message; }
  }

  function render() {
    if (!data) return;
    const totals = data.hourly.filter((r) => r.queue === ($("queue").value || "*"));
    volumeChart(totals);
    slChart(totals);
    $("tables").replaceChildren(
      table("summary", data.summary, data.q), table("daily", data.daily, data.q),
      table("hourly", data.hourly, data.q), table("agents", data.agents, data.q),
      table("staffing", data.staffing, `day=${$("from").value}&queue=${$("queue").value}`));
  }

  STATS.start((langOnly) => {
    if (langOnly) { render(); return; }
    const today = new Date().toISOString().slice(0, 10);
    if (!$("from").value) { $("from").value = today; $("to").value = today; }
    $("filters").addEventListener("submit", (ev) => { ev.preventDefault(); load(); });
    load();
  });
})();
