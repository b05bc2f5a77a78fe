// Queues: strategy, timers, waiting callers' announcements, overflow, service targets, and
// members with their penalties. Saving writes the store and reloads app_queue at once
// (calls in progress are not touched). API: /api/v1/acd/queues[/{name}[/members]].
"use strict";

(() => {
  const C = Console, el = CTI.el, t = CTI.t;
  const STRATEGIES = ["ringall", "leastrecent", "fewestcalls", "rrmemory", "linear", "wrandom"];
  const OVERFLOW = ["", "queue", "voicemail", "callback"];
  const NAME_RE = /^[a-z0-9][a-z0-9_]{0,63}$/;

  async function render(view) {
    const [{ queues }, agents, prompts] = await Promise.all([
      CTI.api("GET", "/api/v1/acd/queues"),
      CTI.api("GET", "/api/v1/acd/agents").then((r) => r.agents),
      CTI.api("GET", "/api/v1/ivr/prompts").then((r) => r.prompts).catch(() => []),
    ]);
    const editor = el("div", { id: "queue-editor" });
    const edit = (q) => {
      editor.replaceChildren(queueForm(q, queues, prompts, () => C.route()),
                             q ? membersPanel(q, agents) : "");
      editor.scrollIntoView({ block: "nearest" });
    };
    const rows = queues.map((q) => {
      const live = q.live || { members: [], entries: [] };
      return el("tr", { dataset: { queue: q.name } },
        el("td", { class: "text" }, q.name),
        el("td", {}, q.strategy),
        el("td", {}, String(live.members.length)),
        el("td", {}, String(live.entries.length)),
        el("td", {}, `${q.service_level_s} s / ${q.short_abandon_s} s`),
        el("td", {}, q.overflow_action || (q.overflow_queue ? "queue" : "—")),
        el("td", {}, C.button(C.isAdmin() ? t("edit") : t("view"), () => edit(q), "edit")));
    });
    view.append(C.panel(t("queues"),
      el("table", { id: "queues-table" },
        el("thead", {}, el("tr", {}, ["name", "strategy", "members_live", "waiting", "sl_short",
                                      "overflow", "actions"].map((k) => el("th", {}, t(k))))),
        el("tbody", {}, rows)),
      C.isAdmin() ? el("div", { class: "actions" },
        C.button(t("new_queue"), () => edit(null), "primary", { id: "new-queue" })) : null));
    view.append(editor);
  }

  function num(label, name, q, lo, hi, hint) {
    return C.field(label, C.number(name, q[name], lo, hi), hint);
  }

  function queueForm(q, queues, prompts, saved) {
    const fresh = !q;
    q = q || { strategy: "rrmemory", timeout_s: 15, retry_s: 2, wrapup_s: 0, max_wait_s: 300,
               max_len: 0, join_empty: true, leave_empty: false, music_class: "default",
               announce_position: false, announce_holdtime: false, announce_frequency_s: 0,
               service_level_s: 20, short_abandon_s: 5, overflow_after_s: null, overflow_queue: "",
               owner_ring_s: 0, overflow_action: "", overflow_mailbox: "", callback_key: "",
               periodic_announce: "", periodic_announce_s: 0 };
    const box = C.errorBox();
    const others = queues.filter((x) => x.name !== q.name).map((x) => [x.name, x.name]);
    const announce = [["", t("none")], ...prompts.map((p) => [p.playable, `${p.name} (${t("prompt_" + p.kind)})`])];
    if (q.periodic_announce && !announce.some((a) => a[0] === q.periodic_announce)) {
      announce.push([q.periodic_announce, q.periodic_announce]);
    }
    const form = el("form", { id: "queue-form" },
      el("div", { class: "fields" },
        C.field(t("name"), C.input("name", q.name || "", { required: true, maxlength: 64, disabled: !fresh }),
                t("queue_name_hint"))),
      el("fieldset", {}, el("legend", {}, t("routing")), el("div", { class: "fields" },
        C.field(t("strategy"), C.select("strategy", STRATEGIES.map((s) => [s, t("strategy_" + s)]), q.strategy)),
        num(t("ring_timeout"), "timeout_s", q, 1, 600, t("seconds")),
        num(t("retry"), "retry_s", q, 0, 600, t("seconds")),
        num(t("wrapup"), "wrapup_s", q, 0, 3600, t("wrapup_hint")),
        num(t("max_len"), "max_len", q, 0, 10000, t("max_len_hint")),
        C.check("join_empty", t("join_empty"), q.join_empty),
        C.check("leave_empty", t("leave_empty"), q.leave_empty))),
      el("fieldset", {}, el("legend", {}, t("waiting_callers")), el("div", { class: "fields" },
        num(t("max_wait"), "max_wait_s", q, 1, 86400, t("seconds")),
        C.field(t("music_class"), C.input("music_class", q.music_class, { maxlength: 64 })),
        C.check("announce_position", t("announce_position"), q.announce_position),
        C.check("announce_holdtime", t("announce_holdtime"), q.announce_holdtime),
        num(t("announce_frequency"), "announce_frequency_s", q, 0, 3600, t("zero_never")),
        C.field(t("periodic_announce"), C.select("periodic_announce", announce, q.periodic_announce),
                t("periodic_announce_hint")),
        num(t("periodic_every"), "periodic_announce_s", q, 0, 3600, t("zero_never")),
        C.field(t("callback_key"), C.select("callback_key",
          [["", t("none")], ..."0123456789".split("").map((d) => [d, d])], q.callback_key)))),
      el("fieldset", {}, el("legend", {}, t("overflow")), el("div", { class: "fields" },
        C.field(t("overflow_action"), C.select("overflow_action",
          OVERFLOW.map((o) => [o, t("overflow_" + (o || "none"))]), q.overflow_action)),
        C.field(t("overflow_after"), C.number("overflow_after_s", q.overflow_after_s, 0, 86400),
                t("overflow_after_hint")),
        C.field(t("overflow_queue"), C.select("overflow_queue", [["", t("none")], ...others], q.overflow_queue)),
        C.field(t("overflow_mailbox"), C.input("overflow_mailbox", q.overflow_mailbox, { maxlength: 20 })))),
      el("fieldset", {}, el("legend", {}, t("targets")), el("div", { class: "fields" },
        num(t("service_level"), "service_level_s", q, 1, 3600, t("service_level_hint")),
        num(t("short_abandon"), "short_abandon_s", q, 0, 600, t("short_abandon_hint")),
        num(t("owner_ring"), "owner_ring_s", q, 0, 600, t("owner_ring_hint")))),
      C.isAdmin() ? el("div", { class: "actions" },
        el("button", { type: "submit" }, t("save_apply")),
        !fresh ? C.dangerButton(t("delete"), () => C.submit(box,
          () => CTI.api("DELETE", `/api/v1/acd/queues/${encodeURIComponent(q.name)}`), saved),
          { id: "delete-queue" }) : null,
        C.button(t("cancel"), () => form.closest("#queue-editor").replaceChildren())) : null,
      box);
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const name = fresh ? C.value(form, "name").trim() : q.name;
      if (!NAME_RE.test(name)) { C.showError(box, new Error(t("queue_name_hint"))); return; }
      const body = {
        strategy: C.value(form, "strategy"), music_class: C.value(form, "music_class"),
        overflow_action: C.value(form, "overflow_action"), overflow_queue: C.value(form, "overflow_queue"),
        overflow_mailbox: C.value(form, "overflow_mailbox").trim(), callback_key: C.value(form, "callback_key"),
        periodic_announce: C.value(form, "periodic_announce"),
        overflow_after_s: C.intValue(form, "overflow_after_s"),
      };
      for (const k of ["timeout_s", "retry_s", "wrapup_s", "max_len", "max_wait_s", "announce_frequency_s",
                       "periodic_announce_s", "service_level_s", "short_abandon_s", "owner_ring_s"]) {
        body[k] = C.intValue(form, k) ?? 0;
      }
      for (const k of ["join_empty", "leave_empty", "announce_position", "announce_holdtime"]) {
        body[k] = C.checked(form, k);
      }
      await C.submit(box, () => CTI.api("PUT", `/api/v1/acd/queues/${encodeURIComponent(name)}`, body),
        async (res) => {
          if (!res.applied) alertApplied(box);
          else await saved();
        });
    });
    return C.panel(fresh ? t("new_queue") : t("queue") + " " + q.name, form);
  }

  function alertApplied(box) {
    box.textContent = t("saved_not_applied");
  }

  function membersPanel(q, agents) {
    const box = C.errorBox(), done = C.noticeBox();
    const table = el("tbody", {});
    const holder = C.panel(t("members") + " " + q.name,
      el("p", { class: "hint" }, t("members_hint")),
      el("table", { id: "members-table" },
        el("thead", {}, el("tr", {}, ["member", "agent", "display_name", "penalty", "live_state"].map((k) => el("th", {}, t(k))))),
        table),
      C.isAdmin() ? el("div", { class: "actions" },
        C.button(t("save_members"), save, "primary", { id: "save-members" })) : null,
      box, done);
    async function load() {
      const { members } = await CTI.api("GET", `/api/v1/acd/queues/${encodeURIComponent(q.name)}/members`);
      const by = Object.fromEntries(members.map((m) => [m.agent, m]));
      table.replaceChildren(...agents.map((a) => {
        const m = by[a.name];
        const box = el("input", { type: "checkbox", name: "member" });
        box.checked = !!m;
        box.disabled = !C.isAdmin();
        const pen = C.number("penalty", m ? m.penalty : 0, 0, 1000);
        pen.disabled = !C.isAdmin();
        const live = m && m.live ? (m.live.paused ? t("paused") : m.live.state) : "—";
        return el("tr", { dataset: { agent: a.name } }, el("td", {}, box), el("td", { class: "text" }, a.name),
                  el("td", { class: "text" }, a.display_name), el("td", {}, pen), el("td", {}, live));
      }));
    }
    async function save() {
      const members = {};
      for (const row of table.querySelectorAll("tr")) {
        if (row.querySelector('[name="member"]').checked) members[row.dataset.agent] = C.intValue(row, "penalty") ?? 0;
      }
      await C.submit(box, () => CTI.api("PUT", `/api/v1/acd/queues/${encodeURIComponent(q.name)}/members`, { members }),
        async () => { C.notice(done, t("saved")); await load(); });
    }
    load().catch((err) => C.showError(box, err));
    return holder;
  }

  C.section({ id: "queues", group: "routing", title: "queues", role: "supervisor", render });
})();
