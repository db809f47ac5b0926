// The episode page: the transitions and their evidence, the traceroute
// paths from every vantage drawn as a graph that shows where each path
// ends, and the BGP updates in the window.

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
  const colW = 150, rowH = 44;
  let height = 0;
  for (const [d, ns] of cols) {
    ns.forEach((n, i) => pos.set(n.id, { x: 60 + d * colW, y: 30 + i * rowH }));
    height = Math.max(height, 30 + ns.length * rowH);
  }
  return { pos, width: 120 + maxDepth * colW, height };
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
      const ev = cell("");
      const ul = document.createElement("ul");
      for (const e of c.evidence || []) { const li = document.createElement("li"); li.textContent = e; ul.appendChild(li); }
      ev.appendChild(ul);
      row.appendChild(ev);
      tbody.appendChild(row);
    }
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
