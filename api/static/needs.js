"use strict";
// The needs view: needs with the ideas confirmed to answer them; unmet ones; sorted by how many raised them.
(() => {
  const { api, el, say } = Ides;
  async function load() {
    const body = document.querySelector("#needstable tbody");
    if (Ides.needKey("behoven")) { body.replaceChildren(); return; }
    const sort = document.getElementById("n-sort").value, unmet = document.getElementById("n-unmet").checked;
    const res = await api("/needs?sort=" + sort + (unmet ? "&unmet=true" : ""));
    document.getElementById("needscount").textContent = res.total + " behov, varav " + res.unmet + " som ingen idé möter än.";
    body.replaceChildren(...res.items.map((n) => {
      const tr = el("tr");
      const td = el("td"); td.appendChild(el("strong", n.title || n.id)); td.appendChild(el("p", n.text));
      td.appendChild(el("p", [n.id, n.department, n.source, n.created_at].filter(Boolean).join(" · "), "meta"));
      tr.appendChild(td);
      tr.appendChild(el("td", n.raised + (n.raised_basis === "count" ? " (antal i filen)" : n.raised > 1 ? " (behovet och dess dubbletter)" : "")));
      const ideas = el("td");
      if (n.ideas.length) {
        const ul = el("ul");
        for (const i of n.ideas) { const li = el("li"); const a = el("a", i.title); a.href = "/coach/idea?id=" + encodeURIComponent(i.id); li.appendChild(a); ul.appendChild(li); }
        ideas.appendChild(ul);
      } else ideas.appendChild(el("span", "Ingen idé ännu (otillgodosett)", "unmet"));
      tr.appendChild(ideas);
      return tr;
    }));
    if (!res.items.length) {
      const tr = el("tr"), td = el("td", "Inga behov att visa. Ladda upp en behovsfil under Administration, eller visa alla behov.");
      td.colSpan = 3; tr.appendChild(td); body.appendChild(tr);
    }
    say("Behoven är uppdaterade.");
  }
  document.getElementById("needsform").addEventListener("submit", (e) => { e.preventDefault(); load().catch(() => {}); });
  document.addEventListener("idesluss-key", () => load().catch(() => {}));
  load().catch(() => {});
})();
