"use strict";
(() => {
  const { api, el, say } = Ides;
  async function loadThemes() {
    const page = await api("/themes?page_size=100");
    for (const id of ["rtheme", "mfrom", "minto"]) {
      document.getElementById(id).replaceChildren(...page.items.map((t) => { const o = el("option", t.label); o.value = t.id; return o; }));
    }
  }
  async function loadRuns() {
    const page = await api("/admin/runs?page_size=10");
    document.getElementById("runs").replaceChildren(...page.items.map((r) =>
      el("li", "Körning " + r.run_id + ": " + r.n_themes + " teman, " + Math.round(100 * (r.share_unassigned || 0)) + " % utan tema (" + r.created_at + ")")));
  }
  async function loadKeys() {
    const page = await api("/admin/keys");
    document.getElementById("keys").replaceChildren(...page.items.map((k) => el("li", k.key_id + " · " + k.role + " · " + k.name + (k.revoked_at ? " (återkallad)" : ""))));
  }
  document.getElementById("upload").addEventListener("submit", async (e) => {
    e.preventDefault();
    const form = new FormData();
    form.append("file", document.getElementById("file").files[0]);
    const res = await api("/admin/ingest/" + document.getElementById("kind").value, { method: "POST", body: form });
    const out = document.getElementById("uploadresult");
    out.replaceChildren(el("p", (res.inserted + res.updated + res.unchanged) + " rader sparade (" + res.inserted + " nya, " + res.updated + " ändrade), " + res.errors.length + " avvisade."));
    if (res.errors.length) {
      const ul = el("ul");
      for (const err of res.errors) ul.appendChild(el("li", "Rad " + err.line + (err.id ? " (id " + err.id + ")" : "") + ": " + err.reason, "error"));
      out.appendChild(ul);
    }
  });
  document.getElementById("startjob").addEventListener("click", async () => {
    let job = await api("/admin/jobs/cluster", { method: "POST" });
    const bar = document.getElementById("jobprogress"), state = document.getElementById("jobstate");
    while (job.state === "running" || job.state === "queued") {
      bar.value = job.progress; state.textContent = "Steg: " + (job.stage || "") + " (" + Math.round(job.progress * 100) + " %)";
      await new Promise((r) => setTimeout(r, 1000));
      job = await api("/admin/jobs/" + job.job_id);
    }
    bar.value = 1;
    state.textContent = job.state === "done" ? "Klart: " + job.result.n_themes + " teman." : "Misslyckades: " + job.error;
    await Promise.all([loadRuns(), loadThemes()]);
  });
  document.getElementById("rename").addEventListener("submit", async (e) => {
    e.preventDefault();
    await api("/admin/themes/" + document.getElementById("rtheme").value + "/curate", { method: "POST", json: { action: "rename", name: document.getElementById("rname").value } });
    say("Namnet är bytt och behålls vid nästa körning."); await loadThemes();
  });
  document.getElementById("merge").addEventListener("submit", async (e) => {
    e.preventDefault();
    await api("/admin/themes/" + document.getElementById("mfrom").value + "/curate", { method: "POST", json: { action: "merge", other_theme_id: document.getElementById("minto").value } });
    say("Temana är sammanslagna och förblir det."); await loadThemes();
  });
  const all = () => Promise.all([loadThemes(), loadRuns(), loadKeys()]).catch(() => {});
  document.addEventListener("idesluss-key", all);
  if (Ides.hasKey()) all();
})();
