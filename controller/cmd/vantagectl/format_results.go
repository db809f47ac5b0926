package main

import (
	"errors"
	"fmt"
	"google.golang.org/protobuf/proto"
	"io"
	"net"
	"strconv"
	"strings"
	"unicode/utf8"

	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// resultHeader is the results table's columns.
var resultHeader = []string{"SENT", "AGENT", "ROUND", "KIND", "TARGET", "OUTCOME", "RTT", "FROM", "DETAIL"}

// resultTable renders stored results a row at a time, as they stream: a
// results query can run for minutes, and a table aligned only at its end
// prints nothing until then. Columns start as wide as typical values and
// widen when a longer cell comes; rows already printed stay as they were.
type resultTable struct {
	p printer
	t *streamTable
}

func (p printer) newResultTable(w io.Writer) *resultTable {
	// SENT as a time of day, the longest kind, an IPv4 address, the longest
	// outcome, an RTT such as 123.45ms.
	return &resultTable{p: p, t: newStreamTable(w, resultHeader, []int{8, 0, 0, 5, 15, 11, 7, 0, 0})}
}

func (rt *resultTable) add(s *vantagev1.StoredResult) error {
	return rt.t.row(rt.p.resultFields(s)...)
}

// resultFields is a result's cells under resultHeader.
func (p printer) resultFields(s *vantagev1.StoredResult) []string {
	r := s.GetResult()
	target := r.GetTarget()
	if r.GetPort() != 0 {
		target = net.JoinHostPort(target, strconv.FormatUint(uint64(r.GetPort()), 10))
	}
	rtt := "-"
	if r.GetRttUs() != 0 {
		rtt = fmt.Sprintf("%.2fms", float64(r.GetRttUs())/1000)
	}
	return []string{p.clock(r.GetSentAt()), s.GetAgentId(), strconv.FormatInt(r.GetRound(), 10), kindName(r.GetKind()),
		target, outcomeName(r.GetOutcome()), rtt, r.GetReplyFrom(), resultDetail(r)}
}

// streamTable writes each row at once, padded to its columns' widths so
// far; the header is written with the first row.
type streamTable struct {
	w      io.Writer
	header []string
	widths []int
	rows   int
}

func newStreamTable(w io.Writer, header []string, minWidths []int) *streamTable {
	widths := make([]int, len(header))
	for i, h := range header {
		widths[i] = max(len(h), minWidths[i])
	}
	return &streamTable{w: w, header: header, widths: widths}
}

func (t *streamTable) row(cells ...string) error {
	if t.rows == 0 {
		if err := t.line(t.header); err != nil {
			return err
		}
	}
	t.rows++
	return t.line(cells)
}

func (t *streamTable) line(cells []string) error {
	var b strings.Builder
	for i, c := range cells {
		c = cell(c)
		n := utf8.RuneCountInString(c)
		if i == len(cells)-1 {
			b.WriteString(c)
			break
		}
		t.widths[i] = max(t.widths[i], n)
		b.WriteString(c)
		b.WriteString(strings.Repeat(" ", t.widths[i]-n+2))
	}
	b.WriteByte('\n')
	_, err := io.WriteString(t.w, b.String())
	return err
}

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

// streamResults prints a result stream until it ends: rows as they come, or
// one JSON array whose items are written as they come.
func (a *app) streamResults(recv func() (*vantagev1.StoredResult, error)) error {
	if a.json() {
		return streamJSONArray(a.env.stdout, recv)
	}
	rt := a.printer().newResultTable(a.env.stdout)
	n := 0
	for {
		res, err := recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		n++
		if err := rt.add(res); err != nil {
			return err
		}
	}
	if n == 0 {
		_, err := fmt.Fprintln(a.env.stdout, "No results.")
		return err
	}
	return nil
}

// streamJSONArray writes a finite stream as one JSON document, an array
// with an item a line, each written as it arrives. When the stream breaks,
// the array is still closed (what came is valid JSON) and the error is
// returned, so the exit code says the array is incomplete.
func streamJSONArray[M proto.Message](w io.Writer, recv func() (M, error)) error {
	if _, err := io.WriteString(w, "["); err != nil {
		return err
	}
	n := 0
	end := func() error {
		tail := "]\n"
		if n > 0 {
			tail = "\n]\n"
		}
		_, err := io.WriteString(w, tail)
		return err
	}
	for {
		m, err := recv()
		if errors.Is(err, io.EOF) {
			return end()
		}
		if err != nil {
			_ = end()
			return err
		}
		b, err := marshalJSON(m, false)
		if err != nil {
			return err
		}
		sep := ",\n  "
		if n == 0 {
			sep = "\n  "
		}
		n++
		if _, err := io.WriteString(w, sep+string(b)); err != nil {
			return err
		}
	}
}
