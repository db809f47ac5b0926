// The dashboard's front end. Pages are rendered by the server and work
// without script; this bundle enhances them in place. Every fetch goes to
// the controller that served the page (the CSP allows nothing else).

import { select } from "d3-selection";
import { api, stateWord, sparkline } from "./common.js";
import { campaignPage } from "./campaign.js";
import { episodePage } from "./episode.js";
import { agentsPage } from "./agents.js";
import { resultsPage } from "./results.js";

async function refreshOverview(table, agents) {
  const o = await api("/api/overview");
  const from = new Date(o.from), to = new Date(o.at);
  const rows = select(table).select("tbody").selectAll("tr")
    .data(o.campaigns) // no key: the server-rendered rows carry no data
    .join("tr");
  rows.each(function (c) {
    this.replaceChildren();
    const name = document.createElement("td");
    const link = document.createElement("a");
    link.href = "/campaigns/" + encodeURIComponent(c.name);
    link.textContent = c.name;
    name.appendChild(link);
    const scope = document.createElement("td");
    scope.textContent = c.scope;
    const state = document.createElement("td");
    const word = c.state ? stateWord(c.state) : c.status;
    state.textContent = word;
    state.className = "state state-" + word.toLowerCase();
    const day = document.createElement("td");
    day.appendChild(sparkline(c.bands, from, to));
    this.append(name, scope, state, day);
  });
  if (agents) {
    select(agents).select("tbody").selectAll("tr")
      .data(o.agents)
      .join("tr")
      .each(function (a) {
        this.replaceChildren();
        const health = a.healthy ? "healthy" : "unhealthy" + (a.health_reason ? ": " + a.health_reason : "");
        for (const text of [a.name, a.connected ? "connected" : "not connected", health, a.last_seen || "never", a.version || ""]) {
          const td = document.createElement("td");
          td.textContent = text;
          this.appendChild(td);
        }
      });
  }
}

function main() {
  const campaign = document.getElementById("campaign");
  if (campaign) campaignPage(campaign);
  const episode = document.getElementById("episode");
  if (episode) episodePage(episode);
  const results = document.getElementById("results-page");
  if (results) resultsPage(results);
  const agentList = document.getElementById("agents-page");
  if (agentList) agentsPage(agentList);
  const table = document.getElementById("campaigns");
  if (table) {
    const agents = document.getElementById("agents");
    const tick = () => refreshOverview(table, agents).catch((e) => console.warn("overview:", e.message));
    tick();
    setInterval(tick, 15000);
  }
}

if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", main);
else main();
