"use strict";
(() => {
  const { api, el, say, fmtPct } = Ides;
  const config = { displaylogo: false, responsive: true };
  // Plotly renders a subset of HTML in every text it draws (<a href>, <b>, <br>, ...) and decodes
  // &lt; &gt; &amp;: every data value goes through esc() before plotly sees it, so it stays text.
  const esc = (v) => (v === null || v === undefined ? v : String(v).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;"));
  let data = null;
  function drawTrend() {
    const id = document.getElementById("trendtheme").value;
    const series = data.trends[id] || { ideas: {}, needs: {} };
    const months = [...new Set([...Object.keys(series.ideas), ...Object.keys(series.needs)])].sort();
    const trace = (kind, name, color) => ({ x: months.map(esc), y: months.map((m) => series[kind][m] || 0), type: "bar", name, marker: { color } });
    Plotly.react("trend", [trace("ideas", "idéer", "#0b5394"), trace("needs", "behov", "#e69138")],
      { barmode: "stack", margin: { t: 10, r: 10, b: 40, l: 40 }, yaxis: { title: "antal per månad" }, legend: { orientation: "h" } }, config);
  }
  async function load() {
    if (!Ides.hasKey()) { say("Ange en API-nyckel för att se översikten."); return; }
    data = await api("/overview");
    document.getElementById("runinfo").textContent = data.run_id ? "Teman från körning " + data.run_id + " (" + data.created_at + ")" : "Inga teman ännu.";
    const body = document.querySelector("#themes tbody");
    body.replaceChildren(...data.themes.map((t) => {
      const tr = el("tr");
      tr.appendChild(el("td", t.label)); tr.appendChild(el("td", String(t.ideas))); tr.appendChild(el("td", String(t.needs))); tr.appendChild(el("td", fmtPct(t.growth)));
      return tr;
    }));
    const select = document.getElementById("trendtheme");
    select.replaceChildren(...data.themes.map((t) => { const o = el("option", t.label); o.value = t.id; return o; }));
    drawTrend();
    const labels = Object.fromEntries(data.themes.map((t) => [t.id, t.label]));
    const byTheme = {};
    for (const p of data.map) (byTheme[p.theme_id] = byTheme[p.theme_id] || []).push(p);
    Plotly.react("map", Object.entries(byTheme).map(([id, pts]) => ({
      x: pts.map((p) => p.x), y: pts.map((p) => p.y), text: pts.map((p) => esc(p.title)), name: esc(labels[id] || id),
      type: "scatter", mode: "markers", hovertemplate: "%{text}<extra>%{fullData.name}</extra>",
    })), { margin: { t: 10, r: 10, b: 10, l: 10 }, xaxis: { visible: false }, yaxis: { visible: false }, legend: { font: { size: 10 } } }, config);
    Plotly.react("heat", [{ z: data.heatmap, x: data.departments.map(esc), y: data.themes.map((t) => esc(t.label)), type: "heatmap", colorscale: [[0, "#f7fbff"], [1, "#08306b"]], hovertemplate: "%{y}<br>%{x}: %{z}<extra></extra>" }],
      { margin: { t: 10, r: 10, b: 120, l: 240 } }, config);
    const unmet = document.getElementById("unmet");
    unmet.replaceChildren(...data.unmet.map((t) => el("li", t.label + ": " + t.needs + " behov, " + t.ideas + " idéer")));
    if (!data.unmet.length) unmet.appendChild(el("li", "Inga teman med fler behov än idéer."));
    say("Översikten är uppdaterad.");
  }
  document.getElementById("trendtheme").addEventListener("change", drawTrend);
  document.addEventListener("idesluss-key", () => load().catch(() => {}));
  load().catch(() => {});
})();
