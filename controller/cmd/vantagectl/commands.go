package main

import (
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vantage-net/vantage/controller/campaign"
	"github.com/vantage-net/vantage/internal/buildinfo"
	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// maxCampaignBytes bounds a campaign file; the controller's gRPC limit is of
// the same order.
const maxCampaignBytes = 4 << 20

// maxTokenTTL mirrors the controller's limit on join tokens.
const maxTokenTTL = 30 * 24 * time.Hour

func (a *app) rootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "vantagectl",
		Short: "Operate a vantage measurement fleet",
		Long: `vantagectl talks to a vantage controller's OperatorService over TLS 1.3.

Connection settings come from flags or the environment (flags win):
  --controller  VANTAGE_CONTROLLER  host[:port], default 127.0.0.1:7443
  --token       VANTAGE_TOKEN       bearer token (or --token-file <data>/admin.token)
  --ca          VANTAGE_CA          the controller's ca.pem

-o json prints one JSON document per command: snake_case keys, every field present
([] for an empty list), enums by name ("scope"), 64-bit integers as numbers, RFC 3339
times. Only the endless streams (verdicts --watch, bgp watch) print one object a line.

Errors print as one line, "vantagectl: <message>", on stderr.

` + exitCodesHelp,
		Version:       buildinfo.Version,
		SilenceErrors: true,
		SilenceUsage:  true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			// cobra checks required flags only after this hook; check them
			// here so that they count as usage errors like the rest.
			if err := cmd.ValidateRequiredFlags(); err != nil {
				return &usageError{msg: err.Error()}
			}
			if err := cmd.ValidateFlagGroups(); err != nil {
				return &usageError{msg: err.Error()}
			}
			a.started = true
			return a.resolve(cmd)
		},
	}
	root.SetVersionTemplate(buildinfo.String("vantagectl") + "\n")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &usageError{msg: err.Error()} })
	pf := root.PersistentFlags()
	pf.StringVar(&a.controller, "controller", defaultController, "controller address host[:port] (env "+envController+")")
	pf.StringVar(&a.token, "token", "", "bearer token (env "+envToken+")")
	pf.StringVar(&a.tokenFile, "token-file", "", "read the bearer token from this file, e.g. <data>/admin.token")
	pf.StringVar(&a.caPath, "ca", "", "the controller's CA certificate, ca.pem (env "+envCA+")")
	pf.StringVarP(&a.output, "output", "o", "table", "output format: table or json")
	pf.DurationVar(&a.timeout, "timeout", 10*time.Second, "deadline of each unary call")
	root.AddCommand(a.agentsCmd(), a.tokenCmd(), a.campaignCmd(), a.verdictsCmd(), a.timelineCmd(), a.seriesCmd(),
		a.explainCmd(), a.replayCmd(), a.resultsCmd(), a.auditCmd(), a.bgpCmd())
	root.AddCommand(a.exportCmd())
	a.completions(root) // last: it walks every command's flags
	return root
}

// group is a command that only holds subcommands; run bare or with an
// unknown subcommand it is a usage error.
func group(use, short string, subs ...*cobra.Command) *cobra.Command {
	c := &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usageErrorf("unknown command %q for %q", args[0], cmd.CommandPath())
			}
			var subs []string
			for _, sc := range cmd.Commands() {
				if sc.IsAvailableCommand() {
					subs = append(subs, sc.Name())
				}
			}
			return usageErrorf("%s: missing subcommand, one of: %s", cmd.Name(), strings.Join(subs, ", "))
		},
	}
	c.AddCommand(subs...)
	return c
}

// listAgents follows ListAgents' pages and returns every agent in one
// response.
func listAgents(a *app, cmd *cobra.Command) (*vantagev1.ListAgentsResponse, error) {
	all := &vantagev1.ListAgentsResponse{}
	req := &vantagev1.ListAgentsRequest{}
	for {
		r, err := call(a, cmd, vantagev1.OperatorServiceClient.ListAgents, req)
		if err != nil {
			return nil, err
		}
		all.Agents = append(all.Agents, r.GetAgents()...)
		next := r.GetNextPageToken()
		if next == "" {
			return all, nil
		}
		if next == req.GetPageToken() {
			return nil, fmt.Errorf("agents list: the controller gave the same page token twice")
		}
		req = &vantagev1.ListAgentsRequest{PageToken: next}
	}
}

func (a *app) agentsCmd() *cobra.Command {
	list := &cobra.Command{
		Use:   "list",
		Short: "List agents with their state, health and spool",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			all, err := listAgents(a, cmd)
			if err != nil {
				return err
			}
			return show(a, all, func(p printer, w io.Writer, r *vantagev1.ListAgentsResponse) error { return p.agents(w, r.GetAgents()) })
		},
	}
	approve := unaryCmd(a, &cobra.Command{Use: "approve ID", Short: "Approve a pending agent so it receives work", Args: cobra.ExactArgs(1)},
		vantagev1.OperatorServiceClient.ApproveAgent,
		func(args []string) *vantagev1.ApproveAgentRequest { return &vantagev1.ApproveAgentRequest{Id: args[0]} },
		printer.agentChanged)
	var reason string
	revoke := unaryCmd(a, &cobra.Command{Use: "revoke ID", Short: "Revoke an agent: its certificate stops working at once", Args: cobra.ExactArgs(1)},
		vantagev1.OperatorServiceClient.RevokeAgent,
		func(args []string) *vantagev1.RevokeAgentRequest {
			return &vantagev1.RevokeAgentRequest{Id: args[0], Reason: reason}
		},
		printer.agentChanged)
	revoke.Flags().StringVar(&reason, "reason", "", "why, for the audit log")
	return group("agents", "Manage the agents (vantages) of the fleet", list, approve, revoke)
}

func (a *app) tokenCmd() *cobra.Command {
	var (
		ttl            time.Duration
		maxUses        uint32
		labelKVs       []string
		operator, role string
	)
	create := &cobra.Command{
		Use:   "create [--operator NAME --role ROLE]",
		Short: "Create a join token for enrolling agents, or with --operator an operator bearer token (admin)",
		Long: "Create a join token for enrolling agents (role operator), and print the agent command that uses it.\n" +
			"With --operator NAME, create an operator bearer token instead (role admin): --role viewer, operator\n" +
			"or admin; the secret is printed once and stored only hashed. Both are in the audit log.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fl := cmd.Flags()
			if operator != "" || fl.Changed("role") {
				if operator == "" {
					return usageErrorf("--role: only with --operator NAME (an operator token); a join token's agents get --label")
				}
				for _, f := range []string{"ttl", "max-uses", "label"} {
					if fl.Changed(f) {
						return usageErrorf("--%s: only for join tokens, not with --operator", f)
					}
				}
				switch role {
				case "viewer", "operator", "admin":
				default:
					return usageErrorf("--role: want viewer, operator or admin, got %q", role)
				}
				return callAndShow(a, cmd, vantagev1.OperatorServiceClient.CreateOperatorToken,
					&vantagev1.CreateOperatorTokenRequest{Name: operator, Role: role}, printer.operatorToken)
			}
			if ttl <= 0 || ttl > maxTokenTTL {
				return usageErrorf("--ttl: must be between 1s and %s, got %s", maxTokenTTL, ttl)
			}
			lm, err := parseLabels(labelKVs)
			if err != nil {
				return err
			}
			req := &vantagev1.CreateJoinTokenRequest{TtlS: uint32(math.Ceil(ttl.Seconds())), MaxUses: maxUses, Labels: lm}
			return callAndShow(a, cmd, vantagev1.OperatorServiceClient.CreateJoinToken, req,
				func(p printer, w io.Writer, r *vantagev1.CreateJoinTokenResponse) error {
					return p.joinToken(w, r, a.controller, lm)
				})
		},
	}
	f := create.Flags()
	f.DurationVar(&ttl, "ttl", time.Hour, "lifetime of the join token (at most 720h)")
	f.Uint32Var(&maxUses, "max-uses", 0, "enrolments allowed; 0 means unlimited until expiry")
	f.StringArrayVar(&labelKVs, "label", nil, "label k=v every agent enrolled with this token receives (repeatable)")
	f.StringVar(&operator, "operator", "", "create an operator bearer token with this name instead (admin only)")
	f.StringVar(&role, "role", "viewer", "with --operator: viewer, operator or admin")
	_ = create.RegisterFlagCompletionFunc("role", fixed("viewer", "operator", "admin"))

	list := unaryCmd(a, &cobra.Command{Use: "list", Short: "List join tokens, newest first (ids only: secrets are not stored)", Args: cobra.NoArgs},
		vantagev1.OperatorServiceClient.ListJoinTokens,
		func([]string) *vantagev1.ListJoinTokensRequest { return &vantagev1.ListJoinTokensRequest{} },
		func(p printer, w io.Writer, r *vantagev1.ListJoinTokensResponse) error {
			return p.joinTokens(w, r.GetTokens())
		})
	revoke := unaryCmd(a, &cobra.Command{Use: "revoke ID", Short: "Make one join token expire now (its id from token list)", Args: cobra.ExactArgs(1),
		ValidArgsFunction: a.joinTokenIDs},
		vantagev1.OperatorServiceClient.RevokeJoinToken,
		func(args []string) *vantagev1.RevokeJoinTokenRequest {
			return &vantagev1.RevokeJoinTokenRequest{Id: args[0]}
		},
		func(_ printer, w io.Writer, t *vantagev1.JoinTokenInfo) error {
			_, err := fmt.Fprintf(w, "join token %s revoked\n", clean(t.GetId()))
			return err
		})
	return group("token", "Manage join tokens and operator tokens", create, list, revoke)
}

// parseLabels turns repeated --label k=v into a map.
func parseLabels(kvs []string) (map[string]string, error) {
	if len(kvs) == 0 {
		return nil, nil
	}
	m := make(map[string]string, len(kvs))
	for _, kv := range kvs {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, usageErrorf("--label: want key=value, got %q", kv)
		}
		if _, dup := m[k]; dup {
			return nil, usageErrorf("--label: key %q given twice", k)
		}
		m[k] = v
	}
	return m, nil
}

func (a *app) campaignCmd() *cobra.Command {
	var (
		file       string
		dryRun     bool
		allowFewer bool
	)
	apply := &cobra.Command{
		Use:   "apply FILE | -f FILE",
		Short: "Validate and store a campaign file (FILE - reads stdin)",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			switch {
			case len(args) == 1 && file != "":
				return usageErrorf("campaign apply: give the file once, as an argument or with -f, not both")
			case len(args) == 1:
				file = args[0]
			case file == "":
				return usageErrorf("campaign apply: no campaign file: give it as an argument (vantagectl campaign apply country.yaml) or with -f; - reads stdin")
			}
			spec, err := a.readCampaign(file)
			if err != nil {
				return err
			}
			req := &vantagev1.ApplyCampaignRequest{SpecYaml: spec, DryRun: dryRun, AllowFewerVantages: allowFewer}
			return callAndShow(a, cmd, vantagev1.OperatorServiceClient.ApplyCampaign, req,
				func(p printer, w io.Writer, c *vantagev1.Campaign) error { return p.campaignApplied(w, c, dryRun) })
		},
	}
	apply.Flags().StringVarP(&file, "filename", "f", "", "campaign file (YAML); - for stdin; or give it as the argument")
	apply.Flags().BoolVar(&dryRun, "dry-run", false, "validate only; store nothing")
	apply.Flags().BoolVar(&allowFewer, "allow-fewer-vantages", false,
		"apply even if fewer enrolled agents (quorum groups) match vantages.select than vantages.quorum needs, e.g. before they enrol")

	list := unaryCmd(a, &cobra.Command{Use: "list", Short: "List campaigns", Args: cobra.NoArgs},
		vantagev1.OperatorServiceClient.ListCampaigns,
		func([]string) *vantagev1.ListCampaignsRequest { return &vantagev1.ListCampaignsRequest{} },
		func(p printer, w io.Writer, r *vantagev1.ListCampaignsResponse) error {
			return p.campaigns(w, r.GetCampaigns())
		})
	get := unaryCmd(a, a.nameCmd("get", "Show a campaign and its spec"), vantagev1.OperatorServiceClient.GetCampaign,
		func(args []string) *vantagev1.GetCampaignRequest { return &vantagev1.GetCampaignRequest{Name: args[0]} },
		printer.campaign)
	pause := unaryCmd(a, a.nameCmd("pause", "Stop scheduling a campaign"), vantagev1.OperatorServiceClient.PauseCampaign,
		func(args []string) *vantagev1.PauseCampaignRequest {
			return &vantagev1.PauseCampaignRequest{Name: args[0]}
		},
		printer.campaignState)
	resume := unaryCmd(a, a.nameCmd("resume", "Schedule a paused campaign again"), vantagev1.OperatorServiceClient.ResumeCampaign,
		func(args []string) *vantagev1.ResumeCampaignRequest {
			return &vantagev1.ResumeCampaignRequest{Name: args[0]}
		},
		printer.campaignState)
	del := &cobra.Command{
		Use:               "delete NAME",
		Short:             "Delete a campaign",
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: a.campaignArg,
		RunE: func(cmd *cobra.Command, args []string) error {
			return callAndShow(a, cmd, vantagev1.OperatorServiceClient.DeleteCampaign, &vantagev1.DeleteCampaignRequest{Name: args[0]},
				func(_ printer, w io.Writer, _ *vantagev1.DeleteCampaignResponse) error {
					_, err := fmt.Fprintf(w, "campaign %s deleted\n", clean(args[0]))
					return err
				})
		},
	}
	return group("campaign", "Manage measurement campaigns", apply, list, get, pause, resume, del)
}

// readCampaign reads a campaign file, or stdin for "-".
func (a *app) readCampaign(path string) (string, error) {
	var r io.Reader
	if path == "-" {
		r = a.env.stdin
	} else {
		f, err := os.Open(path)
		if err != nil {
			return "", fmt.Errorf("campaign file: %w", err)
		}
		defer f.Close()
		r = f
	}
	b, err := io.ReadAll(io.LimitReader(r, maxCampaignBytes+1))
	if err != nil {
		return "", fmt.Errorf("campaign file %s: %w", path, err)
	}
	if len(b) > maxCampaignBytes {
		return "", fmt.Errorf("campaign file %s: larger than %d bytes", path, maxCampaignBytes)
	}
	if strings.TrimSpace(string(b)) == "" {
		return "", fmt.Errorf("campaign file %s: empty", path)
	}
	// targets.rir names a file on this machine: expand it here, so the
	// controller never opens paths (campaign.ExpandRIR). Relative paths are
	// relative to the campaign file (to the working directory for stdin).
	dir := "."
	if path != "-" {
		dir = filepath.Dir(path)
	}
	out, _, err := campaign.ExpandRIR(b, func(p string) ([]byte, error) {
		if !filepath.IsAbs(p) {
			p = filepath.Join(dir, p)
		}
		return readLimited(p, campaign.MaxRIRBytes)
	})
	if err != nil {
		return "", fmt.Errorf("campaign file %s: %w", path, err)
	}
	return string(out), nil
}

func readLimited(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, limit)
	}
	return b, nil
}

// parseLevel reads --level; empty means every level.
func parseLevel(s string) (vantagev1.Level, error) {
	switch strings.ToLower(s) {
	case "":
		return vantagev1.Level_LEVEL_UNSPECIFIED, nil
	case "scope":
		return vantagev1.Level_LEVEL_SCOPE, nil
	case "network":
		return vantagev1.Level_LEVEL_NETWORK, nil
	case "target":
		return vantagev1.Level_LEVEL_TARGET, nil
	}
	return 0, usageErrorf("--level: want scope, network or target, got %q", s)
}

// timeForms is the help text of every time flag.
const timeForms = "now, a duration back from now (90m, 36h, 2d, 1w; 0s is now), a date (2026-12-01, midnight in the local zone), or an RFC 3339 time"

// parseSince reads a time flag in timeForms' forms; empty means no bound.
func parseSince(flag, s string, now time.Time, loc *time.Location) (*timestamppb.Timestamp, error) {
	if s == "" {
		return nil, nil
	}
	if strings.EqualFold(s, "now") {
		return timestamppb.New(now), nil
	}
	if d, ok := parseAge(s); ok {
		if d < 0 {
			return nil, usageErrorf("--%s: a duration back from now must not be negative, got %q", flag, s)
		}
		return timestamppb.New(now.Add(-d)), nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return timestamppb.New(t), nil
	}
	for _, layout := range []string{time.DateOnly, "2006-01-02T15:04", "2006-01-02T15:04:05", "2006-01-02 15:04", "2006-01-02 15:04:05"} {
		if t, err := time.ParseInLocation(layout, s, loc); err == nil {
			return timestamppb.New(t), nil
		}
	}
	return nil, usageErrorf("--%s: want %s; got %q", flag, timeForms, s)
}

// parseAge reads a Go duration, or a whole number of days (2d) or weeks
// (1w), optionally followed by a Go duration (1d12h).
func parseAge(s string) (time.Duration, bool) {
	if d, err := time.ParseDuration(s); err == nil {
		return d, true
	}
	i := strings.IndexAny(s, "dw")
	if i <= 0 {
		return 0, false
	}
	n, err := strconv.Atoi(s[:i])
	if err != nil || n < 0 || n > 100*52 {
		return 0, false
	}
	unit := 24 * time.Hour
	if s[i] == 'w' {
		unit *= 7
	}
	d := time.Duration(n) * unit
	if rest := s[i+1:]; rest != "" {
		r, err := time.ParseDuration(rest)
		if err != nil || r < 0 {
			return 0, false
		}
		d += r
	}
	return d, true
}

// timeRange reads the two bounds of a time range (flags fromFlag and
// toFlag, in parseSince's forms) against one now. A range whose start is
// not before its end would match nothing: it is refused, naming both flags.
func (a *app) timeRange(fromFlag, from, toFlag, to string) (f, t *timestamppb.Timestamp, err error) {
	now := a.env.now()
	if f, err = parseSince(fromFlag, from, now, a.env.loc); err != nil {
		return nil, nil, err
	}
	if t, err = parseSince(toFlag, to, now, a.env.loc); err != nil {
		return nil, nil, err
	}
	if f != nil && t != nil && !f.AsTime().Before(t.AsTime()) {
		return nil, nil, usageErrorf("--%s %s is not before --%s %s: the range is empty (a duration counts back from now, so --%s 1h --%s 2h is inverted)",
			fromFlag, f.AsTime().In(a.env.loc).Format(time.RFC3339), toFlag, t.AsTime().In(a.env.loc).Format(time.RFC3339), fromFlag, toFlag)
	}
	return f, t, nil
}

// sinceUntilFlags adds --since and --until (with --from and --to as their
// other names) for what the command lists.
func sinceUntilFlags(c *cobra.Command, since, until *string, what string) {
	f := c.Flags()
	f.StringVar(since, "since", "", "only "+what+" after this (--from is the same): "+timeForms)
	f.StringVar(until, "until", "", "only "+what+" before this (--to is the same); same forms as --since")
	f.SetNormalizeFunc(func(_ *pflag.FlagSet, name string) pflag.NormalizedName {
		switch name {
		case "from":
			name = "since"
		case "to":
			name = "until"
		}
		return pflag.NormalizedName(name)
	})
}

func (a *app) verdictsCmd() *cobra.Command {
	var (
		campaignName, level string
		watch, noRetry      bool
	)
	cmd := &cobra.Command{
		Use:   "verdicts",
		Short: "Show current verdicts; --watch follows transitions until Ctrl-C",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			lvl, err := parseLevel(level)
			if err != nil {
				return err
			}
			c, err := a.api()
			if err != nil {
				return err
			}
			if watch {
				w := watcher{app: a, client: c, reconnect: !noRetry,
					req: &vantagev1.WatchVerdictsRequest{Campaign: campaignName, Level: lvl}}
				return w.run(cmd.Context())
			}
			return callAndShow(a, cmd, vantagev1.OperatorServiceClient.GetVerdicts, &vantagev1.GetVerdictsRequest{Campaign: campaignName, Level: lvl},
				func(p printer, w io.Writer, r *vantagev1.GetVerdictsResponse) error {
					return p.verdicts(w, r.GetVerdicts())
				})
		},
	}
	f := cmd.Flags()
	f.StringVar(&campaignName, "campaign", "", "only this campaign")
	f.StringVar(&level, "level", "", "only this level: scope, network or target")
	f.BoolVarP(&watch, "watch", "w", false, "print the current verdicts, then every transition as it happens (-o json: one object a line, JSON Lines)")
	f.BoolVar(&noRetry, "no-reconnect", false, "with --watch: exit when the stream breaks instead of reconnecting")
	return cmd
}

func (a *app) timelineCmd() *cobra.Command {
	var (
		campaignName, level, since, until string
		limit                             uint32
		withSeries, all                   bool
	)
	cmd := &cobra.Command{
		Use:   "timeline",
		Short: "Show stored verdict transitions, oldest first",
		Long: "Show stored verdict transitions, oldest first: the folded view. A flapping episode's first\n" +
			"transitions (the first flap is published at once: it may be a blackout) are folded into its\n" +
			"transition into UNSTABLE, which reads REACHABLE -> UNSTABLE with the first flap's onset.\n" +
			"--all shows the folded transitions too, each marked \"(folded into #ID)\", and the\n" +
			"transitions that fold them marked with their id.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			lvl, err := parseLevel(level)
			if err != nil {
				return err
			}
			from, to, err := a.timeRange("since", since, "until", until)
			if err != nil {
				return err
			}
			req := &vantagev1.GetTimelineRequest{Campaign: campaignName, Level: lvl, From: from, To: to, Limit: limit,
				IncludeSeries: withSeries, IncludeFolded: all}
			return callAndShow(a, cmd, vantagev1.OperatorServiceClient.GetTimeline, req,
				func(p printer, w io.Writer, r *vantagev1.GetTimelineResponse) error {
					if err := p.timeline(w, r.GetTransitions()); err != nil || !withSeries {
						return err
					}
					if _, err := fmt.Fprintln(w); err != nil {
						return err
					}
					return p.series(w, r.GetSeries())
				})
		},
	}
	f := cmd.Flags()
	f.StringVar(&campaignName, "campaign", "", "only this campaign")
	f.StringVar(&level, "level", "", "only this level: scope, network or target")
	sinceUntilFlags(cmd, &since, &until, "transitions")
	f.Uint32Var(&limit, "limit", 0, "at most this many transitions (0: the controller's default, 1000; at most 10000)")
	f.BoolVar(&withSeries, "series", false, "also show the quality series (loss, RTT) over the same interval")
	f.BoolVar(&all, "all", false, "also show the transitions folded into a flapping episode's transition into UNSTABLE")
	return cmd
}

func (a *app) explainCmd() *cobra.Command {
	var rounds uint32
	cmd := unaryCmd(a, &cobra.Command{
		Use:               "explain VERDICT_ID",
		Short:             "Show a verdict with each vantage's view and the raw results behind it",
		Long:              "Show a verdict with each vantage's view and the raw results behind it.\nVerdict ids look like <campaign>/<level>/<subject>, e.g. kp/scope/KP.",
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: a.verdictIDs,
	}, vantagev1.OperatorServiceClient.Explain,
		func(args []string) *vantagev1.ExplainRequest {
			return &vantagev1.ExplainRequest{VerdictId: args[0], Rounds: rounds}
		},
		printer.explain)
	cmd.Flags().Uint32Var(&rounds, "rounds", 3, "how many rounds of results to show")
	return cmd
}

func (a *app) replayCmd() *cobra.Command {
	var (
		campaignName, from, to, level string
		params                        []string
		all                           bool
	)
	cmd := &cobra.Command{
		Use:   "replay --campaign NAME --from T1 --to T2 [--param k=v]...",
		Short: "Recompute a timeline from stored results with other verdict parameters",
		Long: "Recompute a campaign's timeline over [from, to) from its stored results with other verdict\n" +
			"parameters. The live verdicts and timeline are not touched.\n" +
			"Parameters: quorum, grace (e.g. 1.5s), fresh_rounds, quorum_label (or - for none),\n" +
			"belief_up, belief_down, min_availability, unstable_window, unstable_flips,\n" +
			"unstable_calm, results_per_round.\n" +
			"Prints the folded view, as timeline does; --all shows the folded transitions too.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if campaignName == "" {
				return usageErrorf("--campaign: required")
			}
			if from == "" || to == "" {
				return usageErrorf("--from and --to: required")
			}
			lvl, err := parseLevel(level)
			if err != nil {
				return err
			}
			f, t, err := a.timeRange("from", from, "to", to)
			if err != nil {
				return err
			}
			req := &vantagev1.ReplayRequest{Campaign: campaignName, From: f, To: t, IncludeFolded: all}
			for _, p := range params {
				k, v, ok := strings.Cut(p, "=")
				if !ok || k == "" {
					return usageErrorf("--param: want key=value, got %q", p)
				}
				if req.Params == nil {
					req.Params = map[string]string{}
				}
				req.Params[k] = v
			}
			resp, err := call(a, cmd, vantagev1.OperatorServiceClient.Replay, req)
			if err != nil {
				return err
			}
			var ts []*vantagev1.Transition
			for _, tr := range resp.GetTransitions() {
				if lvl == vantagev1.Level_LEVEL_UNSPECIFIED || tr.GetLevel() == lvl {
					ts = append(ts, tr)
				}
			}
			return show(a, &vantagev1.ReplayResponse{Transitions: ts},
				func(p printer, w io.Writer, r *vantagev1.ReplayResponse) error {
					return p.timeline(w, r.GetTransitions())
				})
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&campaignName, "campaign", "", "the campaign to replay (required)")
	fl.StringVar(&from, "from", "", "start (required): "+timeForms)
	fl.StringVar(&to, "to", "", "end (exclusive); same forms as --from (required)")
	fl.StringVar(&level, "level", "", "only print this level: scope, network or target")
	fl.StringArrayVar(&params, "param", nil, "override a verdict parameter, key=value (repeatable)")
	fl.BoolVar(&all, "all", false, "also show the transitions folded into a flapping episode's transition into UNSTABLE")
	return cmd
}

func (a *app) resultsCmd() *cobra.Command {
	var (
		campaignName, agent, target, since, until string
		limit                                     uint32
	)
	cmd := &cobra.Command{
		Use:   "results",
		Short: "Stream stored raw results, oldest first",
		Long: "Stream stored raw results, oldest first. The table prints each row as it arrives.\n" +
			"-o json prints one JSON document, an array of results, written as they arrive.\n" +
			"A query returns at most --limit results: 1000 by default, at most 100000 (the\n" +
			"controller's cap); narrow --since/--until, --agent or --target for more.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			from, to, err := a.timeRange("since", since, "until", until)
			if err != nil {
				return err
			}
			c, err := a.api()
			if err != nil {
				return err
			}
			// A result stream has no deadline: it ends when the controller
			// has sent everything, or at Ctrl-C.
			stream, err := c.QueryResults(cmd.Context(), &vantagev1.QueryResultsRequest{
				Campaign: campaignName, AgentId: agent, Target: target, From: from, To: to, Limit: limit,
			})
			if err != nil {
				return err
			}
			return a.streamResults(stream.Recv)
		},
	}
	f := cmd.Flags()
	f.StringVar(&campaignName, "campaign", "", "only this campaign")
	f.StringVar(&agent, "agent", "", "only this agent id")
	f.StringVar(&target, "target", "", "only this target address")
	sinceUntilFlags(cmd, &since, &until, "results")
	f.Uint32Var(&limit, "limit", 0, "at most this many results (0: the controller's default, 1000; at most 100000)")
	return cmd
}

func (a *app) auditCmd() *cobra.Command {
	var limit uint32
	cmd := unaryCmd(a, &cobra.Command{Use: "audit", Short: "Show the audit log of changes", Args: cobra.NoArgs},
		vantagev1.OperatorServiceClient.ListAudit,
		func([]string) *vantagev1.ListAuditRequest { return &vantagev1.ListAuditRequest{Limit: limit} },
		func(p printer, w io.Writer, r *vantagev1.ListAuditResponse) error { return p.audit(w, r.GetEntries()) })
	cmd.Flags().Uint32Var(&limit, "limit", 0, "at most this many entries (0: the controller's default)")
	return cmd
}
