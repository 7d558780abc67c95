"use strict";
(() => {
  const { api, el, say } = Ides;
  const draft = document.getElementById("draft");
  let timer = null, seq = 0;
  function hitItem(h, kind) {
    const li = el("li");
    li.appendChild(el("strong", h.title || h.snippet.slice(0, 80)));
    const meta = [h.department, h.created_at, h.status].filter(Boolean).join(" · ");
    li.appendChild(el("div", meta, "meta"));
    if (h.outcome) li.appendChild(el("span", h.outcome, "outcome"));
    li.appendChild(el("p", h.snippet));
    li.appendChild(el("p", "Varför: " + h.why, "why"));
    const buttons = el("div");
    const verdicts = kind === "needs" ? [["useful", "Användbar"], ["not_useful", "Inte användbar"]]
      : [["useful", "Användbar"], ["not_useful", "Inte användbar"], ["duplicate", "Dubblett"]];
    for (const [verdict, label] of verdicts) {
      const b = el("button", label, "secondary"); b.type = "button";
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
  function render(list, hits, kind) {
    list.replaceChildren(...hits.map((h) => hitItem(h, kind)));
    if (!hits.length) list.appendChild(el("li", "Inga träffar."));
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
})();
