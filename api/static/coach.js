"use strict";
// The coach page: the inbox (keyboard: j/k or arrows move, Enter opens) and the draft box.
(() => {
  const { api, el, say } = Ides;
  const list = document.getElementById("inbox");
  let page = 1, total = 0, pageSize = 20;

  // -- the inbox ------------------------------------------------------------------------------
  function card(c) {
    const li = el("li", undefined, "card");
    const a = el("a", c.idea.title || c.idea.text.slice(0, 80));
    a.href = "/coach/idea?id=" + encodeURIComponent(c.idea.id);
    a.className = "open";
    const h = el("h3"); h.appendChild(a); li.appendChild(h);
    li.appendChild(el("p", [c.idea.id, c.idea.created_at && c.idea.created_at.slice(0, 10), c.idea.department, c.idea.source].filter(Boolean).join(" · "), "meta"));
    const facts = el("ul", undefined, "facts");
    const top = c.similar[0];
    facts.appendChild(el("li", top ? "Liknar: " + (top.title || top.snippet) + (top.outcome ? " (" + top.outcome + ")" : top.status ? " (" + top.status + ")" : "") : "Inga liknande tidigare idéer."));
    facts.appendChild(el("li", c.needs.length ? "Behov: " + (c.needs[0].title || c.needs[0].snippet) + (c.needs.length > 1 ? " och " + (c.needs.length - 1) + " till" : "") : "Inga behov hittade."));
    facts.appendChild(el("li", c.duplicates.length ? "Möjlig dubblett av " + c.duplicates.join(", ") : "Ingen dubblett."));
    facts.appendChild(el("li", c.theme ? (c.theme.provisional ? "Preliminärt tema: " : "Tema: ") + c.theme.label : "Inget tema än."));
    if (c.assigned_to) facts.appendChild(el("li", "Tilldelad: " + c.assigned_to));
    li.appendChild(facts);
    return li;
  }
  function query() {
    const p = new URLSearchParams({ page: String(page), page_size: String(pageSize) });
    for (const [id, name] of [["f-department", "department"], ["f-source", "source"], ["f-from", "date_from"], ["f-to", "date_to"], ["f-theme", "theme"]]) {
      const v = document.getElementById(id).value; if (v) p.set(name, v);
    }
    return p.toString();
  }
  function fill(id, values, labelOf) {
    const select = document.getElementById(id), keep = select.value;
    select.replaceChildren(el("option", "Alla"), ...values.map((v) => { const o = el("option", labelOf ? labelOf(v) : v); o.value = labelOf ? v.id : v; return o; }));
    select.firstChild.value = "";
    select.value = keep;
  }
  async function loadInbox() {
    if (Ides.needKey("inkorgen")) {
      list.replaceChildren(el("li", "Ingen nyckel: ange en API-nyckel för en idécoach överst på sidan och tryck Spara.", "empty"));
      return;
    }
    const res = await api("/inbox?" + query());
    total = res.total;
    fill("f-department", res.departments); fill("f-source", res.sources);
    document.getElementById("inboxcount").textContent = total === 1 ? "1 idé väntar på granskning." : total + " idéer väntar på granskning.";
    list.replaceChildren(...res.items.map(card));
    if (!res.items.length) list.appendChild(el("li", "Inga idéer väntar. Nya idéer hamnar här när de kommer in; ändra filtren eller ladda upp en fil under Administration.", "empty"));
    const pages = Math.max(1, Math.ceil(total / pageSize));
    document.getElementById("pageinfo").textContent = "Sida " + page + " av " + pages;
    document.getElementById("prevpage").disabled = page <= 1;
    document.getElementById("nextpage").disabled = page >= pages;
    say("Inkorgen är uppdaterad.");
  }
  async function loadThemes() {
    if (!Ides.hasKey()) return;
    const res = await api("/themes?page_size=100").catch(() => ({ items: [] }));
    fill("f-theme", res.items, (t) => t.label);
  }
  document.getElementById("inboxfilters").addEventListener("submit", (e) => { e.preventDefault(); page = 1; loadInbox().catch(() => {}); });
  document.getElementById("prevpage").addEventListener("click", () => { page = Math.max(1, page - 1); loadInbox().catch(() => {}); });
  document.getElementById("nextpage").addEventListener("click", () => { page += 1; loadInbox().catch(() => {}); });
  // j/k and the arrow keys move between the ideas; Enter follows the focused link (a plain <a>)
  document.addEventListener("keydown", (e) => {
    const t = e.target;
    if (e.altKey || e.ctrlKey || e.metaKey || (t && (t.tagName === "INPUT" || t.tagName === "TEXTAREA" || t.tagName === "SELECT"))) return;
    const links = [...list.querySelectorAll("a.open")];
    if (!links.length) return;
    const at = links.indexOf(document.activeElement);
    let next = null;
    if (e.key === "j" || e.key === "ArrowDown") next = at < 0 ? 0 : Math.min(links.length - 1, at + 1);
    if (e.key === "k" || e.key === "ArrowUp") next = at < 0 ? 0 : Math.max(0, at - 1);
    if (next === null) return;
    e.preventDefault();
    links[next].focus();
    links[next].scrollIntoView({ block: "nearest" });
  });

  // -- the draft box ----------------------------------------------------------------------------
  const draft = document.getElementById("draft");
  let timer = null, seq = 0;
  function hitItem(h, kind) {
    const li = el("li");
    li.appendChild(el("strong", h.title || h.snippet.slice(0, 80)));
    li.appendChild(el("div", [h.department, h.created_at, h.status].filter(Boolean).join(" · "), "meta"));
    if (h.outcome) li.appendChild(el("span", h.outcome, "outcome"));
    li.appendChild(el("p", h.snippet));
    li.appendChild(el("p", "Varför: " + h.why, "why"));
    const buttons = el("div");
    const verdicts = kind === "needs" ? [["useful", "Användbar"], ["not_useful", "Inte användbar"]]
      : [["useful", "Användbar"], ["not_useful", "Inte användbar"], ["duplicate", "Dubblett"]];
    for (const [verdict, label] of verdicts) {
      const b = el("button", label, "secondary"); b.type = "button";
      b.setAttribute("aria-label", label + ": " + (h.title || h.id));
      b.addEventListener("click", async () => {
        await api("/feedback", { method: "POST", json: { query_kind: "draft", query_id: draftId(), target_kind: kind, target_id: h.id, verdict } });
        say("Tack! Återkopplingen är sparad.");
      });
      buttons.appendChild(b);
    }
    li.appendChild(buttons);
    return li;
  }
  function draftId() { let h = 0; for (const c of draft.value) h = (h * 31 + c.charCodeAt(0)) | 0; return "draft-" + (h >>> 0).toString(16); }
  function render(target, hits, kind) {
    target.replaceChildren(...hits.map((h) => hitItem(h, kind)));
    if (!hits.length) target.appendChild(el("li", "Inga träffar. Skriv mer om idén, så söker tjänsten igen."));
  }
  async function refresh() {
    const text = draft.value.trim();
    if (text.length < 3) return;
    const mine = ++seq;
    const res = await api("/suggest", { method: "POST", json: { text, k: 5 } });
    if (mine !== seq) return;  // a newer keystroke already asked
    render(document.getElementById("similar"), res.similar, "ideas");
    render(document.getElementById("needs"), res.needs, "needs");
    document.getElementById("theme").textContent = res.theme
      ? (res.theme.provisional ? "Preliminärt tema: " : "Tema: ") + res.theme.label : "Inget tema passar än.";
    document.getElementById("dups").textContent = res.duplicates.length
      ? "Möjliga dubbletter: " + res.duplicates.join(", ") : "Inga dubbletter.";
    say("Förslag uppdaterade.");
  }
  draft.addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(() => refresh().catch(() => {}), 300); });
  const all = () => { loadThemes(); loadInbox().catch(() => {}); };
  document.addEventListener("idesluss-key", all);
  all();
})();
