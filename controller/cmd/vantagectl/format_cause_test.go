package main

import (
	"bytes"
	"strings"
	"testing"

	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// TestExplainCause: explain prints the router where the paths die, the
// upstreams and the cause with every line of its evidence.
func TestExplainCause(t *testing.T) {
	r := fixtureExplain()
	r.Results = nil
	v := r.GetVerdict()
	v.Evidence = nil
	v.LocationHop = &vantagev1.Router{Address: "198.51.100.42", Role: vantagev1.TargetRole_TARGET_ROLE_UPSTREAM, Name: "unicom"}
	v.Upstreams = []*vantagev1.UpstreamView{
		{Name: "unicom", Addresses: []string{"198.51.100.42"}, Dead: true, NetworksDown: []string{"star-jv"}},
		{Name: "rostelecom", Addresses: []string{"198.51.100.46"}, NetworksUp: []string{"net1", "net2"}},
	}
	v.Cause = &vantagev1.CauseFinding{Cause: vantagev1.Cause_CAUSE_UPSTREAM, Confidence: 0.9,
		Evidence: []string{"location UPSTREAM (from traces)", "upstream unicom answers, but the paths through it die"}}
	var b bytes.Buffer
	if err := testPrinter.explain(&b, r); err != nil {
		t.Fatal(err)
	}
	want := `verdict:    kp/network/star-jv
state:      UNREACHABLE
since:      2026-01-01T00:56:00Z (4m ago)
onset:      2026-01-01T00:55:00Z..00:56:00 ±30s
round:      56 (evaluated 2026-01-01T00:59:59Z)
vantages:   2/3 healthy, quorum 2
up/total:   0/8
up:         -
down:       198.18.0.1,198.18.0.2
location:   upstream (unicom) (last responsive hop 10.0.0.1)
router:     upstream unicom 198.51.100.42
upstreams:  unicom (198.51.100.42): paths die; up -, down star-jv
            rostelecom (198.51.100.46): carries traffic; up net1,net2, down -
cause:      upstream (confidence 0.90)
evidence:   - location UPSTREAM (from traces)
            - upstream unicom answers, but the paths through it die
notes:      -

0 results:
`
	if got := b.String(); got != want {
		t.Errorf("explain\n got:\n%s\nwant:\n%s", got, want)
	}
	var tl bytes.Buffer
	refined := fixtureTransition()
	refined.From, refined.Notes = refined.GetTo(), []string{"cause refined from UNDETERMINED to UPSTREAM"}
	if err := testPrinter.timeline(&tl, []*vantagev1.Transition{refined}); err != nil {
		t.Fatal(err)
	}
	wantTL := `DETECTED  LEVEL  SUBJECT  CHANGE                       ONSET          LATENCY  LOCATION           CAUSE          BGP  CHILDREN
00:05:02  scope  KP       UNREACHABLE (cause refined)  00:04:30 ±30s  2s       upstream (unicom)  upstream 0.90  -    up=- down=net0,net1,net2,net3
`
	if got := tl.String(); got != wantTL {
		t.Errorf("timeline\n got:\n%s\nwant:\n%s", got, wantTL)
	}
}

// Explain prints the routing evidence and the router's AS.
func TestFormatBGP(t *testing.T) {
	gone := &vantagev1.BgpPrefixState{Prefix: "198.18.0.0/24", Peers: 2}
	v := &vantagev1.Verdict{LocationHop: &vantagev1.Router{Address: "198.51.100.42", Role: vantagev1.TargetRole_TARGET_ROLE_UPSTREAM, Name: "unicom", Asn: 64501},
		Cause: &vantagev1.CauseFinding{Cause: vantagev1.Cause_CAUSE_UPSTREAM, Confidence: 0.9, Evidence: []string{"upstream: AS64501 withdrew"},
			Bgp: &vantagev1.BgpEvidence{Finding: vantagev1.BgpFinding_BGP_FINDING_UPSTREAM_WITHDREW, WithdrawingAs: 64501,
				Prefixes: []*vantagev1.BgpPrefixState{gone}, Summary: []string{"198.18.0.0/24 withdrawn by 2 of 2 peers at 16:15:02Z"}}}}
	var b strings.Builder
	kv := newTable(&b)
	explainCause(kv, v)
	if err := kv.flush(); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"upstream unicom 198.51.100.42 AS64501", "AS64501 withdrew 1/1", "- 198.18.0.0/24 withdrawn by 2 of 2 peers at 16:15:02Z"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("explain lacks %q:\n%s", want, b.String())
		}
	}
}
