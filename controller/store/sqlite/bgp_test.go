package sqlite

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vantage-net/vantage/controller/store"
	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// bgpUpdate is an update of prefix at t0 + sec seconds by peer 192.0.2.1.
func bgpUpdate(prefix string, sec int, withdraw bool) *vantagev1.BgpUpdate {
	u := &vantagev1.BgpUpdate{At: timestamppb.New(t0.Add(time.Duration(sec) * time.Second)), Peer: "192.0.2.1", PeerAs: 64501,
		Prefix: prefix, Withdraw: withdraw, Source: "bgp:192.0.2.1"}
	if !withdraw {
		u.AsPath, u.NextHop, u.OriginAs = []uint32{64501, 64500}, "192.0.2.1", 64500
	}
	return u
}

func bgpKeys(us []*vantagev1.BgpUpdate) string {
	var b []string
	for _, u := range us {
		kind := "A"
		if u.GetWithdraw() {
			kind = "W"
		}
		b = append(b, fmt.Sprintf("%s@%d%s", u.GetPrefix(), u.GetAt().AsTime().Sub(t0)/time.Second, kind))
	}
	return strings.Join(b, " ")
}

func ps(ss ...string) []netip.Prefix {
	var out []netip.Prefix
	for _, s := range ss {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}

func TestBGPUpdates(t *testing.T) {
	db, _ := openTest(t)
	ctx := context.Background()
	us := []*vantagev1.BgpUpdate{
		bgpUpdate("198.18.0.0/24", 5, false),
		bgpUpdate("198.18.0.0/16", 1, false),
		bgpUpdate("198.18.0.128/25", 3, false),
		bgpUpdate("198.19.0.0/24", 2, false),
		bgpUpdate("198.18.0.0/24", 7, true),
		bgpUpdate("2001:db8::/32", 4, false),
		bgpUpdate("2001:db8:1::/48", 6, false),
		bgpUpdate("0.0.0.0/0", 8, false),
	}
	if err := db.AddBGP(ctx, us, nil, store.AuditEntry{}); err != nil {
		t.Fatal(err)
	}
	for i, u := range us {
		if u.GetId() == 0 {
			t.Errorf("update %d has no id", i)
		}
	}
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	for _, tc := range []struct {
		name string
		q    store.BGPQuery
		want string
	}{
		{"all in time order", store.BGPQuery{},
			"198.18.0.0/16@1A 198.19.0.0/24@2A 198.18.0.128/25@3A 2001:db8::/32@4A 198.18.0.0/24@5A 2001:db8:1::/48@6A 198.18.0.0/24@7W 0.0.0.0/0@8A"},
		{"overlapping a /24: covering and more specific", store.BGPQuery{Prefixes: ps("198.18.0.0/24")},
			"198.18.0.0/16@1A 198.18.0.128/25@3A 198.18.0.0/24@5A 198.18.0.0/24@7W 0.0.0.0/0@8A"},
		{"a more specific only sees what covers it", store.BGPQuery{Prefixes: ps("198.18.0.0/25")},
			"198.18.0.0/16@1A 198.18.0.0/24@5A 198.18.0.0/24@7W 0.0.0.0/0@8A"},
		{"IPv6", store.BGPQuery{Prefixes: ps("2001:db8::/32")}, "2001:db8::/32@4A 2001:db8:1::/48@6A"},
		{"any of several", store.BGPQuery{Prefixes: ps("198.19.0.0/24", "2001:db8:1::/48")},
			"198.19.0.0/24@2A 2001:db8::/32@4A 2001:db8:1::/48@6A 0.0.0.0/0@8A"},
		{"time range, both ends in", store.BGPQuery{From: at(3), To: at(5)}, "198.18.0.128/25@3A 2001:db8::/32@4A 198.18.0.0/24@5A"},
		{"limit", store.BGPQuery{Prefixes: ps("198.18.0.0/24"), Limit: 2}, "198.18.0.0/16@1A 198.18.0.128/25@3A"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := db.BGPUpdates(ctx, tc.q)
			if err != nil {
				t.Fatal(err)
			}
			if bgpKeys(got) != tc.want {
				t.Errorf("got  %s\nwant %s", bgpKeys(got), tc.want)
			}
		})
	}
	// Pages resume after the last update seen, ties included.
	var pages []string
	q := store.BGPQuery{Limit: 3}
	for {
		page, err := db.BGPUpdates(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			break
		}
		pages = append(pages, bgpKeys(page))
		last := page[len(page)-1]
		q.AfterAt, q.AfterID = last.GetAt().AsTime(), last.GetId()
	}
	if got := strings.Join(pages, " | "); strings.Count(got, "|") != 2 || strings.Count(got, "@") != len(us) {
		t.Errorf("pages: %s", got)
	}
	got, err := db.BGPUpdates(ctx, store.BGPQuery{Prefixes: ps("198.18.0.0/24"), Limit: 1})
	if err != nil {
		t.Fatal(err)
	}
	if want := us[1]; !proto.Equal(got[0], want) {
		t.Errorf("round trip: got %v, want %v", got[0], want)
	}
}

// TestBGPBadRows: a batch with an invalid update or event stores nothing
// and leaves what was stored.
func TestBGPBadRows(t *testing.T) {
	db, _ := openTest(t)
	ctx := context.Background()
	if err := db.AddBGP(ctx, []*vantagev1.BgpUpdate{bgpUpdate("198.18.0.0/24", 1, false)}, nil, store.AuditEntry{}); err != nil {
		t.Fatal(err)
	}
	good := bgpUpdate("198.18.0.0/24", 2, false)
	noTime := bgpUpdate("198.18.0.0/24", 3, false)
	noTime.At = nil
	badPeer := bgpUpdate("198.18.0.0/24", 3, false)
	badPeer.Peer = "peer"
	for _, tc := range []struct {
		name string
		us   []*vantagev1.BgpUpdate
		es   []store.BGPPeerEvent
		want string
	}{
		{"bad prefix", []*vantagev1.BgpUpdate{good, bgpUpdate("198.18.0.0/33", 3, false)}, nil, "add bgp: updates[1]: prefix: "},
		{"no time", []*vantagev1.BgpUpdate{good, noTime}, nil, "add bgp: updates[1]: at: missing or invalid"},
		{"bad peer", []*vantagev1.BgpUpdate{badPeer}, nil, "add bgp: updates[0]: peer: "},
		{"event without time", []*vantagev1.BgpUpdate{good}, []store.BGPPeerEvent{{Peer: "192.0.2.1", Up: true}}, "add bgp: peer_events[0]: at: missing"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := db.AddBGP(ctx, tc.us, tc.es, store.AuditEntry{At: t0, Action: "bgp.import"})
			if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
				t.Fatalf("AddBGP = %v, want %q...", err, tc.want)
			}
		})
	}
	got, err := db.BGPUpdates(ctx, store.BGPQuery{})
	if err != nil {
		t.Fatal(err)
	}
	if bgpKeys(got) != "198.18.0.0/24@1A" {
		t.Errorf("stored after bad batches: %s", bgpKeys(got))
	}
	audit, err := db.ListAudit(ctx, 10)
	if err != nil || len(audit) != 0 {
		t.Errorf("audit after bad batches: %v, %v", audit, err)
	}
}

func TestBGPPeerEventsAndLatest(t *testing.T) {
	db, _ := openTest(t)
	ctx := context.Background()
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	es := []store.BGPPeerEvent{
		{At: at(0), Peer: "192.0.2.1", PeerAS: 64501, Source: "bgp:192.0.2.1", Up: true, FullFeed: true},
		{At: at(0), Peer: "192.0.2.2", PeerAS: 64502, Source: "bgp:192.0.2.2", Up: true},
		{At: at(4), Peer: "192.0.2.1", PeerAS: 64501, Source: "bgp:192.0.2.1", Up: false, FullFeed: true},
	}
	us := []*vantagev1.BgpUpdate{bgpUpdate("198.18.0.0/24", 1, false), bgpUpdate("198.18.0.0/24", 3, true), bgpUpdate("198.18.1.0/24", 2, false)}
	if err := db.AddBGP(ctx, us, es, store.AuditEntry{At: t0, Actor: "operator:admin", Action: "bgp.import", Subject: "mrt:x"}); err != nil {
		t.Fatal(err)
	}
	got, err := db.BGPPeerEvents(ctx, at(0), at(3), 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0] != es[0] || got[1] != es[1] {
		t.Errorf("peer events in [0s, 3s] = %+v", got)
	}
	lu, le, err := db.BGPLatestBefore(ctx, at(4))
	if err != nil {
		t.Fatal(err)
	}
	if bgpKeys(lu) != "198.18.1.0/24@2A 198.18.0.0/24@3W" {
		t.Errorf("latest updates before 4s: %s", bgpKeys(lu))
	}
	if len(le) != 2 || le[0].Peer != "192.0.2.1" || !le[0].Up {
		t.Errorf("latest events before 4s: %+v", le)
	}
	if a, err := db.ListAudit(ctx, 1); err != nil || len(a) != 1 || a[0].Action != "bgp.import" {
		t.Errorf("audit: %v, %v", a, err)
	}
}

func TestPruneBGP(t *testing.T) {
	db, _ := openTest(t)
	ctx := context.Background()
	var us []*vantagev1.BgpUpdate
	var es []store.BGPPeerEvent
	for i := range 10 {
		us = append(us, bgpUpdate("198.18.0.0/24", i, i%2 == 1))
		es = append(es, store.BGPPeerEvent{At: t0.Add(time.Duration(i) * time.Second), Peer: "192.0.2.1", Up: i%2 == 0})
	}
	if err := db.AddBGP(ctx, us, es, store.AuditEntry{}); err != nil {
		t.Fatal(err)
	}
	cutoff := t0.Add(7 * time.Second) // 7 of each go
	n, err := db.PruneBGP(ctx, cutoff, 5)
	if err != nil || n != 10 {
		t.Fatalf("PruneBGP = %d, %v; want 10 (5 of each)", n, err)
	}
	if n, err = db.PruneBGP(ctx, cutoff, 5); err != nil || n != 4 {
		t.Fatalf("second PruneBGP = %d, %v; want 4", n, err)
	}
	left, _ := db.BGPUpdates(ctx, store.BGPQuery{})
	events, _ := db.BGPPeerEvents(ctx, time.Time{}, time.Time{}, 0)
	if len(left) != 3 || len(events) != 3 {
		t.Errorf("left %d updates, %d events; want 3 and 3", len(left), len(events))
	}
	if _, err := db.PruneBGP(ctx, cutoff, 0); err == nil {
		t.Error("PruneBGP with maxRows 0 did not fail")
	}
}
