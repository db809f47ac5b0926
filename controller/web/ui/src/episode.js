// The episode page: the transitions and the evidence behind each (its
// cause, location, router and children, and every vantage's view with a
// link to its raw results), the traceroute paths from every vantage drawn
// as a graph that shows where each path ends, and the BGP updates in the
// window.

import { select } from "d3-selection";
import { api, stateWord } from "./common.js";

const SVG = "http://www.w3.org/2000/svg";

// layout places each node in the column of its deepest position on any
// path (vantages first, targets last) and spreads each column.
function layout(graph) {
  const depth = new Map();
  let maxDepth = 1;
  for (const p of graph.paths) {
    depth.set("agent:" + p.agent, 0);
    const seq = p.dies_at ? [...p.hops, p.dies_at] : p.hops;
    seq.forEach((h, i) => { depth.set(h, Math.max(depth.get(h) || 0, i + 1)); maxDepth = Math.max(maxDepth, i + 2); });
  }
  // Targets go last, unless a target is also a hop (a router the campaign
  // probes): it keeps its place on the paths through it.
  for (const p of graph.paths) if (!depth.has(p.target)) depth.set(p.target, maxDepth);
  const cols = new Map();
  for (const n of graph.nodes) {
    const d = depth.get(n.id) ?? 0;
    if (!cols.has(d)) cols.set(d, []);
    cols.get(d).push(n);
  }
  const pos = new Map();
  const colW = 160, rowH = 58, left = 110; // left: room for a vantage's name
  let height = 0;
  for (const [d, ns] of cols) {
    ns.forEach((n, i) => pos.set(n.id, { x: left + d * colW, y: 30 + i * rowH }));
    height = Math.max(height, 30 + ns.length * rowH);
  }
  return { pos, width: 2 * left + maxDepth * colW, height };
}

function label(n) {
  if (n.kind === "vantage") return n.name;
  if (n.kind === "network") return `${n.name} (${n.targets} host${n.targets === 1 ? "" : "s"})`;
  let s = n.name || n.id;
  if (n.role) s += ` (${n.role.toLowerCase()})`;
  if (n.asn) s += ` AS${n.asn}`;
  return s;
}

export function drawGraph(el, graph) {
  el.replaceChildren();
  if (!graph.paths.length) { el.textContent = "No traceroute in this window."; return; }
  const { pos, width, height } = layout(graph);
  const traces = graph.paths.reduce((n, p) => n + (p.count || 1), 0);
  const svg = select(el).append("svg").attr("viewBox", `0 0 ${width} ${height}`).attr("class", "paths")
    .attr("role", "img").attr("aria-label", `${traces} traceroutes along ${graph.paths.length} paths`);
  const ends = new Map(); // where failing paths end, and how many
  for (const p of graph.paths) {
    // A dead path runs to the router that went silent (dies_at: the next
    // hop of the vantage's trace before), else to its last answer.
    const seq = ["agent:" + p.agent, ...p.hops];
    if (p.reached) seq.push(p.target);
    else if (p.dies_at) seq.push(p.dies_at);
    for (let i = 1; i < seq.length; i++) {
      const a = pos.get(seq[i - 1]), b = pos.get(seq[i]);
      svg.append("line").attr("x1", a.x).attr("y1", a.y).attr("x2", b.x).attr("y2", b.y)
        .attr("class", p.reached ? "edge edge-reached" : "edge edge-dead");
    }
    if (!p.reached) {
      const at = seq[seq.length - 1];
      ends.set(at, (ends.get(at) || 0) + (p.count || 1));
    }
  }
  for (const n of graph.nodes) {
    const at = pos.get(n.id);
    const g = svg.append("g").attr("class", `node node-${n.kind}${n.role ? " role-" + n.role.toLowerCase() : ""}`)
      .attr("transform", `translate(${at.x},${at.y})`).attr("data-id", n.id);
    g.append("circle").attr("r", 7);
    g.append("text").attr("y", -11).attr("text-anchor", "middle").text(label(n));
    const dead = ends.get(n.id);
    if (dead) {
      g.attr("data-paths-end", dead);
      g.append("text").attr("y", 22).attr("text-anchor", "middle").attr("class", "path-end")
        .text(`✕ ${dead} path${dead > 1 ? "s" : ""} end here`);
    }
  }
}

function cell(text) {
  const td = document.createElement("td");
  td.textContent = text;
  return td;
}

function el(tag, text, className) {
  const e = document.createElement(tag);
  if (text !== undefined) e.textContent = text;
  if (className) e.className = className;
  return e;
}

function list(items, className) {
  const ul = el("ul", undefined, className);
  for (const i of items) ul.appendChild(el("li", i));
  return ul;
}

// stateCell is a state's colour with its name beside it.
function stateCell(tag, s) {
  const w = stateWord(s);
  return el(tag, w, "state state-" + w.toLowerCase());
}

function routerText(r) {
  return [r.role && r.role.toLowerCase(), r.name, r.address, r.asn && "AS" + r.asn].filter(Boolean).join(" ");
}

function pct(x) { return (100 * x).toFixed(x > 0 && x < 0.01 ? 2 : 1) + "%"; }

// healthCell is the verdict's view of a vantage: healthy or not, with its
// reason, in words beside the colour; "not kept" once the verdict has
// moved on (a past transition keeps no per-vantage health).
function healthCell(v) {
  if (!v.verdict) return el("td", "not kept", "state state-unknown health");
  const h = v.verdict;
  const word = h.healthy ? "healthy" : "unhealthy";
  return el("td", word + (h.reason ? ": " + h.reason : ""), "state health state-" + (h.healthy ? "reachable" : "unreachable"));
}

function vantageRow(v) {
  const tr = document.createElement("tr");
  tr.dataset.agent = v.agent_id;
  const name = el("td", v.agent_name && v.agent_name !== v.agent_id ? `${v.agent_name} (${v.agent_id})` : v.agent_id);
  const h = v.verdict;
  const q = v.quality;
  tr.append(name, healthCell(v),
    h ? stateCell("td", h.state) : el("td", "-"),
    el("td", h ? `${h.targets_up} up, ${h.targets_down} down` : "-"),
    el("td", h ? `${h.last_round}${h.last_result_at ? " (" + h.last_result_at + ")" : ""}` : "-"),
    el("td", q ? `${pct(q.loss)} (${q.first_try_answers} of ${q.probes} first try, ${q.rounds} round${q.rounds === 1 ? "" : "s"})` : "none counted: no answer", "loss"),
    el("td", q && q.rtt_p50_ms ? `${q.rtt_p50_ms.toFixed(1)} / ${q.rtt_p90_ms.toFixed(1)} ms` : "-", "rtt"));
  const raw = el("td");
  const a = el("a", "raw results", "results-link");
  a.href = v.results_url;
  raw.appendChild(a);
  tr.appendChild(raw);
  return tr;
}

// evidenceArticle is one transition's evidence: what `vantagectl explain`
// prints for its verdict, as far as the transition keeps it, and each
// vantage's row with a link to its raw results over the transition's
// rounds.
function evidenceArticle(tr, ev) {
  const outer = el("article", undefined, "evidence");
  outer.id = "evidence-" + ev.transition_id;
  outer.dataset.transition = ev.transition_id;
  // Folded: an episode has a transition per network and refinement; the
  // page opens the one a reader quotes (the scope's latest).
  const art = outer.appendChild(el("details"));
  const h = art.appendChild(el("summary")).appendChild(el("h3", `${tr.detected_at} · ${ev.subject} (${ev.level.toLowerCase()}): `));
  h.append(stateCell("span", tr.from), document.createTextNode(" → "), stateCell("span", tr.to));
  const dl = el("dl", undefined, "evidence-facts");
  const fact = (label, value, className) => {
    dl.appendChild(el("dt", label));
    const dd = el("dd", undefined, className);
    if (typeof value === "string") dd.textContent = value; else dd.appendChild(value);
    dl.appendChild(dd);
  };
  fact("Cause", ev.cause ? ev.cause.toLowerCase() + (ev.cause === "UNDETERMINED" ? "" : `, confidence ${ev.confidence.toFixed(2)}`) : "none", "evidence-cause");
  if (ev.cause_evidence.length) fact("Cause evidence", list(ev.cause_evidence, "cause-evidence"));
  if (ev.bgp) fact("BGP", ev.bgp, "evidence-bgp");
  if (ev.bgp_summary && ev.bgp_summary.length) fact("BGP detail", list(ev.bgp_summary, "bgp-summary"));
  fact("Location", ev.location ? ev.location.toLowerCase().replace(/_/g, " ") : "-", "evidence-location");
  fact("Router", ev.router ? routerText(ev.router) : "none named", "evidence-router");
  if (ev.reason) fact("Reason", ev.reason.toLowerCase(), "evidence-reason");
  fact("Up", ev.up_children.length ? ev.up_children.join(", ") : "none", "evidence-up");
  fact("Down", ev.down_children.length ? ev.down_children.join(", ") : "none", "evidence-down");
  if (ev.upstreams && ev.upstreams.length) {
    fact("Upstreams", list(ev.upstreams.map((u) => `${u.name} (${u.addresses.join(", ")}): ${u.dead ? "paths die" : "carries traffic"}; up ${(u.networks_up || []).join(", ") || "-"}, down ${(u.networks_down || []).join(", ") || "-"}`), "evidence-upstreams"));
  }
  if (ev.notes && ev.notes.length) fact("Notes", list(ev.notes, "evidence-notes"));
  const all = el("a", `every vantage, ${ev.results_from} to ${ev.results_to}`, "results-link results-all");
  all.href = ev.results_url;
  fact("Raw results", all);
  art.appendChild(dl);
  art.appendChild(el("p", ev.health_as_of
    ? `Health, state and targets as the verdict saw them at ${ev.health_as_of} (it is still in this state). Loss and RTT are the verdict engine's quality series over the transition's rounds: probes of targets some vantage got an answer from.`
    : "The verdict has moved on since: a past transition keeps no per-vantage health. Loss and RTT are the verdict engine's quality series over the transition's rounds: probes of targets some vantage got an answer from.",
  "evidence-note"));
  const table = el("table", undefined, "vantage-evidence");
  const head = el("tr");
  for (const t of ["Vantage", "Health", "State", "Targets", "Last round", "Loss", "RTT p50 / p90", "Raw results"]) head.appendChild(el("th", t));
  table.appendChild(el("thead")).appendChild(head);
  const body = table.appendChild(el("tbody"));
  for (const v of ev.vantages) body.appendChild(vantageRow(v));
  if (!ev.vantages.length) {
    const r = body.appendChild(el("tr"));
    const c = r.appendChild(el("td", "No vantage reported in these rounds."));
    c.colSpan = 8;
  }
  art.appendChild(table);
  return outer;
}

export function drawEvidence(container, v) {
  container.replaceChildren();
  for (const tr of v.transitions) {
    const ev = (v.evidence || {})[tr.id];
    if (ev) container.appendChild(evidenceArticle(tr, ev));
  }
  if (!container.children.length) { container.textContent = "No transition in this window."; return; }
  const scope = [...v.transitions].reverse().find((tr) => tr.level === "LEVEL_SCOPE" && (v.evidence || {})[tr.id]);
  const open = document.getElementById("evidence-" + (scope || v.transitions[v.transitions.length - 1]).id);
  if (open) open.querySelector("details").open = true;
}

export function episodePage(main) {
  const name = main.dataset.campaign;
  const params = new URLSearchParams(location.search);
  api(`/api/campaigns/${encodeURIComponent(name)}/episode?${params}`).then((v) => {
    const tbody = document.querySelector("#transitions tbody");
    tbody.replaceChildren();
    for (const tr of v.transitions) {
      const row = document.createElement("tr");
      const c = tr.cause || {};
      const hop = tr.location_hop || {};
      row.append(cell(tr.detected_at), cell(tr.subject), cell(`${stateWord(tr.from)} → ${stateWord(tr.to)}`),
        cell((tr.location || "").replace(/^LOCATION_/, "")), cell(hop.name ? `${hop.name} ${hop.address}${hop.asn ? " AS" + hop.asn : ""}` : ""),
        cell(c.cause ? `${c.cause.replace(/^CAUSE_/, "")} ${(c.confidence || 0).toFixed(2)}` : ""));
      // The evidence itself is in its article below; the row links to it.
      const ev = cell("");
      if ((v.evidence || {})[tr.id]) {
        const a = document.createElement("a");
        a.href = "#evidence-" + tr.id;
        a.textContent = `${(c.evidence || []).length} line${(c.evidence || []).length === 1 ? "" : "s"}`;
        a.addEventListener("click", () => { const d = document.querySelector(`#evidence-${tr.id} details`); if (d) d.open = true; });
        ev.appendChild(a);
      }
      row.appendChild(ev);
      tbody.appendChild(row);
    }
    drawEvidence(document.getElementById("evidence"), v);
    drawGraph(document.getElementById("graph"), v.graph);
    const bgp = document.querySelector("#bgp-updates tbody");
    bgp.replaceChildren();
    for (const u of v.bgp_updates) {
      const row = document.createElement("tr");
      row.append(cell(u.at), cell(u.peer), cell(u.prefix), cell(u.withdraw ? "withdrawn" : "announced"), cell((u.as_path || []).join(" ")));
      bgp.appendChild(row);
    }
    if (v.truncated) document.getElementById("live").textContent = "cut at the bound: " + v.truncated.join(", ");
  }).catch((e) => { document.getElementById("live").textContent = "load failed: " + e.message; });
}
