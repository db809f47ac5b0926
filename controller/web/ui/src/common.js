// Helpers every page uses.

import { scaleTime } from "d3-scale";

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

const SVG = "http://www.w3.org/2000/svg";

// sparkline draws a day of a scope's state as coloured bands, each with
// its state's name as a tooltip and a text summary beside it.
export function sparkline(bands, from, to, width = 240, height = 18) {
  const x = scaleTime().domain([from, to]).range([0, width]);
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("class", "sparkline");
  svg.setAttribute("role", "img");
  const words = [];
  for (const b of bands) {
    const start = new Date(b.from), end = b.to ? new Date(b.to) : to;
    const r = document.createElementNS(SVG, "rect");
    r.setAttribute("x", x(start));
    r.setAttribute("width", Math.max(1, x(end) - x(start)));
    r.setAttribute("height", height);
    r.setAttribute("class", "band band-" + stateWord(b.state).toLowerCase());
    const title = document.createElementNS(SVG, "title");
    title.textContent = `${stateWord(b.state)} from ${start.toISOString()}${b.to ? " to " + end.toISOString() : ""}`;
    r.appendChild(title);
    svg.appendChild(r);
    words.push(stateWord(b.state));
    if (b.from_earliest) {
      // The onset's error bar: the change happened between the last round
      // in the old state and the first in the new one. An I-beam across the
      // top, at least 3 px wide so a short one still shows.
      const early = new Date(b.from_earliest);
      const x0 = x(early), x1 = Math.max(x(start), x0 + 3);
      const bar = document.createElementNS(SVG, "path");
      bar.setAttribute("d", `M${x0},1 H${x1} M${x0},0 V${height / 2} M${x1},0 V${height / 2}`);
      bar.setAttribute("class", "onset-bar");
      const t = document.createElementNS(SVG, "title");
      t.textContent = `onset between ${early.toISOString()} and ${start.toISOString()} (±${((start - early) / 2000).toFixed(1)} s)`;
      bar.appendChild(t);
      svg.appendChild(bar);
    }
  }
  svg.setAttribute("aria-label", words.length ? "last day: " + words.join(", then ") : "last day: no verdicts");
  return svg;
}

