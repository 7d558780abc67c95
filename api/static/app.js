// Shared helpers: the API key lives in sessionStorage; every value from the API is written with
// textContent (never innerHTML), so no stored text can run as markup.
"use strict";
const Ides = (() => {
  const keyInput = document.getElementById("apikey");
  const status = document.getElementById("status");
  keyInput.value = sessionStorage.getItem("idesluss-key") || "";
  document.getElementById("keyform").addEventListener("submit", (e) => {
    e.preventDefault();
    sessionStorage.setItem("idesluss-key", keyInput.value.trim());
    say("Nyckeln är sparad.");
    document.dispatchEvent(new Event("idesluss-key"));
  });
  function say(text, isError) { status.textContent = text; status.className = isError ? "error" : "muted"; }
  async function api(path, options = {}) {
    const headers = Object.assign({}, options.headers || {});
    const key = sessionStorage.getItem("idesluss-key");
    if (key) headers["Authorization"] = "Bearer " + key;
    if (options.json !== undefined) { headers["Content-Type"] = "application/json"; options.body = JSON.stringify(options.json); }
    const res = await fetch(path, Object.assign({}, options, { headers }));
    if (res.status === 204) return null;
    const body = await res.json().catch(() => ({}));
    if (!res.ok) {
      const detail = typeof body.detail === "string" ? body.detail : res.statusText;
      const hint = res.status === 401 ? " Ange en giltig API-nyckel överst på sidan och tryck Spara."
        : res.status === 403 ? " Använd en nyckel med rätt roll." : res.status === 429 ? " Vänta en stund och försök igen."
        : res.status >= 500 ? " Försök igen om en stund; kvarstår felet, kontakta administratören." : "";
      const msg = "Det gick inte: " + detail + "." + hint;
      say(msg, true); throw new Error(msg);
    }
    return body;
  }
  function el(tag, text, cls) { const n = document.createElement(tag); if (text !== undefined && text !== null) n.textContent = text; if (cls) n.className = cls; return n; }
  function fmtPct(x) { return x === null || x === undefined ? "–" : (x > 0 ? "+" : "") + Math.round(x * 100) + " %"; }
  function needKey(where) {
    if (sessionStorage.getItem("idesluss-key")) return false;
    say("Ange en API-nyckel överst på sidan och tryck Spara för att se " + where + ".");
    return true;
  }
  return { api, el, say, fmtPct, needKey, hasKey: () => !!sessionStorage.getItem("idesluss-key") };
})();
