// Users and roles (admins): people who sign in, their role, the agent they are, the
// queues/teams a supervisor sees; password resets, disabling (their sessions end at once),
// second factor removal; teams; API tokens for integrations (secret shown once).
// API: /api/v1/users, /api/v1/teams, /api/v1/tokens; the daily digest's address of a person
// (/api/v1/digest/addresses, messaging: the field is absent when messaging is not loaded).
"use strict";

(() => {
  const C = Console, el = CTI.el, t = CTI.t;
  const ROLES = ["agent", "supervisor", "admin"];

  function newPassword() {
    const alphabet = "ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
    const bytes = new Uint8Array(16);
    crypto.getRandomValues(bytes);
    return [...bytes].map((b) => alphabet[b % alphabet.length]).join("");
  }
  function list(text) { return text.split(/[,，\s]+/).map((x) => x.trim()).filter(Boolean); }
  // What a person sees (cti.accounts): queues null is no list of their own, [] an empty
  // one; in no team, null sees every queue and agent, [] none (a supervisor removed from
  // their last team gets []: a removal never widens what they see).
  function scopeText(u) {
    if (u.role === "admin") return t("scope_everything");
    const queues = u.queues || [], teams = u.teams || [];
    if (u.queues === null && !teams.length) return t("all_queues");
    const parts = [];
    if (queues.length) parts.push(queues.join(", "));
    if (teams.length) parts.push(t("teams") + ": " + teams.join(", "));
    return parts.length ? parts.join(" · ") : t("no_queue");
  }

  function userForm(user, agents, teams, saved, digest) {
    const fresh = !user;
    const box = C.errorBox();
    const secret = el("div", {});
    const password = C.input("password", "", { maxlength: 256, autocomplete: "new-password" });
    // "all" sends queues null, "list" the list (empty: none of its own): never one for the other
    const mode = C.select("scope_mode", [["list", t("scope_list")], ["all", t("scope_all")]],
                          user && user.queues !== null ? "list" : "all");
    const queuesInput = C.input("queues", user && user.queues ? user.queues.join(", ") : "",
                                { disabled: mode.value === "all" });
    mode.addEventListener("change", () => { queuesInput.disabled = mode.value === "all"; });
    const form = el("form", { id: "user-form" },
      el("div", { class: "fields" },
        C.field(t("login"), C.input("login", user ? user.login : "", { required: true, maxlength: 64,
                                                                      disabled: !fresh })),
        C.field(t("display_name"), C.input("display_name", user ? user.display_name : "", { maxlength: 128 })),
        C.field(t("role"), C.select("role", ROLES.map((r) => [r, t("role_" + r)]), user ? user.role : "agent")),
        C.field(t("agent"), C.select("agent", [["", t("none")], ...agents.map((a) => [a, a])],
                                     user ? user.agent || "" : ""), t("user_agent_hint")),
        C.field(t("scope_mode"), mode),
        C.field(t("scope_queues"), queuesInput, t("scope_hint")),
        C.field(t("teams"), C.input("teams", user ? (user.teams || []).join(", ") : ""),
                teams.length ? teams.join(", ") : t("none")),
        digest ? C.field(t("digest_email"), C.input("digest_email", user ? digest[user.login] || "" : "",
                                                    { type: "email", maxlength: 320 }), t("digest_hint")) : null,
        fresh ? C.field(t("password"), el("div", { class: "row" }, password,
          C.button(t("generate"), () => { password.value = newPassword(); secret.replaceChildren(
            el("p", { class: "secret" }, password.value)); }, "", { id: "gen-password" }))) : null,
        fresh ? C.check("must_change_password", t("must_change"), true) : null),
      secret,
      el("div", { class: "actions" }, el("button", { type: "submit" }, t("save")),
        C.button(t("cancel"), () => form.closest("#user-editor").replaceChildren())),
      box);
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const body = {
        display_name: C.value(form, "display_name"), role: C.value(form, "role"),
        agent: C.value(form, "agent") || null,
        queues: mode.value === "all" ? null : list(queuesInput.value),
        teams: list(C.value(form, "teams")),
      };
      const login = fresh ? C.value(form, "login").trim() : user.login;
      const email = digest ? C.value(form, "digest_email").trim() : null;
      const withDigest = (r) => (digest && email !== (digest[login] || "")
        ? CTI.api("PUT", `/api/v1/digest/addresses/${encodeURIComponent(login)}`, { email }).then(() => r)
        : r);
      if (fresh) {
        body.login = login;
        body.password = password.value;
        body.must_change_password = C.checked(form, "must_change_password");
        await C.submit(box, () => CTI.api("POST", "/api/v1/users", body).then(withDigest), saved);
      } else {
        await C.submit(box, () => CTI.api("PATCH", `/api/v1/users/${user.id}`, body).then(withDigest), saved);
      }
    });
    return C.panel(fresh ? t("new_user") : t("user") + " " + user.login, form);
  }

  function usersPanel(users, agents, teams, editor, digest) {
    const box = C.errorBox(), done = C.noticeBox();
    const act = (method, path, body, msg) => C.submit(box, () => CTI.api(method, path, body),
      async (r) => { if (msg) msg(r); else { C.notice(done, t("saved")); await C.route(); } });
    const rows = users.map((u) => el("tr", { dataset: { login: u.login } },
      el("td", { class: "text" }, u.login), el("td", { class: "text" }, u.display_name),
      el("td", {}, t("role_" + u.role)), el("td", { class: "text" }, u.agent || ""),
      el("td", { class: "text scope" }, scopeText(u)),
      el("td", {}, el("span", { class: "pill " + (u.disabled ? "logged_out" : "available") },
        u.disabled ? t("disabled") : t("enabled")), u.totp_enabled ? " 2FA" : ""),
      el("td", {}, el("div", { class: "row" },
        C.button(t("edit"), () => editor.replaceChildren(userForm(u, agents, teams, () => C.route(), digest)), "edit"),
        C.button(t("reset_password"), () => {
          const pw = newPassword();
          return act("POST", `/api/v1/users/${u.id}/password`, { password: pw, must_change_password: true },
            () => { done.replaceChildren(el("p", {}, t("new_password_for") + " " + u.login + ":"),
                                         el("p", { class: "secret" }, pw)); });
        }, "reset"),
        u.disabled ? C.button(t("enable"), () => act("POST", `/api/v1/users/${u.id}/enable`), "enable")
                   : C.dangerButton(t("disable"), () => act("POST", `/api/v1/users/${u.id}/disable`),
                                    { class: "danger disable" }),
        C.button(t("sign_out_everywhere"), () => act("POST", `/api/v1/users/${u.id}/sign-out`)),
        u.totp_enabled ? C.dangerButton(t("remove_2fa"), () => act("DELETE", `/api/v1/users/${u.id}/totp`)) : null,
        C.dangerButton(t("delete"), () => act("DELETE", `/api/v1/users/${u.id}`))))));
    return C.panel(t("users"),
      el("table", { id: "users-table" }, el("thead", {}, el("tr", {},
        ["login", "display_name", "role", "agent", "scope", "state", "actions"].map((k) => el("th", {}, t(k))))),
        el("tbody", {}, rows)),
      el("div", { class: "actions" }, C.button(t("new_user"), () =>
        editor.replaceChildren(userForm(null, agents, teams, () => C.route(), digest)), "primary",
        { id: "new-user" })),
      box, done);
  }

  function teamsPanel(teams, queues) {
    const box = C.errorBox();
    const rows = teams.map((tm) => el("tr", { dataset: { team: tm.name } },
      el("td", { class: "text" }, tm.name), el("td", { class: "text" }, (tm.queues || []).join(", ")),
      el("td", { class: "text" }, (tm.members || []).join(", ")),
      el("td", {}, C.dangerButton(t("delete"), () => C.submit(box,
        () => CTI.api("DELETE", `/api/v1/teams/${encodeURIComponent(tm.name)}`), () => C.route())))));
    const form = el("form", { id: "team-form", class: "row" },
      C.field(t("name"), C.input("name", "", { required: true, maxlength: 64 })),
      C.field(t("queues"), C.input("queues", "", { placeholder: queues.join(", ") })),
      C.field(t("team_members"), C.input("members", "", { placeholder: "login1, login2" })),
      el("button", { type: "submit" }, t("save")));
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const name = C.value(form, "name").trim();
      await C.submit(box, () => CTI.api("PUT", `/api/v1/teams/${encodeURIComponent(name)}`,
        { queues: list(C.value(form, "queues")), members: list(C.value(form, "members")) }), () => C.route());
    });
    return C.panel(t("teams"), el("p", { class: "hint" }, t("teams_hint")),
      el("table", { id: "teams-table" }, el("thead", {}, el("tr", {},
        ["name", "queues", "team_members", ""].map((k) => el("th", {}, k ? t(k) : "")))), el("tbody", {}, rows)),
      form, box);
  }

  function tokensPanel(tokens) {
    const box = C.errorBox();
    const secret = el("div", { id: "token-secret" });
    const rows = tokens.map((k) => el("tr", { dataset: { token: k.id } },
      el("td", { class: "text" }, k.name), el("td", {}, t("role_" + k.role)), el("td", {}, k.state),
      el("td", {}, k.expires_at ? CTI.fmtTime(k.expires_at) : t("never")),
      el("td", {}, k.state === "active" ? C.dangerButton(t("revoke"), () => C.submit(box,
        () => CTI.api("DELETE", `/api/v1/tokens/${k.id}`), () => C.route())) : null)));
    const form = el("form", { id: "token-form", class: "row" },
      C.field(t("name"), C.input("name", "", { required: true, maxlength: 128, placeholder: "crm-sync" })),
      C.field(t("role"), C.select("role", ROLES.map((r) => [r, t("role_" + r)]), "supervisor")),
      C.field(t("expires_days"), C.number("expires_days", 90, 1, 3650)),
      el("button", { type: "submit" }, t("create")));
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const days = C.intValue(form, "expires_days");
      const body = { name: C.value(form, "name").trim(), role: C.value(form, "role") };
      if (days) body.expires_at = new Date(Date.now() + days * 86400000).toISOString();
      await C.submit(box, () => CTI.api("POST", "/api/v1/tokens", body), async (r) => {
        await C.route();
        const holder = document.getElementById("token-secret");
        if (holder) holder.replaceChildren(el("p", {}, t("token_once")), el("p", { class: "secret" }, r.token));
      });
    });
    return C.panel(t("tokens"), el("p", { class: "hint" }, t("tokens_hint")),
      el("table", { id: "tokens-table" }, el("thead", {}, el("tr", {},
        ["name", "role", "state", "expires", ""].map((k) => el("th", {}, k ? t(k) : "")))), el("tbody", {}, rows)),
      secret, form, box);
  }

  async function render(view) {
    const [users, agents, teams, tokens, queues, digest] = await Promise.all([
      CTI.api("GET", "/api/v1/users").then((r) => r.users),
      CTI.api("GET", "/api/v1/acd/agents").then((r) => r.agents.map((a) => a.name)),
      CTI.api("GET", "/api/v1/teams").then((r) => r.teams),
      CTI.api("GET", "/api/v1/tokens").then((r) => r.tokens),
      CTI.api("GET", "/api/v1/acd/queues").then((r) => r.queues.map((q) => q.name)),
      // login -> address; null without messaging (404): no digest field
      CTI.api("GET", "/api/v1/digest/addresses").then(
        (r) => Object.fromEntries(r.addresses.map((a) => [a.login, a.email])),
        (e) => (e.status === 404 ? null : Promise.reject(e))),
    ]);
    const editor = el("div", { id: "user-editor" });
    view.append(usersPanel(users, agents, teams.map((x) => x.name), editor, digest), editor,
                teamsPanel(teams, queues), tokensPanel(tokens));
  }

  C.section({ id: "users", group: "people", title: "users", role: "admin", render });
})();
