// The campaign page: state bands per scope and network, loss and RTT per
// network and vantage (uPlot), the BGP view and the episodes. The window
// comes from the page's URL; a transition on the verdict stream redraws.

import uPlot from "uplot";
import { api, stateWord, sparkline } from "./common.js";

function cell(text) {
  const td = document.createElement("td");
  td.textContent = text;
  return td;
}

function drawBands(el, view) {
  const from = new Date(view.from), to = new Date(view.to);
  el.replaceChildren();
  const rows = [["scope " + Object.keys(view.scope).join(", "), Object.values(view.scope)[0] || []]];
  for (const name of Object.keys(view.networks).sort()) rows.push([name, view.networks[name]]);
  for (const [label, bands] of rows) {
    const row = document.createElement("div");
    row.className = "band-row";
    const name = document.createElement("span");
    name.className = "band-label";
    name.textContent = label;
    const last = bands.length ? stateWord(bands[bands.length - 1].state) : "no verdicts";
    const now = document.createElement("span");
    now.className = "state state-" + last.toLowerCase();
    now.textContent = last;
    row.append(name, sparkline(bands, from, to, 720, 16), now);
    el.appendChild(row);
  }
}

function drawCharts(el, view) {
  el.replaceChildren();
  const byNetwork = new Map();
  for (const s of view.series) {
    if (!byNetwork.has(s.network)) byNetwork.set(s.network, []);
    byNetwork.get(s.network).push(s);
  }
  const width = Math.min(720, el.clientWidth || 720);
  for (const [network, series] of [...byNetwork].sort()) {
    // One x axis for the network: the union of round starts.
    const ts = [...new Set(series.flatMap((s) => s.t))].sort((a, b) => a - b);
    const at = new Map(ts.map((t, i) => [t, i]));
    const data = [ts];
    const cols = [{}];
    for (const s of series) {
      const loss = new Array(ts.length).fill(null), rtt = new Array(ts.length).fill(null);
      s.t.forEach((t, i) => { loss[at.get(t)] = s.loss[i] * 100; rtt[at.get(t)] = s.rtt_p50_ms[i] || null; });
      data.push(loss, rtt);
      cols.push({ label: `${s.agent} loss %`, scale: "%", stroke: "#d55e00", width: 1 },
        { label: `${s.agent} RTT p50 ms`, scale: "ms", stroke: "#0072b2", width: 1, dash: [4, 2] });
    }
    const box = document.createElement("figure");
    const caption = document.createElement("figcaption");
    caption.textContent = network;
    box.appendChild(caption);
    el.appendChild(box);
    new uPlot({ width, height: 160, series: cols, scales: { "%": { range: [0, 100] } },
      axes: [{}, { scale: "%", label: "loss %" }, { scale: "ms", side: 1, label: "RTT ms", grid: { show: false } }] }, data, box);
  }
  if (!byNetwork.size) el.textContent = "No quality series in this window.";
}

function drawBGP(table, view) {
  const body = table.querySelector("tbody");
  body.replaceChildren();
  for (const p of view.bgp) {
    const tr = document.createElement("tr");
    const vis = p.peers ? `${Math.round(p.visibility * 100)}% (${p.peers_with_route} of ${p.peers} peers)` : "no full-feed peer up: no data";
    tr.append(cell(p.prefix), cell(p.network), cell(vis),
      cell(`${p.updates_per_minute.toFixed(1)} (${p.baseline_per_minute.toFixed(1)})`), cell((p.last_path || []).join(" ")));
    body.appendChild(tr);
  }
  if (!view.bgp.length) body.appendChild(cell("No BGP view (no collector, or no prefix seen)."));
}

// rfc3339 is t to the second, as the server reads it.
const rfc3339 = (t) => t.toISOString().replace(/\.\d+Z$/, "Z");

function drawEpisodes(table, view) {
  const body = table.querySelector("tbody");
  body.replaceChildren();
  for (const e of view.episodes) {
    const tr = document.createElement("tr");
    const worst = stateWord(e.worst);
    const state = cell(worst);
    state.className = "state state-" + worst.toLowerCase();
    const onset = `${e.from} (±${Math.round((new Date(e.from) - new Date(e.from_earliest)) / 1000)} s)`;
    const link = document.createElement("a");
    // The episode's window: from 15 minutes before its onset (traces run
    // every 10 minutes, so each path has one from before), to a minute
    // after its end, or for one that lasts, to the next whole second (the
    // link is a snapshot that holds every transition until now).
    const end = e.to ? new Date(new Date(e.to).getTime() + 60000) : new Date(Date.now() + 1000);
    const start = new Date(new Date(e.from_earliest).getTime() - 15 * 60000);
    link.href = `/campaigns/${encodeURIComponent(view.campaign)}/episode?from=${rfc3339(start)}&to=${rfc3339(end)}`;
    link.textContent = onset;
    const first = document.createElement("td");
    first.appendChild(link);
    tr.append(first, cell(e.to || "ongoing"), state, cell(e.location || ""),
      cell(e.upstream ? `${e.upstream}${e.upstream_as ? " AS" + e.upstream_as : ""}` : ""),
      cell(e.cause ? `${e.cause} ${(e.confidence || 0).toFixed(2)}` : ""));
    body.appendChild(tr);
  }
  if (!view.episodes.length) body.appendChild(cell("No episode in this window."));
}

export function campaignPage(main) {
  const name = main.dataset.campaign;
  const q = new URLSearchParams(location.search);
  const params = new URLSearchParams();
  for (const k of ["from", "to"]) if (q.get(k)) params.set(k, q.get(k));
  const live = document.getElementById("live");
  let pending = false;
  const draw = async () => {
    const view = await api(`/api/campaigns/${encodeURIComponent(name)}/view?${params}`);
    drawBands(document.getElementById("bands"), view);
    drawCharts(document.getElementById("charts"), view);
    drawBGP(document.getElementById("bgp"), view);
    drawEpisodes(document.getElementById("episodes"), view);
  };
  const redraw = () => {
    if (pending) return;
    pending = true;
    setTimeout(() => { pending = false; draw().catch((e) => { live.textContent = "update failed: " + e.message; }); }, 250);
  };
  draw().catch((e) => { live.textContent = "load failed: " + e.message; });
  if (!q.get("to")) { // a window ending now follows the verdicts live
    const es = new EventSource(`/api/watch?campaign=${encodeURIComponent(name)}&level=scope`);
    es.addEventListener("transition", (ev) => {
      const tr = JSON.parse(ev.data);
      live.textContent = `${tr.subject}: ${stateWord(tr.from)} → ${stateWord(tr.to)} at ${tr.detected_at}`;
      redraw();
    });
    for (const lv of ["network"]) {
      const en = new EventSource(`/api/watch?campaign=${encodeURIComponent(name)}&level=${lv}`);
      en.addEventListener("transition", redraw);
    }
  }
}
