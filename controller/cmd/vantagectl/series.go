package main

import (
	"fmt"
	"io"
	"slices"
	"strconv"

	"github.com/spf13/cobra"

	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

func (a *app) seriesCmd() *cobra.Command {
	var (
		campaignName, network, agent, since, until string
		limit                                      uint32
	)
	cmd := &cobra.Command{
		Use:   "series",
		Short: "Show a campaign's quality series: loss and RTT per network, vantage and round",
		Long: "Show a campaign's stored quality series, oldest round first: per network, vantage and round the\n" +
			"probes, the first-try loss, the RTT p50 and p90 and the answers per protocol. With more points\n" +
			"than --limit (default: the controller's), the newest are shown.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if campaignName == "" {
				return usageErrorf("--campaign: required")
			}
			from, to, err := a.timeRange("since", since, "until", until)
			if err != nil {
				return err
			}
			req := &vantagev1.GetSeriesRequest{Campaign: campaignName, Network: network, AgentId: agent, From: from, To: to, Limit: limit}
			return callAndShow(a, cmd, vantagev1.OperatorServiceClient.GetSeries, req,
				func(p printer, w io.Writer, r *vantagev1.GetSeriesResponse) error { return p.series(w, r.GetPoints()) })
		},
	}
	f := cmd.Flags()
	f.StringVar(&campaignName, "campaign", "", "the campaign (required)")
	f.StringVar(&network, "network", "", "only this network")
	f.StringVar(&agent, "agent", "", "only this vantage (agent id)")
	sinceUntilFlags(cmd, &since, &until, "rounds that started")
	f.Uint32Var(&limit, "limit", 0, "at most this many points, the newest (0: the controller's default)")
	return cmd
}

var seriesHeader = []string{"ROUND-START", "ROUND", "NETWORK", "AGENT", "PROBES", "LOSS", "RTT-P50", "RTT-P90", "ANSWERS"}

// series renders `series` (and `timeline --series`): one line per point.
func (p printer) series(w io.Writer, ps []*vantagev1.QualityPoint) error {
	return campaignTable(w, "No quality points.", ps, (*vantagev1.QualityPoint).GetCampaign, seriesHeader, p.pointFields)
}

func (p printer) pointFields(q *vantagev1.QualityPoint) []string {
	return []string{p.at(q.GetRoundStart()), strconv.FormatInt(q.GetRound(), 10), q.GetNetwork(), q.GetAgentId(),
		fmt.Sprintf("%d/%d", q.GetFirstTryAnswers(), q.GetProbes()), fmt.Sprintf("%.1f%%", 100*q.GetLoss()),
		ms(q.GetRttP50Ms()), ms(q.GetRttP90Ms()), answers(q.GetAnswers())}
}

func ms(v float64) string {
	if v == 0 {
		return "-"
	}
	return strconv.FormatFloat(v, 'f', 1, 64) + "ms"
}

// answers renders the answers per protocol in a fixed order.
func answers(m map[string]uint32) string {
	keys := []string{"icmp", "tcp", "trace"}
	for k := range m {
		if !slices.Contains(keys, k) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys[3:])
	var out string
	for _, k := range keys {
		if n, ok := m[k]; ok {
			if out != "" {
				out += ","
			}
			out += k + "=" + strconv.FormatUint(uint64(n), 10)
		}
	}
	return out
}
