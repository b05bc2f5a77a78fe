// Shared browser helpers for every page the daemon serves (desktop, wallboard, recordings).
// Rules: text from the server is only ever set with textContent / text nodes (caller ID
// names are attacker-controlled), never innerHTML. A person signs in with login and
// password: the session is an HttpOnly cookie the page never sees; the page keeps only the
// session's CSRF token (sessionStorage) and sends it with every state-changing request.
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
    get csrf() { return sessionStorage.getItem("cti.csrf") || ""; },
    set csrf(v) { v ? sessionStorage.setItem("cti.csrf", v) : sessionStorage.removeItem("cti.csrf"); },
    get me() { try { return JSON.parse(sessionStorage.getItem("cti.me") || "null"); } catch { return null; } },
    set me(v) { v ? sessionStorage.setItem("cti.me", JSON.stringify(v)) : sessionStorage.removeItem("cti.me"); },
  };
  // Called when the server says the session ended (401): the page shows its sign-in.
  let onSessionEnded = null;

  class ApiError extends Error {
    constructor(status, message, body) { super(message); this.status = status; this.body = body; }
  }

  async function request(method, path, body, raw) {
    const opts = { method, headers: {}, credentials: "same-origin" };
    if (method !== "GET" && method !== "HEAD") opts.headers["X-CSRF-Token"] = session.csrf;
    if (body !== undefined) {
      opts.headers["Content-Type"] = "application/json";
      opts.body = JSON.stringify(body);
    }
    const res = await fetch(path, opts);
    if (res.status === 401 && onSessionEnded && !path.startsWith("/api/v1/auth/sign-in")) {
      onSessionEnded();
    }
    if (raw && res.ok) return res;
    const type = res.headers.get("Content-Type") || "";
    const data = type.includes("json") ? await res.json() : await res.text();
    if (!res.ok) {
      const msg = (data && data.error) || res.statusText || String(res.status);
      throw new ApiError(res.status, msg, data);
    }
    return data;
  }
  const api = (method, path, body) => request(method, path, body, false);

  // Fetch a file with the session and hand it to the browser as a download.
  async function download(path, filename) {
    const res = await request("GET", path, undefined, true);
    const url = URL.createObjectURL(await res.blob());
    const a = el("a", { href: url, download: filename });
    document.body.append(a);
    a.click();
    setTimeout(() => { URL.revokeObjectURL(url); a.remove(); }, 1000);
  }

  // A websocket on the session cookie that reconnects with backoff and hands every
  // message to onMessage(obj); onState("open"|"closed"|"refused", code). 4001/4003: the
  // session ended (signed out elsewhere, disabled, expired): no reconnect. Any other code
  // reconnects, 4005 included: the session holds but what it may see changed (a team, a
  // queue scope), and the new connection gets the new scope; when its hello says the role
  // changed, the page is loaded again (it checks the role it needs).
  function socket(onMessage, onState) {
    let ws = null, delay = 500, stopped = false;
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    function open() {
      ws = new WebSocket(proto + "//" + location.host + "/ws");
      ws.onmessage = (ev) => {
        let msg;
        try { msg = JSON.parse(ev.data); } catch { return; }
        if (msg.type === "hello" && session.me && msg.role && msg.role !== session.me.role) {
          // the role changed while the page was open (it reconnected after 4005): load the
          // page again, which asks who we are and checks the role the page needs
          stopped = true;
          ws.close();
          location.reload();
          return;
        }
        if (msg.type === "hello" || msg.type === "auth_ok") { delay = 500; onState && onState("open"); }
        onMessage(msg);
      };
      ws.onclose = (ev) => {
        if (ev.code === 4001 || ev.code === 4003) {
          onState && onState("refused", ev.code);
          if (onSessionEnded) onSessionEnded();
          return;
        }
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
  // #signin (with #signin-form and #signin-error) and #app, optionally #signout and #who;
  // the form's fields (login, password, second-factor code) are built here. onSignedIn(me)
  // runs once the session is known (and, with roles, its role fits); onSignedOut() after a
  // sign-out or when the session ended; onLang() after a switch.
  function page({ roles, onSignedIn, onSignedOut, onLang }) {
    const $ = (id) => document.getElementById(id);
    let signedIn = false;
    function shown(yes) {
      signedIn = yes;
      $("signin").hidden = yes;
      $("app").hidden = !yes;
      if ($("signout")) $("signout").hidden = !yes;
      const me = session.me;
      if ($("who")) $("who").textContent = yes && me ? `${me.login || me.name} (${me.role})` : "";
    }
    function field(id, key, type, autocomplete, hidden) {
      const input = el("input", { id, type, autocomplete, maxlength: type === "password" ? 256 : 64,
                                  required: !hidden, inputmode: id === "totp" ? "numeric" : null });
      const label = el("label", { id: id + "-label", hidden }, el("span", { "data-i18n": key }, t(key)), input);
      return label;
    }
    const form = $("signin-form");
    const error = $("signin-error");
    form.replaceChildren(
      field("login", "login_name", "text", "username", false),
      field("password", "password", "password", "current-password", false),
      field("totp", "totp", "text", "one-time-code", true),
      el("button", { type: "submit", "data-i18n": "login" }, t("login")),
      error,
    );
    async function enter(me, csrf) {
      if (roles && !roles.includes(me.role)) throw new Error(t("role_needed") + ": " + roles.join(" / "));
      session.me = me;
      session.csrf = csrf;
      shown(true);
      await onSignedIn(me);
    }
    function ended(message) {
      session.me = null;
      session.csrf = "";
      const was = signedIn;
      shown(false);
      if (message) error.textContent = message;
      if (was && onSignedOut) onSignedOut();
    }
    onSessionEnded = () => { if (signedIn) ended(t("session_ended")); };
    $("lang").value = getLang();
    $("lang").addEventListener("change", () => {
      setLang($("lang").value);
      translate();
      if (onLang) onLang();
    });
    translate();
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      error.textContent = "";
      const body = { login: $("login").value.trim(), password: $("password").value };
      if (!$("totp-label").hidden) body.code = $("totp").value.trim();
      try {
        const res = await api("POST", "/api/v1/auth/sign-in", body);
        $("password").value = "";
        $("totp").value = "";
        $("totp-label").hidden = true;
        await enter(res.user, res.csrf_token);
      } catch (e) {
        if (e.body && e.body.code === "totp-required") {
          $("totp-label").hidden = false;
          $("totp").required = true;
          $("totp").focus();
          error.textContent = t("totp_needed");
          return;
        }
        if (e.status === 200 || (e.message && !e.status)) {  // signed in, but not for this page
          api("POST", "/api/v1/auth/sign-out").catch(() => {});
        }
        error.textContent = t("error") + ": " + (e.message || e);
      }
    });
    async function signOut() {
      try { await api("POST", "/api/v1/auth/sign-out"); } catch { /* already ended */ }
      ended("");
    }
    if ($("signout")) $("signout").addEventListener("click", signOut);
    api("GET", "/api/v1/auth/session")
      .then((s) => (s.signed_in ? enter(s.user, s.csrf_token) : ended("")))
      .catch(() => ended(""));
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
    en: { login: "Sign in", logout: "Sign out", login_name: "Login", password: "Password",
          totp: "Code from your authenticator app", totp_needed: "Enter the code of your authenticator app",
          session_ended: "Your session ended: please sign in again", error: "Error",
          connected: "connected", disconnected: "reconnecting…", refused: "signed out",
          role_needed: "this page needs the role" },
    zh: { login: "登录", logout: "退出", login_name: "用户名", password: "密码",
          totp: "验证器应用中的动态码", totp_needed: "请输入验证器应用中的动态码",
          session_ended: "会话已结束，请重新登录", error: "错误",
          connected: "已连接", disconnected: "正在重连…", refused: "已退出",
          role_needed: "此页面需要角色" },
  });

  return { addStrings, t, setLang, getLang, translate, el, session, api, download, ApiError,
           socket, page, fmtDuration, fmtTime };
})();
