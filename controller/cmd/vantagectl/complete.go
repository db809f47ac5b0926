package main

import (
	"strings"

	"github.com/spf13/cobra"

	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// Dynamic shell completion (vantagectl completion bash|zsh|fish): campaign
// names and verdict ids come from the controller, with the same connection
// settings as any command; fixed values (--level, -o) need no call. A
// completion that cannot reach the controller offers nothing rather than
// printing an error into the user's shell.

type completeFunc = func(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective)

func fixed(values ...string) completeFunc {
	return func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
		return values, cobra.ShellCompDirectiveNoFileComp
	}
}

var levelValues = []string{"scope", "network", "target"}

// completing resolves the connection settings, which cobra's completion
// skips (it runs no pre-run hook), and reports whether they are usable.
func (a *app) completing(cmd *cobra.Command) bool {
	return a.resolve(cmd) == nil
}

// campaignNames completes a campaign name.
func (a *app) campaignNames(cmd *cobra.Command, _ []string, toComplete string) ([]string, cobra.ShellCompDirective) {
	if !a.completing(cmd) {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	r, err := call(a, cmd, vantagev1.OperatorServiceClient.ListCampaigns, &vantagev1.ListCampaignsRequest{})
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp | cobra.ShellCompDirectiveError
	}
	var out []string
	for _, c := range r.GetCampaigns() {
		if strings.HasPrefix(c.GetName(), toComplete) {
			out = append(out, c.GetName())
		}
	}
	return out, cobra.ShellCompDirectiveNoFileComp
}

// campaignArg completes the one NAME argument of a campaign subcommand.
func (a *app) campaignArg(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
	if len(args) > 0 {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	return a.campaignNames(cmd, args, toComplete)
}

// verdictIDs completes explain's VERDICT_ID from the current verdicts; once
// a campaign is typed (kp/...) only its verdicts are asked for.
func (a *app) verdictIDs(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
	if len(args) > 0 || !a.completing(cmd) {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	req := &vantagev1.GetVerdictsRequest{}
	if c, _, ok := strings.Cut(toComplete, "/"); ok {
		req.Campaign = c
	}
	r, err := call(a, cmd, vantagev1.OperatorServiceClient.GetVerdicts, req)
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp | cobra.ShellCompDirectiveError
	}
	var out []string
	for _, v := range r.GetVerdicts() {
		if strings.HasPrefix(v.GetId(), toComplete) {
			out = append(out, v.GetId())
		}
	}
	return out, cobra.ShellCompDirectiveNoFileComp
}

// completions registers the completion of every flag and argument that has
// known values, once the command tree is built.
func (a *app) completions(root *cobra.Command) {
	_ = root.RegisterFlagCompletionFunc("output", fixed("table", "json"))
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		if c.LocalFlags().Lookup("level") != nil {
			_ = c.RegisterFlagCompletionFunc("level", fixed(levelValues...))
		}
		if c.LocalFlags().Lookup("campaign") != nil {
			_ = c.RegisterFlagCompletionFunc("campaign", a.campaignNames)
		}
		for _, sc := range c.Commands() {
			walk(sc)
		}
	}
	walk(root)
}

// joinTokenIDs completes token revoke's ID with the usable join tokens.
func (a *app) joinTokenIDs(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
	if len(args) > 0 || !a.completing(cmd) {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	r, err := call(a, cmd, vantagev1.OperatorServiceClient.ListJoinTokens, &vantagev1.ListJoinTokensRequest{})
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp | cobra.ShellCompDirectiveError
	}
	var out []string
	for _, t := range r.GetTokens() {
		if t.GetUsable() && strings.HasPrefix(t.GetId(), toComplete) {
			out = append(out, t.GetId())
		}
	}
	return out, cobra.ShellCompDirectiveNoFileComp
}
