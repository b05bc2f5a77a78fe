// Call handling settings: dispositions (wrap-up codes agents pick), recording policy and
// retention per queue, and webhook receivers (external CRMs).
// APIs: /api/v1/dispositions, /api/v1/recordings/policy, /api/v1/webhooks/targets.
"use strict";

(() => {
  const C = Console, el = CTI.el, t = CTI.t;

  // --- dispositions -----------------------------------------------------------------------
  async function dispositions(view) {
    const { dispositions } = await CTI.api("GET", "/api/v1/dispositions");
    const box = C.errorBox(), done = C.noticeBox();
    const body = el("tbody", {});
    function row(d) {
      const tr = el("tr", { class: "disposition" },
        el("td", {}, C.input("code", d.code, { maxlength: 64, required: true, pattern: "[a-z0-9][a-z0-9_.\\-]{0,63}" })),
        el("td", {}, C.input("label_en", d.label_en, { maxlength: 128, required: true })),
        el("td", {}, C.input("label_zh", d.label_zh, { maxlength: 128, required: true })),
        el("td", {}, el("div", { class: "row" },
          C.button("↑", () => tr.previousElementSibling && tr.previousElementSibling.before(tr), "", { title: t("up") }),
          C.button("↓", () => tr.nextElementSibling && tr.nextElementSibling.after(tr), "", { title: t("down") }),
          C.button("✕", () => tr.remove(), "", { title: t("remove") }))));
      return tr;
    }
    body.append(...dispositions.map(row));
    const form = el("form", { id: "dispositions-form" },
      el("table", {}, el("thead", {}, el("tr", {}, ["code", "label_en", "label_zh", ""].map((k) => el("th", {}, k ? t(k) : "")))),
        body),
      C.isAdmin() ? el("div", { class: "actions" },
        C.button(t("add"), () => body.append(row({ code: "", label_en: "", label_zh: "" })), "", { id: "add-disposition" }),
        el("button", { type: "submit" }, t("save"))) : null,
      box, done);
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const items = [...body.querySelectorAll("tr")].map((tr) => ({
        code: C.value(tr, "code").trim(), label_en: C.value(tr, "label_en"), label_zh: C.value(tr, "label_zh") }));
      await C.submit(box, () => CTI.api("PUT", "/api/v1/dispositions", { dispositions: items }),
        () => C.notice(done, t("saved")));
    });
    view.append(C.panel(t("dispositions"), el("p", { class: "hint" }, t("dispositions_hint")), form));
  }

  // --- recording policy -------------------------------------------------------------------
  async function recording(view) {
    const [policy, queues] = await Promise.all([
      CTI.api("GET", "/api/v1/recordings/policy"),
      CTI.api("GET", "/api/v1/acd/queues").then((r) => r.queues.map((q) => q.name))]);
    const box = C.errorBox(), done = C.noticeBox();
    const by = Object.fromEntries(policy.queues.map((q) => [q.queue, q]));
    const names = [...new Set([...queues, ...Object.keys(by)])].sort();
    const policies = [["", t("inherit")], ["always", t("policy_always")], ["never", t("policy_never")],
                      ["on_demand", t("policy_on_demand")]];
    const rows = names.map((name) => {
      const q = by[name] || { policy: policy.default.policy, retention_days: policy.default.retention_days,
                              file: null, console: null };
      const mine = q.console || {};
      const tr = el("tr", { dataset: { queue: name } },
        el("td", { class: "text" }, name),
        el("td", {}, t("policy_" + q.policy)), el("td", {}, String(q.retention_days)),
        el("td", {}, C.select("policy", policies, mine.policy || "", { disabled: !C.isAdmin() })),
        el("td", {}, C.number("retention_days", mine.retention_days ?? "", 1, 36500)),
        el("td", {}, C.isAdmin() ? el("div", { class: "row" },
          C.button(t("save"), async () => {
            const body = { policy: C.value(tr, "policy") || null, retention_days: C.intValue(tr, "retention_days") };
            await C.submit(box, () => CTI.api("PUT", `/api/v1/recordings/policy/queues/${encodeURIComponent(name)}`, body),
              async () => { C.notice(done, t("saved")); await C.route(); });
          }, "save"),
          q.console ? C.button(t("use_file"), () => C.submit(box,
            () => CTI.api("DELETE", `/api/v1/recordings/policy/queues/${encodeURIComponent(name)}`), () => C.route()))
            : null) : null));
      return tr;
    });
    const d = policy.default;
    view.append(C.panel(t("recording_policy"),
      el("p", {}, `${t("default_policy")}: ${t("policy_" + d.policy)} · ${t("outbound_policy")}: ` +
        `${t("policy_" + d.outbound_policy)} · ${t("retention")}: ${d.retention_days} ${t("days")}`),
      el("p", { class: "hint" }, t("recording_policy_hint")),
      el("table", { id: "policy-table" }, el("thead", {}, el("tr", {},
        ["queue", "policy_now", "retention_now", "policy_set", "retention_set", ""].map((k) => el("th", {}, k ? t(k) : "")))),
        el("tbody", {}, rows)), box, done));
  }

  // --- webhook receivers ------------------------------------------------------------------
  const EVENTS = ["call.ringing", "call.answered", "call.ended", "interaction.updated", "lead.assigned"];

  async function webhooks(view) {
    if (!C.isAdmin()) return;
    const { targets } = await CTI.api("GET", "/api/v1/webhooks/targets");
    const box = C.errorBox(), done = C.noticeBox();
    const secretBox = el("div", { id: "webhook-secret" });
    function showSecret(secret) {
      secretBox.replaceChildren(el("p", {}, t("secret_once")), el("p", { class: "secret" }, secret));
    }
    const rows = targets.map((w) => el("tr", { dataset: { id: w.id ?? "", source: w.source } },
      el("td", { class: "text" }, w.url), el("td", {}, w.events.join(", ")),
      el("td", {}, t("source_" + w.source)), el("td", {}, w.secret_hint),
      el("td", {}, w.enabled ? t("enabled") : t("disabled")),
      el("td", {}, w.source === "console" ? el("div", { class: "row" },
        C.button(w.enabled ? t("disable") : t("enable"), () => C.submit(box,
          () => CTI.api("PATCH", `/api/v1/webhooks/targets/${w.id}`, { enabled: !w.enabled }), () => C.route())),
        C.button(t("rotate_secret"), () => C.submit(box,
          () => CTI.api("POST", `/api/v1/webhooks/targets/${w.id}/rotate-secret`), (r) => showSecret(r.secret))),
        C.dangerButton(t("delete"), () => C.submit(box,
          () => CTI.api("DELETE", `/api/v1/webhooks/targets/${w.id}`), () => C.route()))) : t("in_config_file"))));
    const form = el("form", { id: "webhook-form" },
      el("div", { class: "fields" },
        C.field(t("url"), C.input("url", "", { type: "url", required: true, maxlength: 2048,
                                               placeholder: "https://crm.example/hooks/cti" })),
        C.field(t("secret"), C.input("secret", "", { maxlength: 256, autocomplete: "off" }), t("secret_hint"))),
      el("div", { class: "row" }, EVENTS.map((e) => C.check("ev:" + e, e, true))),
      el("div", { class: "actions" }, el("button", { type: "submit" }, t("add"))));
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const body = { url: C.value(form, "url").trim(), events: EVENTS.filter((e) => C.checked(form, "ev:" + e)) };
      const secret = C.value(form, "secret");
      if (secret) body.secret = secret;
      await C.submit(box, () => CTI.api("POST", "/api/v1/webhooks/targets", body), async (r) => {
        await C.route();
        // the secret is answered once: show it after the list is redrawn
        const holder = document.getElementById("webhook-secret");
        if (holder) holder.replaceChildren(el("p", {}, t("secret_once")), el("p", { class: "secret" }, r.secret));
      });
    });
    view.append(C.panel(t("webhooks"), el("p", { class: "hint" }, t("webhooks_hint")),
      el("table", { id: "webhooks-table" }, el("thead", {}, el("tr", {},
        ["url", "events", "source", "secret", "state", ""].map((k) => el("th", {}, k ? t(k) : "")))),
        el("tbody", {}, rows.length ? rows : el("tr", {}, el("td", { colspan: 6, class: "muted" }, t("none"))))),
      secretBox, el("h3", {}, t("new_webhook")), form, box, done));
  }

  C.section({ id: "dispositions", group: "calls", title: "dispositions", role: "supervisor", render: dispositions });
  C.section({ id: "recording", group: "calls", title: "recording_policy", role: "supervisor", render: recording });
  C.section({ id: "webhooks", group: "calls", title: "webhooks", role: "admin", render: webhooks });
})();
