// The interactive API description (Swagger UI from the npm registry, served under
// /vendor/). "Try it out" uses the browser's session when signed in on a page of this
// site (state-changing calls carry its CSRF token), or an API token via "Authorize".
"use strict";

(async () => {
  let csrf = "";
  try {
    const res = await fetch("/api/v1/auth/session", { credentials: "same-origin" });
    const s = await res.json();
    if (s.signed_in) csrf = s.csrf_token;
  } catch { /* not signed in: tokens only */ }
  window.ui = SwaggerUIBundle({
    url: "/api/v1/openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    requestInterceptor: (req) => {
      if (csrf && req.method && req.method.toUpperCase() !== "GET") req.headers["X-CSRF-Token"] = csrf;
      return req;
    },
  });
})();
