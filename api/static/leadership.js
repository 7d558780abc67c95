"use strict";
// The leadership overview (also its printable variant): tables beside every chart, growth only where
// both quarters hold enough items (else the counts), and the CSV export.
(() => {
  const { api, el, say } = Ides;
  // plotly.js is fetched at install time (docs/install.md); without it the tables still carry every figure
  const plot = (...args) => (window.Plotly ? window.Plotly.react(...args) : null);
  const config = { displaylogo: false, responsive: true, displayModeBar: false };
  const printable = !!document.getElementById("printbtn");
  // Plotly renders a subset of HTML in every text it draws (<a href>, <b>, <br>, ...) and decodes
  // &lt; &gt; &amp;: every data value goes through esc() before plotly sees it, so it stays text.
  const esc = (v) => (v === null || v === undefined ? v : String(v).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;"));
  const short = (s, n) => (s.length > n ? s.slice(0, n - 1) + "…" : s);
  const font = { family: "system-ui, sans-serif", size: 13, color: "#1b1b1b" };
  let data = null;
  function growth(t) {
    if (t.growth !== null && t.growth !== undefined) return Ides.fmtPct(t.growth);
    return t.previous_quarter_count + " → " + t.last_quarter_count + " nya (för få för procent)";
  }
  function drawTrend() {
    const id = document.getElementById("trendtheme").value;
    const series = data.trends[id] || { ideas: {}, needs: {} };
    const months = [...new Set([...Object.keys(series.ideas), ...Object.keys(series.needs)])].sort();
    const trace = (kind, name, color) => ({ x: months.map(esc), y: months.map((m) => series[kind][m] || 0), type: "bar", name, marker: { color } });
    plot("trend", [trace("ideas", "idéer", "#0b5394"), trace("needs", "behov", "#b45309")],
      { barmode: "stack", font, margin: { t: 10, r: 10, b: 10, l: 10 }, xaxis: { title: { text: "månad" }, automargin: true, type: "category" },
        yaxis: { title: { text: "antal per månad" }, automargin: true }, legend: { orientation: "h", y: 1.12 } }, config);
    document.querySelector("#trendtable tbody").replaceChildren(...months.map((m) => {
      const tr = el("tr"); tr.appendChild(el("th", m)); tr.firstChild.scope = "row";
      tr.appendChild(el("td", String(series.ideas[m] || 0))); tr.appendChild(el("td", String(series.needs[m] || 0))); return tr;
    }));
  }
  function tables() {
    const body = document.querySelector("#themes tbody");
    body.replaceChildren(...data.themes.map((t) => {
      const tr = el("tr"), th = el("th"); th.scope = "row";
      const a = el("a", t.label); a.href = "/leadership/theme?id=" + encodeURIComponent(t.id); th.appendChild(a);
      if (t.representative_title) th.appendChild(el("span", "t.ex. ”" + t.representative_title + "”", "meta rep"));
      tr.appendChild(th);
      tr.appendChild(el("td", String(t.ideas))); tr.appendChild(el("td", String(t.needs))); tr.appendChild(el("td", growth(t)));
      return tr;
    }));
    if (!data.themes.length) { const tr = el("tr"), td = el("td", "Inga teman ännu. Kör nattjobbet under Administration (Kör nu) när idéer och behov är inlästa."); td.colSpan = 4; tr.appendChild(td); body.appendChild(tr); }
    const head = el("tr"); head.appendChild(el("th", "Tema")); head.firstChild.scope = "col";
    for (const d of data.departments) { const th = el("th", d); th.scope = "col"; head.appendChild(th); }
    document.querySelector("#heattable thead").replaceChildren(head);
    document.querySelector("#heattable tbody").replaceChildren(...data.themes.map((t, i) => {
      const tr = el("tr"), th = el("th", t.label); th.scope = "row"; tr.appendChild(th);
      for (const n of data.heatmap[i]) tr.appendChild(el("td", String(n)));
      return tr;
    }));
  }
  function charts() {
    const select = document.getElementById("trendtheme");
    select.replaceChildren(...data.themes.map((t) => { const o = el("option", t.label); o.value = t.id; return o; }));
    drawTrend();
    const labels = Object.fromEntries(data.themes.map((t) => [t.id, t.label]));
    if (document.getElementById("map")) {
      const byTheme = {};
      for (const p of data.map) (byTheme[p.theme_id] = byTheme[p.theme_id] || []).push(p);
      plot("map", Object.entries(byTheme).map(([id, pts]) => ({
        x: pts.map((p) => p.x), y: pts.map((p) => p.y), text: pts.map((p) => esc(p.title)), name: esc(short(labels[id] || id, 40)),
        type: "scatter", mode: "markers", hovertemplate: "%{text}<extra>%{fullData.name}</extra>",
      })), { font, margin: { t: 10, r: 10, b: 10, l: 10 }, xaxis: { visible: false }, yaxis: { visible: false }, legend: { font: { size: 11 } } }, config);
    }
    // long department and theme names are shortened on the axes (the whole name is in the hover and the table)
    plot("heat", [{ z: data.heatmap, x: data.departments.map((d) => esc(short(d, 60))), y: data.themes.map((t) => esc(short(t.label, 38))),
      customdata: data.themes.map((t) => data.departments.map((d) => [esc(t.label), esc(d)])),
      type: "heatmap", colorscale: [[0, "#f7fbff"], [1, "#08306b"]], hovertemplate: "%{customdata[0]}<br>%{customdata[1]}: %{z}<extra></extra>",
      colorbar: { title: { text: "antal" } } }],
      { font, margin: { t: 10, r: 10, b: 10, l: 10 }, xaxis: { automargin: true, tickangle: -35, title: { text: "förvaltning" } }, yaxis: { automargin: true, title: { text: "tema" } } }, config);
  }
  async function load() {
    if (Ides.needKey("översikten")) return;
    data = await api("/overview");
    document.getElementById("runinfo").textContent = data.run_id ? "Teman från körning " + data.run_id + " (" + data.created_at.replace("T", " ").slice(0, 16) + ")" : "Inga teman ännu: kör nattjobbet under Administration.";
    tables();
    charts();
    const unmet = document.getElementById("unmet");
    unmet.replaceChildren(...data.unmet.map((t) => el("li", t.label + ": " + t.needs + " behov, " + t.ideas + " idéer")));
    if (!data.unmet.length) unmet.appendChild(el("li", "Inga teman med fler behov än idéer."));
    say(window.Plotly ? "Översikten är uppdaterad." : "Översikten är uppdaterad, utan diagram: plotly.js saknas på servern (make install). Tabellerna visar samma siffror.", !window.Plotly);
  }
  async function exportCsv() {
    const res = await fetch("/overview.csv", { headers: { Authorization: "Bearer " + sessionStorage.getItem("idesluss-key") } });
    if (!res.ok) { say("Exporten gick inte: kontrollera nyckeln och försök igen.", true); return; }
    const url = URL.createObjectURL(await res.blob());
    const a = el("a"); a.href = url; a.download = "idesluss-oversikt.csv"; document.body.appendChild(a); a.click(); a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 1000);
    say("Tabellerna är nedladdade som CSV.");
  }
  document.getElementById("trendtheme").addEventListener("change", drawTrend);
  const csv = document.getElementById("csvexport"); if (csv) csv.addEventListener("click", () => { if (!Ides.needKey("exporten")) exportCsv().catch(() => {}); });
  const pr = document.getElementById("printbtn"); if (pr) pr.addEventListener("click", () => window.print());
  document.addEventListener("idesluss-key", () => load().catch(() => {}));
  load().catch(() => {});
  if (printable) document.body.classList.add("printable");
})();
