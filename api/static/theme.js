"use strict";
// One theme for leadership: representatives, trend (chart and table), departments, unmet needs.
(() => {
  const { api, el, say } = Ides;
  // plotly.js is fetched at install time (docs/install.md); without it the tables still carry every figure
  const plot = (...args) => (window.Plotly ? window.Plotly.react(...args) : null);
  const id = new URLSearchParams(location.search).get("id") || "";
  const esc = (v) => String(v).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
  async function load() {
    if (!id) { say("Inget tema valt. Gå tillbaka till översikten och välj ett tema i tabellen.", true); return; }
    if (Ides.needKey("temat")) return;
    const d = await api("/themes/" + encodeURIComponent(id) + "/page");
    const t = d.theme;
    document.getElementById("themepage").hidden = false;
    document.getElementById("theme-h").textContent = t.label;
    document.title = t.label + " – Idéslussen";
    const growth = t.growth !== null ? "Tillväxt " + Ides.fmtPct(t.growth) + " (" + t.last_quarter + ")."
      : "Nya senaste kvartalet: " + t.last_quarter_count + ", kvartalet före: " + t.previous_quarter_count + " (tillväxt visas från " + d.min_growth_items + " per kvartal).";
    document.getElementById("theme-facts").textContent = t.ideas + " idéer och " + t.needs + " behov. " + growth + " Nyckelord: " + t.keywords.join(", ") + ".";
    document.getElementById("reps").replaceChildren(...d.representatives.map((r) => {
      const li = el("li"); li.appendChild(el("strong", (r.kind === "needs" ? "Behov: " : "Idé: ") + (r.title || r.id))); li.appendChild(el("p", r.text)); return li;
    }));
    const months = [...new Set([...Object.keys(d.per_month.ideas), ...Object.keys(d.per_month.needs)])].sort();
    plot("ttrend", ["ideas", "needs"].map((k, i) => ({ x: months.map(esc), y: months.map((m) => d.per_month[k][m] || 0), type: "bar", name: k === "ideas" ? "idéer" : "behov", marker: { color: i ? "#b45309" : "#0b5394" } })),
      { barmode: "stack", margin: { t: 10, r: 10, b: 10, l: 10 }, xaxis: { type: "category", automargin: true, title: { text: "månad" } }, yaxis: { automargin: true, title: { text: "antal" } } }, { displaylogo: false, responsive: true, displayModeBar: false });
    document.querySelector("#ttrendtable tbody").replaceChildren(...months.map((m) => {
      const tr = el("tr"), th = el("th", m); th.scope = "row"; tr.appendChild(th);
      tr.appendChild(el("td", String(d.per_month.ideas[m] || 0))); tr.appendChild(el("td", String(d.per_month.needs[m] || 0))); return tr;
    }));
    document.querySelector("#tdepts tbody").replaceChildren(...Object.entries(t.departments).map(([name, n]) => {
      const tr = el("tr"); tr.appendChild(el("td", name)); tr.appendChild(el("td", String(n))); return tr;
    }));
    const unmet = document.getElementById("tunmet");
    unmet.replaceChildren(...d.unmet.map((n) => el("li", n.title + " (" + n.id + ")")));
    if (!d.unmet.length) unmet.appendChild(el("li", "Alla behov i temat har minst en bekräftad idé."));
    say(window.Plotly ? "Temat är uppdaterat." : "Temat är uppdaterat, utan diagram: plotly.js saknas på servern (make install). Tabellerna visar samma siffror.", !window.Plotly);
  }
  document.addEventListener("idesluss-key", () => load().catch(() => {}));
  load().catch(() => {});
})();
