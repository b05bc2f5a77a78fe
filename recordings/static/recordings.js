// Supervisor recordings page: live calls (record / pause / listen / whisper / barge),
// search, and playback with seek. Every server string goes in as text (CTI.el), never
// markup. The <audio> element cannot send the bearer token: it plays a short-lived
// signed URL the API hands out (and audits) per listen.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const el = CTI.el, t = CTI.t;
  let me = null, oldest = null, sock = null, liveDue = false;
  let page = null; // CTI.page(): the shared sign-in

  // Live calls are re-read when the daemon pushes a recording.* frame (answered, paused,
  // stopped, ended, ready) or the socket (re)opens: no polling.
  function liveChanged() {
    if (liveDue) return;
    liveDue = true;
    setTimeout(() => { liveDue = false; refreshLive(); }, 200);
  }

  async function signedIn(who) {
    me = who;
    if (me.role === "agent") $("live-error").textContent = "";
    sock = CTI.socket(
      (msg) => { if (String(msg.type).startsWith("recording.")) liveChanged(); },
      (state) => { if (state === "open") liveChanged(); else if (state === "refused") page.signOut(); });
    await Promise.all([refreshLive(), search(false)]);
  }

  function signedOut() {
    if (sock) sock.close();
    sock = null;
  }

  // --- live calls -------------------------------------------------------------------------
  function recState(call) {
    if (!call.recording) return t("rec_off");
    return call.recording.paused ? t("rec_paused") : t("rec_on");
  }

  function liveButtons(call) {
    const lid = call.linkedid;
    const act = (action) => async () => {
      try {
        await CTI.api("POST", `/api/v1/recordings/calls/${encodeURIComponent(lid)}/${action}`);
        $("live-error").textContent = "";
        await refreshLive();
      } catch (e) { $("live-error").textContent = e.message; }
    };
    const spy = (mode) => async () => {
      try {
        await CTI.api("POST", "/api/v1/recordings/monitor", { linkedid: lid, mode });
        $("live-error").textContent = t("monitor_started");
      } catch (e) { $("live-error").textContent = e.message; }
    };
    const out = [];
    if (!call.recording) out.push(el("button", { type: "button", onclick: act("start") }, t("start")));
    else {
      out.push(el("button", { type: "button", onclick: act("stop") }, t("stop")));
      out.push(call.recording.paused
        ? el("button", { type: "button", onclick: act("resume") }, t("resume"))
        : el("button", { type: "button", onclick: act("pause") }, t("pause")));
    }
    if (me && me.role !== "agent") {
      for (const mode of ["listen", "whisper", "barge"]) {
        out.push(el("button", { type: "button", class: "spy", dataset: { mode }, onclick: spy(mode) }, t(mode)));
      }
    }
    return out;
  }

  async function refreshLive() {
    let data;
    try { data = await CTI.api("GET", "/api/v1/recordings/live"); }
    catch (e) { if (e.status === 401) page.signOut(); return; }
    const rows = $("live-rows");
    rows.replaceChildren(...data.calls.map((c) => el("tr", { dataset: { linkedid: c.linkedid } },
      el("td", {}, c.agent), el("td", {}, c.queue),
      el("td", {}, c.customer_name ? `${c.caller_num} (${c.customer_name})` : c.caller_num),
      el("td", {}, CTI.fmtTime(c.answered_at)), el("td", {}, recState(c)),
      el("td", {}, liveButtons(c)))));
    $("live-table").hidden = data.calls.length === 0;
    $("live-empty").hidden = data.calls.length !== 0;
  }

  // --- search -----------------------------------------------------------------------------
  function query() {
    const p = new URLSearchParams();
    const since = $("f-since").value, until = $("f-until").value;
    if (since) p.set("since", new Date(since + "T00:00:00").toISOString());
    if (until) p.set("until", new Date(new Date(until + "T00:00:00").getTime() + 86400000).toISOString());
    for (const k of ["queue", "agent", "customer", "number", "disposition"]) {
      const v = $("f-" + k).value.trim();
      if (v) p.set(k, v);
    }
    p.set("limit", "50");
    return p;
  }

  async function play(rec) {
    try {
      const { url } = await CTI.api("POST", `/api/v1/recordings/${rec.id}/play-url`);
      $("player-panel").hidden = false;
      $("now-playing").textContent = `${CTI.fmtTime(rec.started_at)} · ${rec.agent} · ${rec.caller_num}`;
      const player = $("player");
      player.src = url;  // same origin; Range requests let the user seek
      await player.play().catch(() => {});
    } catch (e) { $("search-error").textContent = e.message; }
  }

  async function download(rec) {
    // fetch with the session, then save the blob: no credential in any URL
    try {
      await CTI.download(`/api/v1/recordings/${rec.id}/audio?download=1`, `recording-${rec.id}`);
    } catch (e) { $("search-error").textContent = e.message; }
  }

  async function history(rec) {
    try {
      const data = await CTI.api("GET", `/api/v1/recordings/audit?recording_id=${rec.id}`);
      $("audit-rows").replaceChildren(...data.audit.map((a) => el("tr", {},
        el("td", {}, CTI.fmtTime(a.at)), el("td", {}, `${a.actor} (${a.role})`),
        el("td", {}, a.action))));
      $("audit-panel").hidden = false;
    } catch (e) { $("search-error").textContent = e.message; }
  }

  function resultRow(r) {
    const playable = r.status === "ready";
    return el("tr", { dataset: { id: r.id } },
      el("td", {}, CTI.fmtTime(r.started_at)), el("td", {}, r.agent), el("td", {}, r.queue),
      el("td", {}, r.caller_num), el("td", {}, r.customer_name || ""),
      el("td", {}, CTI.fmtDuration(r.duration_s)),
      el("td", { class: "status-" + r.status, title: r.reason || "" }, r.status),
      el("td", {}, playable ? [
        el("button", { type: "button", class: "play", onclick: () => play(r) }, t("play")),
        el("button", { type: "button", onclick: () => download(r) }, t("download")),
        me && me.role !== "agent"
          ? el("button", { type: "button", class: "history", onclick: () => history(r) }, t("history"))
          : null,
      ] : r.reason || ""));
  }

  async function search(more) {
    const p = query();
    if (more && oldest) p.set("before_id", String(oldest));
    try {
      const data = await CTI.api("GET", "/api/v1/recordings?" + p.toString());
      const rows = data.recordings.map(resultRow);
      if (more) $("result-rows").append(...rows); else $("result-rows").replaceChildren(...rows);
      if (!more && rows.length === 0) {
        $("result-rows").append(el("tr", {}, el("td", { colspan: 8, class: "muted" }, t("no_results"))));
      }
      oldest = data.recordings.length ? data.recordings[data.recordings.length - 1].id : oldest;
      $("more").hidden = data.recordings.length < 50;
      $("search-error").textContent = "";
    } catch (e) { $("search-error").textContent = e.message; }
  }

  // --- wiring -----------------------------------------------------------------------------
  document.addEventListener("DOMContentLoaded", () => {
    $("search-form").addEventListener("submit", (ev) => { ev.preventDefault(); oldest = null; search(false); });
    $("more").addEventListener("click", () => search(true));
    page = CTI.page({ onSignedIn: signedIn, onSignedOut: signedOut });
  });
})();
