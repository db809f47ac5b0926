package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"

	"github.com/vantage-net/vantage/controller/export"
	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// progressEvery is how often export rewrites its progress line.
const progressEvery = time.Second

// exportOptions are the flags every export subcommand takes.
type exportOptions struct {
	campaign, from, to, format, after, level string
}

func (a *app) exportCmd() *cobra.Command {
	var o exportOptions
	sub := func(use, short string, run func(cmd *cobra.Command, req *vantagev1.ExportRequest, w *export.Writer, mark func(cursor string)) (int, string, error),
		header []string) *cobra.Command {
		cmd := &cobra.Command{
			Use:   use,
			Short: short,
			Args:  cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				return a.runExport(cmd, use, o, header, run)
			},
		}
		fl := cmd.Flags()
		fl.StringVar(&o.campaign, "campaign", "", "the campaign to export (required)")
		fl.StringVar(&o.from, "from", "", "start: a duration back from now (90m, 2d) or an RFC 3339 time (required)")
		fl.StringVar(&o.to, "to", "", "end (exclusive); same forms as --from (required)")
		fl.StringVar(&o.format, "format", "jsonl", "jsonl (one JSON record a line), csv (a header row, then one row a record), or for results atlas (RIPE Atlas's ping and traceroute result format, one a line; tcp results left out)")
		fl.StringVar(&o.after, "after", "", "resume after this cursor (a record's cursor field, or the one a stopped export printed); csv then writes no header, so the output appends to the first")
		if use == "episodes" {
			fl.StringVar(&o.level, "level", "", "only this level: scope, network or target (default: all)")
		}
		return cmd
	}
	c := group("export", "Export a campaign's results, episodes or BGP updates in bulk (jsonl or csv), resumable with --after",
		sub("results", "Export raw results (ping, tcp, trace) sent in [--from, --to)", a.exportResults, export.ResultColumns),
		sub("episodes", "Export verdict episodes (start, end, error bars, level, subject, state, location, upstream, cause)",
			a.exportEpisodes, export.EpisodeColumns),
		sub("bgp", "Export the BGP updates of the campaign's networks in [--from, --to)", a.exportBGP, export.BGPColumns))
	c.Long = `Export streams every record of a campaign's window from the controller, with
no cap, in constant memory on both sides. Each record carries a cursor; if an
export stops (Ctrl-C, a network error), it prints the cursor of the last
record written, and the same command with --after CURSOR carries on exactly
after it: no record twice, none missed. The record schemas are versioned and
published as JSON Schema in docs/schema/export-{result,episode,bgp}-v1.json.
Progress goes to stderr when stderr is a terminal.`
	return c
}

// runExport checks the flags, opens the stream and writes its records to
// stdout; on an error after some records it names the cursor to resume
// from.
func (a *app) runExport(cmd *cobra.Command, what string, o exportOptions, header []string,
	run func(cmd *cobra.Command, req *vantagev1.ExportRequest, w *export.Writer, mark func(cursor string)) (int, string, error)) error {
	if o.campaign == "" {
		return usageErrorf("--campaign: required")
	}
	if o.from == "" || o.to == "" {
		return usageErrorf("--from and --to: required")
	}
	f, t, err := a.timeRange("from", o.from, "to", o.to)
	if err != nil {
		return err
	}
	if !f.AsTime().Before(t.AsTime()) {
		return usageErrorf("--to: %s is not after --from %s", t.AsTime().Format(time.RFC3339), f.AsTime().Format(time.RFC3339))
	}
	if o.format == "atlas" && what != "results" {
		return usageErrorf("--format: atlas is RIPE Atlas's ping and traceroute result format, for results only; %s take jsonl or csv", what)
	}
	lvl, err := parseLevel(o.level)
	if err != nil {
		return err
	}
	if o.after != "" {
		header = nil // a resumed CSV export appends to the first one's rows
	}
	sk := &sink{out: a.env.stdout}
	out := bufio.NewWriterSize(sk, 64<<10)
	w, err := export.NewWriter(&counter{w: out, n: &sk.queued}, o.format, header)
	if err != nil {
		return usageErrorf("--%v", err)
	}
	if _, err := a.api(); err != nil {
		return err
	}
	req := &vantagev1.ExportRequest{Campaign: o.campaign, From: f, To: t, After: o.after, Level: lvl}
	_, _, err = run(cmd, req, w, sk.mark)
	if ferr := w.Flush(); err == nil && ferr != nil {
		err = fmt.Errorf("write: %w", ferr)
	}
	if ferr := out.Flush(); err == nil && ferr != nil {
		err = fmt.Errorf("write: %w", ferr)
	}
	if err != nil && sk.last != "" {
		return fmt.Errorf("export %s stopped after %d records; resume with --after %s: %w", what, sk.n, sk.last, err)
	}
	return err
}

// sink is stdout under the export's buffer. It knows which records stdout
// has wholly taken: a record is marked with the offset its last byte has
// in the output (counter counts what enters the buffer), and it is done
// once stdout has accepted that many bytes. When a write fails (a full
// disk, a closed pipe), the cursor to resume from is the last record that
// is wholly out, not the last one buffered. pending holds the records in
// the buffer, at most its size in records.
type sink struct {
	out     io.Writer
	queued  int64 // bytes handed to the buffer
	done    int64 // bytes out accepted
	pending []mark
	last    string // cursor of the last record wholly out
	n       int    // records wholly out
}

type mark struct {
	end    int64
	cursor string
}

func (s *sink) Write(p []byte) (int, error) {
	n, err := s.out.Write(p)
	s.done += int64(n)
	s.settle()
	return n, err
}

func (s *sink) settle() {
	i := 0
	for ; i < len(s.pending) && s.pending[i].end <= s.done; i++ {
		s.last = s.pending[i].cursor
		s.n++
	}
	s.pending = s.pending[:copy(s.pending, s.pending[i:])]
}

// mark notes that the record with this cursor is wholly in the buffer.
func (s *sink) mark(cursor string) {
	s.pending = append(s.pending, mark{end: s.queued, cursor: cursor})
	s.settle()
}

// counter counts the bytes written through it into *n.
type counter struct {
	w io.Writer
	n *int64
}

func (c *counter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	*c.n += int64(n)
	return n, err
}

// progress writes a line to stderr, when it is a terminal, at most every
// progressEvery.
type progress struct {
	w    io.Writer
	what string
	next time.Time
	n    int
}

func newProgress(stderr io.Writer, what string) *progress {
	f, ok := stderr.(*os.File)
	if !ok {
		return &progress{}
	}
	st, err := f.Stat()
	if err != nil || st.Mode()&os.ModeCharDevice == 0 {
		return &progress{}
	}
	return &progress{w: stderr, what: what, next: time.Now().Add(progressEvery)}
}

// record counts one record, sent at (or starting at) at.
func (p *progress) record(at time.Time) {
	p.n++
	if p.w == nil || time.Now().Before(p.next) {
		return
	}
	p.next = time.Now().Add(progressEvery)
	fmt.Fprintf(p.w, "\rexport %s: %d records, at %s ", p.what, p.n, at.UTC().Format(time.RFC3339))
}

func (p *progress) done() {
	if p.w != nil {
		fmt.Fprintf(p.w, "\rexport %s: %d records, done%20s\n", p.what, p.n, "")
	}
}

// drainExport writes every message of stream with write, returning how
// many it wrote and the last one's cursor.
func drainExport[T any](stream grpc.ServerStreamingClient[T], err error, p *progress, mark func(cursor string),
	write func(m *T) (cursor string, at time.Time, err error)) (int, string, error) {
	if err != nil {
		return 0, "", err
	}
	n, last := 0, ""
	for {
		m, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			p.done()
			return n, last, nil
		}
		if err != nil {
			if errors.Is(err, context.Canceled) {
				err = fmt.Errorf("interrupted: %w", err)
			}
			return n, last, err
		}
		cursor, at, err := write(m)
		if err != nil {
			return n, last, fmt.Errorf("write: %w", err)
		}
		mark(cursor)
		n++
		last = cursor
		p.record(at)
	}
}

func (a *app) exportClient() vantagev1.ExportServiceClient {
	return vantagev1.NewExportServiceClient(a.conn)
}

func (a *app) exportResults(cmd *cobra.Command, req *vantagev1.ExportRequest, w *export.Writer, mark func(string)) (int, string, error) {
	stream, err := a.exportClient().ExportResults(cmd.Context(), req)
	skipped := 0
	defer func() {
		if skipped > 0 {
			fmt.Fprintf(a.env.stderr, "export results: %d tcp results left out of the atlas format (RIPE Atlas's ping is ICMP)\n", skipped)
		}
	}()
	return drainExport(stream, err, newProgress(a.env.stderr, "results"), mark, func(m *vantagev1.ExportedResult) (string, time.Time, error) {
		at := m.GetResult().GetResult().GetSentAt().AsTime()
		if w.Atlas() {
			rec, ok := export.Atlas(m)
			if !ok {
				skipped++
				return m.GetCursor(), at, nil
			}
			return m.GetCursor(), at, w.Write(rec, nil)
		}
		rec := export.Result(m)
		return m.GetCursor(), m.GetResult().GetResult().GetSentAt().AsTime(), w.Write(&rec, rec.Row)
	})
}

func (a *app) exportEpisodes(cmd *cobra.Command, req *vantagev1.ExportRequest, w *export.Writer, mark func(string)) (int, string, error) {
	stream, err := a.exportClient().ExportEpisodes(cmd.Context(), req)
	return drainExport(stream, err, newProgress(a.env.stderr, "episodes"), mark, func(m *vantagev1.ExportedEpisode) (string, time.Time, error) {
		rec := export.Episode(m)
		return m.GetCursor(), m.GetEpisode().GetStartLatest().AsTime(), w.Write(&rec, rec.Row)
	})
}

func (a *app) exportBGP(cmd *cobra.Command, req *vantagev1.ExportRequest, w *export.Writer, mark func(string)) (int, string, error) {
	stream, err := a.exportClient().ExportBgp(cmd.Context(), req)
	return drainExport(stream, err, newProgress(a.env.stderr, "bgp"), mark, func(m *vantagev1.ExportedBgpUpdate) (string, time.Time, error) {
		rec := export.BGP(m)
		return m.GetCursor(), m.GetUpdate().GetAt().AsTime(), w.Write(&rec, rec.Row)
	})
}
