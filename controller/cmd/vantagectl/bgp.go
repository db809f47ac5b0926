package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// bgpCmd is the BGP evidence's commands; each subcommand is one
// constructor in its list.
func (a *app) bgpCmd() *cobra.Command {
	return group("bgp", "Show the controller's BGP view: peers, monitored prefixes, updates",
		a.bgpStatusCmd(), a.bgpUpdatesCmd(), a.bgpWatchCmd(), a.bgpImportCmd())
}

func (a *app) bgpStatusCmd() *cobra.Command {
	var campaignName, prefix string
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the BGP peers and the monitored prefixes' visibility, origin, last path and update rate now",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			req := &vantagev1.GetBgpStatusRequest{Campaign: campaignName, Prefix: prefix}
			return callAndShow(a, cmd, vantagev1.OperatorServiceClient.GetBgpStatus, req, printer.bgpStatus)
		},
	}
	cmd.Flags().StringVar(&campaignName, "campaign", "", "only this campaign's prefixes")
	cmd.Flags().StringVar(&prefix, "prefix", "", "only this prefix (monitored or not), e.g. 198.51.100.0/24")
	return cmd
}

func (a *app) bgpUpdatesCmd() *cobra.Command {
	var (
		campaignName, prefix, since, from, to, mrt string
		limit                                      uint32
	)
	cmd := &cobra.Command{
		Use:   "updates",
		Short: "Stream stored BGP updates, oldest first",
		Long: "Stream stored BGP updates (announcements A, withdrawals W), oldest first: of one prefix and\n" +
			"those covering it or more specific than it (--prefix), or of a campaign's networks (--campaign).",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if since != "" && from != "" {
				return usageErrorf("--since and --from: give only one")
			}
			if since != "" {
				from = since
			}
			f, t, err := a.timeRange("from", from, "to", to)
			if err != nil {
				return err
			}
			c, err := a.api()
			if err != nil {
				return err
			}
			stream, err := c.ListBgpUpdates(cmd.Context(), &vantagev1.ListBgpUpdatesRequest{
				Campaign: campaignName, Prefix: prefix, From: f, To: t, Limit: limit})
			if err != nil {
				return err
			}
			if mrt != "" {
				return a.bgpUpdatesMRT(mrt, stream.Recv)
			}
			return a.bgpUpdates(stream.Recv)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&campaignName, "campaign", "", "only the updates of this campaign's networks")
	fl.StringVar(&prefix, "prefix", "", "only the updates of this prefix and those overlapping it")
	fl.StringVar(&since, "since", "", "only updates after this: "+timeForms)
	fl.StringVar(&from, "from", "", "same as --since")
	fl.StringVar(&to, "to", "", "only updates before this; same forms as --since")
	fl.Uint32Var(&limit, "limit", 0, "at most this many updates (0: the controller's default, 1000)")
	fl.StringVar(&mrt, "mrt", "", "write the updates to this file as MRT (BGP4MP_ET MESSAGE_AS4, as RIS and RouteViews do) instead of printing them")
	return cmd
}

// bgpUpdates prints what recv gives until the stream ends: a table, or
// one JSON array.
func (a *app) bgpUpdates(recv func() (*vantagev1.BgpUpdate, error)) error {
	if a.json() {
		return streamJSONArray(a.env.stdout, recv)
	}
	t := newTable(a.env.stdout, bgpUpdateHeader...)
	p, n := a.printer(), 0
	for {
		u, err := recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			if n > 0 {
				_ = t.flush()
			}
			return err
		}
		n++
		t.row(p.bgpUpdateFields(u)...)
	}
	if n == 0 {
		_, err := fmt.Fprintln(a.env.stdout, "No BGP updates.")
		return err
	}
	return t.flush()
}

func (a *app) bgpWatchCmd() *cobra.Command {
	var campaignName, prefix string
	cmd := &cobra.Command{
		Use:   "watch",
		Short: "Print BGP updates of the monitored prefixes as the controller keeps them, until Ctrl-C",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.api()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			stream, err := c.WatchBgp(ctx, &vantagev1.WatchBgpRequest{Campaign: campaignName, Prefix: prefix})
			if err != nil {
				return err
			}
			return a.bgpWatch(ctx, stream.Recv)
		},
	}
	cmd.Flags().StringVar(&campaignName, "campaign", "", "only the updates of this campaign's networks")
	cmd.Flags().StringVar(&prefix, "prefix", "", "only the updates of this prefix and those overlapping it")
	return cmd
}

// bgpWatch prints one line per update; Ctrl-C ends it without error.
func (a *app) bgpWatch(ctx context.Context, recv func() (*vantagev1.BgpUpdate, error)) error {
	p := a.printer()
	for {
		u, err := recv()
		if ctx.Err() != nil || status.Code(err) == codes.Canceled {
			return nil
		}
		if errors.Is(err, io.EOF) {
			return errStreamEnded
		}
		if err != nil {
			return err
		}
		if a.json() {
			if err := writeJSON(a.env.stdout, u, false); err != nil {
				return err
			}
			continue
		}
		p.now = a.env.now()
		if _, err := fmt.Fprintln(a.env.stdout, joinCells("", p.bgpUpdateFields(u))); err != nil {
			return err
		}
	}
}
