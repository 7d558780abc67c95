// Starts Swagger UI on /docs. FastAPI's own page does this in an inline script, which the
// Content-Security-Policy (script-src 'self') forbids; the settings come from data attributes.
"use strict";
(() => {
  const root = document.getElementById("swagger-ui");
  const params = JSON.parse(root.dataset.params || "{}");
  window.ui = SwaggerUIBundle(Object.assign({}, params, {
    url: root.dataset.openapiUrl,
    presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset],
  }));
})();
