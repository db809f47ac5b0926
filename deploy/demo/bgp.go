package demo

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// collectorArgs are the controller's collector flags for a BGP lab: it
// listens where the lab's BIRDs look for it, with a full feed from the IX
// and the transit and monitor sessions (partial) with the upstreams.
func (h *Harness) collectorArgs() []string {
	end, peers, ok := h.Lab.Collector()
	if !ok {
		return nil
	}
	args := []string{"--bgp-listen", netip.AddrPortFrom(end.Addr, uint16(end.Port)).String(),
		"--bgp-as", fmt.Sprint(end.AS), "--bgp-router-id", end.Addr.String()}
	for _, p := range peers {
		spec := fmt.Sprintf("%s,as=%d,desc=%s", p.Addr, p.AS, p.Router)
		if p.Multihop {
			spec += ",multihop"
		}
		if p.Monitor {
			spec += ",partial"
		}
		args = append(args, "--bgp-peer", spec)
	}
	return args
}

// WaitBGP waits until every collector session of a BGP lab is established
// and the monitored prefixes of campaign are visible (apply the campaign
// first); it returns at once for a static lab.
func (h *Harness) WaitBGP(ctx context.Context, campaign string, timeout time.Duration) (*vantagev1.GetBgpStatusResponse, error) {
	_, peers, ok := h.Lab.Collector()
	if !ok {
		return nil, nil
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last *vantagev1.GetBgpStatusResponse
	for {
		resp, err := h.Operator.GetBgpStatus(h.ctx(ctx), &vantagev1.GetBgpStatusRequest{Campaign: campaign})
		if err == nil {
			last = resp
			if bgpReady(resp, len(peers)) {
				return resp, nil
			}
		}
		select {
		case <-ctx.Done():
			return last, fmt.Errorf("BGP: %s: %w", describeBGP(last, len(peers)), ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func bgpReady(resp *vantagev1.GetBgpStatusResponse, want int) bool {
	up := 0
	for _, p := range resp.GetPeers() {
		if p.GetState() == "established" {
			up++
		}
	}
	if up < want || len(resp.GetPrefixes()) == 0 {
		return false
	}
	for _, p := range resp.GetPrefixes() {
		if !p.GetVisible() {
			return false
		}
	}
	return true
}

func describeBGP(resp *vantagev1.GetBgpStatusResponse, want int) string {
	if resp == nil {
		return "no status"
	}
	up, visible := 0, 0
	for _, p := range resp.GetPeers() {
		if p.GetState() == "established" {
			up++
		}
	}
	for _, p := range resp.GetPrefixes() {
		if p.GetVisible() {
			visible++
		}
	}
	return fmt.Sprintf("%d of %d collector sessions established, %d of %d prefixes visible", up, want, visible, len(resp.GetPrefixes()))
}
