package main

import (
	"fmt"
	"io"
	"strconv"
	"time"

	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

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
		t.row(a.GetId(), a.GetName(), agentStateName(a.GetState()), p.connected(a), healthy,
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

// staleAfter is how long without a heartbeat makes a connected agent
// "stale": three of the agent's default 5 s heartbeats. The controller
// keeps the session until gRPC keepalive gives up on the link (a 30 s ping
// and a 10 s timeout), so for up to 40 s after a vantage's link dies the
// controller still says connected while no heartbeat comes, and HEALTHY
// already says "no fresh data".
const staleAfter = 15 * time.Second

// connected is the CONNECTED cell: yes, no, or stale with the time since
// the last heartbeat when the session is still open but silent.
func (p printer) connected(a *vantagev1.AgentInfo) string {
	if !a.GetConnected() {
		return "no"
	}
	if valid(a.GetLastSeen()) {
		if d := p.now.Sub(a.GetLastSeen().AsTime()); d > staleAfter {
			return "stale (" + short(d) + ")"
		}
	}
	return "yes"
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
func (p printer) joinToken(w io.Writer, r *vantagev1.CreateJoinTokenResponse, controller string, tokenLabels map[string]string) error {
	expires := p.at(r.GetExpiresAt())
	if valid(r.GetExpiresAt()) {
		expires += " (" + p.ago(r.GetExpiresAt()) + ")"
	}
	// Every flag an agent needs is on the line, with placeholders: followed
	// literally without --name every agent is named after its host, and
	// without a provider label the verdict engine's quorum groups (one per
	// provider) collapse into one. The token goes in the environment (or a
	// file), not on the command line, where ps shows it to every local user.
	label := ""
	if _, ok := tokenLabels[quorumLabel]; !ok {
		label = " --label " + quorumLabel + "=PROVIDER"
	}
	_, err := fmt.Fprintf(w, "token:    %s\nexpires:  %s\nca hash:  %s\n\nEnrol an agent with:\n"+
		"  VANTAGE_JOIN_TOKEN=%s vantage-agent --controller %s --ca-hash %s \\\n"+
		"    --state /var/lib/vantage-agent --name NAME%s\n"+
		"Replace NAME with this vantage's own name (e.g. vps-fra1)"+placeholderHelp(label)+".\n"+
		"(or write the token to a file only the agent reads and pass --join-token-file FILE; --join-token would show it in ps)\n",
		clean(r.GetToken()), expires, clean(r.GetCaHash()),
		clean(r.GetToken()), clean(controller), clean(r.GetCaHash()), label)
	return err
}

// quorumLabel is the label the verdict engine groups vantages by for its
// quorum unless the controller is told otherwise (verdict.DefaultQuorumLabel).
const quorumLabel = "provider"

func placeholderHelp(label string) string {
	if label == "" {
		return ""
	}
	return " and PROVIDER with its hosting provider or network (e.g. hetzner): the quorum counts one vote per " + quorumLabel
}

// joinTokens renders `token list`.
func (p printer) joinTokens(w io.Writer, ts []*vantagev1.JoinTokenInfo) error {
	if len(ts) == 0 {
		_, err := fmt.Fprintln(w, "No join tokens.")
		return err
	}
	t := newTable(w, "ID", "CREATED", "BY", "EXPIRES", "USES", "USABLE", "LABELS")
	for _, tk := range ts {
		uses := strconv.FormatUint(uint64(tk.GetUses()), 10)
		if tk.GetMaxUses() > 0 {
			uses += "/" + strconv.FormatUint(uint64(tk.GetMaxUses()), 10)
		}
		expires := p.ago(tk.GetExpiresAt())
		if valid(tk.GetExpiresAt()) && !tk.GetExpiresAt().AsTime().After(p.now) {
			expires = "expired " + expires
		}
		t.row(tk.GetId(), p.clock(tk.GetCreatedAt()), tk.GetCreatedBy(), expires, uses, yesNo(tk.GetUsable()), labels(tk.GetLabels()))
	}
	return t.flush()
}

// operatorToken renders `token create --operator`.
func (p printer) operatorToken(w io.Writer, r *vantagev1.CreateOperatorTokenResponse) error {
	_, err := fmt.Fprintf(w, "operator token %s (role %s):\n%s\n"+
		"It is shown only this once. Give it to its user to pass as --token-file FILE or VANTAGE_TOKEN;\n"+
		"its actions show in the audit log as operator:%s.\n",
		clean(r.GetName()), clean(r.GetRole()), clean(r.GetToken()), clean(r.GetName()))
	return err
}
