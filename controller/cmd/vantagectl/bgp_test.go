package main

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/vantage-net/vantage/internal/syncbuf"
	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

func (f *fakeOperator) GetBgpStatus(_ context.Context, req *vantagev1.GetBgpStatusRequest) (*vantagev1.GetBgpStatusResponse, error) {
	f.record(req)
	return &vantagev1.GetBgpStatusResponse{
		Peers: []*vantagev1.BgpPeer{
			{Address: "192.0.2.1", As: 64501, Source: "bgp:192.0.2.1", State: "established", FullFeed: true, Since: tsAt("2026-01-01T00:00:00Z"), Updates: 12},
			{Address: "192.0.2.2", As: 64502, Source: "bgp:192.0.2.2", State: "down", FullFeed: true, Since: tsAt("2026-01-01T00:55:00Z"), Updates: 3},
		},
		Prefixes: []*vantagev1.BgpPrefixState{
			{Prefix: "198.18.0.0/24", Campaign: "kp", Network: "net0", Peers: 1, PeersWithRoute: 1, Visibility: 1, Visible: true,
				LastPath: []uint32{64501, 64500}, OriginAs: 64500, UpdatesPerMinute: 0, BaselinePerMinute: 0.1},
			{Prefix: "198.18.1.0/24", Campaign: "kp", Network: "net1", Peers: 1, LastPath: []uint32{64501, 64500}, OriginAs: 64500,
				LastChange: tsAt("2026-01-01T00:57:00Z"), UpdatesPerMinute: 3, BaselinePerMinute: 0.1},
		},
	}, nil
}

func fixtureBGPUpdates() []*vantagev1.BgpUpdate {
	return []*vantagev1.BgpUpdate{
		{Id: 1, At: tsAt("2026-01-01T00:56:00Z"), Peer: "192.0.2.1", PeerAs: 64501, Prefix: "198.18.1.0/24", AsPath: []uint32{64501, 64500}, OriginAs: 64500},
		{Id: 2, At: tsAt("2026-01-01T00:57:00Z"), Peer: "192.0.2.1", PeerAs: 64501, Prefix: "198.18.1.0/24", Withdraw: true},
	}
}

func (f *fakeOperator) ListBgpUpdates(req *vantagev1.ListBgpUpdatesRequest, s grpc.ServerStreamingServer[vantagev1.BgpUpdate]) error {
	f.record(req)
	if req.GetPrefix() == "203.0.113.0/24" {
		return nil
	}
	for _, u := range fixtureBGPUpdates() {
		if err := s.Send(u); err != nil {
			return err
		}
	}
	return nil
}

// WatchBgp sends the fixture updates, then waits for the client to leave.
func (f *fakeOperator) WatchBgp(req *vantagev1.WatchBgpRequest, s grpc.ServerStreamingServer[vantagev1.BgpUpdate]) error {
	f.record(req)
	for _, u := range fixtureBGPUpdates() {
		if err := s.Send(u); err != nil {
			return err
		}
	}
	<-s.Context().Done()
	return nil
}

func TestBGPCommands(t *testing.T) {
	f := &fakeOperator{}
	addr, ca := startServer(t, f)
	env := envFor(addr, ca)
	const status = `PEER       AS       SOURCE         STATE        FULL-FEED  SINCE    UPDATES
192.0.2.1  AS64501  bgp:192.0.2.1  established  yes        60m ago  12
192.0.2.2  AS64502  bgp:192.0.2.2  down         yes        5m ago   3

PREFIX         NETWORK  VISIBILITY  VISIBLE  ORIGIN   LAST-PATH    UPDATES/MIN  LAST-CHANGE
198.18.0.0/24  net0     1/1 100%    yes      AS64500  64501 64500  0.0 vs 0.1   -
198.18.1.0/24  net1     0/1 0%      no       AS64500  64501 64500  3.0 vs 0.1   3m ago
`
	const updates = `TIME      PEER       AS       A/W  PREFIX         PATH
00:56:00  192.0.2.1  AS64501  A    198.18.1.0/24  64501 64500
00:57:00  192.0.2.1  AS64501  W    198.18.1.0/24  -
`
	for _, tt := range []struct {
		name     string
		args     []string
		code     int
		stdout   string
		contains []string
		stderr   string
		req      proto.Message
	}{
		{name: "status", args: []string{"bgp", "status", "--campaign", "kp"}, stdout: status,
			req: &vantagev1.GetBgpStatusRequest{Campaign: "kp"}},
		{name: "status json", args: []string{"bgp", "status", "--prefix", "198.18.1.0/24", "-o", "json"},
			contains: []string{`"visibility": 1`, `"baseline_per_minute": 0.1`, `"state": "down"`},
			req:      &vantagev1.GetBgpStatusRequest{Prefix: "198.18.1.0/24"}},
		{name: "updates since a duration", args: []string{"bgp", "updates", "--prefix", "198.18.1.0/24", "--since", "1h", "--limit", "5"},
			stdout: updates,
			req:    &vantagev1.ListBgpUpdatesRequest{Prefix: "198.18.1.0/24", From: tsAt("2026-01-01T00:00:00Z"), Limit: 5}},
		{name: "updates from and to", args: []string{"bgp", "updates", "--campaign", "kp", "--from", "2025-12-31T00:00:00Z", "--to", "30m"},
			stdout: updates,
			req:    &vantagev1.ListBgpUpdatesRequest{Campaign: "kp", From: tsAt("2025-12-31T00:00:00Z"), To: tsAt("2026-01-01T00:30:00Z")}},
		{name: "updates json, one array", args: []string{"bgp", "updates", "-o", "json"},
			contains: []string{"[\n  {\"id\":1,\"at\":\"2026-01-01T00:56:00Z\",\"peer\":\"192.0.2.1\"", `"withdraw":true`, "}\n]\n"}},
		{name: "no updates", args: []string{"bgp", "updates", "--prefix", "203.0.113.0/24"}, stdout: "No BGP updates.\n"},
		{name: "since and from", args: []string{"bgp", "updates", "--since", "1h", "--from", "2h"}, code: exitUsage,
			stderr: "--since and --from: give only one"},
		{name: "bgp alone", args: []string{"bgp"}, code: exitUsage, stderr: "bgp: missing subcommand, one of: import, status, updates, watch"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := runSync(t, cliRun{args: tt.args, env: env})
			if got.code != tt.code {
				t.Fatalf("exit code %d, want %d\nstdout:\n%s\nstderr:\n%s", got.code, tt.code, got.stdout, got.stderr)
			}
			if tt.stdout != "" && got.stdout != tt.stdout {
				t.Errorf("stdout:\n%s\nwant:\n%s", got.stdout, tt.stdout)
			}
			for _, c := range tt.contains {
				if !strings.Contains(got.stdout, c) {
					t.Errorf("stdout lacks %q:\n%s", c, got.stdout)
				}
			}
			if !strings.Contains(got.stderr, tt.stderr) {
				t.Errorf("stderr %q lacks %q", got.stderr, tt.stderr)
			}
			if tt.req != nil && !proto.Equal(f.lastReq(), tt.req) {
				t.Errorf("request = %v, want %v", f.lastReq(), tt.req)
			}
		})
	}
}

// TestBGPWatch: updates print one a line as they come; Ctrl-C ends the
// watch with exit 0.
func TestBGPWatch(t *testing.T) {
	f := &fakeOperator{}
	addr, ca := startServer(t, f)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errb syncbuf.Buffer
	done := make(chan int, 1)
	go func() {
		done <- runCLI(ctx, cliRun{args: []string{"bgp", "watch", "--prefix", "198.18.1.0/24"}, env: envFor(addr, ca)}, &out, &errb)
	}()
	const want = "00:56:00  192.0.2.1  AS64501  A  198.18.1.0/24  64501 64500\n" +
		"00:57:00  192.0.2.1  AS64501  W  198.18.1.0/24  -\n"
	deadline := time.Now().Add(10 * time.Second)
	for out.String() != want {
		if time.Now().After(deadline) {
			t.Fatalf("stdout:\n%s\nwant:\n%s\nstderr: %s", out.String(), want, errb.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	if code := <-done; code != exitOK {
		t.Errorf("exit code %d after Ctrl-C, stderr %s", code, errb.String())
	}
	if !proto.Equal(f.lastReq(), &vantagev1.WatchBgpRequest{Prefix: "198.18.1.0/24"}) {
		t.Errorf("request = %v", f.lastReq())
	}
}

func (f *fakeOperator) ImportBgpUpdates(_ context.Context, req *vantagev1.ImportBgpUpdatesRequest) (*vantagev1.ImportBgpUpdatesResponse, error) {
	f.record(req)
	return &vantagev1.ImportBgpUpdatesResponse{Imported: uint32(len(req.GetUpdates())) - 1, Skipped: 1}, nil
}

// TestBGPMRTRoundTrip: `bgp updates --mrt` writes the stored updates as an
// MRT file, and `bgp import` reads it back and sends the same updates.
func TestBGPMRTRoundTrip(t *testing.T) {
	f := &fakeOperator{}
	addr, ca := startServer(t, f)
	env := envFor(addr, ca)
	file := filepath.Join(t.TempDir(), "feed.mrt")
	got := runSync(t, cliRun{args: []string{"bgp", "updates", "--prefix", "198.18.1.0/24", "--mrt", file}, env: env})
	if got.code != 0 || got.stdout != file+": 2 updates written as MRT\n" {
		t.Fatalf("updates --mrt: exit %d, stdout %q, stderr %q", got.code, got.stdout, got.stderr)
	}
	got = runSync(t, cliRun{args: []string{"bgp", "import", file}, env: env})
	want := file + ": 2 MRT records, 2 updates: 1 imported, 1 skipped (no monitored prefix), 0 invalid, 0 records of other types\n"
	if got.code != 0 || got.stdout != want {
		t.Fatalf("import: exit %d, stdout %q, want %q; stderr %q", got.code, got.stdout, want, got.stderr)
	}
	req, ok := f.lastReq().(*vantagev1.ImportBgpUpdatesRequest)
	if !ok || req.GetSource() != "mrt:feed.mrt" || len(req.GetUpdates()) != 2 {
		t.Fatalf("import request %v", f.lastReq())
	}
	for i, u := range fixtureBGPUpdates() {
		u.Id, u.Source = 0, "mrt:feed.mrt"
		if !proto.Equal(req.GetUpdates()[i], u) {
			t.Errorf("update %d: sent %v, stored %v", i, req.GetUpdates()[i], u)
		}
	}
	got = runSync(t, cliRun{args: []string{"bgp", "import", filepath.Join(t.TempDir(), "missing.mrt")}, env: env})
	if got.code == 0 || !strings.Contains(got.stderr, "no such file") {
		t.Errorf("a missing file: exit %d, stderr %q", got.code, got.stderr)
	}
}
