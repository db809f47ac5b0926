package bench

import (
	"fmt"
	"io"
	"math"
	"strings"
	"text/tabwriter"
)

// Check is one target from issue 3 / DESIGN §9 with its verdict.
type Check struct {
	Name   string
	Target string
	Got    string
	// Status is PASS, FAIL or SKIP.
	Status string
}

func pass(ok bool) string {
	if ok {
		return "PASS"
	}
	return "FAIL"
}

// row returns the named tool's row.
func row(rows []Row, tool string) (Row, bool) {
	for _, r := range rows {
		if r.Tool == tool {
			return r, true
		}
	}
	return Row{}, false
}

// why says why a row has no figures.
func why(r Row, found bool) string {
	switch {
	case !found:
		return "not run"
	case r.Skipped != "":
		return r.Skipped
	case r.Err != nil:
		return r.Err.Error()
	}
	return ""
}

// Checks evaluates the targets against the report.
func (rep *Report) Checks() []Check {
	cs := rep.sweepChecks()
	cs = append(cs, rep.traceChecks()...)
	return append(cs, rep.rttCheck(), rep.idleCheck())
}

// against evaluates one target on a section's rows: f gets vantage's row
// and, when tool is not "", tool's row as well. A section that did not run
// skips (notRun says so), a failed vantage row fails, a failed peer row skips.
func against(name, target string, rows []Row, notRun, tool string, f func(v, p Row) (string, bool)) Check {
	c := Check{Name: name, Target: target}
	v, vok := row(rows, ToolVantage)
	p, pok := row(rows, tool)
	switch {
	case len(rows) == 0:
		c.Status, c.Got = "SKIP", notRun
	case !vok || !v.OK():
		c.Status, c.Got = "FAIL", "vantage: "+why(v, vok)
	case tool != "" && (!pok || !p.OK()):
		c.Status, c.Got = "SKIP", tool+": "+why(p, pok)
	default:
		var ok bool
		c.Got, ok = f(v, p)
		c.Status = pass(ok)
	}
	return c
}

// sweepChecks are the sweep's targets: wall and CPU against the peers,
// replies and RSS of vantage alone.
func (rep *Report) sweepChecks() []Check {
	const notRun = "sweep not run"
	size := prefixSize(rep.Sweep)
	return []Check{
		against("sweep wall", "<= fping", rep.Sweeps, notRun, ToolFping, func(v, p Row) (string, bool) {
			return fmt.Sprintf("%.2fs vs %.2fs", v.Measure.Wall.Seconds(), p.Measure.Wall.Seconds()), v.Measure.Wall <= p.Measure.Wall
		}),
		against("sweep CPU", "<= 1.5x zmap", rep.Sweeps, notRun, ToolZmap, func(v, p Row) (string, bool) {
			return fmt.Sprintf("%.2fs vs %.2fs (%.2fx)", v.Measure.CPU().Seconds(), p.Measure.CPU().Seconds(),
				ratio(v.Measure.CPU().Seconds(), p.Measure.CPU().Seconds())), v.Measure.CPU().Seconds() <= 1.5*p.Measure.CPU().Seconds()
		}),
		against("sweep replies", ">= 99.9%", rep.Sweeps, notRun, "", func(v, _ Row) (string, bool) {
			pct := 100 * float64(v.Count.Replies) / float64(size)
			return fmt.Sprintf("%d/%d = %.3f%%", v.Count.Replies, size, pct), pct >= 99.9
		}),
		against("sweep RSS", "<= 40 MB", rep.Sweeps, notRun, "", func(v, _ Row) (string, bool) {
			return fmt.Sprintf("%.1f MB", mb(v.Measure.MaxRSS)), v.Measure.MaxRSS <= 40<<20
		}),
	}
}

// traceChecks are the traceroutes' targets: wall against scamper, identical
// hop lists and the destination's median RTT.
func (rep *Report) traceChecks() []Check {
	const notRun = "traces not run"
	wall := against("trace wall", "<= 0.5x scamper", rep.Traces, notRun, ToolScamper, func(v, p Row) (string, bool) {
		r := ratio(v.Measure.Wall.Seconds(), p.Measure.Wall.Seconds())
		return fmt.Sprintf("%.2fs vs %.2fs (%.2fx)", v.Measure.Wall.Seconds(), p.Measure.Wall.Seconds(), r), r <= 0.5
	})
	hops := Check{Name: "trace hops identical", Target: "100%"}
	if !rep.TraceCompared {
		hops.Status, hops.Got = "FAIL", "no comparison (a trace run failed)"
		if len(rep.Traces) == 0 {
			hops.Status, hops.Got = "SKIP", notRun
		}
	} else {
		hops.Got = fmt.Sprintf("%d/%d = %.2f%%", rep.TraceSame, rep.TraceTargets, 100*float64(rep.TraceSame)/float64(max(rep.TraceTargets, 1)))
		hops.Status = pass(rep.TraceSame == rep.TraceTargets && rep.TraceTargets > 0)
	}
	rtt := Check{Name: "trace RTT median", Target: "within 50 µs of scamper"}
	switch {
	case len(rep.Traces) == 0:
		rtt.Status, rtt.Got = "SKIP", notRun
	case !rep.TraceCompared:
		rtt.Status, rtt.Got = "FAIL", "no comparison (a trace run failed)"
	case rep.TraceRTTCommon == 0:
		rtt.Status, rtt.Got = "FAIL", "no target reached by both"
	default:
		d := rep.TraceRTTVantageUs - rep.TraceRTTScamperUs
		rtt.Got = fmt.Sprintf("%.1f µs vs %.1f µs (%+.1f µs, %d destinations)", rep.TraceRTTVantageUs, rep.TraceRTTScamperUs, d, rep.TraceRTTCommon)
		rtt.Status = pass(math.Abs(d) <= 50)
	}
	return []Check{wall, hops, rtt}
}

// rttCheck is the one-echo RTT target: vantage's median within 50 µs of
// scamper's over the targets both answered.
func (rep *Report) rttCheck() Check {
	return against("RTT median", "within 50 µs of scamper", rep.RTT, "RTT not run", ToolScamper, func(Row, Row) (string, bool) {
		if rep.RTTCommon == 0 {
			return "no target answered both", false
		}
		d := rep.RTTVantageUs - rep.RTTScamperUs
		return fmt.Sprintf("%.1f µs vs %.1f µs (%+.1f µs, %d targets)", rep.RTTVantageUs, rep.RTTScamperUs, d, rep.RTTCommon), math.Abs(d) <= 50
	})
}

// idleCheck is the idle agent's CPU target.
func (rep *Report) idleCheck() Check {
	c := Check{Name: "idle agent CPU", Target: "< 1% of a core"}
	if rep.Idle == nil {
		c.Status, c.Got = "SKIP", rep.IdleSkipped
		if rep.IdleSkipped != "not requested" {
			c.Status = "FAIL"
		}
		return c
	}
	i := rep.Idle
	c.Got = fmt.Sprintf("%.2f%% (%.2fs CPU in %s, %d targets, %d results)", i.Percent(), i.CPU.Seconds(), i.Window.Round(1e9), i.Targets, i.Results)
	c.Status = pass(i.Percent() < 1 && i.Results > 0)
	return c
}

func mb(b int64) float64 { return float64(b) / (1 << 20) }

func ratio(a, b float64) float64 {
	if b == 0 {
		return math.Inf(1)
	}
	return a / b
}

// Print writes the machine, the tables and the checks.
func (rep *Report) Print(w io.Writer) {
	fmt.Fprintf(w, "machine: %s\n", rep.Machine)
	fmt.Fprintf(w, "run:     %s\n\n", rep.Start.UTC().Format("2006-01-02 15:04 MST"))
	if len(rep.Sweeps) > 0 {
		fmt.Fprintf(w, "ICMP sweep of %s (%d addresses, every one live), from vantage-a; vantage --rate %d (0 = unpaced), fping -i 0 -r 0, zmap -r %d, scamper -p %d\n",
			rep.Sweep, prefixSize(rep.Sweep), rep.VantageRate, rep.Rate, min(rep.Rate, 10000))
		printRows(w, rep.Sweeps, true)
	} else {
		fmt.Fprintf(w, "ICMP sweep: not run\n")
	}
	if len(rep.Traces) > 0 {
		fmt.Fprintf(w, "\nParis traceroutes (ICMP) to %d addresses of %s; vantage --rate %d --router-rate %d (0 = unpaced / no per-router pacing), scamper -p 10000; replies = paths reaching the target\n",
			rep.TraceTargets, rep.Sweep, rep.TraceRate, rep.TraceRouterRate)
		if rep.PoliteRouterRate > 0 {
			fmt.Fprintf(w, "(\"vantage router-rate %d\": the same with the daemon's per-router pacing, %d probes/s to each router; all %d paths cross the same 4 routers)\n",
				rep.PoliteRouterRate, rep.PoliteRouterRate, rep.TraceTargets)
		}
		printRows(w, rep.Traces, false)
		if rep.TraceCompared {
			fmt.Fprintf(w, "identical hop lists (vantage --router-rate %d vs scamper): %d/%d\n", rep.TraceRouterRate, rep.TraceSame, rep.TraceTargets)
			if rep.TraceRTTCommon > 0 {
				fmt.Fprintf(w, "median RTT of the destination's answer over %d targets both reached: vantage %.1f µs, scamper %.1f µs\n",
					rep.TraceRTTCommon, rep.TraceRTTVantageUs, rep.TraceRTTScamperUs)
			}
			for _, d := range rep.TraceDiffs {
				fmt.Fprintf(w, "  differs: %s\n", d)
			}
		}
	}
	if len(rep.RTT) > 0 {
		fmt.Fprintf(w, "\nRTT: one echo to each of the same targets\n")
		printRows(w, rep.RTT, false)
		if rep.RTTCommon > 0 {
			fmt.Fprintf(w, "median RTT over %d targets both answered: vantage %.1f µs, scamper %.1f µs\n", rep.RTTCommon, rep.RTTVantageUs, rep.RTTScamperUs)
		}
	}
	if rep.Idle != nil {
		i := rep.Idle
		fmt.Fprintf(w, "\nidle: agent with %d targets, one ICMP echo each per %s round: %.2fs CPU in %s = %.2f%% of a core, RSS %.1f MB, %d results stored in the window\n",
			i.Targets, i.Round, i.CPU.Seconds(), i.Window.Round(1e9), i.Percent(), mb(i.RSS), i.Results)
	}
	fmt.Fprintf(w, "\ntargets\n")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, c := range rep.Checks() {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", c.Status, c.Name, c.Target, c.Got)
	}
	tw.Flush()
}

// fmtRatio prints a/b, or "-" when b is zero (GNU time's 10 ms CPU
// resolution gives zeros on tiny runs).
func fmtRatio(a, b float64) string {
	if b == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f", a/b)
}

func printRows(w io.Writer, rows []Row, ratios bool) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	hdr := "tool\twall s\tCPU s\tRSS MB\ttargets\treplies\treply %\t"
	if ratios {
		hdr += "vantage/tool: wall\tCPU\tRSS\t"
	}
	fmt.Fprintln(tw, hdr)
	v, vok := row(rows, ToolVantage)
	for _, r := range rows {
		if !r.OK() {
			fmt.Fprintf(tw, "%s\t%s\t\n", r.Tool, strings.ReplaceAll(why(r, true), "\t", " "))
			continue
		}
		m := r.Measure
		pct := 100 * float64(r.Count.Replies) / float64(max(r.Count.Targets, 1))
		fmt.Fprintf(tw, "%s\t%.2f\t%.2f\t%.1f\t%d\t%d\t%.2f\t", r.Tool, m.Wall.Seconds(), m.CPU().Seconds(), mb(m.MaxRSS), r.Count.Targets, r.Count.Replies, pct)
		if ratios && vok && v.OK() {
			fmt.Fprintf(tw, "%s\t%s\t%s\t", fmtRatio(v.Measure.Wall.Seconds(), m.Wall.Seconds()),
				fmtRatio(v.Measure.CPU().Seconds(), m.CPU().Seconds()), fmtRatio(float64(v.Measure.MaxRSS), float64(m.MaxRSS)))
		}
		fmt.Fprintln(tw)
	}
	tw.Flush()
}
