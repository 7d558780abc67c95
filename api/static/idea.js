"use strict";
// One idea: text, suggestions with why, decisions (each an audited API call) and history.
(() => {
  const { api, el, say } = Ides;
  const id = new URLSearchParams(location.search).get("id") || "";
  const enc = encodeURIComponent(id);
  let view = null;
  const when = (t) => (t ? t.replace("T", " ").slice(0, 16) : "");
  function hit(h, kind) {
    const li = el("li");
    const title = h.title || h.snippet.slice(0, 80);
    li.appendChild(el("strong", title));
    li.appendChild(el("div", [h.id, h.department, h.created_at, h.status].filter(Boolean).join(" · "), "meta"));
    if (h.outcome) li.appendChild(el("span", "Utfall: " + h.outcome, "outcome"));
    li.appendChild(el("p", h.snippet));
    li.appendChild(el("p", "Varför: " + h.why, "why"));
    const row = el("div", undefined, "actions");
    const button = (label, aria, fn) => {
      const b = el("button", label, "secondary"); b.type = "button"; b.setAttribute("aria-label", aria + ": " + title);
      b.addEventListener("click", () => fn().then(load).catch(() => {})); row.appendChild(b);
    };
    if (kind === "needs") {
      if (h.link) li.appendChild(el("p", h.link === "confirmed" ? "Kopplingen är bekräftad." : "Kopplingen är avvisad.", "linkstate " + h.link));
      if (h.link !== "confirmed") button("Bekräfta koppling", "Bekräfta koppling till behovet", async () => {
        await api("/links", { method: "POST", json: { idea_id: id, need_id: h.id, state: "confirmed" } }); say("Kopplingen till behovet är bekräftad.");
      });
      if (h.link !== "rejected") button("Avvisa koppling", "Avvisa koppling till behovet", async () => {
        await api("/links", { method: "POST", json: { idea_id: id, need_id: h.id, state: "rejected" } }); say("Kopplingen är avvisad och föreslås inte igen.");
      });
    } else {
      button("Markera som dubblett av denna", "Markera idén som dubblett av", async () => {
        await api("/feedback", { method: "POST", json: { query_kind: "ideas", query_id: id, target_kind: "ideas", target_id: h.id, verdict: "duplicate" } });
        say("Idén är markerad som dubblett av " + h.id + ".");
      });
    }
    li.appendChild(row);
    return li;
  }
  function list(target, hits, kind, empty) {
    target.replaceChildren(...hits.map((h) => hit(h, kind)));
    if (!hits.length) target.appendChild(el("li", empty, "empty"));
  }
  async function load() {
    if (!id) { say("Ingen idé vald. Gå tillbaka till inkorgen och öppna en idé.", true); return; }
    if (Ides.needKey("idén")) return;
    view = await api("/inbox/" + enc);
    const i = view.idea;
    document.getElementById("idea").hidden = false;
    document.getElementById("idea-h").textContent = i.title || "Idé " + i.id;
    document.title = (i.title || i.id) + " – Idéslussen";
    document.getElementById("idea-meta").textContent = [i.id, i.created_at && i.created_at.slice(0, 10), i.department, i.source, "status: " + (i.status || "ny"), i.outcome && "utfall: " + i.outcome].filter(Boolean).join(" · ");
    document.getElementById("idea-text").textContent = i.text;
    const state = [view.awaiting ? "Väntar på granskning." : "Granskad" + (view.reviewed_by ? " av " + view.reviewed_by : "") + (view.reviewed_at ? " " + when(view.reviewed_at) : "") + ".",
      view.assigned_to ? "Tilldelad: " + view.assigned_to + "." : "Inte tilldelad.",
      view.theme ? (view.theme.provisional ? "Preliminärt tema: " : "Tema: ") + view.theme.label + "." : "Inget tema än.",
      view.duplicates.length ? "Möjlig dubblett av " + view.duplicates.join(", ") + "." : ""].filter(Boolean).join(" ");
    document.getElementById("idea-state").textContent = state;
    list(document.getElementById("ineeds"), view.needs, "needs", "Inga behov hittade. Finns behoven inlästa? Ladda upp en behovsfil under Administration.");
    list(document.getElementById("isimilar"), view.similar, "ideas", "Inga liknande tidigare idéer.");
    document.getElementById("s-status").value = i.status || "ny";
    document.getElementById("s-outcome").value = i.outcome || "";
    const rb = document.getElementById("reviewbtn");
    rb.textContent = view.awaiting ? "Markera som granskad" : "Skicka tillbaka till inkorgen";
    const hist = document.getElementById("history");
    hist.replaceChildren(...view.history.map((e) => el("li", when(e.at) + " · " + e.actor + " · " + e.what + (e.target ? " (" + e.target + ")" : ""))));
    if (!view.history.length) hist.appendChild(el("li", "Ingen historik ännu.", "empty"));
  }
  document.getElementById("statusform").addEventListener("submit", async (e) => {
    e.preventDefault();
    await api("/ideas/" + enc, { method: "PATCH", json: { status: document.getElementById("s-status").value, outcome: document.getElementById("s-outcome").value || null } }).catch(() => null)
      && say("Status och utfall är sparade.");
    await load().catch(() => {});
  });
  document.getElementById("assignform").addEventListener("submit", async (e) => {
    e.preventDefault();
    const name = document.getElementById("a-coach").value.trim();
    if (!name) { say("Skriv coachens namn först.", true); return; }
    await api("/ideas/" + enc + "/assign", { method: "POST", json: { coach: name } });
    say("Idén är tilldelad " + name + "."); await load();
  });
  document.getElementById("reviewbtn").addEventListener("click", async () => {
    const reviewed = !view || view.awaiting;
    await api("/ideas/" + enc + "/review", { method: "POST", json: { reviewed } });
    say(reviewed ? "Idén är granskad och har lämnat inkorgen." : "Idén är tillbaka i inkorgen."); await load();
  });
  document.addEventListener("idesluss-key", () => load().catch(() => {}));
  load().then(() => { const h = document.getElementById("idea-h"); if (view) h.focus(); }).catch(() => {});
})();
