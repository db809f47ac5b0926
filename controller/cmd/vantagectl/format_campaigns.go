package main

import (
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

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
			t.row(n.GetName(), networkPrefixes(n))
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

// networkPrefixes is a network's prefixes, comma-separated (a dual-stack
// network has two); a controller that predates the list sends only prefix.
func networkPrefixes(n *vantagev1.CampaignNetwork) string {
	if ps := n.GetPrefixes(); len(ps) > 0 {
		return strings.Join(ps, ",")
	}
	return n.GetPrefix()
}
