// The agents page: every vantage's health, session, spool, gaps, engines
// and version, a page of the API's at a time.

import { api } from "./common.js";

function cell(text) {
  const td = document.createElement("td");
  td.textContent = text;
  return td;
}

export function agentsPage(main) {
  const tbody = main.querySelector("#agent-list tbody");
  const more = document.getElementById("more");
  let next = "";
  const load = async () => {
    const page = await api("/api/agents" + (next ? "?page_token=" + encodeURIComponent(next) : ""));
    for (const a of page.agents) {
      const tr = document.createElement("tr");
      const health = cell(a.healthy ? "healthy" : "unhealthy" + (a.health_reason ? ": " + a.health_reason : ""));
      health.className = "state state-" + (a.healthy ? "reachable" : "unreachable");
      tr.append(cell(a.name), cell(a.state), cell(a.connected ? "connected" + (a.remote_addr ? " from " + a.remote_addr : "") : "not connected"),
        health, cell(a.last_seen || "never"), cell(String(a.spool_pending)), cell(String(a.spool_dropped)), cell(String(a.gaps)),
        cell(String(a.results_stored)), cell(String(a.tasks)), cell((a.engines || []).join(", ")), cell(a.version || ""));
      tbody.appendChild(tr);
    }
    next = page.next_page_token || "";
    more.hidden = !next;
  };
  more.addEventListener("click", () => load().catch((e) => console.warn("agents:", e.message)));
  load().catch((e) => console.warn("agents:", e.message));
}
