package main

import (
	"errors"
	"io"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

func TestBGPRetentionFlag(t *testing.T) {
	checkFlags(t, map[string]string{"bgp-retention": "720h0m0s"}, []flagRefusal{
		{"negative", []string{"--bgp-retention", "-1h"}, "--bgp-retention: must not be negative (0 keeps BGP updates forever), got -1h0m0s"},
	})
}

// TestBGPView: the controller's RIB monitors the applied campaign's
// networks, takes an import, stores it, and has it again after a
// restart.
func TestBGPView(t *testing.T) {
	c := startController(t)
	ops := c.ops(t)
	ctx := bearer(c.admin)
	status, err := ops.GetBgpStatus(ctx, &vantagev1.GetBgpStatusRequest{})
	if err != nil || len(status.GetPrefixes()) != 0 || len(status.GetPeers()) != 0 {
		t.Fatalf("GetBgpStatus before any campaign = %v, %v; want nothing", status, err)
	}
	if _, err := ops.ApplyCampaign(ctx, &vantagev1.ApplyCampaignRequest{AllowFewerVantages: true, SpecYaml: minimalCampaign}); err != nil {
		t.Fatalf("ApplyCampaign: %v", err)
	}
	status, err = ops.GetBgpStatus(ctx, &vantagev1.GetBgpStatusRequest{Campaign: "min"})
	if err != nil || len(status.GetPrefixes()) != 1 || status.GetPrefixes()[0].GetNetwork() != "net0" ||
		status.GetPrefixes()[0].GetPrefix() != "198.18.0.0/24" {
		t.Fatalf("GetBgpStatus after apply = %v, %v; want min's net0", status, err)
	}
	at := timestamppb.New(time.Now().Add(-time.Minute))
	imp, err := ops.ImportBgpUpdates(ctx, &vantagev1.ImportBgpUpdatesRequest{Source: "mrt:test", Updates: []*vantagev1.BgpUpdate{
		{At: at, Peer: "192.0.2.1", PeerAs: 64501, Prefix: "198.18.0.0/24", AsPath: []uint32{64501, 64500}},
		{At: at, Peer: "192.0.2.1", PeerAs: 64501, Prefix: "203.0.113.0/24", AsPath: []uint32{64501, 64496}},
	}})
	if err != nil || imp.GetImported() != 1 || imp.GetSkipped() != 1 {
		t.Fatalf("ImportBgpUpdates = %v, %v; want 1 imported, 1 skipped", imp, err)
	}
	visible := func(c *ctl) bool {
		t.Helper()
		st, err := c.ops(t).GetBgpStatus(bearer(c.admin), &vantagev1.GetBgpStatusRequest{Prefix: "198.18.0.0/24"})
		if err != nil {
			t.Fatal(err)
		}
		return len(st.GetPeers()) == 1 && st.GetPrefixes()[0].GetVisible()
	}
	if !visible(c) {
		t.Fatal("198.18.0.0/24 not visible after the import")
	}
	s, err := ops.ListBgpUpdates(ctx, &vantagev1.ListBgpUpdatesRequest{Campaign: "min"})
	if err != nil {
		t.Fatal(err)
	}
	var n int
	for {
		u, err := s.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if u.GetSource() != "mrt:test" || u.GetId() == 0 {
			t.Errorf("stored update %v", u)
		}
		n++
	}
	if n != 1 {
		t.Errorf("ListBgpUpdates gave %d updates, want 1", n)
	}
	c.stop()
	again := startController(t, func(cfg *Config) { cfg.DataDir = c.dir })
	if !visible(again) {
		t.Error("198.18.0.0/24 not visible after a restart: the RIB was not loaded from the store")
	}
}
