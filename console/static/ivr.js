// IVR: menus (greeting, timeout, retries, options by key, fallback), prompts (text to
// speech in Chinese or English with a listen button, or an uploaded recording), digit
// collection, dialled numbers, the start menu, and every saved version (restorable).
// Every save is validated whole by the daemon and applied to the next call at once; a
// refused save lists each problem by its key. API: /api/v1/ivr/...
"use strict";

const IvrUi = (() => {
  const C = Console, el = CTI.el, t = CTI.t;
  const ACTIONS = ["queue", "menu", "collect", "extension", "external", "voicemail", "callback",
                   "repeat", "back", "operator", "hangup"];
  const NO_TARGET = ["repeat", "back", "operator", "hangup"];
  const KEYS = "1234567890*#".split("");
  const NAME_RE = /^[A-Za-z0-9_-]{1,40}$/;

  // What a page needs to build action and prompt pickers.
  async function context() {
    const [doc, prompts, queues] = await Promise.all([
      CTI.api("GET", "/api/v1/ivr/document"),
      CTI.api("GET", "/api/v1/ivr/prompts").then((r) => r.prompts),
      CTI.api("GET", "/api/v1/acd/queues").then((r) => r.queues.map((q) => q.name)),
    ]);
    const d = doc.document || {};
    return { version: doc.version, doc: d, prompts, queues,
             menus: Object.keys(d.menus || {}), collect: Object.keys(d.collect || {}),
             schedules: Object.keys(d.schedules || {}) };
  }

  function promptSelect(ctx, name, value, optional) {
    const opts = ctx.prompts.map((p) => [p.name, p.name]);
    return C.select(name, optional ? [["", t("none")], ...opts] : opts, value || "");
  }

  // An action picker: action, target (a list to pick from where there is one), prompt
  // played first. get() gives the action object the API takes.
  function actionEditor(ctx, action, opts) {
    action = action || { action: (opts && opts.first) || "queue", target: "", prompt: "" };
    const choices = (opts && opts.only) || ACTIONS;
    const kind = C.select("action", choices.map((a) => [a, t("action_" + a)]), action.action,
                          { class: "action-kind" });
    const holder = el("span", { class: "target" });
    const prompt = promptSelect(ctx, "prompt", action.prompt, true);
    prompt.classList.add("action-prompt");
    function targetControl(a, value) {
      const lists = { queue: ctx.queues, callback: ["", ...ctx.queues], menu: ctx.menus, collect: ctx.collect };
      if (lists[a]) {
        const items = lists[a].map((x) => [x, x || t("operator_queue")]);
        if (value && !lists[a].includes(value)) items.push([value, value]);
        return C.select("target", items, value, { class: "action-target" });
      }
      const hints = { extension: "1001", external: "+8613900000000", voicemail: "8000" };
      return C.input("target", value, { class: "action-target", placeholder: hints[a] || "", maxlength: 64 });
    }
    function draw(value) {
      holder.replaceChildren(NO_TARGET.includes(kind.value) ? "" : targetControl(kind.value, value));
    }
    kind.addEventListener("change", () => draw(""));
    draw(action.target);
    const node = el("span", { class: "row action" }, kind, holder,
                    el("span", { class: "hint" }, t("then_prompt")), prompt);
    return {
      node,
      get() {
        const target = holder.querySelector('[name="target"]');
        return { action: kind.value, target: target ? target.value.trim() : "", prompt: prompt.value };
      },
    };
  }

  async function save(box, method, path, body, done) {
    return C.submit(box, () => CTI.api(method, path, body), done);
  }

  // --- menus ------------------------------------------------------------------------------
  function menuEditor(ctx, name, menu, saved) {
    const fresh = !menu;
    menu = menu || { greeting: ctx.prompts[0] ? ctx.prompts[0].name : "", timeout: 5, retries: 2,
                     invalid: "", timeout_prompt: "", fallback: { action: "operator", target: "", prompt: "" },
                     options: {} };
    const box = C.errorBox();
    const options = el("tbody", {});
    const fallback = actionEditor(ctx, menu.fallback);
    function optionRow(key, action) {
      const editor = actionEditor(ctx, action);
      const row = el("tr", { class: "option" },
        el("td", {}, C.select("key", KEYS, key)), el("td", {}, editor.node),
        el("td", {}, C.button("✕", () => row.remove(), "", { title: t("remove") })));
      row.getAction = editor.get;
      return row;
    }
    for (const [k, a] of Object.entries(menu.options || {})) options.append(optionRow(k, a));
    const form = el("form", { id: "menu-form" },
      el("div", { class: "fields" },
        C.field(t("name"), C.input("name", name || "", { required: true, maxlength: 40, disabled: !fresh }),
                t("ivr_name_hint")),
        C.field(t("greeting"), promptSelect(ctx, "greeting", menu.greeting, false)),
        C.field(t("digit_timeout"), C.input("timeout", menu.timeout, { type: "number", min: 0.5, max: 60, step: 0.5 }),
                t("seconds")),
        C.field(t("retries"), C.number("retries", menu.retries, 0, 10), t("retries_hint")),
        C.field(t("invalid_prompt"), promptSelect(ctx, "invalid", menu.invalid, true)),
        C.field(t("timeout_prompt"), promptSelect(ctx, "timeout_prompt", menu.timeout_prompt, true))),
      el("fieldset", {}, el("legend", {}, t("options")),
        el("table", { class: "options" },
          el("thead", {}, el("tr", {}, el("th", {}, t("key")), el("th", {}, t("destination")), el("th", {}))),
          options),
        C.button(t("add_option"), () => {
          const used = [...options.querySelectorAll('[name="key"]')].map((s) => s.value);
          options.append(optionRow(KEYS.find((k) => !used.includes(k)) || "1"));
        }, "", { id: "add-option" })),
      el("fieldset", {}, el("legend", {}, t("fallback")), fallback.node,
        el("p", { class: "hint" }, t("fallback_hint"))),
      C.isAdmin() ? el("div", { class: "actions" },
        el("button", { type: "submit" }, t("save_apply")),
        !fresh ? C.dangerButton(t("delete"), () => save(box, "DELETE",
          `/api/v1/ivr/menus/${encodeURIComponent(name)}`, undefined, saved), { id: "delete-menu" }) : null)
        : null,
      box);
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const menuName = fresh ? C.value(form, "name").trim() : name;
      if (!NAME_RE.test(menuName)) { C.showError(box, new Error(t("ivr_name_hint"))); return; }
      const opts = {};
      for (const row of options.querySelectorAll("tr.option")) {
        const key = row.querySelector('[name="key"]').value;
        if (key in opts) { C.showError(box, new Error(t("duplicate_key") + " " + key)); return; }
        opts[key] = row.getAction();
      }
      const timeout = Number(C.value(form, "timeout"));
      const body = {
        greeting: C.value(form, "greeting"), timeout: Number.isFinite(timeout) ? timeout : C.value(form, "timeout"),
        retries: C.intValue(form, "retries") ?? 0, invalid: C.value(form, "invalid"),
        timeout_prompt: C.value(form, "timeout_prompt"), fallback: fallback.get(), options: opts,
      };
      await save(box, "PUT", `/api/v1/ivr/menus/${encodeURIComponent(menuName)}`, body, saved);
    });
    return form;
  }

  function menusPanel(ctx) {
    const editor = el("div", { class: "menu-editor" });
    const list = el("div", { class: "list", id: "menu-list" });
    const start = ctx.doc.defaults ? ctx.doc.defaults.menu : "";
    function open(name) {
      for (const b of list.querySelectorAll("button.item")) b.classList.toggle("current", b.dataset.menu === name);
      editor.replaceChildren(menuEditor(ctx, name, name ? ctx.doc.menus[name] : null, () => C.route()));
    }
    list.append(...ctx.menus.map((m) => el("button", { type: "button", class: "item", dataset: { menu: m },
                                                       onclick: () => open(m) },
                                           m, m === start ? " ★" : "")));
    if (C.isAdmin()) list.append(C.button(t("new_menu"), () => open(null), "primary", { id: "new-menu" }));
    if (!ctx.prompts.length) editor.append(el("p", { class: "muted" }, t("prompts_first")));
    else if (ctx.menus.length) open(ctx.menus.includes(start) ? start : ctx.menus[0]);
    return C.panel(t("ivr_menus"), el("p", { class: "hint" }, t("ivr_menus_hint")),
                   el("div", { class: "split" }, list, editor));
  }

  // --- prompts ----------------------------------------------------------------------------
  function promptsPanel(ctx, voices) {
    const box = C.errorBox(), done = C.noticeBox();
    const player = el("audio", { controls: true, hidden: true, id: "prompt-player" });
    const listen = (name) => C.play(player, "GET", `/api/v1/ivr/prompts/${encodeURIComponent(name)}/audio`)
      .catch((err) => C.showError(box, err));
    const rows = ctx.prompts.map((p) => el("tr", { dataset: { prompt: p.name } },
      el("td", { class: "text" }, p.name),
      el("td", {}, t("prompt_" + p.kind), p.voice ? ` (${p.voice})` : ""),
      el("td", { class: "text" }, p.text || (p.kind === "file" ? p.playable : "")),
      el("td", {}, el("div", { class: "row" },
        p.listen ? C.button("▶ " + t("listen"), () => listen(p.name), "listen") : null,
        C.isAdmin() ? C.dangerButton(t("delete"), () => save(box, "DELETE",
          `/api/v1/ivr/prompts/${encodeURIComponent(p.name)}`, undefined, () => C.route())) : null))));

    const voiceOptions = voices.map((v) => [v.voice, CTI.getLang() === "zh" ? v.label_zh : v.label_en]);
    const kind = C.select("kind", [["text", t("prompt_text")], ["upload", t("prompt_upload")],
                                   ["file", t("prompt_file")]], "text");
    const textFields = el("div", { class: "fields kind-text" },
      C.field(t("text"), el("textarea", { name: "text", maxlength: 2000 })),
      C.field(t("voice"), C.select("voice", voiceOptions, CTI.getLang() === "zh" ? "cmn" : "en")),
      C.field(t("speed"), C.number("speed", 150, 80, 400), t("speed_hint")));
    // a recording: a file, or recorded here with the microphone (MediaRecorder, WebM/Opus)
    let recorded = null, recorder = null;
    const recState = el("span", { class: "hint", id: "record-state" });
    const recButton = C.button("● " + t("record"), async () => {
      if (recorder) { recorder.stop(); return; }
      try {
        const stream = await navigator.mediaDevices.getUserMedia({ audio: true });
        const chunks = [];
        recorder = new MediaRecorder(stream);
        recorder.ondataavailable = (ev) => { if (ev.data.size) chunks.push(ev.data); };
        recorder.onstop = () => {
          stream.getTracks().forEach((tr) => tr.stop());
          recorded = new Blob(chunks, { type: recorder.mimeType || "audio/webm" });
          recorder = null;
          recButton.textContent = "● " + t("record");
          recState.textContent = t("recorded") + ` (${Math.round(recorded.size / 1024)} KiB)`;
          recState.dataset.state = "recorded";
          player.src = URL.createObjectURL(recorded);
          player.hidden = false;
        };
        // "recording" once the browser captures (onstart), not when asked: a busy
        // machine starts the microphone late, and what is said before is not recorded
        recorder.onstart = () => {
          recButton.textContent = "■ " + t("stop_recording");
          recState.textContent = t("recording_now");
          recState.dataset.state = "recording";
        };
        recorder.start();
      } catch (err) { showErr(err); }
    }, "", { id: "record" });
    const uploadFields = el("div", { class: "fields kind-upload", hidden: true },
      C.field(t("recording_file"), el("input", { type: "file", name: "file", accept: "audio/*" }), t("upload_hint")),
      C.field(t("or_record"), el("div", { class: "row" }, recButton, recState)));
    const fileFields = el("div", { class: "fields kind-file", hidden: true },
      C.field(t("sound_name"), C.input("sound", "", { maxlength: 200, placeholder: "beep" }), t("sound_hint")));
    kind.addEventListener("change", () => {
      textFields.hidden = kind.value !== "text";
      uploadFields.hidden = kind.value !== "upload";
      fileFields.hidden = kind.value !== "file";
    });
    const form = el("form", { id: "prompt-form" },
      el("div", { class: "fields" },
        C.field(t("name"), C.input("name", "", { required: true, maxlength: 40 }), t("ivr_name_hint")),
        C.field(t("prompt_kind"), kind)),
      textFields, uploadFields, fileFields,
      el("div", { class: "actions" },
        C.button("▶ " + t("preview"), async () => {
          showErr(null);
          await C.play(player, "POST", "/api/v1/ivr/tts", {
            text: C.value(form, "text"), voice: C.value(form, "voice"), speed: C.intValue(form, "speed") ?? 150,
          }).catch(showErr);
        }, "", { id: "tts-preview" }),
        el("button", { type: "submit" }, t("save"))));
    function showErr(err) { C.showError(box, err); }
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const name = C.value(form, "name").trim();
      if (!NAME_RE.test(name)) { showErr(new Error(t("ivr_name_hint"))); return; }
      const path = `/api/v1/ivr/prompts/${encodeURIComponent(name)}`;
      if (kind.value === "upload") {
        const file = form.querySelector('[name="file"]').files[0] || recorded;
        if (!file) { showErr(new Error(t("choose_file"))); return; }
        await C.submit(box, () => C.raw("POST", path + "/upload", file, file.type || "application/octet-stream"),
          async () => { C.notice(done, t("saved")); await C.route(); });
        return;
      }
      const body = kind.value === "text"
        ? { text: C.value(form, "text"), voice: C.value(form, "voice"), speed: C.intValue(form, "speed") ?? 150 }
        : { file: C.value(form, "sound").trim() };
      await save(box, "PUT", path, body, () => C.route());
    });
    return C.panel(t("prompts"),
      el("table", { id: "prompts-table" },
        el("thead", {}, el("tr", {}, ["name", "prompt_kind", "text", "actions"].map((k) => el("th", {}, t(k))))),
        el("tbody", {}, rows.length ? rows : el("tr", {}, el("td", { colspan: 4, class: "muted" }, t("none"))))),
      player,
      C.isAdmin() ? el("div", {}, el("h3", {}, t("new_prompt")), form) : null, box, done);
  }

  // --- numbers, start menu, digit collection ------------------------------------------------
  function numbersPanel(ctx) {
    const box = C.errorBox();
    const numbers = ctx.doc.numbers || {};
    const rows = Object.entries(numbers).map(([dnis, n]) => el("tr", { dataset: { number: dnis } },
      el("td", {}, dnis), el("td", {}, n.menu || t("start_menu")), el("td", {}, n.schedule || t("default_hours")),
      el("td", {}, C.isAdmin() ? C.dangerButton(t("delete"), () => save(box, "DELETE",
        `/api/v1/ivr/numbers/${encodeURIComponent(dnis)}`, undefined, () => C.route())) : null)));
    const form = el("form", { id: "number-form", class: "row" },
      C.field(t("dialled_number"), C.input("dnis", "", { maxlength: 32, required: true, placeholder: "4008001234" })),
      C.field(t("menu"), C.select("menu", [["", t("start_menu")], ...ctx.menus.map((m) => [m, m])], "")),
      C.field(t("hours"), C.select("schedule", [["", t("default_hours")], ...ctx.schedules.map((s) => [s, s])], "")),
      el("button", { type: "submit" }, t("save")));
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const dnis = C.value(form, "dnis").trim();
      await save(box, "PUT", `/api/v1/ivr/numbers/${encodeURIComponent(dnis)}`,
                 { menu: C.value(form, "menu"), schedule: C.value(form, "schedule") }, () => C.route());
    });
    return C.panel(t("numbers"), el("p", { class: "hint" }, t("numbers_hint")),
      el("table", { id: "numbers-table" },
        el("thead", {}, el("tr", {}, ["dialled_number", "menu", "hours", "actions"].map((k) => el("th", {}, t(k))))),
        el("tbody", {}, rows)),
      C.isAdmin() ? form : null, box);
  }

  function defaultsPanel(ctx) {
    const box = C.errorBox(), done = C.noticeBox();
    const d = ctx.doc.defaults || { menu: "", schedule: "", operator: "support" };
    const r = ctx.doc.recognition || { greeting: "", owner_routing: true, tiers: {} };
    const form = el("form", { id: "defaults-form" }, el("div", { class: "fields" },
      C.field(t("start_menu"), C.select("menu", [["", t("none")], ...ctx.menus.map((m) => [m, m])], d.menu)),
      C.field(t("operator_queue"), C.select("operator", ctx.queues, d.operator)),
      C.field(t("default_hours"), C.select("schedule", [["", t("always_open")], ...ctx.schedules.map((s) => [s, s])],
                                           d.schedule))),
      C.isAdmin() ? el("div", { class: "actions" }, el("button", { type: "submit" }, t("save_apply"))) : null);
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      await save(box, "PUT", "/api/v1/ivr/defaults", { menu: C.value(form, "menu"),
        operator: C.value(form, "operator"), schedule: C.value(form, "schedule") },
        async () => { C.notice(done, t("saved")); await C.route(); });
    });
    const rform = el("form", { id: "recognition-form" }, el("div", { class: "fields" },
      C.field(t("known_greeting"), promptSelect(ctx, "greeting", r.greeting, true)),
      C.check("owner_routing", t("owner_routing"), r.owner_routing)),
      el("p", { class: "hint" }, t("tiers") + ": " + (Object.keys(r.tiers || {}).join(", ") || t("none"))),
      C.isAdmin() ? el("div", { class: "actions" }, el("button", { type: "submit" }, t("save"))) : null);
    rform.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      await save(box, "PUT", "/api/v1/ivr/recognition", { greeting: C.value(rform, "greeting"),
        owner_routing: C.checked(rform, "owner_routing"), tiers: r.tiers || {} },
        async () => { C.notice(done, t("saved")); await C.route(); });
    });
    return C.panel(t("ivr_settings"), form, el("h3", {}, t("recognition")), rform, box, done);
  }

  function collectPanel(ctx) {
    const box = C.errorBox();
    const steps = ctx.doc.collect || {};
    const editor = el("div", {});
    function open(name) {
      const s = name ? steps[name] : { prompt: ctx.prompts[0] ? ctx.prompts[0].name : "", min_length: 1, max_length: 12,
                                       charset: "0123456789", timeout: 6, retries: 2, invalid: "",
                                       then: { action: "queue", target: ctx.queues[0] || "", prompt: "" },
                                       fallback: { action: "operator", target: "", prompt: "" } };
      const only = ["queue", "extension", "external", "voicemail", "callback", "operator", "hangup"];
      const then = actionEditor(ctx, s.then, { only }), fallback = actionEditor(ctx, s.fallback, { only });
      const form = el("form", { id: "collect-form" }, el("div", { class: "fields" },
        C.field(t("name"), C.input("name", name || "", { required: true, maxlength: 40, disabled: !!name }),
                t("collect_name_hint")),
        C.field(t("prompt"), promptSelect(ctx, "prompt", s.prompt, false)),
        C.field(t("min_length"), C.number("min_length", s.min_length, 1, 32)),
        C.field(t("max_length"), C.number("max_length", s.max_length, 1, 32)),
        C.field(t("digit_timeout"), C.input("timeout", s.timeout, { type: "number", min: 0.5, max: 60, step: 0.5 })),
        C.field(t("retries"), C.number("retries", s.retries, 0, 10)),
        C.field(t("invalid_prompt"), promptSelect(ctx, "invalid", s.invalid, true))),
        el("fieldset", {}, el("legend", {}, t("then")), then.node),
        el("fieldset", {}, el("legend", {}, t("fallback")), fallback.node),
        C.isAdmin() ? el("div", { class: "actions" }, el("button", { type: "submit" }, t("save_apply")),
          name ? C.dangerButton(t("delete"), () => save(box, "DELETE",
            `/api/v1/ivr/collect/${encodeURIComponent(name)}`, undefined, () => C.route())) : null) : null);
      form.addEventListener("submit", async (ev) => {
        ev.preventDefault();
        const stepName = name || C.value(form, "name").trim();
        if (!NAME_RE.test(stepName)) { C.showError(box, new Error(t("ivr_name_hint"))); return; }
        await save(box, "PUT", `/api/v1/ivr/collect/${encodeURIComponent(stepName)}`, {
          prompt: C.value(form, "prompt"), min_length: C.intValue(form, "min_length"),
          max_length: C.intValue(form, "max_length"), charset: s.charset || "0123456789",
          timeout: Number(C.value(form, "timeout")), retries: C.intValue(form, "retries") ?? 0,
          invalid: C.value(form, "invalid"), then: then.get(), fallback: fallback.get(),
        }, () => C.route());
      });
      editor.replaceChildren(form);
    }
    return C.panel(t("collect_steps"), el("p", { class: "hint" }, t("collect_hint")),
      el("div", { class: "row" }, ...Object.keys(steps).map((n) => C.button(n, () => open(n), "item")),
        C.isAdmin() && ctx.prompts.length ? C.button(t("new_collect"), () => open(null), "", { id: "new-collect" }) : null),
      editor, box);
  }

  function versionsPanel(versions) {
    const box = C.errorBox();
    const rows = versions.map((v, i) => el("tr", {},
      el("td", {}, String(v.id)), el("td", {}, CTI.fmtTime(v.created_at)), el("td", { class: "text" }, v.created_by),
      el("td", {}, t("source_" + v.source)), el("td", { class: "text" }, v.summary),
      el("td", {}, i > 0 && C.isAdmin() ? C.dangerButton(t("restore"), () => save(box, "POST",
        `/api/v1/ivr/versions/${v.id}/restore`, undefined, () => C.route())) : i === 0 ? t("in_force") : null)));
    return C.panel(t("versions"), el("table", { id: "versions-table" },
      el("thead", {}, el("tr", {}, ["version", "when", "who_col", "source", "what", ""].map((k) => el("th", {}, k ? t(k) : "")))),
      el("tbody", {}, rows)), box);
  }

  async function render(view) {
    const [ctx, voices, versions] = await Promise.all([
      context(), CTI.api("GET", "/api/v1/ivr/voices").then((r) => r.voices),
      CTI.api("GET", "/api/v1/ivr/versions?limit=20").then((r) => r.versions)]);
    view.append(menusPanel(ctx), promptsPanel(ctx, voices), defaultsPanel(ctx), numbersPanel(ctx),
                collectPanel(ctx), versionsPanel(versions));
  }

  C.section({ id: "ivr", group: "routing", title: "ivr_menus", role: "supervisor", render });
  return { context, actionEditor, promptSelect };
})();
