// QA scoring page (decision 0026). Supervisors: forms, scoring a call while its recording
// plays (comments stamped with the playback position), reports, calibration. Agents:
// their own evaluations, each acknowledged with one click. Every text from the API is set
// as text (CTI.el), never markup.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  let forms = [];
  let comments = [];

  CTI.addStrings({
    en: {
      qa_title: "Quality", forms: "Scoring forms", form_name: "Form name", section: "Section",
      questions_help: "Questions (one per line: text | weight | max points)", create: "Create",
      evaluate: "Score a call", form: "Form", call: "Call (Linkedid)", agent: "Agent",
      recording: "Recording id", load: "Load", comment: "Comment",
      add_comment: "Comment at this moment", submit: "Submit score", score: "Score",
      report: "Report", by_agent: "by agent", by_form: "by form", show: "Show",
      calibration: "Calibration", my_evaluations: "My evaluations", reviewer: "Reviewer",
      acknowledge: "Acknowledge", acknowledged: "Acknowledged", evaluations: "Evaluations",
      avg: "Average", min: "Min", max: "Max", spread: "Spread", question: "Question",
      comments: "Comments", when: "When",
    },
    zh: {
      qa_title: "质检", forms: "评分表", form_name: "评分表名称", section: "分组",
      questions_help: "评分项（每行一项：内容 | 权重 | 满分）", create: "创建",
      evaluate: "通话评分", form: "评分表", call: "通话（Linkedid）", agent: "座席",
      recording: "录音编号", load: "加载", comment: "评语", add_comment: "在当前时间点评语",
      submit: "提交评分", score: "得分", report: "报表", by_agent: "按座席", by_form: "按评分表",
      show: "查询", calibration: "校准", my_evaluations: "我的质检结果", reviewer: "评分人",
      acknowledge: "确认", acknowledged: "已确认", evaluations: "评分次数", avg: "平均分",
      min: "最低", max: "最高", spread: "差值", question: "评分项", comments: "评语", when: "时间",
    },
  });

  const err = (e) => { $("error").textContent = e ? String(e.message || e) : ""; };
  const row = (cells, tag = "td") => CTI.el("tr", {}, cells.map((c) => CTI.el(tag, {}, c)));

  async function loadForms() {
    forms = (await CTI.api("GET", "/api/v1/quality/forms")).forms;
    $("form-list").replaceChildren(...forms.map((f) => CTI.el("li", {}, `#${f.id} ${f.name}`)));
    for (const sel of [$("ev-form"), $("cal-form")]) {
      sel.replaceChildren(...forms.map((f) => CTI.el("option", { value: String(f.id) }, f.name)));
    }
  }

  async function createForm() {
    const questions = $("form-questions").value.split("\n").map((l) => l.trim()).filter(Boolean)
      .map((l) => {
        const [text, weight, max] = l.split("|").map((x) => x.trim());
        return { text, weight: Number(weight || 1), max_points: Number(max || 5) };
      });
    await CTI.api("POST", "/api/v1/quality/forms", {
      name: $("form-name").value, sections: [{ title: $("form-section").value, questions }],
    });
    await loadForms();
  }

  function currentForm() { return forms.find((f) => String(f.id) === $("ev-form").value); }

  async function loadCall() {
    const form = currentForm();
    if (!form) return;
    $("ev-questions").replaceChildren(...form.sections.map((s) => CTI.el("fieldset", {},
      CTI.el("legend", {}, s.title),
      ...s.questions.map((q) => CTI.el("label", {}, `${q.text} (×${q.weight}) `,
        CTI.el("select", { dataset: { question: q.id } },
          ...Array.from({ length: q.max_points + 1 }, (_, i) =>
            CTI.el("option", { value: String(i) }, String(i)))))))));
    comments = [];
    renderComments();
    const rec = $("ev-recording").value.trim();
    if (rec) {
      const { url } = await CTI.api("POST", `/api/v1/recordings/${encodeURIComponent(rec)}/play-url`);
      $("ev-audio").src = url;
    }
  }

  function renderComments() {
    $("ev-comments").replaceChildren(...comments.map((c) =>
      CTI.el("li", {}, `${CTI.fmtDuration(c.at_s)} ${c.text}`)));
  }

  function addComment() {
    const text = $("ev-comment").value.trim();
    if (!text) return;
    comments.push({ at_s: Math.round($("ev-audio").currentTime * 10) / 10, text });
    $("ev-comment").value = "";
    renderComments();
  }

  async function submit() {
    const answers = {};
    document.querySelectorAll("#ev-questions select").forEach((s) => {
      answers[s.dataset.question] = Number(s.value);
    });
    const rec = $("ev-recording").value.trim();
    const out = await CTI.api("POST", "/api/v1/quality/evaluations", {
      form_id: Number($("ev-form").value), linkedid: $("ev-linkedid").value.trim(),
      agent: $("ev-agent").value.trim(), recording_id: rec ? Number(rec) : null, answers, comments,
    });
    $("ev-result").textContent = `${CTI.t("score")}: ${out.score}`;
  }

  async function showReport() {
    const by = $("rep-by").value;
    const { rows } = await CTI.api("GET", `/api/v1/quality/report?by=${by}`);
    $("rep-table").replaceChildren(
      row([CTI.t(by === "agent" ? "agent" : "form"), CTI.t("evaluations"), CTI.t("avg"),
        CTI.t("min"), CTI.t("max"), CTI.t("acknowledged")], "th"),
      ...rows.map((r) => CTI.el("tr", { dataset: { key: r[by] } },
        [r[by], String(r.evaluations), String(r.avg_score), String(r.min_score),
          String(r.max_score), String(r.acknowledged)].map((c) => CTI.el("td", {}, c)))));
  }

  async function showCalibration() {
    const q = new URLSearchParams({ linkedid: $("cal-linkedid").value.trim(), form_id: $("cal-form").value });
    const cal = await CTI.api("GET", `/api/v1/quality/calibration?${q}`);
    $("cal-summary").textContent = `${CTI.t("spread")}: ${cal.score_spread}`;
    $("cal-table").replaceChildren(
      row([CTI.t("question"), ...cal.reviewers.map((r) => r.reviewer), CTI.t("spread")], "th"),
      ...cal.questions.map((qq) => CTI.el("tr", { dataset: { question: qq.id } },
        [qq.id, ...qq.points.map(String), String(qq.spread)].map((c) => CTI.el("td", {}, c)))),
      row([CTI.t("score"), ...cal.reviewers.map((r) => String(r.score)), String(cal.score_spread)]));
  }

  async function loadMine() {
    const day = (d) => d.toISOString().slice(0, 10);
    const to = new Date(Date.now() + 86400e3); // the site may be ahead of UTC
    const from = new Date(to.getTime() - 365 * 86400e3);
    const { evaluations } = await CTI.api("GET",
      `/api/v1/quality/evaluations?from=${day(from)}&to=${day(to)}`);
    $("mine-table").replaceChildren(
      row([CTI.t("when"), CTI.t("form"), CTI.t("score"), CTI.t("reviewer"), CTI.t("comments"), ""], "th"),
      ...evaluations.map((e) => CTI.el("tr", { dataset: { evaluation: String(e.id) } },
        CTI.el("td", {}, CTI.fmtTime(e.created_at)), CTI.el("td", {}, e.form),
        CTI.el("td", { class: "score" }, String(e.score)), CTI.el("td", {}, e.reviewer),
        CTI.el("td", { class: "comments" }, ...e.comments.map((c) =>
          CTI.el("div", {}, `${CTI.fmtDuration(c.at_s)} ${c.text}`))),
        CTI.el("td", {}, e.acknowledged_at
          ? CTI.el("span", { class: "acknowledged" }, CTI.t("acknowledged"))
          : CTI.el("button", { type: "button", class: "ack", dataset: { ack: String(e.id) } },
            CTI.t("acknowledge"))))));
  }

  async function acknowledge(id) {
    await CTI.api("POST", `/api/v1/quality/evaluations/${encodeURIComponent(id)}/acknowledge`);
    await loadMine();
  }

  function guard(fn) { return (...a) => Promise.resolve(fn(...a)).then(() => err(null), err); }

  let started = false;
  CTI.page({
    roles: ["agent", "supervisor", "admin"],
    onSignedIn: async (me) => {
      if (started) return;
      started = true;
      const sup = me.role === "supervisor" || me.role === "admin";
      $("supervisor").hidden = !sup;
      $("mine").hidden = sup;
      if (sup) {
        $("form-create").addEventListener("click", guard(createForm));
        $("ev-load").addEventListener("click", guard(loadCall));
        $("ev-add-comment").addEventListener("click", addComment);
        $("ev-submit").addEventListener("click", guard(submit));
        $("rep-show").addEventListener("click", guard(showReport));
        $("cal-show").addEventListener("click", guard(showCalibration));
        await guard(loadForms)();
      } else {
        $("mine-table").addEventListener("click", (ev) => {
          const b = ev.target.closest("button.ack");
          if (b) guard(acknowledge)(b.dataset.ack);
        });
        await guard(loadMine)();
      }
    },
    onLang: () => {},
  });
})();
