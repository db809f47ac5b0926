package scenarios

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vantage-net/vantage/deploy/demo"
	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// TestDiscoveryScenario applies deploy/examples/discover.yaml (no host and
// no router listed) to the lab: the controller must sweep the four /24s,
// keep exactly the lab's hosts (.10 to .13 of each; the border's own .1
// answers too, one hop nearer, and is not a host), find the border
// (198.51.100.50, the hop just before the prefixes) and its upstream
// (198.51.100.42, the hop before that) from the traceroutes, turn the
// campaign ACTIVE and reach a REACHABLE scope verdict on what it found.
func TestDiscoveryScenario(t *testing.T) {
	demo.SkipUnlessLab(t, "lab scenario")
	spec := readSpec(t, "../examples/discover.yaml")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	h := startLab(t, ctx, fmt.Sprintf("vs%d", os.Getpid()%10000), logger, 4000)
	ops, actx := h.Operator, h.Authed(ctx)
	t0 := time.Now()
	camp, err := ops.ApplyCampaign(actx, &vantagev1.ApplyCampaignRequest{SpecYaml: string(spec)})
	if err != nil {
		t.Fatalf("apply: %v", err)
	}
	if camp.GetState() != vantagev1.CampaignState_CAMPAIGN_STATE_DISCOVERING || len(camp.GetTargets()) != 0 {
		t.Fatalf("after apply: state %v, %d targets; want DISCOVERING with none", camp.GetState(), len(camp.GetTargets()))
	}
	name := camp.GetName()
	var last *vantagev1.Campaign
	for last.GetState() != vantagev1.CampaignState_CAMPAIGN_STATE_ACTIVE {
		if time.Since(t0) > 2*time.Minute {
			t.Fatalf("still %v after 2 minutes: %v", last.GetState(), last.GetDiscovery())
		}
		time.Sleep(250 * time.Millisecond)
		if last, err = ops.GetCampaign(actx, &vantagev1.GetCampaignRequest{Name: name}); err != nil {
			t.Fatal(err)
		}
	}
	took := time.Since(t0)
	d := last.GetDiscovery()
	var hosts, routers []string
	for _, tg := range last.GetTargets() {
		switch tg.GetRole() {
		case vantagev1.TargetRole_TARGET_ROLE_HOST:
			hosts = append(hosts, tg.GetAddress()+" "+tg.GetNetwork())
		default:
			routers = append(routers, tg.GetAddress()+" "+strings.TrimPrefix(tg.GetRole().String(), "TARGET_ROLE_"))
		}
	}
	var wantHosts []string
	for n := range 4 {
		for h := 10; h <= 13; h++ {
			wantHosts = append(wantHosts, fmt.Sprintf("198.18.%d.%d net%d", n, h, n))
		}
	}
	if !slices.Equal(hosts, wantHosts) {
		t.Errorf("hosts %q\nwant %q", hosts, wantHosts)
	}
	// The lab is multi-homed: net0 and net1 come in through upstream
	// (.42), net2 and net3 through upstream-b (.58); both upstreams and the
	// one border must be found.
	if want := []string{"198.51.100.42 UPSTREAM", "198.51.100.58 UPSTREAM", "198.51.100.50 BORDER"}; !slices.Equal(routers, want) {
		t.Errorf("routers %q, want %q", routers, want)
	}
	if d.GetAddressesSwept() != 4*254 || d.GetHostsResponsive() != 16 || d.GetHostsSelected() != 16 || d.GetTraces() == 0 {
		t.Errorf("discovery status %v", d)
	}
	fmt.Printf("discovery: %d addresses swept, %d hosts responsive, %d selected, %d traces, routers %v, in %s\n  note: %s\n",
		d.GetAddressesSwept(), d.GetHostsResponsive(), d.GetHostsSelected(), d.GetTraces(), routers, took.Round(100*time.Millisecond), d.GetNote())

	// Verdicts run on the discovered targets.
	round := time.Duration(last.GetRoundMs()) * time.Millisecond
	wctx, wcancel := context.WithTimeout(ctx, 20*round)
	defer wcancel()
	scopeID := name + "/scope/" + last.GetScope()
	v, err := h.WaitVerdict(wctx, name, scopeID, func(v *vantagev1.Verdict) bool {
		return v.GetState() == vantagev1.State_STATE_REACHABLE && v.GetHealthyVantages() == 3
	})
	if err != nil {
		t.Fatalf("waiting for a REACHABLE scope on the discovered targets: %v", err)
	}
	if v.GetTotal() != 4 {
		t.Errorf("scope verdict over %d networks, want 4", v.GetTotal())
	}
	fmt.Printf("discovery: scope %s REACHABLE from 3 vantages %s after the apply\n", scopeID, time.Since(t0).Round(100*time.Millisecond))
}
