// The raw results page: the stored results the URL's query selects, as
// the agents sent them (sent time, vantage, round, target, kind, outcome,
// RTT, who answered, and a trace's hops), so a reader can check a
// verdict's evidence row by row. The query is the page's URL, so a shared
// link shows the same results.

import { api } from "./common.js";

function el(tag, text, className) {
  const e = document.createElement(tag);
  if (text !== undefined) e.textContent = text;
  if (className) e.className = className;
  return e;
}

const word = (s, prefix) => (s || "").replace(prefix, "").toLowerCase().replace(/_/g, " ");

// answered: the outcomes that prove the target up.
const answered = new Set(["OUTCOME_REPLY", "OUTCOME_TCP_SYNACK", "OUTCOME_TCP_RST"]);

function ms(us) { return us ? (us / 1000).toFixed(2) + " ms" : "-"; }

// hopsCell lists a trace's TTLs in order: the address that answered and
// its RTT, or * for a silent TTL; then why the trace stopped.
function hopsCell(res) {
  const td = el("td", undefined, "hops");
  if (!res.hops || !res.hops.length) {
    td.textContent = res.kind === "PROBE_KIND_TRACE" ? "no hop" : "";
    return td;
  }
  const ol = el("ol", undefined, "hop-list");
  for (const h of res.hops) {
    const li = el("li", h.addr ? `${h.addr} ${ms(h.rtt_us)}` : "*");
    li.value = h.ttl || 0;
    ol.appendChild(li);
  }
  td.appendChild(ol);
  if (res.stop_reason) td.appendChild(el("p", "stopped: " + word(res.stop_reason, "TRACE_STOP_REASON_"), "hop-stop"));
  return td;
}

function row(sr, names) {
  const res = sr.result || {};
  const tr = document.createElement("tr");
  tr.dataset.agent = sr.agent_id;
  const name = names[sr.agent_id];
  let outcome = word(res.outcome, "OUTCOME_");
  if (res.outcome === "OUTCOME_UNREACHABLE") outcome += ` (code ${res.unreachable_code || 0})`;
  if (res.error) outcome += ": " + res.error;
  if ((res.attempts || 0) > 1) outcome += `, ${res.attempts} attempts`;
  const target = res.port ? (res.target.includes(":") ? `[${res.target}]:${res.port}` : `${res.target}:${res.port}`) : res.target;
  tr.append(el("td", res.sent_at || ""), el("td", name && name !== sr.agent_id ? `${name} (${sr.agent_id})` : sr.agent_id), el("td", res.round || "0"),
    el("td", target || ""), el("td", word(res.kind, "PROBE_KIND_")), el("td", outcome, "outcome outcome-" + (answered.has(res.outcome) ? "answered" : "unanswered")),
    el("td", ms(res.rtt_us)), el("td", res.reply_from || "-"), hopsCell(res));
  return tr;
}

export function resultsPage(main) {
  const name = main.dataset.campaign;
  const status = document.getElementById("results-status");
  const params = new URLSearchParams(location.search);
  for (const [k, v] of [...params]) if (v === "") params.delete(k); // the form sends empty fields
  api(`/api/campaigns/${encodeURIComponent(name)}/results?${params}`).then((v) => {
    const tbody = main.querySelector("#results tbody");
    tbody.replaceChildren();
    let ok = 0;
    for (const sr of v.results) {
      tbody.appendChild(row(sr, v.names || {}));
      if (answered.has((sr.result || {}).outcome)) ok++;
    }
    const n = v.results.length;
    let text = n ? `${n} result${n === 1 ? "" : "s"} from ${v.from} to ${v.to}, ${ok} answered, ${n - ok} not.` : `No result from ${v.from} to ${v.to}.`;
    if (v.truncated) text += ` Cut at ${v.limit}: more match; narrow the window or raise the limit (at most 1000).`;
    status.textContent = text;
  }).catch((e) => { status.textContent = "load failed: " + e.message; });
}
