// Business hours: each schedule's state right now with the day/night/emergency switch a
// supervisor flips, the weekly hours, holidays and make-up workdays (调休) an admin edits,
// and the year's calendar (the country's days and the site's own).
// API: /api/v1/ivr/schedules, /api/v1/ivr/schedules/{name}[/override|/calendar].
"use strict";

(() => {
  const C = Console, el = CTI.el, t = CTI.t;
  const DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
  const MODES = ["auto", "day", "night", "emergency"];
  const COUNTRIES = ["", "CN", "HK", "TW", "SG", "US", "GB", "DE", "FR", "JP"];
  const NAME_RE = /^[A-Za-z0-9_-]{1,40}$/;

  function statePanel(s) {
    const box = C.errorBox(), done = C.noticeBox();
    const note = C.input("note", s.override ? s.override.note : "", { maxlength: 256, placeholder: t("override_note") });
    const until = C.input("until", "", { type: "datetime-local" });
    const buttons = MODES.map((m) => C.button(t("mode_" + m), async () => {
      const body = { mode: m, note: note.value };
      if (until.value && m !== "auto") body.until = new Date(until.value).toISOString();
      await C.submit(box, () => CTI.api("PUT", `/api/v1/ivr/schedules/${encodeURIComponent(s.name)}/override`, body),
        async () => { C.notice(done, t("saved")); await C.route(); });
    }, (s.override ? s.override.mode : "auto") === m ? "on" : "", { dataset: { mode: m } }));
    const state = s.open ? "open" : s.reason || "closed";
    return el("article", { class: "panel schedule-state", dataset: { schedule: s.name, state } },
      el("h3", {}, s.name, " ", el("span", { class: "pill " + state }, t("state_" + state))),
      el("p", { class: "muted" }, `${t("local_time")}: ${CTI.fmtTime(s.local_time)} (${s.timezone})`,
        s.today.kind !== "normal" ? ` · ${t("day_" + s.today.kind)} ${s.today.name}` : ""),
      s.action && !s.open ? el("p", {}, t("callers_get") + ": " + t("action_" + s.action.action) +
                              (s.action.target ? " " + s.action.target : "")) : null,
      s.override ? el("p", { class: "override" }, t("override_by") + " " + s.override.set_by + " · " +
        CTI.fmtTime(s.override.set_at) + (s.override.until ? " → " + CTI.fmtTime(s.override.until) : "") +
        (s.override.note ? " · " : ""), s.override.note ? el("span", { class: "text" }, s.override.note) : null) : null,
      el("div", { class: "row" }, ...buttons, until, note), box, done);
  }

  function spansText(spans) { return (spans || []).join(", "); }
  function parseSpans(text) { return text.split(/[,，\s]+/).map((x) => x.trim()).filter(Boolean); }
  function parseDates(text) { return text.split(/[,，\s]+/).map((x) => x.trim()).filter(Boolean); }

  function scheduleForm(ctx, name, s, saved) {
    const fresh = !s;
    s = s || { timezone: "Asia/Shanghai", holidays: "CN", subdivision: "", extra_holidays: [], extra_workdays: [],
               workday_hours: "mon", closed: { action: "voicemail", target: "8000", prompt: "" },
               mon: ["09:00-18:00"], tue: ["09:00-18:00"], wed: ["09:00-18:00"], thu: ["09:00-18:00"],
               fri: ["09:00-18:00"], sat: [], sun: [] };
    const box = C.errorBox();
    const only = ["queue", "extension", "external", "voicemail", "callback", "operator", "hangup"];
    const closed = IvrUi.actionEditor(ctx, s.closed, { only });
    const holiday = IvrUi.actionEditor(ctx, s.holiday || s.closed, { only });
    const emergency = IvrUi.actionEditor(ctx, s.emergency || { action: "hangup", target: "", prompt: "" }, { only });
    const sameHoliday = C.check("same_holiday", t("holiday_as_closed"), !s.holiday);
    const form = el("form", { id: "schedule-form" },
      el("div", { class: "fields" },
        C.field(t("name"), C.input("name", name || "", { required: true, maxlength: 40, disabled: !fresh })),
        C.field(t("timezone"), C.input("timezone", s.timezone, { maxlength: 64, placeholder: "Asia/Shanghai" })),
        C.field(t("holiday_country"), C.select("holidays", COUNTRIES.map((c) => [c, c || t("none")]), s.holidays)),
        C.field(t("workday_hours"), C.select("workday_hours", DAYS.map((d) => [d, t("day_" + d)]), s.workday_hours),
                t("workday_hours_hint"))),
      el("fieldset", {}, el("legend", {}, t("weekly_hours")), el("div", { class: "fields" },
        DAYS.map((d) => C.field(t("day_" + d), C.input(d, spansText(s[d]), { placeholder: "09:00-12:00, 13:00-18:00" })))),
        el("p", { class: "hint" }, t("spans_hint"))),
      el("fieldset", {}, el("legend", {}, t("site_days")), el("div", { class: "fields" },
        C.field(t("extra_holidays"), C.input("extra_holidays", (s.extra_holidays || []).join(", "),
                                             { placeholder: "2026-12-31" })),
        C.field(t("extra_workdays"), C.input("extra_workdays", (s.extra_workdays || []).join(", "),
                                             { placeholder: "2026-02-28" }), t("extra_workdays_hint")))),
      el("fieldset", {}, el("legend", {}, t("when_closed")), closed.node),
      el("fieldset", {}, el("legend", {}, t("on_holidays")), sameHoliday, holiday.node),
      el("fieldset", {}, el("legend", {}, t("in_emergency")), emergency.node),
      C.isAdmin() ? el("div", { class: "actions" }, el("button", { type: "submit" }, t("save_apply")),
        !fresh ? C.dangerButton(t("delete"), () => C.submit(box,
          () => CTI.api("DELETE", `/api/v1/ivr/schedules/${encodeURIComponent(name)}`), saved)) : null) : null,
      box);
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const schedName = fresh ? C.value(form, "name").trim() : name;
      if (!NAME_RE.test(schedName)) { C.showError(box, new Error(t("ivr_name_hint"))); return; }
      const body = {
        timezone: C.value(form, "timezone").trim(), holidays: C.value(form, "holidays"),
        subdivision: s.subdivision || "", workday_hours: C.value(form, "workday_hours"),
        extra_holidays: parseDates(C.value(form, "extra_holidays")),
        extra_workdays: parseDates(C.value(form, "extra_workdays")),
        closed: closed.get(), emergency: emergency.get(),
      };
      if (!C.checked(form, "same_holiday")) body.holiday = holiday.get();
      for (const d of DAYS) body[d] = parseSpans(C.value(form, d));
      await C.submit(box, () => CTI.api("PUT", `/api/v1/ivr/schedules/${encodeURIComponent(schedName)}`, body), saved);
    });
    return form;
  }

  async function calendarPanel(name) {
    const year = new Date().getFullYear();
    const holder = el("div", { id: "calendar" });
    const yearInput = C.number("year", year, 1970, 2200);
    async function load() {
      const data = await CTI.api("GET", `/api/v1/ivr/schedules/${encodeURIComponent(name)}/calendar?year=${yearInput.value}`);
      holder.replaceChildren(el("table", {}, el("thead", {}, el("tr", {},
        ["date", "kind", "what", "source"].map((k) => el("th", {}, t(k))))),
        el("tbody", {}, data.days.map((d) => el("tr", { dataset: { date: d.date, kind: d.kind } },
          el("td", {}, d.date), el("td", {}, el("span", { class: "pill " + d.kind }, t("day_" + d.kind))),
          el("td", { class: "text" }, d.name), el("td", {}, d.source === "site" ? t("site") : d.source))))));
    }
    yearInput.addEventListener("change", () => load().catch(() => {}));
    await load();
    return C.panel(t("calendar") + " " + name, el("div", { class: "row" }, C.field(t("year"), yearInput)), holder);
  }

  async function render(view) {
    const [{ schedules }, ctx] = await Promise.all([CTI.api("GET", "/api/v1/ivr/schedules"), IvrUi.context()]);
    view.append(C.panel(t("hours_now"), el("p", { class: "hint" }, t("override_hint")),
      schedules.length ? el("div", { id: "schedule-states" }, schedules.map(statePanel))
                       : el("p", { class: "muted" }, t("no_schedules"))));
    const editor = el("div", { id: "schedule-editor" });
    async function open(name) {
      const s = name ? ctx.doc.schedules[name] : null;
      editor.replaceChildren(C.panel(name ? t("hours") + " " + name : t("new_schedule"),
        scheduleForm(ctx, name, s, () => C.route())));
      if (name) editor.append(await calendarPanel(name));
    }
    view.append(C.panel(t("hours"), el("div", { class: "row" },
      ...ctx.schedules.map((n) => C.button(n, () => open(n), "item", { dataset: { schedule: n } })),
      C.isAdmin() ? C.button(t("new_schedule"), () => open(null), "primary", { id: "new-schedule" }) : null)), editor);
  }

  C.section({ id: "hours", group: "routing", title: "hours", role: "supervisor", render });
})();
