"use strict";
// The region's page: a bar per regional theme, one coloured part per municipality, and the same data as a table.
(() => {
  const { api, el, say } = Ides;
  // colour-blind-safe palette (Okabe–Ito), each with >= 3:1 contrast against white for the bar parts
  const COLOURS = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000"];
  async function load() {
    const bars = document.getElementById("regionbars"), body = document.querySelector("#regiontable tbody");
    if (Ides.needKey("regionens teman")) { bars.replaceChildren(); body.replaceChildren(); return; }
    const res = await api("/region/overview");
    const colour = Object.fromEntries(res.tenants.map((t, i) => [t, COLOURS[i % COLOURS.length]]));
    const most = Math.max(1, ...res.themes.map((t) => t.shared_ideas));
    const legend = el("p", "Kommuner: ", "muted");
    for (const t of res.tenants) {
      const swatch = el("span", "■ ");
      swatch.style.color = colour[t];
      legend.appendChild(swatch); legend.appendChild(document.createTextNode(t + "  "));
    }
    const list = el("ul"); list.style.listStyle = "none"; list.style.padding = "0";
    for (const theme of res.themes) {
      const li = el("li"); li.style.marginBottom = ".75rem";
      li.appendChild(el("strong", theme.label));
      li.appendChild(el("span", "  " + theme.municipalities + " kommuner, " + theme.shared_ideas + " delade idéer", "muted"));
      const bar = el("div"); bar.style.display = "flex"; bar.style.height = "1.1rem";
      bar.style.width = Math.max(4, Math.round(100 * theme.shared_ideas / most)) + "%";
      bar.setAttribute("role", "img");
      bar.setAttribute("aria-label", Object.entries(theme.by_tenant).map(([t, n]) => t + " " + n).join(", "));
      for (const [tenant, n] of Object.entries(theme.by_tenant)) {
        const part = el("span"); part.style.flex = String(n); part.style.background = colour[tenant];
        part.title = tenant + ": " + n; bar.appendChild(part);
      }
      li.appendChild(bar); list.appendChild(li);
    }
    bars.replaceChildren(legend, list);
    body.replaceChildren(...res.themes.map((theme) => {
      const tr = el("tr");
      tr.appendChild(el("td", theme.label));
      tr.appendChild(el("td", String(theme.municipalities)));
      tr.appendChild(el("td", Object.entries(theme.by_tenant).map(([t, n]) => t + ": " + n).join(", ")));
      const ideas = el("td"), ul = el("ul");
      for (const i of theme.ideas.slice(0, 5)) ul.appendChild(el("li", [i.tenant, i.title || i.id, i.status, i.outcome].filter(Boolean).join(" · ")));
      ideas.appendChild(ul);
      if (theme.ideas.length > 5) ideas.appendChild(el("p", "och " + (theme.ideas.length - 5) + " idéer till", "muted"));
      tr.appendChild(ideas);
      return tr;
    }));
    if (!res.themes.length) {
      bars.replaceChildren(el("p", "Inga delade idéer i regionens kommuner ännu. En kommun delar en idé med fältet shared = true, eller delar alla som standard (idesluss --tenant NAMN tenants share-default true)."));
    }
    say("Regionens teman är uppdaterade.");
  }
  document.addEventListener("idesluss-key", () => load().catch(() => {}));
  load().catch(() => {});
})();
