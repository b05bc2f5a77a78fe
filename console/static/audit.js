// The audit log (admins): every change made through the console and the APIs (who, when,
// from where, what, before -> after) and every sign-in; filter, page back, export.
// API: /api/v1/audit, /api/v1/audit/export.
"use strict";

(() => {
  const C = Console, el = CTI.el, t = CTI.t;
  const PAGE = 100;

  function query(form, beforeId) {
    const p = new URLSearchParams();
    const since = C.value(form, "since"), until = C.value(form, "until");
    if (since) p.set("since", new Date(since + "T00:00:00").toISOString());
    if (until) p.set("until", new Date(new Date(until + "T00:00:00").getTime() + 86400000).toISOString());
    for (const k of ["actor", "action", "target_type", "target_id"]) {
      const v = C.value(form, k).trim();
      if (v) p.set(k, v);
    }
    if (beforeId) p.set("before_id", String(beforeId));
    return p;
  }

  function entryRow(e) {
    const changed = e.before !== null && e.before !== undefined || e.after !== null && e.after !== undefined;
    const diff = changed ? el("div", { class: "diff" },
      el("div", {}, el("div", { class: "hint" }, t("before")), el("pre", {}, C.pretty(e.before))),
      el("div", {}, el("div", { class: "hint" }, t("after")), el("pre", {}, C.pretty(e.after)))) : null;
    return el("tr", { dataset: { id: e.id, action: e.action } },
      el("td", {}, CTI.fmtTime(e.at)),
      el("td", { class: "text" }, e.actor, e.actor_role ? ` (${e.actor_role})` : ""),
      el("td", {}, e.address || ""),
      el("td", { class: "text action" }, e.action),
      el("td", { class: "text target" }, [e.target_type, e.target_id].filter(Boolean).join(" ")),
      el("td", { class: "text" }, e.detail || "", diff));
  }

  async function render(view) {
    const box = C.errorBox();
    const rows = el("tbody", {});
    const more = C.button(t("more"), () => load(true), "", { id: "audit-more", hidden: true });
    let oldest = null;
    const form = el("form", { id: "audit-filter", class: "row" },
      C.field(t("from"), C.input("since", "", { type: "date" })),
      C.field(t("to"), C.input("until", "", { type: "date" })),
      C.field(t("who_col"), C.input("actor", "", { maxlength: 128 })),
      C.field(t("action"), C.input("action", "", { maxlength: 64, placeholder: "ivr." })),
      C.field(t("target_type"), C.input("target_type", "", { maxlength: 32 })),
      C.field(t("target"), C.input("target_id", "", { maxlength: 128 })),
      el("button", { type: "submit" }, t("search")),
      C.button(t("export_csv"), exportCsv, "", { id: "audit-export" }));
    async function load(next) {
      const p = query(form, next ? oldest : null);
      p.set("limit", String(PAGE));
      await C.submit(box, () => CTI.api("GET", "/api/v1/audit?" + p), (data) => {
        const list = data.entries.map(entryRow);
        if (next) rows.append(...list); else rows.replaceChildren(...list);
        if (!next && !list.length) rows.append(el("tr", {}, el("td", { colspan: 6, class: "muted" }, t("none"))));
        if (data.entries.length) oldest = data.entries[data.entries.length - 1].id;
        more.hidden = data.entries.length < PAGE;
      });
    }
    async function exportCsv() {
      const p = query(form, null);
      p.set("format", "csv");
      await C.submit(box, () => C.raw("GET", "/api/v1/audit/export?" + p), async (res) => {
        const blob = await res.blob();
        const a = el("a", { href: URL.createObjectURL(blob), download: "audit.csv" });
        document.body.append(a);
        a.click();
        setTimeout(() => { URL.revokeObjectURL(a.href); a.remove(); }, 1000);
      });
    }
    form.addEventListener("submit", (ev) => { ev.preventDefault(); load(false); });
    view.append(C.panel(t("audit"), el("p", { class: "hint" }, t("audit_hint")), form,
      el("table", { id: "audit-table" }, el("thead", {}, el("tr", {},
        ["when", "who_col", "address", "action", "target", "what"].map((k) => el("th", {}, t(k))))), rows),
      more, box));
    await load(false);
  }

  C.section({ id: "audit", group: "admin", title: "audit", role: "admin", render });
})();
