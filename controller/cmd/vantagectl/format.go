package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// Rendering lives here, apart from the commands, so that every table and line
// can be tested on fixed proto values. Everything that came from the
// controller (agent names, notes, labels) is untrusted: cells pass through
// clean so a hostile string cannot inject terminal escapes or break columns.

// maxChildren is how many child names a one-line rendering lists before it
// summarises the rest.
const maxChildren = 6

// printer renders protos for people. now anchors relative ages ("3s ago");
// loc is the zone absolute times are shown in.
type printer struct {
	now time.Time
	loc *time.Location
}

// writeJSON writes m as protojson: compact on one line for stream items, or
// indented for unary responses. protojson's output is deliberately unstable
// in its whitespace, so it is normalised through encoding/json.
func writeJSON(w io.Writer, m proto.Message, indent bool) error {
	raw, err := protojson.Marshal(m)
	if err != nil {
		return fmt.Errorf("encode %s: %w", m.ProtoReflect().Descriptor().FullName(), err)
	}
	var buf bytes.Buffer
	if indent {
		err = json.Indent(&buf, raw, "", "  ")
	} else {
		err = json.Compact(&buf, raw)
	}
	if err != nil {
		return fmt.Errorf("normalise JSON: %w", err)
	}
	buf.WriteByte('\n')
	_, err = w.Write(buf.Bytes())
	return err
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

// agents renders `agents list`.
func (p printer) agents(w io.Writer, agents []*vantagev1.AgentInfo) error {
	if len(agents) == 0 {
		_, err := fmt.Fprintln(w, "No agents.")
		return err
	}
	t := newTable(w, "ID", "NAME", "STATE", "CONNECTED", "HEALTHY", "LAST-SEEN", "SPOOL", "DROPPED", "GAPS", "LABELS")
	var notes []string
	for _, a := range agents {
		healthy := yesNo(a.GetHealthy())
		if !a.GetHealthy() && a.GetHealthReason() != "" {
			healthy += " (" + a.GetHealthReason() + ")"
		}
		// SPOOL: results waiting on the agent (and why its disk refuses
		// them); DROPPED: results its spool dropped (full, or its disk
		// refusing writes with its memory full); GAPS: results stored as
		// reported gaps.
		spool, dropped := "-", "-"
		if s := a.GetSpool(); s != nil {
			spool = strconv.FormatUint(s.GetPendingResults(), 10)
			dropped = strconv.FormatUint(s.GetDroppedResults(), 10)
			if s.GetWriteError() != "" {
				spool += " (disk failing)"
				notes = append(notes, p.spoolFault(a))
			}
		}
		t.row(a.GetId(), a.GetName(), agentStateName(a.GetState()), yesNo(a.GetConnected()), healthy,
			p.ago(a.GetLastSeen()), spool, dropped, strconv.FormatUint(a.GetGaps(), 10), labels(a.GetLabels()))
	}
	if err := t.flush(); err != nil {
		return err
	}
	for _, n := range notes {
		if _, err := fmt.Fprintln(w, n); err != nil {
			return err
		}
	}
	return nil
}

// spoolFault is the line under `agents list` for an agent whose spool disk
// refuses writes: since when, why, and what it cost so far.
func (p printer) spoolFault(a *vantagev1.AgentInfo) string {
	s := a.GetSpool()
	return fmt.Sprintf("%s (%s): spool disk refuses writes since %s: %s; %d results in memory, %d dropped into gaps",
		clean(a.GetName()), clean(a.GetId()), p.at(s.GetWriteFailingSince()), clean(s.GetWriteError()),
		s.GetMemoryResults(), s.GetWriteDroppedResults())
}

// agentChanged confirms `agents approve` and `agents revoke`.
func (p printer) agentChanged(w io.Writer, a *vantagev1.AgentInfo) error {
	name := ""
	if a.GetName() != "" {
		name = " (" + clean(a.GetName()) + ")"
	}
	_, err := fmt.Fprintf(w, "agent %s%s is %s\n", clean(a.GetId()), name, agentStateName(a.GetState()))
	return err
}

// joinToken renders `token create`, with the command line that enrols an
// agent against controller.
func (p printer) joinToken(w io.Writer, r *vantagev1.CreateJoinTokenResponse, controller string) error {
	expires := p.at(r.GetExpiresAt())
	if valid(r.GetExpiresAt()) {
		expires += " (" + p.ago(r.GetExpiresAt()) + ")"
	}
	// The token goes in the environment (or a file), not on the command
	// line, where ps shows it to every local user.
	_, err := fmt.Fprintf(w, "token:    %s\nexpires:  %s\nca hash:  %s\n\nEnrol an agent with:\n  VANTAGE_JOIN_TOKEN=%s vantage-agent --controller %s --ca-hash %s\n"+
		"(or write the token to a file only the agent reads and pass --join-token-file FILE; --join-token would show it in ps)\n",
		clean(r.GetToken()), expires, clean(r.GetCaHash()),
		clean(r.GetToken()), clean(controller), clean(r.GetCaHash()))
	return err
}

// campaigns renders `campaign list`.
func (p printer) campaigns(w io.Writer, cs []*vantagev1.Campaign) error {
	if len(cs) == 0 {
		_, err := fmt.Fprintln(w, "No campaigns.")
		return err
	}
	cols := []string{"NAME", "STATE", "VERSION", "SCOPE", "NETWORKS", "TARGETS", "ROUND", "QUORUM", "AGENTS", "UPDATED"}
	discovery := slices.ContainsFunc(cs, func(c *vantagev1.Campaign) bool { return c.GetDiscovery() != nil })
	if discovery {
		cols = append(cols, "DISCOVERY")
	}
	t := newTable(w, cols...)
	for _, c := range cs {
		row := []string{c.GetName(), campaignStateName(c.GetState()), strconv.FormatUint(c.GetVersion(), 10), c.GetScope(),
			strconv.Itoa(len(c.GetNetworks())), strconv.Itoa(len(c.GetTargets())), roundLen(c.GetRoundMs()),
			strconv.FormatUint(uint64(c.GetQuorum()), 10), strconv.Itoa(len(c.GetAgentIds())), p.ago(c.GetUpdatedAt())}
		if discovery {
			row = append(row, discoverySummary(c.GetDiscovery()))
		}
		t.row(row...)
	}
	return t.flush()
}

// discoverySummary is one short line about a campaign's discovery.
func discoverySummary(d *vantagev1.DiscoveryStatus) string {
	switch {
	case d == nil:
		return "-"
	case d.GetFinishedAt() == nil:
		return "running: " + truncate(cleanText(d.GetNote()), 60)
	default:
		return fmt.Sprintf("done: %d of %d responsive hosts kept, %d routers", d.GetHostsSelected(), d.GetHostsResponsive(),
			len(d.GetRoutersFound()))
	}
}

func truncate(s string, n int) string {
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}

func roundLen(ms uint32) string {
	if ms == 0 {
		return "-"
	}
	return exact(time.Duration(ms) * time.Millisecond)
}

// targetRoles counts a campaign's targets per role: "host 28, upstream 2".
func targetRoles(ts []*vantagev1.CampaignTarget) string {
	counts := map[string]int{}
	var order []string
	for _, t := range ts {
		r := lowerName(t.GetRole().String(), "TARGET_ROLE_")
		if counts[r] == 0 {
			order = append(order, r)
		}
		counts[r]++
	}
	parts := make([]string, len(order))
	for i, r := range order {
		parts[i] = fmt.Sprintf("%s %d", r, counts[r])
	}
	return strings.Join(parts, ", ")
}

// campaign renders `campaign get`: the summary, the networks, then the spec
// as applied.
func (p printer) campaign(w io.Writer, c *vantagev1.Campaign) error {
	updated := p.at(c.GetUpdatedAt())
	if valid(c.GetUpdatedAt()) {
		updated += " (" + p.ago(c.GetUpdatedAt()) + ")"
	}
	targets := strconv.Itoa(len(c.GetTargets()))
	if len(c.GetTargets()) > 0 {
		targets += " (" + targetRoles(c.GetTargets()) + ")"
	}
	agents := "-"
	if len(c.GetAgentIds()) > 0 {
		agents = strings.Join(c.GetAgentIds(), ",")
	}
	kv := newTable(w)
	kv.row("name:", c.GetName())
	kv.row("state:", campaignStateName(c.GetState()))
	kv.row("version:", strconv.FormatUint(c.GetVersion(), 10))
	kv.row("scope:", c.GetScope())
	kv.row("round:", roundLen(c.GetRoundMs()))
	kv.row("quorum:", strconv.FormatUint(uint64(c.GetQuorum()), 10))
	kv.row("created:", p.at(c.GetCreatedAt()))
	kv.row("updated:", updated)
	kv.row("targets:", targets)
	kv.row("agents:", agents)
	if d := c.GetDiscovery(); d != nil {
		kv.row("discovery:", discoverySummary(d))
		kv.row("  started:", p.at(d.GetStartedAt()))
		if valid(d.GetFinishedAt()) {
			kv.row("  finished:", p.at(d.GetFinishedAt()))
		}
		kv.row("  swept:", fmt.Sprintf("%d addresses, %d answered", d.GetAddressesSwept(), d.GetHostsResponsive()))
		var rs []string
		for _, r := range d.GetRoutersFound() {
			rs = append(rs, clean(r.GetAddress())+" "+lowerName(r.GetRole().String(), "TARGET_ROLE_"))
		}
		if len(rs) == 0 {
			rs = []string{"-"}
		}
		kv.row("  routers:", fmt.Sprintf("%s (%d traces)", strings.Join(rs, ", "), d.GetTraces()))
		kv.row("  note:", cleanText(d.GetNote()))
	}
	if err := kv.flush(); err != nil {
		return err
	}
	if len(c.GetNetworks()) > 0 {
		if _, err := fmt.Fprintln(w); err != nil {
			return err
		}
		t := newTable(w, "NETWORK", "PREFIX")
		for _, n := range c.GetNetworks() {
			t.row(n.GetName(), n.GetPrefix())
		}
		if err := t.flush(); err != nil {
			return err
		}
	}
	spec := cleanText(c.GetSpecYaml())
	if spec != "" && !strings.HasSuffix(spec, "\n") {
		spec += "\n"
	}
	_, err := fmt.Fprintf(w, "\nspec:\n%s", spec)
	return err
}

// campaignApplied confirms `campaign apply`.
func (p printer) campaignApplied(w io.Writer, c *vantagev1.Campaign, dryRun bool) error {
	what := fmt.Sprintf("%d networks, %d targets", len(c.GetNetworks()), len(c.GetTargets()))
	if dryRun {
		_, err := fmt.Fprintf(w, "campaign %s is valid (%s); dry run, nothing stored\n", clean(c.GetName()), what)
		return err
	}
	if c.GetState() == vantagev1.CampaignState_CAMPAIGN_STATE_DISCOVERING {
		_, err := fmt.Fprintf(w, "campaign %s applied: version %d, discovering targets (%s so far); see `vantagectl campaign get %s`\n",
			clean(c.GetName()), c.GetVersion(), what, clean(c.GetName()))
		return err
	}
	_, err := fmt.Fprintf(w, "campaign %s applied: version %d, %s\n", clean(c.GetName()), c.GetVersion(), what)
	return err
}

// campaignState confirms `campaign pause` and `campaign resume`.
func (p printer) campaignState(w io.Writer, c *vantagev1.Campaign) error {
	_, err := fmt.Fprintf(w, "campaign %s is %s\n", clean(c.GetName()), campaignStateName(c.GetState()))
	return err
}

// sortedVerdicts orders verdicts by campaign, then scope before network
// before target, then subject, without touching the caller's slice.
func sortedVerdicts(vs []*vantagev1.Verdict) []*vantagev1.Verdict {
	out := slices.Clone(vs)
	slices.SortStableFunc(out, func(a, b *vantagev1.Verdict) int {
		if c := strings.Compare(a.GetCampaign(), b.GetCampaign()); c != 0 {
			return c
		}
		if c := levelRank(a.GetLevel()) - levelRank(b.GetLevel()); c != 0 {
			return c
		}
		return strings.Compare(a.GetSubject(), b.GetSubject())
	})
	return out
}

var verdictHeader = []string{"LEVEL", "SUBJECT", "STATE", "SINCE", "UP/TOTAL", "VANTAGES", "LOCATION", "NOTES"}

func (p printer) verdictFields(v *vantagev1.Verdict) []string {
	return []string{levelName(v.GetLevel()), v.GetSubject(), stateName(v.GetState()), p.ago(v.GetSince()),
		fraction(v.GetUp(), v.GetTotal()), fraction(v.GetHealthyVantages(), v.GetTotalVantages()),
		locationName(v.GetLocation()), strings.Join(v.GetNotes(), "; ")}
}

// verdicts renders `verdicts`. A CAMPAIGN column leads when the verdicts
// span several campaigns.
func (p printer) verdicts(w io.Writer, vs []*vantagev1.Verdict) error {
	return campaignTable(w, "No verdicts.", sortedVerdicts(vs), (*vantagev1.Verdict).GetCampaign, verdictHeader, p.verdictFields)
}

// verdictLine renders one verdict on one line, for --watch after the first
// table (for instance after a reconnect).
func (p printer) verdictLine(v *vantagev1.Verdict) string {
	f := p.verdictFields(v)
	f[1] = v.GetCampaign() + "/" + f[1]
	return joinCells("verdict", f)
}

var transitionHeader = []string{"DETECTED", "LEVEL", "SUBJECT", "CHANGE", "ONSET", "ROUND", "LOCATION", "CHILDREN"}

func (p printer) transitionFields(t *vantagev1.Transition) []string {
	return []string{p.at(t.GetDetectedAt()), levelName(t.GetLevel()), t.GetSubject(),
		change(t),
		p.onset(t.GetOnsetEarliest(), t.GetOnsetLatest()), strconv.FormatInt(t.GetRound(), 10),
		locationName(t.GetLocation()), children(t.GetUpChildren(), t.GetDownChildren())}
}

// change is a transition's CHANGE cell; from == to is a location
// refinement (traces moved the location while the state held).
func change(t *vantagev1.Transition) string {
	if t.GetFrom() == t.GetTo() {
		return stateName(t.GetTo()) + " (location refined)"
	}
	return stateName(t.GetFrom()) + " -> " + stateName(t.GetTo())
}

// timeline renders `timeline`: one aligned line per transition. A CAMPAIGN
// column leads when the transitions span several campaigns.
func (p printer) timeline(w io.Writer, ts []*vantagev1.Transition) error {
	return campaignTable(w, "No transitions.", ts, (*vantagev1.Transition).GetCampaign, transitionHeader, p.transitionFields)
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

// transitionLine renders one transition as it arrives on --watch.
func (p printer) transitionLine(t *vantagev1.Transition) string {
	f := p.transitionFields(t)
	f[2] = t.GetCampaign() + "/" + f[2]
	return joinCells("", f)
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

// explain renders `explain`: the verdict, each vantage's view, then the raw
// results behind it.
func (p printer) explain(w io.Writer, r *vantagev1.ExplainResponse) error {
	v := r.GetVerdict()
	since := p.at(v.GetSince())
	if valid(v.GetSince()) {
		since += " (" + p.ago(v.GetSince()) + ")"
	}
	location := locationName(v.GetLocation())
	if v.GetLastResponsiveHop() != "" {
		location += " (last responsive hop " + v.GetLastResponsiveHop() + ")"
	}
	kv := newTable(w)
	kv.row("verdict:", v.GetId())
	kv.row("state:", stateName(v.GetState()))
	kv.row("since:", since)
	kv.row("onset:", p.onset(v.GetOnsetEarliest(), v.GetOnsetLatest()))
	kv.row("round:", strconv.FormatInt(v.GetRound(), 10)+" (evaluated "+p.at(v.GetEvaluatedAt())+")")
	kv.row("vantages:", fmt.Sprintf("%d/%d healthy, quorum %d", v.GetHealthyVantages(), v.GetTotalVantages(), v.GetQuorum()))
	kv.row("up/total:", fraction(v.GetUp(), v.GetTotal()))
	kv.row("up:", strings.Join(v.GetUpChildren(), ","))
	kv.row("down:", strings.Join(v.GetDownChildren(), ","))
	kv.row("location:", location)
	if v.GetNetwork() != "" {
		kv.row("network:", v.GetNetwork())
	}
	kv.row("notes:", strings.Join(v.GetNotes(), "; "))
	if err := kv.flush(); err != nil {
		return err
	}
	if len(v.GetEvidence()) > 0 {
		if _, err := fmt.Fprintln(w); err != nil {
			return err
		}
		t := newTable(w, "AGENT", "NAME", "HEALTHY", "STATE", "UP", "DOWN", "LAST-ROUND", "LAST-RESULT", "REASON")
		for _, e := range v.GetEvidence() {
			t.row(e.GetAgentId(), e.GetAgentName(), yesNo(e.GetHealthy()), stateName(e.GetState()),
				strconv.FormatUint(uint64(e.GetTargetsUp()), 10), strconv.FormatUint(uint64(e.GetTargetsDown()), 10),
				strconv.FormatInt(e.GetLastRound(), 10), p.ago(e.GetLastResultAt()), e.GetReason())
		}
		if err := t.flush(); err != nil {
			return err
		}
	}
	var traces, others []*vantagev1.StoredResult
	for _, res := range r.GetResults() {
		if res.GetResult().GetKind() == vantagev1.ProbeKind_PROBE_KIND_TRACE {
			traces = append(traces, res)
		} else {
			others = append(others, res)
		}
	}
	if len(traces) > 0 {
		if _, err := fmt.Fprintf(w, "\n%d traces (localisation evidence):\n", len(traces)); err != nil {
			return err
		}
		t := newTable(w, "SENT", "AGENT", "ROUND", "TARGET", "TRIGGER", "PATH")
		for _, s := range traces {
			res := s.GetResult()
			trig := res.GetTriggerId()
			if trig == "" {
				trig = "scheduled"
			}
			t.row(p.at(res.GetSentAt()), s.GetAgentId(), strconv.FormatInt(res.GetRound(), 10), res.GetTarget(), trig, resultDetail(res))
		}
		if err := t.flush(); err != nil {
			return err
		}
	}
	if _, err := fmt.Fprintf(w, "\n%d results:\n", len(others)); err != nil {
		return err
	}
	if len(others) == 0 {
		return nil
	}
	rt := p.newResultTable(w)
	for _, res := range others {
		rt.add(res)
	}
	return rt.flush()
}

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

// audit renders `audit`.
func (p printer) audit(w io.Writer, es []*vantagev1.AuditEntry) error {
	if len(es) == 0 {
		_, err := fmt.Fprintln(w, "No audit entries.")
		return err
	}
	t := newTable(w, "ID", "AT", "ACTOR", "ACTION", "SUBJECT", "DETAIL")
	for _, e := range es {
		t.row(strconv.FormatInt(e.GetId(), 10), p.at(e.GetAt()), e.GetActor(), e.GetAction(), e.GetSubject(), e.GetDetail())
	}
	return t.flush()
}
