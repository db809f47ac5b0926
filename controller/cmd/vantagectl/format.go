package main

import (
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

	"google.golang.org/protobuf/types/known/timestamppb"

	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// Rendering lives in the format*.go files, apart from the commands, so that
// every table and line can be tested on fixed proto values: this file holds
// the cells, times and tables they share, and each other one renders one
// resource. Everything that came from the controller (agent names, notes,
// labels) is untrusted: cells pass through clean so a hostile string cannot
// inject terminal escapes or break columns.

// maxChildren is how many child names a one-line rendering lists before it
// summarises the rest.
const maxChildren = 6

// printer renders protos for people. now anchors relative ages ("3s ago");
// loc is the zone absolute times are shown in.
type printer struct {
	now time.Time
	loc *time.Location
}

// table is a tab-aligned writer whose cells are cleaned and never empty.
type table struct {
	tw *tabwriter.Writer
}

func newTable(w io.Writer, header ...string) *table {
	t := &table{tw: tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)}
	if len(header) > 0 {
		t.row(header...)
	}
	return t
}

func (t *table) row(cells ...string) {
	for i, c := range cells {
		if i > 0 {
			_, _ = io.WriteString(t.tw, "\t")
		}
		_, _ = io.WriteString(t.tw, cell(c))
	}
	_, _ = io.WriteString(t.tw, "\n")
}

func (t *table) flush() error { return t.tw.Flush() }

// cell cleans one value for a column: control characters become '?', tabs
// and newlines become spaces, and empty becomes "-".
func cell(s string) string {
	s = clean(s)
	if s == "" {
		return "-"
	}
	return s
}

// clean replaces whitespace controls with spaces and other non-printable
// runes with '?'.
func clean(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r == '\t' || r == '\n' || r == '\r':
			return ' '
		case !unicode.IsPrint(r):
			return '?'
		}
		return r
	}, s)
}

// cleanText is clean for multi-line text (a campaign spec): newlines and
// tabs stay.
func cleanText(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '\n' || r == '\t' || unicode.IsPrint(r) {
			return r
		}
		return '?'
	}, s)
}

// enumName strips an enum's prefix; UNSPECIFIED becomes "-" and unknown
// numbers stay numbers.
func enumName(full, prefix string) string {
	n := strings.TrimPrefix(full, prefix)
	if n == "UNSPECIFIED" {
		return "-"
	}
	return n
}

func lowerName(full, prefix string) string {
	return strings.ReplaceAll(strings.ToLower(enumName(full, prefix)), "_", "-")
}

func stateName(s vantagev1.State) string { return enumName(s.String(), "STATE_") }

func levelName(l vantagev1.Level) string { return lowerName(l.String(), "LEVEL_") }

func agentStateName(s vantagev1.AgentState) string { return enumName(s.String(), "AGENT_STATE_") }

func campaignStateName(s vantagev1.CampaignState) string {
	return enumName(s.String(), "CAMPAIGN_STATE_")
}

func outcomeName(o vantagev1.Outcome) string { return lowerName(o.String(), "OUTCOME_") }

func locationName(l vantagev1.Location) string {
	if l == vantagev1.Location_LOCATION_NONE {
		return "-"
	}
	return lowerName(l.String(), "LOCATION_")
}

func kindName(k vantagev1.ProbeKind) string {
	if k == vantagev1.ProbeKind_PROBE_KIND_ICMP_ECHO {
		return "icmp"
	}
	return lowerName(k.String(), "PROBE_KIND_")
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// levelRank orders verdicts from the widest subject to the narrowest.
func levelRank(l vantagev1.Level) int {
	switch l {
	case vantagev1.Level_LEVEL_SCOPE:
		return 0
	case vantagev1.Level_LEVEL_NETWORK:
		return 1
	case vantagev1.Level_LEVEL_TARGET:
		return 2
	}
	return 3
}

// short renders a duration compactly, rounded to its unit: "45s", "12m",
// "5h", "3d".
func short(d time.Duration) string {
	if d < 0 {
		d = -d
	}
	in := func(unit time.Duration) string { return strconv.FormatInt(int64((d+unit/2)/unit), 10) }
	switch {
	case d < 2*time.Minute:
		return in(time.Second) + "s"
	case d < 2*time.Hour:
		return in(time.Minute) + "m"
	case d < 48*time.Hour:
		return in(time.Hour) + "h"
	}
	return in(24*time.Hour) + "d"
}

// exact renders a duration without trailing zero units: "30s", "1m", "1m30s",
// "2h", "250ms".
func exact(d time.Duration) string {
	if d >= time.Second || d <= -time.Second {
		d = d.Round(time.Second)
	} else {
		d = d.Round(time.Millisecond)
	}
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// valid reports whether a timestamp is set to a real instant.
func valid(ts *timestamppb.Timestamp) bool {
	return ts != nil && (ts.Seconds != 0 || ts.Nanos != 0) && ts.IsValid()
}

// ago renders a timestamp relative to now: "3s ago", "in 5m", "never".
func (p printer) ago(ts *timestamppb.Timestamp) string {
	if !valid(ts) {
		return "never"
	}
	d := p.now.Sub(ts.AsTime())
	if d < 0 {
		return "in " + short(d)
	}
	return short(d) + " ago"
}

// at renders a timestamp as RFC 3339 in the printer's zone.
func (p printer) at(ts *timestamppb.Timestamp) string {
	if !valid(ts) {
		return "-"
	}
	return ts.AsTime().In(p.loc).Format(time.RFC3339)
}

// clock renders a timestamp for a table: the time of day when it is on
// today's date (in the printer's zone), else the date too:
// "16:15:02", "2025-12-31 16:15:02".
func (p printer) clock(ts *timestamppb.Timestamp) string {
	if !valid(ts) {
		return "-"
	}
	t := ts.AsTime().In(p.loc)
	if t.Format(time.DateOnly) == p.now.In(p.loc).Format(time.DateOnly) {
		return t.Format(time.TimeOnly)
	}
	return t.Format(time.DateTime)
}

// onsetAround renders an onset interval for a table as its middle and half
// its width: "16:15:02 ±1.5s". An open end falls back to onset's form.
func (p printer) onsetAround(earliest, latest *timestamppb.Timestamp) string {
	if !valid(earliest) || !valid(latest) {
		return p.onset(earliest, latest)
	}
	e, l := earliest.AsTime(), latest.AsTime()
	half := l.Sub(e) / 2
	mid := timestamppb.New(e.Add(half))
	return p.clock(mid) + " ±" + plusMinus(half)
}

// plusMinus renders an uncertainty or a latency: tenths of a second below
// a minute ("1.5s", "0.2s", "30s"), else as exact does ("2m30s").
func plusMinus(d time.Duration) string {
	if d < 0 {
		d = -d
	}
	if d >= time.Minute {
		return exact(d)
	}
	d = d.Round(100 * time.Millisecond)
	return strconv.FormatFloat(d.Seconds(), 'f', -1, 64) + "s"
}

// onset renders an onset interval "earliest..latest ±half"; the latest end
// drops its date when both ends share it.
func (p printer) onset(earliest, latest *timestamppb.Timestamp) string {
	switch {
	case !valid(earliest) && !valid(latest):
		return "-"
	case !valid(earliest):
		return "..." + p.at(latest)
	case !valid(latest):
		return p.at(earliest) + "..."
	}
	e, l := earliest.AsTime().In(p.loc), latest.AsTime().In(p.loc)
	end := l.Format(time.RFC3339)
	if e.Format(time.DateOnly) == l.Format(time.DateOnly) {
		end = l.Format(time.TimeOnly)
	}
	return e.Format(time.RFC3339) + ".." + end + " ±" + exact(l.Sub(e)/2)
}

func labels(m map[string]string) string {
	if len(m) == 0 {
		return "-"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + m[k]
	}
	return strings.Join(parts, ",")
}

// names lists at most maxChildren names and summarises the rest.
func names(ns []string) string {
	if len(ns) == 0 {
		return "-"
	}
	if len(ns) <= maxChildren {
		return strings.Join(ns, ",")
	}
	return strings.Join(ns[:maxChildren], ",") + fmt.Sprintf(",+%d more", len(ns)-maxChildren)
}

// children renders the up and down child lists of a verdict or transition.
func children(up, down []string) string {
	if len(up) == 0 && len(down) == 0 {
		return "-"
	}
	return "up=" + names(up) + " down=" + names(down)
}

func fraction(a, b uint32) string { return fmt.Sprintf("%d/%d", a, b) }

// multiCampaign reports whether the values span more than one campaign, in
// which case tables add a CAMPAIGN column so subjects stay unambiguous.
func multiCampaign[T any](items []T, campaign func(T) string) bool {
	for _, it := range items[min(1, len(items)):] {
		if campaign(it) != campaign(items[0]) {
			return true
		}
	}
	return false
}

// campaignTable renders one row of fields per item, or the line none when
// there are no items. A CAMPAIGN column leads when the items span several
// campaigns.
func campaignTable[T any](w io.Writer, none string, items []T, campaign func(T) string, header []string, fields func(T) []string) error {
	if len(items) == 0 {
		_, err := fmt.Fprintln(w, none)
		return err
	}
	withCampaign := multiCampaign(items, campaign)
	if withCampaign {
		header = append([]string{"CAMPAIGN"}, header...)
	}
	t := newTable(w, header...)
	for _, it := range items {
		f := fields(it)
		if withCampaign {
			f = append([]string{campaign(it)}, f...)
		}
		t.row(f...)
	}
	return t.flush()
}

func joinCells(prefix string, f []string) string {
	var b strings.Builder
	b.WriteString(prefix)
	for i, c := range f {
		if i > 0 || prefix != "" {
			b.WriteString("  ")
		}
		b.WriteString(cell(c))
	}
	return b.String()
}
