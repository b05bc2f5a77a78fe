// Shared browser helpers for every page the daemon serves (desktop, wallboard, recordings).
// Rules: text from the server is only ever set with textContent / text nodes (caller ID
// names are attacker-controlled), never innerHTML; the token lives in sessionStorage.
"use strict";

const CTI = (() => {
  const strings = { en: {}, zh: {} };
  let lang = (localStorage.getItem("cti.lang") ||
              (navigator.language || "en").slice(0, 2)) === "zh" ? "zh" : "en";

  function addStrings(table) {
    for (const l of Object.keys(table)) Object.assign(strings[l] || (strings[l] = {}), table[l]);
  }
  function t(key) { return (strings[lang] && strings[lang][key]) || strings.en[key] || key; }
  function setLang(l) { lang = l === "zh" ? "zh" : "en"; localStorage.setItem("cti.lang", lang); }
  function getLang() { return lang; }
  // Fill every element carrying data-i18n="key" with the translated text.
  function translate(root) {
    (root || document).querySelectorAll("[data-i18n]").forEach((n) => {
      n.textContent = t(n.getAttribute("data-i18n"));
    });
  }

  // el("td", {class: "x", dataset: {id: 3}}, "text", otherNode): strings become text nodes.
  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(props || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === "class") node.className = v;
      else if (k === "dataset") Object.assign(node.dataset, v);
      else if (k.startsWith("on") && typeof v === "function") node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v === true ? "" : String(v));
    }
    for (const c of children.flat()) {
      if (c === undefined || c === null || c === false) continue;
      node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return node;
  }

  const session = {
    get token() { return sessionStorage.getItem("cti.token") || ""; },
    set token(v) { v ? sessionStorage.setItem("cti.token", v) : sessionStorage.removeItem("cti.token"); },
    get me() { try { return JSON.parse(sessionStorage.getItem("cti.me") || "null"); } catch { return null; } },
    set me(v) { v ? sessionStorage.setItem("cti.me", JSON.stringify(v)) : sessionStorage.removeItem("cti.me"); },
  };

  class ApiError extends Error {
    constructor(status, message, body) { super(message); this.status = status; this.body = body; }
  }

  async function api(method, path, body) {
    const opts = { method, headers: { Authorization: "Bearer " + session.token } };
    if (body !== undefined) {
      opts.headers["Content-Type"] = "application/json";
      opts.body = JSON.stringify(body);
    }
    const res = await fetch(path, opts);
    const type = res.headers.get("Content-Type") || "";
    const data = type.includes("json") ? await res.json() : await res.text();
    if (!res.ok) {
      const msg = (data && data.error) || res.statusText || String(res.status);
      throw new ApiError(res.status, msg, data);
    }
    return data;
  }

  // A websocket that authenticates with its first frame, reconnects with backoff and
  // hands every message to onMessage(obj); onState("open"|"closed"|"refused", code).
  function socket(onMessage, onState) {
    let ws = null, delay = 500, stopped = false;
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    function open() {
      ws = new WebSocket(proto + "//" + location.host + "/ws");
      ws.onopen = () => { ws.send(JSON.stringify({ type: "auth", token: session.token })); };
      ws.onmessage = (ev) => {
        let msg;
        try { msg = JSON.parse(ev.data); } catch { return; }
        if (msg.type === "hello" || msg.type === "auth_ok") { delay = 500; onState && onState("open"); }
        onMessage(msg);
      };
      ws.onclose = (ev) => {
        if (ev.code === 4001) { onState && onState("refused", ev.code); return; }
        onState && onState("closed", ev.code);
        if (!stopped) setTimeout(open, delay);
        delay = Math.min(delay * 2, 10000);
      };
    }
    open();
    return {
      send(obj) { if (ws && ws.readyState === 1) { ws.send(JSON.stringify(obj)); return true; } return false; },
      close() { stopped = true; if (ws) ws.close(); },
    };
  }

  // The sign-in and language switch every page shares. The page's markup holds #lang,
  // #signin (with #signin-form, #token, #signin-error) and #app, optionally #signout and
  // #who. onSignedIn(me) runs once /api/v1/me accepted the token (and, with roles, its
  // role); onSignedOut() after a sign-out or a refused token; onLang() after a switch.
  function page({ roles, onSignedIn, onSignedOut, onLang }) {
    const $ = (id) => document.getElementById(id);
    function shown(signedIn) {
      $("signin").hidden = signedIn;
      $("app").hidden = !signedIn;
      if ($("signout")) $("signout").hidden = !signedIn;
      const me = session.me;
      if ($("who")) $("who").textContent = signedIn && me ? `${me.name} (${me.role})` : "";
    }
    async function signIn(token) {
      session.token = token;
      let me;
      try {
        me = await api("GET", "/api/v1/me");
        if (roles && !roles.includes(me.role)) throw new Error(t("role_needed") + ": " + roles.join(" / "));
      } catch (err) {
        session.token = "";
        throw err;
      }
      session.me = me;
      shown(true);
      await onSignedIn(me);
    }
    function signOut() {
      session.token = "";
      session.me = null;
      shown(false);
      if (onSignedOut) onSignedOut();
    }
    $("lang").value = getLang();
    $("lang").addEventListener("change", () => {
      setLang($("lang").value);
      translate();
      if (onLang) onLang();
    });
    translate();
    $("signin-form").addEventListener("submit", async (ev) => {
      ev.preventDefault();
      $("signin-error").textContent = "";
      try { await signIn($("token").value.trim()); $("token").value = ""; }
      catch (e) { $("signin-error").textContent = t("error") + ": " + (e.message || e); }
    });
    if ($("signout")) $("signout").addEventListener("click", signOut);
    if (session.token) signIn(session.token).catch(() => signOut());
    else shown(false);
    return { signOut };
  }

  function fmtDuration(sec) {
    if (sec === null || sec === undefined || isNaN(sec)) return "";
    sec = Math.max(0, Math.round(sec));
    const h = Math.floor(sec / 3600), m = Math.floor((sec % 3600) / 60), s = sec % 60;
    const mm = String(m).padStart(2, "0"), ss = String(s).padStart(2, "0");
    return h ? `${h}:${mm}:${ss}` : `${m}:${ss}`;
  }
  function fmtTime(iso) {
    if (!iso) return "";
    const d = new Date(iso);
    return isNaN(d) ? String(iso) : d.toLocaleString(lang === "zh" ? "zh-CN" : "en-GB");
  }

  addStrings({
    en: { login: "Sign in", logout: "Sign out", token: "Access token", error: "Error",
          connected: "connected", disconnected: "reconnecting…", refused: "token refused",
          role_needed: "this page needs the role" },
    zh: { login: "登录", logout: "退出", token: "访问令牌", error: "错误",
          connected: "已连接", disconnected: "正在重连…", refused: "令牌无效",
          role_needed: "此页面需要角色" },
  });

  return { addStrings, t, setLang, getLang, translate, el, session, api, ApiError, socket,
           page, fmtDuration, fmtTime };
})();
