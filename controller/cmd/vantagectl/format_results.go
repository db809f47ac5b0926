package main

import (
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"

	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// resultTable renders stored results; rows are aligned when it is flushed.
type resultTable struct {
	p printer
	t *table
}

func (p printer) newResultTable(w io.Writer) *resultTable {
	return &resultTable{p: p, t: newTable(w, "SENT", "AGENT", "ROUND", "KIND", "TARGET", "OUTCOME", "RTT", "FROM", "DETAIL")}
}

func (rt *resultTable) add(s *vantagev1.StoredResult) {
	r := s.GetResult()
	target := r.GetTarget()
	if r.GetPort() != 0 {
		target = net.JoinHostPort(target, strconv.FormatUint(uint64(r.GetPort()), 10))
	}
	rtt := "-"
	if r.GetRttUs() != 0 {
		rtt = fmt.Sprintf("%.2fms", float64(r.GetRttUs())/1000)
	}
	rt.t.row(rt.p.at(r.GetSentAt()), s.GetAgentId(), strconv.FormatInt(r.GetRound(), 10), kindName(r.GetKind()),
		target, outcomeName(r.GetOutcome()), rtt, r.GetReplyFrom(), resultDetail(r))
}

func (rt *resultTable) flush() error { return rt.t.flush() }

// resultDetail says what the outcome alone does not: the unreachable code,
// the hop path of a trace, the agent's error or fallback note.
func resultDetail(r *vantagev1.ProbeResult) string {
	var parts []string
	if r.GetOutcome() == vantagev1.Outcome_OUTCOME_UNREACHABLE {
		parts = append(parts, fmt.Sprintf("code %d", r.GetUnreachableCode()))
	}
	if len(r.GetHops()) > 0 {
		hops := make([]string, len(r.GetHops()))
		for i, h := range r.GetHops() {
			hops[i] = h.GetAddr()
			if hops[i] == "" {
				hops[i] = "*"
			}
		}
		path := strings.Join(hops, " > ")
		if stop := r.GetStopReason(); stop != vantagev1.TraceStopReason_TRACE_STOP_REASON_UNSPECIFIED {
			path += " [" + lowerName(stop.String(), "TRACE_STOP_REASON_") + "]"
		}
		parts = append(parts, path)
	}
	if r.GetError() != "" {
		parts = append(parts, r.GetError())
	}
	return strings.Join(parts, "; ")
}
