// The browser phone: SIP.js (from npm, served at /vendor/sip.js/) registers the agent's
// provisioned WebRTC phone (GET /api/v1/me/phones) to Asterisk over its WebSocket when
// the agent signs in; rings (a tone made here), answers, mutes, hangs up, plays the
// caller through the chosen speaker and takes the chosen microphone. Hold, transfers and
// DTMF to the caller go through call control on the card (they work for any phone).
// Nothing from the server is put into the page as HTML.
import { Web } from "/vendor/sip.js/index.js";

const $ = (id) => document.getElementById(id);
const t = (k) => CTI.t(k);
const media = { constraints: { audio: true, video: false }, remote: { audio: null } };
let user = null, running = false, reg = "none", call = "idle", ringer = null;

function paint() {
  $("phone-reg").textContent = t("reg_" + reg);
  $("phone-reg").dataset.state = reg;
  const muted = user && call !== "idle" && user.isMuted();
  $("phone-call").textContent = [t("call_" + call), muted ? t("call_muted") : ""].filter(Boolean).join(" · ");
  $("phone-call").dataset.state = call;
  $("phone-answer").hidden = call !== "ringing";
  $("phone-mute").hidden = call !== "talking" && call !== "held";
  $("phone-mute").textContent = muted ? t("unmute") : t("mute");
}
function setReg(s) { reg = s; paint(); }
function setCall(s) { call = s; ring(s === "ringing"); paint(); }

// --- the ringing sound (425 Hz, 1 s on, 4 s off; no file to fetch) -----------------------
function ring(on) {
  if (!on) { if (ringer) { clearInterval(ringer.timer); ringer.ctx.close(); ringer = null; } return; }
  if (ringer) return;
  const ctx = new AudioContext();
  const burst = () => {
    const osc = ctx.createOscillator(), gain = ctx.createGain();
    osc.frequency.value = 425; gain.gain.value = 0.15;
    osc.connect(gain).connect(ctx.destination);
    osc.start(); osc.stop(ctx.currentTime + 1);
  };
  burst();
  ringer = { ctx, timer: setInterval(burst, 5000) };
}

// --- microphone and speaker --------------------------------------------------------------
async function listDevices() {
  let devices = [];
  try { devices = await navigator.mediaDevices.enumerateDevices(); } catch { return; }
  const fill = (select, kind) => {
    const keep = select.value;
    select.replaceChildren(...devices.filter((d) => d.kind === kind).map((d, i) => {
      const o = document.createElement("option");
      o.value = d.deviceId; o.textContent = d.label || kind + " " + (i + 1);
      return o;
    }));
    if (keep) select.value = keep;
  };
  fill($("phone-mic"), "audioinput");
  fill($("phone-speaker"), "audiooutput");
}

function chooseMic() {
  const id = $("phone-mic").value;
  media.constraints.audio = id ? { deviceId: { exact: id } } : true; // used for the next call
}

async function chooseSpeaker() {
  const audio = $("phone-audio"), id = $("phone-speaker").value;
  if (id && typeof audio.setSinkId === "function") {
    try { await audio.setSinkId(id); } catch { /* the default speaker stays */ }
  }
}

// --- the phone ---------------------------------------------------------------------------
async function start() {
  if (running) return;
  running = true;
  let phones = [];
  try { phones = (await CTI.api("GET", "/api/v1/me/phones")).phones || []; } catch { phones = []; }
  const web = phones.find((p) => p.kind === "webrtc" && p.sip && p.sip.ws_url && p.sip.password);
  $("phone").hidden = !web;
  if (!web || !running) { setReg("none"); return; }
  const sip = web.sip;
  media.remote.audio = $("phone-audio");
  user = new Web.SimpleUser(sip.ws_url, {
    aor: sip.uri,
    media,
    reconnectionAttempts: 1000000,
    reconnectionDelay: 3,
    userAgentOptions: {
      authorizationUsername: sip.username,
      authorizationPassword: sip.password,
      logLevel: "error",
    },
    delegate: {
      onServerConnect: () => { if (running) user.register().catch(() => setReg("failed")); },
      onServerDisconnect: () => setReg("unregistered"),
      onRegistered: () => { setReg("registered"); reclaim(); },
      onUnregistered: () => setReg(running ? "unregistered" : "none"),
      onCallReceived: () => {
        setCall("ringing");
        // the caller this phone lost (reload, crash): answered at once
        const req = user && user.session && user.session.request;
        if (req && req.getHeader("X-CTI-Auto-Answer")) user.answer().catch(() => setCall("idle"));
      },
      onCallAnswered: () => setCall("talking"),
      onCallHangup: () => setCall("idle"),
      onCallHold: (held) => setCall(held ? "held" : "talking"),
    },
  });
  setReg("registering");
  try { await user.connect(); } catch { setReg("failed"); }
  listDevices();
}

// After a reload (or a crash, a network blip) the agent's caller waits. The daemon rings
// us again by itself once it sees this phone registered and the old leg gone; asking here
// too covers an old leg Asterisk has not noticed yet (the daemon's reconnect is idempotent).
async function reclaim() {
  if (!user || user.session) return;
  let calls = [];
  try { calls = (await CTI.api("GET", "/api/v1/calls/mine")).calls || []; } catch { return; }
  for (const c of calls) {
    if ((c.dropped || c.browser) && user && !user.session) {
      try { await CTI.api("POST", "/api/v1/calls/" + encodeURIComponent(c.linkedid) + "/reconnect"); }
      catch { /* the call may have ended meanwhile */ }
    }
  }
}

async function stop() {
  running = false;
  ring(false);
  const u = user;
  user = null;
  call = "idle";
  if (u) {
    try { await u.unregister(); } catch { /* gone anyway */ }
    try { await u.disconnect(); } catch { /* gone anyway */ }
  }
  setReg("none");
  $("phone").hidden = true;
}

/** RTP figures of the call in progress (for the page's own display and for tests). */
async function stats() {
  const sdh = user && user.session && user.session.sessionDescriptionHandler;
  const pc = sdh && sdh.peerConnection;
  if (!pc) return null;
  const out = { inbound: null, outbound: null };
  (await pc.getStats()).forEach((s) => {
    if (s.type === "inbound-rtp" && s.kind === "audio") {
      out.inbound = { packets: s.packetsReceived, energy: s.totalAudioEnergy || 0, level: s.audioLevel || 0 };
    } else if (s.type === "outbound-rtp" && s.kind === "audio") {
      out.outbound = { packets: s.packetsSent, bytes: s.bytesSent };
    }
  });
  return out;
}

$("phone-answer").addEventListener("click", () => {
  if (user) user.answer().catch(() => setCall("idle"));
});
$("phone-mute").addEventListener("click", () => {
  if (!user) return;
  if (user.isMuted()) user.unmute(); else user.mute();
  paint();
});
$("phone-mic").addEventListener("change", chooseMic);
$("phone-speaker").addEventListener("change", chooseSpeaker);
navigator.mediaDevices && navigator.mediaDevices.addEventListener("devicechange", listDevices);
document.addEventListener("cti:signed-in", start);
document.addEventListener("cti:signed-out", stop);
document.addEventListener("cti:lang", paint);

window.CTIPhone = { start, stop, stats, state: () => ({ reg, call }) };
if (window.CTIDeskSignedIn) start();
