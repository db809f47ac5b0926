// The dashboard's front end. Pages are rendered by the server and work
// without script; this bundle enhances them in place. Every fetch goes to
// the controller that served the page (the CSP allows nothing else).

import { select } from "d3-selection";

// api reads JSON from the dashboard server; a 401 means the session
// ended, so the page goes back to the login.
export async function api(path, init) {
  const resp = await fetch(path, { credentials: "same-origin", ...init });
  if (resp.status === 401) {
    window.location.assign("/login?next=" + encodeURIComponent(location.pathname + location.search));
    throw new Error("session ended");
  }
  const body = await resp.json();
  if (!resp.ok) throw new Error(body.error || resp.statusText);
  return body;
}

// stateWord is the label shown beside every colour: the palette is never
// the only carrier of a state.
export function stateWord(s) {
  return (s || "UNKNOWN").replace(/^(CAMPAIGN_STATE_|STATE_)/, "");
}

async function refreshCampaigns(table) {
  const resp = await api("/api/campaigns");
  const rows = select(table).select("tbody").selectAll("tr")
    .data(resp.campaigns || [], (c) => c.name)
    .join("tr");
  rows.selectAll("td")
    .data((c) => [c.name, c.scope, stateWord(c.state)])
    .join("td")
    .text((d) => d);
  rows.select("td:last-child").attr("class", (c) => "state state-" + stateWord(c.state).toLowerCase());
}

function main() {
  const table = document.getElementById("campaigns");
  if (table) {
    const tick = () => refreshCampaigns(table).catch((e) => console.warn("campaigns:", e.message));
    tick();
    setInterval(tick, 15000);
  }
}

if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", main);
else main();
