package lab

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
)

// ladderEnv selects TestRealLabCongestionLadder's steps: "1" for the
// ladder the README recommends, or capacity/flood pairs in kbit/s,
// comma-separated ("512/1920,512/2048").
const ladderEnv = "VANTAGE_LAB_LADDER"

// Probing as the agents do, in bursts: every round, each vantage sends an
// ICMP echo and a TCP SYN to every IPv4 host of every network at once.
const (
	ladderRound  = 2 * time.Second
	ladderRounds = 5
	ladderWait   = time.Second // a probe not answered by then is lost
)

// probeResults are the RTTs of the answered probes and the count of lost ones.
type probeResults struct {
	mu         sync.Mutex
	icmp, tcp  []float64 // ms
	icmpLost   int
	tcpLost    int
	icmpProbes int
	tcpProbes  int
}

func (r *probeResults) add(tcp bool, rtt time.Duration, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	ms := float64(rtt.Microseconds()) / 1000
	switch {
	case tcp && ok:
		r.tcp = append(r.tcp, ms)
	case tcp:
		r.tcpLost++
	case ok:
		r.icmp = append(r.icmp, ms)
	default:
		r.icmpLost++
	}
	if tcp {
		r.tcpProbes++
	} else {
		r.icmpProbes++
	}
}

func (r *probeResults) String() string {
	all := append(append([]float64(nil), r.icmp...), r.tcp...)
	pct := func(lost, n int) float64 { return 100 * float64(lost) / float64(max(n, 1)) }
	return fmt.Sprintf("p50 %7.2f ms, loss %5.1f%% (ICMP p50 %7.2f ms loss %5.1f%%, TCP p50 %7.2f ms loss %5.1f%%; %d probes)",
		median(all), pct(r.icmpLost+r.tcpLost, r.icmpProbes+r.tcpProbes),
		median(r.icmp), pct(r.icmpLost, r.icmpProbes), median(r.tcp), pct(r.tcpLost, r.tcpProbes), r.icmpProbes+r.tcpProbes)
}

// TestRealLabCongestionLadder measures, for a ladder of capacity/flood
// steps at the border, the p50 RTT and the loss that burst probes from the
// three vantages see. It only reports: run it with VANTAGE_LAB_LADDER set.
func TestRealLabCongestionLadder(t *testing.T) {
	v := os.Getenv(ladderEnv)
	if v == "" {
		t.Skipf("a measurement, not a check: set %s=1 (or capacity/flood,... in kbit/s) to run it", ladderEnv)
	}
	steps, err := parseLadder(v)
	if err != nil {
		t.Fatal(err)
	}
	needTC(t)
	l := upLab(t, "vlt8", Options{})
	var hosts []netip.Addr
	for _, n := range l.Networks() {
		hosts = append(hosts, l.Hosts(n)...)
	}
	for _, s := range append([]LossStep{{}}, steps...) {
		if err := l.StepLoss("border", s); err != nil {
			t.Fatal(err)
		}
		time.Sleep(ladderRound) // the queues fill
		var r probeResults
		for range ladderRounds {
			start := time.Now()
			var wg sync.WaitGroup
			for _, v := range l.Vantages() {
				wg.Go(func() { burstRound(t, l, v, hosts, &r) })
			}
			wg.Wait()
			time.Sleep(ladderRound - time.Since(start))
		}
		t.Logf("capacity %4d kbit/s, flood %4d kbit/s: %v", s.Capacity, s.Flood, &r)
	}
	if err := l.StepLoss("border", LossStep{}); err != nil {
		t.Fatal(err)
	}
}

func parseLadder(v string) ([]LossStep, error) {
	if v == "1" {
		v = "512/1920,512/2048,512/2304"
	}
	var out []LossStep
	for _, p := range strings.Split(v, ",") {
		c, f, ok := strings.Cut(p, "/")
		capacity, err1 := strconv.Atoi(c)
		flood, err2 := strconv.Atoi(f)
		if !ok || err1 != nil || err2 != nil {
			return nil, fmt.Errorf("%s: step %q is not capacity/flood", ladderEnv, p)
		}
		out = append(out, LossStep{Capacity: capacity, Flood: flood})
	}
	return out, nil
}

// burstRound sends, from vantage, an ICMP echo and a TCP SYN (a connect to
// the service) to every host at once and records what comes back.
func burstRound(t *testing.T, l *Lab, vantage string, hosts []netip.Addr, r *probeResults) {
	var wg sync.WaitGroup
	for _, h := range hosts {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), ladderWait)
			defer cancel()
			start := time.Now()
			c, err := l.Dial(ctx, vantage, "tcp", netip.AddrPortFrom(h, ServicePort).String())
			r.add(true, time.Since(start), err == nil)
			if err == nil {
				_ = c.Close()
			}
		})
	}
	wg.Go(func() {
		if err := icmpBurst(l, vantage, hosts, r); err != nil {
			t.Error(err)
		}
	})
	wg.Wait()
}

// icmpBurst sends one echo request to each host from one datagram ICMP
// socket in vantage's namespace and waits ladderWait for the replies.
func icmpBurst(l *Lab, vantage string, hosts []netip.Addr, r *probeResults) error {
	var c *icmp.PacketConn
	err := l.inNamespace(vantage, func() error {
		var err error
		c, err = icmp.ListenPacket("udp4", "0.0.0.0")
		return err
	})
	if err != nil {
		return fmt.Errorf("icmp socket in %s: %w", vantage, err)
	}
	defer c.Close()
	sent := make(map[netip.Addr]time.Time, len(hosts))
	for i, h := range hosts {
		m := icmp.Message{Type: ipv4.ICMPTypeEcho, Body: &icmp.Echo{Seq: i, Data: []byte("vantage-lab ladder")}}
		b, _ := m.Marshal(nil)
		sent[h] = time.Now()
		if _, err := c.WriteTo(b, &net.UDPAddr{IP: h.AsSlice()}); err != nil {
			return fmt.Errorf("echo to %s: %w", h, err)
		}
	}
	_ = c.SetReadDeadline(time.Now().Add(ladderWait))
	buf := make([]byte, 1500)
	for len(sent) > 0 {
		n, from, err := c.ReadFrom(buf)
		if err != nil {
			break // the deadline: the rest are lost
		}
		m, err := icmp.ParseMessage(1, buf[:n])
		a, ok := netip.AddrFromSlice(from.(*net.UDPAddr).IP)
		at, asked := sent[a.Unmap()]
		if err != nil || m.Type != ipv4.ICMPTypeEchoReply || !ok || !asked {
			continue
		}
		r.add(false, time.Since(at), true)
		delete(sent, a.Unmap())
	}
	for range sent {
		r.add(false, 0, false)
	}
	return nil
}
