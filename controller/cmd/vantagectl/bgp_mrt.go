package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/vantage-net/vantage/controller/bgp"
	"github.com/vantage-net/vantage/controller/bgp/collector"
	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// importBatch is how many updates one ImportBgpUpdates call carries (the
// controller takes at most 10,000).
const importBatch = 5000

func (a *app) bgpImportCmd() *cobra.Command {
	var source string
	cmd := &cobra.Command{
		Use:   "import FILE",
		Short: "Import an MRT file (RIS or RouteViews updates or RIB dumps, plain, gzip or bzip2) into the controller's BGP view",
		Long: "Read FILE's BGP4MP updates and TABLE_DUMP_V2 RIB entries and send them to the controller, which\n" +
			"stores those of monitored prefixes (and prefixes covering or more specific than them) and adds\n" +
			"them to its view, so a replay (vantagectl replay) reads them. Each import is its own set of\n" +
			"peers (source \"mrt:<name>\").",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if source == "" {
				source = "mrt:" + filepath.Base(args[0])
			}
			return a.bgpImport(cmd, args[0], source)
		},
	}
	cmd.Flags().StringVar(&source, "source", "", `name of this import (default "mrt:<file name>")`)
	return cmd
}

// bgpImport streams FILE to the controller in batches and prints what
// was imported.
func (a *app) bgpImport(cmd *cobra.Command, path, source string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	c, err := a.api()
	if err != nil {
		return err
	}
	var batch []*vantagev1.BgpUpdate
	var imported, skipped uint32
	send := func() error {
		if len(batch) == 0 {
			return nil
		}
		resp, err := c.ImportBgpUpdates(cmd.Context(), &vantagev1.ImportBgpUpdatesRequest{Source: source, Updates: batch})
		if err != nil {
			return fmt.Errorf("import (after %d updates): %w", imported+skipped, err)
		}
		imported, skipped = imported+resp.GetImported(), skipped+resp.GetSkipped()
		batch = batch[:0]
		return nil
	}
	st, err := collector.ReadMRT(f, source, func(u bgp.Update) error {
		batch = append(batch, u.Proto())
		if len(batch) == importBatch {
			return send()
		}
		return nil
	})
	if err == nil {
		err = send()
	}
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	_, err = fmt.Fprintf(a.env.stdout, "%s: %d MRT records, %d updates: %d imported, %d skipped (no monitored prefix), %d invalid, %d records of other types\n",
		path, st.Records, st.Updates, imported, skipped, st.Invalid, st.Skipped)
	return err
}

// bgpUpdatesMRT writes what recv gives to path as MRT.
func (a *app) bgpUpdatesMRT(path string, recv func() (*vantagev1.BgpUpdate, error)) error {
	var us []bgp.Update
	for {
		p, err := recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		u, err := bgp.FromProto(p)
		if err != nil {
			return fmt.Errorf("update %d: %w", p.GetId(), err)
		}
		us = append(us, u)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := collector.WriteMRT(f, us); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	_, err = fmt.Fprintf(a.env.stdout, "%s: %d updates written as MRT\n", path, len(us))
	return err
}
