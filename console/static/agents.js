// Agents: who they are, the devices they log in on, their skills (queue -> penalty), and
// their status (a supervisor may log an agent in or out). API: /api/v1/acd/agents.
"use strict";

(() => {
  const C = Console, el = CTI.el, t = CTI.t;
  const DEVICE_KINDS = ["sip", "mobile", "local"];

  async function render(view) {
    const [{ agents }, { queues }, phones] = await Promise.all([
      CTI.api("GET", "/api/v1/acd/agents"), CTI.api("GET", "/api/v1/acd/queues"),
      CTI.api("GET", "/api/v1/phones").then((r) => r.phones).catch(() => [])]);
    const queueNames = queues.map((q) => q.name);
    const box = C.errorBox(), done = C.noticeBox();
    const editor = el("div", { id: "agent-editor" });

    function edit(agent) {
      editor.replaceChildren(agentForm(agent, queueNames, async () => { await C.route(); }));
      if (agent) phonesPanel(agent).then((p) => { if (p) editor.append(p); });
      editor.scrollIntoView({ block: "nearest" });
    }

    async function setStatus(name, status) {
      await C.submit(box, () => CTI.api("POST", `/api/v1/acd/agents/${encodeURIComponent(name)}/status`,
                                         { status }),
        async () => { C.notice(done, t("saved")); await C.route(); });
    }

    const rows = agents.map((a) => el("tr", { dataset: { agent: a.name } },
      el("td", { class: "text agent-name" }, a.name),
      el("td", { class: "text" }, a.display_name),
      el("td", {}, el("span", { class: "pill " + a.status }, t("status_" + a.status)),
        a.reason ? " " + a.reason : ""),
      el("td", { class: "text devices" },
        // provisioned phones ring first, then the agent's other devices
        [...phones.filter((p) => p.agent === a.name).map((p) =>
          `${t("phone_" + p.kind)} ${p.name} (${p.registered ? t("registered") : t("not_registered")})`),
         ...a.devices.map((d) => `${d.kind}:${d.address}`)].join(", ")),
      el("td", { class: "text" }, Object.entries(a.skills).map(([q, p]) => `${q} (${p})`).join(", ")),
      el("td", {}, el("div", { class: "row" },
        C.isAdmin() ? C.button(t("edit"), () => edit(a), "", { class: "edit" }) : null,
        a.status === "logged_out"
          ? C.button(t("log_in"), () => setStatus(a.name, "available"), "login")
          : C.button(t("log_out"), () => setStatus(a.name, "logged_out"), "logout")))));

    view.append(C.panel(t("agents"),
      el("table", { id: "agents-table" },
        el("thead", {}, el("tr", {}, ["name", "display_name", "status", "devices", "skills", "actions"]
          .map((k) => el("th", {}, t(k))))),
        el("tbody", {}, rows.length ? rows : el("tr", {}, el("td", { colspan: 6, class: "muted" }, t("none"))))),
      C.isAdmin() ? el("div", { class: "actions" },
        C.button(t("new_agent"), () => edit(null), "primary", { id: "new-agent" })) : null,
      box, done));
    view.append(editor);
  }

  function deviceRow(d) {
    return el("div", { class: "row device" },
      C.select("kind", DEVICE_KINDS.map((k) => [k, t("device_" + k)]), d ? d.kind : "local"),
      C.input("address", d ? d.address : "", { placeholder: t("device_address"), maxlength: 64 }),
      C.button("✕", (ev) => ev.target.closest(".device").remove(), "", { title: t("remove") }));
  }

  function skillRow(queues, queue, penalty) {
    return el("div", { class: "row skill" },
      C.select("queue", queues, queue || queues[0]),
      C.number("penalty", penalty ?? 0, 0, 1000),
      C.button("✕", (ev) => ev.target.closest(".skill").remove(), "", { title: t("remove") }));
  }

  function agentForm(agent, queues, saved) {
    const box = C.errorBox();
    const devices = el("div", { class: "devices" }, (agent ? agent.devices : []).map(deviceRow));
    const skills = el("div", { class: "skills" },
      Object.entries(agent ? agent.skills : {}).map(([q, p]) => skillRow(queues, q, p)));
    const form = el("form", { id: "agent-form" },
      el("div", { class: "fields" },
        C.field(t("name"), C.input("name", agent ? agent.name : "",
          { required: true, maxlength: 64, disabled: !!agent }), t("agent_name_hint")),
        C.field(t("display_name"), C.input("display_name", agent ? agent.display_name : "", { maxlength: 128 }))),
      el("fieldset", {}, el("legend", {}, t("devices")), devices,
        C.button(t("add_device"), () => devices.append(deviceRow(null)), "", { id: "add-device" }),
        el("p", { class: "hint" }, t("devices_hint"))),
      el("fieldset", {}, el("legend", {}, t("skills")), skills,
        C.button(t("add_skill"), () => skills.append(skillRow(queues)), "", { id: "add-skill" }),
        el("p", { class: "hint" }, t("skills_hint"))),
      el("div", { class: "actions" },
        el("button", { type: "submit" }, t("save")),
        agent ? C.dangerButton(t("delete"), async () => {
          await C.submit(box, () => CTI.api("DELETE", `/api/v1/acd/agents/${encodeURIComponent(agent.name)}`), saved);
        }, { id: "delete-agent" }) : null,
        C.button(t("cancel"), () => form.closest("#agent-editor").replaceChildren())),
      box);
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const name = agent ? agent.name : C.value(form, "name").trim();
      const body = {
        display_name: C.value(form, "display_name"),
        devices: [...devices.querySelectorAll(".device")].map((r) => ({
          kind: r.querySelector('[name="kind"]').value, address: r.querySelector('[name="address"]').value.trim() })),
        skills: Object.fromEntries([...skills.querySelectorAll(".skill")].map((r) => [
          r.querySelector('[name="queue"]').value, C.intValue(r, "penalty") ?? 0])),
      };
      if (!name) { C.showError(box, new Error(t("name_required"))); return; }
      await C.submit(box, () => CTI.api("PUT", `/api/v1/acd/agents/${encodeURIComponent(name)}`, body), saved);
    });
    return C.panel(agent ? t("edit_agent") + " " + agent.name : t("new_agent"), form);
  }

  // --- phones (the phones feature provisions PJSIP endpoints: /api/v1/phones) -------------
  function credentialsBox(c) {
    const rows = [["username", c.username], ["password", c.password], ["domain", c.domain],
                  ["realm", c.realm], ["ws_url", c.ws_url]];
    if (c.registrar) {
      rows.push(["registrar", [c.registrar.udp && `udp ${c.registrar.udp}`, c.registrar.tcp && `tcp ${c.registrar.tcp}`,
                               c.registrar.tls && `tls ${c.registrar.tls}`].filter(Boolean).join(", ")]);
    }
    return el("div", { class: "credentials" },
      el("p", {}, c.password ? t("phone_credentials_once") : t("phone_browser_registers")),
      el("table", {}, el("tbody", {}, rows.filter((r) => r[1]).map(([k, v]) =>
        el("tr", { dataset: { cred: k } }, el("th", {}, t("cred_" + k)),
           el("td", { class: "secret" }, String(v)))))));
  }

  async function phonesPanel(agent) {
    let phones;
    try { phones = (await CTI.api("GET", "/api/v1/phones")).phones; }
    catch (err) { if (err.status === 404) return null; throw err; }  // no phones feature here
    const mine = phones.filter((p) => p.agent === agent.name);
    const box = C.errorBox(), shown = el("div", { id: "phone-credentials" });
    const reload = async () => { const p = await phonesPanel(agent); if (p) holder.replaceWith(p); };
    const rows = mine.map((p) => el("tr", { dataset: { phone: p.name } },
      el("td", { class: "text" }, p.name), el("td", {}, t("phone_" + p.kind)), el("td", { class: "text" }, p.label),
      el("td", {}, el("span", { class: "pill " + (p.registered ? "available" : "logged_out") },
        p.registered ? t("registered") : t("not_registered"))),
      el("td", {}, el("div", { class: "row" },
        C.button(t("new_credentials"), () => C.submit(box,
          () => CTI.api("POST", `/api/v1/phones/${encodeURIComponent(p.name)}/rotate`),
          (r) => shown.replaceChildren(credentialsBox(r.credentials))), "rotate"),
        C.dangerButton(t("remove"), () => C.submit(box,
          () => CTI.api("DELETE", `/api/v1/phones/${encodeURIComponent(p.name)}`), reload))))));
    const form = el("form", { id: "phone-form", class: "row" },
      C.field(t("phone_kind"), C.select("kind", [["webrtc", t("phone_webrtc")], ["sip", t("phone_sip")]], "webrtc")),
      C.field(t("phone_label"), C.input("label", "", { maxlength: 64 })),
      el("button", { type: "submit" }, t("add_phone")));
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      await C.submit(box, () => CTI.api("POST", "/api/v1/phones",
        { agent: agent.name, kind: C.value(form, "kind"), label: C.value(form, "label") }),
        async (r) => { await reload(); const s = document.getElementById("phone-credentials");
                       if (s) s.replaceChildren(credentialsBox(r.credentials)); });
    });
    const holder = C.panel(t("phones") + " " + agent.name,
      el("table", { id: "phones-table" }, el("thead", {}, el("tr", {},
        ["name", "phone_kind", "phone_label", "status", ""].map((k) => el("th", {}, k ? t(k) : "")))),
        el("tbody", {}, rows.length ? rows : el("tr", {}, el("td", { colspan: 5, class: "muted" }, t("no_phones"))))),
      C.isAdmin() ? form : null, shown, box);
    return holder;
  }

  C.section({ id: "agents", group: "people", title: "agents", role: "supervisor", render });
})();
