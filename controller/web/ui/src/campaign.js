// The campaign page: state bands per scope and network, loss and RTT per
// network and vantage (uPlot), the BGP view and the episodes. The window
// comes from the page's URL; a transition on the verdict stream redraws.
// A country has tens of thousands of targets and hundreds of networks, so
// the server never sends them all: a network's targets open under its
// band row, a page at a time, and the series of the networks the view
// left out come one network at a time from a picker.

import uPlot from "uplot";
import { api, stateWord, sparkline } from "./common.js";

function cell(text) {
  const td = document.createElement("td");
  td.textContent = text;
  return td;
}

// windowQuery is the view's window as the API's query (from, to).
function windowQuery(view) {
  return new URLSearchParams({ from: view.from, to: view.to });
}

// stateSpan is a state's colour with its word beside it.
function stateSpan(word) {
  const span = document.createElement("span");
  span.className = "state state-" + word.toLowerCase();
  span.textContent = word;
  return span;
}

// targetPanel lists a network's targets under its band row, a page of the
// server's at a time ("More" asks for the next).
function targetPanel(view, network) {
  const panel = document.createElement("div");
  panel.className = "target-bands";
  panel.setAttribute("role", "region");
  panel.setAttribute("aria-label", `targets of ${network}`);
  const status = document.createElement("p");
  status.className = "target-status";
  status.setAttribute("aria-live", "polite");
  const list = document.createElement("div");
  const more = document.createElement("button");
  more.type = "button";
  more.className = "target-more";
  more.textContent = "More";
  more.hidden = true;
  panel.append(status, list, more);
  const from = new Date(view.from), to = new Date(view.to);
  let next = "", shown = 0;
  const load = async () => {
    const q = windowQuery(view);
    q.set("network", network);
    if (next) q.set("page_token", next);
    status.textContent = `loading targets of ${network}…`;
    const page = await api(`/api/campaigns/${encodeURIComponent(view.campaign)}/targets?${q}`);
    for (const t of page.targets) {
      const row = document.createElement("div");
      row.className = "target-row";
      const name = document.createElement("span");
      name.className = "band-label";
      name.textContent = t.address;
      const word = t.bands.length ? stateWord(t.bands[t.bands.length - 1].state) : `no change in this window (${t.now})`;
      const now = t.bands.length ? stateSpan(word) : document.createTextNode(word);
      row.append(name, sparkline(t.bands, from, to, 720, 12), now);
      list.appendChild(row);
    }
    shown += page.targets.length;
    next = page.next_page_token || "";
    more.hidden = !next;
    status.textContent = page.total
      ? `${network}: ${shown} of ${page.total} targets (those its verdict counts up or down)`
      : `${network}: no target counted up or down this round`;
  };
  more.addEventListener("click", () => load().catch((e) => { status.textContent = "load failed: " + e.message; }));
  load().catch((e) => { status.textContent = "load failed: " + e.message; });
  return panel;
}

// open keeps the target panels the reader opened across redraws.
const open = new Map();

function drawBands(el, view) {
  const from = new Date(view.from), to = new Date(view.to);
  el.replaceChildren();
  const rows = [["scope " + Object.keys(view.scope).join(", "), Object.values(view.scope)[0] || [], null]];
  for (const name of Object.keys(view.networks).sort()) rows.push([name, view.networks[name], name]);
  for (const [label, bands, network] of rows) {
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
    if (!network) continue;
    const toggle = document.createElement("button");
    toggle.type = "button";
    toggle.className = "targets-toggle";
    const shut = () => { toggle.textContent = "Targets"; toggle.setAttribute("aria-expanded", "false"); };
    const opened = (panel) => { toggle.textContent = "Hide targets"; toggle.setAttribute("aria-expanded", "true"); row.after(panel); };
    toggle.addEventListener("click", () => {
      const panel = open.get(network);
      if (panel) { panel.remove(); open.delete(network); shut(); return; }
      const p = targetPanel(view, network);
      open.set(network, p);
      opened(p);
    });
    row.appendChild(toggle);
    if (open.has(network)) opened(open.get(network));
    else shut();
  }
}

// withGaps adds a time between two rounds further apart than 1.5 of the
// usual step (the rounds that have no point: nothing was counted), so the
// chart breaks its lines there instead of drawing across the outage.
function withGaps(ts) {
  if (ts.length < 3) return ts;
  const steps = ts.slice(1).map((t, i) => t - ts[i]).sort((a, b) => a - b);
  const step = steps[Math.floor(steps.length / 2)];
  const out = [ts[0]];
  for (let i = 1; i < ts.length; i++) {
    if (ts[i] - ts[i - 1] > 1.5 * step) out.push(ts[i - 1] + step);
    out.push(ts[i]);
  }
  return out;
}

const VANTAGE_COLOURS = ["#0072b2", "#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9", "#000000"];

// chart draws one network's loss and RTT per vantage into el.
function chart(el, network, series) {
  const width = Math.min(720, el.clientWidth || 720);
  // One x axis for the network: the union of round starts.
  const rounds = [...new Set(series.flatMap((s) => s.t))].sort((a, b) => a - b);
  const ts = withGaps(rounds);
  const at = new Map(ts.map((t, i) => [t, i]));
  const data = [ts];
  const cols = [{}];
  let gaps = ts.length > rounds.length;
  series.forEach((s, k) => {
    const loss = new Array(ts.length).fill(null), rtt = new Array(ts.length).fill(null);
    s.t.forEach((t, i) => {
      // null: no probe counted that round (no host answered any vantage)
      if (s.loss[i] === null) gaps = true; else loss[at.get(t)] = s.loss[i] * 100;
      rtt[at.get(t)] = s.rtt_p50_ms[i] || null;
    });
    data.push(loss, rtt);
    // A colour per vantage (Okabe and Ito's), loss solid, RTT dashed; the
    // legend names each.
    const name = s.agent_name || s.agent, colour = VANTAGE_COLOURS[k % VANTAGE_COLOURS.length];
    cols.push({ label: `${name} loss %`, scale: "%", stroke: colour, width: 1.5 },
      { label: `${name} RTT p50 ms`, scale: "ms", stroke: colour, width: 1, dash: [4, 2] });
  });
  const box = document.createElement("figure");
  const caption = document.createElement("figcaption");
  caption.textContent = network + (gaps ? " (gaps: rounds in which no host answered any vantage; the bands say why)" : "");
  box.appendChild(caption);
  el.appendChild(box);
  new uPlot({ width, height: 160, series: cols, scales: { "%": { range: [0, 100] } },
    axes: [{}, { scale: "%", label: "loss %" }, { scale: "ms", side: 1, label: "RTT ms", grid: { show: false } }] }, data, box);
}

function drawCharts(el, view) {
  el.replaceChildren();
  const byNetwork = new Map();
  for (const s of view.series) {
    if (!byNetwork.has(s.network)) byNetwork.set(s.network, []);
    byNetwork.get(s.network).push(s);
  }
  for (const [network, series] of [...byNetwork].sort()) chart(el, network, series);
  if (!byNetwork.size) el.textContent = "No quality series in this window.";
}

// drawPicker says which networks' series the view shipped and offers the
// others, one at a time, drawn under the picker.
function drawPicker(el, view) {
  const left = view.series_left_out || [];
  el.hidden = !left.length;
  if (!left.length) return;
  let note = el.querySelector(".series-note");
  if (!note) {
    note = document.createElement("p");
    note.className = "series-note";
    const form = document.createElement("form");
    form.className = "series-picker";
    const label = document.createElement("label");
    label.textContent = "Another network ";
    const select = document.createElement("select");
    select.name = "network";
    label.appendChild(select);
    const show = document.createElement("button");
    show.type = "submit";
    show.textContent = "Show its series";
    const status = document.createElement("span");
    status.className = "series-status";
    status.setAttribute("aria-live", "polite");
    const picked = document.createElement("div");
    picked.className = "picked-series";
    form.append(label, " ", show, " ", status);
    el.append(note, form, picked);
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const v = el.view, network = select.value;
      const q = windowQuery(v);
      q.set("network", network);
      status.textContent = `loading ${network}…`;
      try {
        const got = await api(`/api/campaigns/${encodeURIComponent(v.campaign)}/series?${q}`);
        picked.replaceChildren();
        if (got.series.length) chart(picked, network, got.series);
        else picked.textContent = `No quality series for ${network} in this window.`;
        status.textContent = "";
      } catch (e) {
        status.textContent = "load failed: " + e.message;
      }
    });
  }
  el.view = view;
  const shown = view.series_networks || [];
  note.textContent = `Series of ${shown.length} of ${view.network_names.length} networks: those that left REACHABLE in this window first, then by name. ${left.length} left out.`;
  const select = el.querySelector("select");
  const keep = select.value;
  select.replaceChildren(...left.map((n) => { const o = document.createElement("option"); o.value = o.textContent = n; return o; }));
  if (left.includes(keep)) select.value = keep;
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
      cell(e.cause ? `${e.cause}${e.confidence ? " " + e.confidence.toFixed(2) : ""}` : "")); // no confidence (0) is left out of the JSON
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
  const picker = document.createElement("div");
  picker.className = "series-more";
  picker.hidden = true;
  document.getElementById("charts").after(picker);
  let pending = false;
  const draw = async () => {
    const view = await api(`/api/campaigns/${encodeURIComponent(name)}/view?${params}`);
    drawBands(document.getElementById("bands"), view);
    drawCharts(document.getElementById("charts"), view);
    drawPicker(picker, view);
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
