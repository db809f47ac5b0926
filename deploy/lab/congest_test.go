package lab

import (
	"context"
	"fmt"
	"log/slog"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestLossStepValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		s    LossStep
		want string
	}{
		{"zero", LossStep{}, ""},
		{"everything", LossStep{Pct: 100, Rate: 5, Capacity: 8, Flood: 1}, ""},
		{"pct below", LossStep{Pct: -1}, "pct: -1 must be within 0-100"},
		{"pct above", LossStep{Pct: 101}, "pct: 101 must be within 0-100"},
		{"rate", LossStep{Rate: -3}, "rate: -3 must not be negative"},
		{"capacity negative", LossStep{Capacity: -256}, "capacity: -256 must not be negative"},
		{"capacity too small", LossStep{Capacity: 7}, "capacity: 7 kbit/s is below the minimum of 8"},
		{"flood", LossStep{Capacity: 256, Flood: -1}, "flood: -1 must not be negative"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.s.validate()
			if got := fmt.Sprint(err); (tc.want == "" && err != nil) || (tc.want != "" && got != tc.want) {
				t.Errorf("validate(%+v) = %v, want %q", tc.s, err, tc.want)
			}
		})
	}
}

func TestQueuePackets(t *testing.T) {
	for _, tc := range []struct{ kbit, want int }{{8, 1}, {256, 9}, {512, 19}, {1000, 37}} {
		if got := queuePackets(tc.kbit); got != tc.want {
			t.Errorf("queuePackets(%d) = %d, want %d", tc.kbit, got, tc.want)
		}
	}
}

func TestFloodTargets(t *testing.T) {
	topo, err := DefaultTopology()
	if err != nil {
		t.Fatal(err)
	}
	l := newLab(topo, Options{Prefix: "x", Logger: slog.New(slog.DiscardHandler)})
	if got := l.floodSource(); got != "transit" {
		t.Errorf("floodSource() = %q, want transit", got)
	}
	got := l.floodTargets()
	if len(got) != 32 {
		t.Fatalf("%d targets, want the 32 hosts: %v", len(got), got)
	}
	if got[0].String() != "198.18.0.10:9" || got[31].String() != "[2001:db8:18:3::13]:9" {
		t.Errorf("targets %v, want 198.18.0.10:9 ... [2001:db8:18:3::13]:9", got)
	}
}

var pingTime = regexp.MustCompile(`time=([0-9.]+) ms`)

// pingRTTs sends n echo requests, interval s apart, from node to addr and
// returns the RTTs of those answered, in ms.
func pingRTTs(t *testing.T, l *Lab, node, addr string, n int, interval string) []float64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, _ := l.Command(ctx, node, "ping", "-n", "-c", strconv.Itoa(n), "-i", interval, "-W", "1", addr).CombinedOutput()
	var rtts []float64
	for _, m := range pingTime.FindAllStringSubmatch(string(out), -1) {
		v, err := strconv.ParseFloat(m[1], 64)
		if err != nil {
			t.Fatalf("ping time %q: %v", m[1], err)
		}
		rtts = append(rtts, v)
	}
	if !strings.Contains(string(out), fmt.Sprintf("%d packets transmitted", n)) {
		t.Fatalf("ping did not send %d:\n%s", n, out)
	}
	return rtts
}

// median of xs (NaN-free), 0 for none.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}

func tcQdiscs(t *testing.T, l *Lab, node string) string {
	t.Helper()
	out, err := l.Command(context.Background(), node, "tc", "qdisc", "show").CombinedOutput()
	if err != nil {
		t.Fatalf("tc qdisc show in %s: %v\n%s", node, err, out)
	}
	return string(out)
}

func needTC(t *testing.T) {
	t.Helper()
	needLab(t)
	if _, err := exec.LookPath("tc"); err != nil {
		t.Skip("needs tc on PATH (Debian package iproute2)")
	}
}

// TestRealLabCongestion checks a capacity filled by the flood at the
// border: the RTT of pings through it rises well above the clean baseline,
// some are lost, and the zero step puts everything back. The flood goes
// from transit to the lab's own hosts only.
func TestRealLabCongestion(t *testing.T) {
	needTC(t)
	l := upLab(t, "vlt7", Options{})
	const dst = "198.18.0.10"
	clean := pingRTTs(t, l, "vantage-a", dst, 20, "0.05")

	// 1280 kbit/s over the four networks is 320 kbit/s on each 256 kbit/s
	// link: overloaded by a quarter, so the queue stays near full and pings
	// are lost with the flood. (1024, exactly the capacity, fills the queue
	// too, but loses only a few percent: often none of 60 pings.)
	if err := l.StepLoss("border", LossStep{Capacity: 256, Flood: 1280}); err != nil {
		t.Fatal(err)
	}
	checkCapacity(t, l, 256)
	time.Sleep(time.Second) // the queues fill
	const n = 60
	congested := pingRTTs(t, l, "vantage-a", dst, n, "0.05")
	loss := 100 * (n - len(congested)) / n
	t.Logf("ping vantage-a -> %s: clean median %.3f ms (%d of 20); capacity 256 kbit + flood 1280 kbit/s: median %.1f ms, loss %d%% (%d of %d)",
		dst, median(clean), len(clean), median(congested), loss, len(congested), n)
	if m := median(congested); m < 20 || m < 10*median(clean) {
		t.Errorf("congested median RTT %.1f ms, want >= 20 ms and >= 10x the clean %.3f ms", m, median(clean))
	}
	if loss == 0 {
		t.Errorf("congested: no ping lost of %d", n)
	}
	st, ok := l.FloodStats()
	if !ok || st.Sent == 0 || st.Kbit != 1280 || st.Source != "transit" || st.Hosts != 32 {
		t.Errorf("FloodStats() = %+v, %v", st, ok)
	}

	// A new step replaces the previous one: the tbf in place, the flood's
	// rate changed (the same flood: its count goes on).
	if err := l.StepLoss("border", LossStep{Capacity: 512, Flood: 512}); err != nil {
		t.Fatal(err)
	}
	checkCapacity(t, l, 512)
	if st2, ok := l.FloodStats(); !ok || st2.Kbit != 512 || st2.Sent < st.Sent {
		t.Errorf("FloodStats() after the new step = %+v, %v; want rate 512, sent >= %d", st2, ok, st.Sent)
	}

	if err := l.StepLoss("border", LossStep{}); err != nil {
		t.Fatal(err)
	}
	if q := tcQdiscs(t, l, "border"); strings.Contains(q, "tbf") || strings.Contains(q, "pfifo") {
		t.Errorf("zero step left qdiscs:\n%s", q)
	}
	if st, ok := l.FloodStats(); ok {
		t.Errorf("zero step left the flood running: %+v", st)
	}
	if faults, err := l.Faults(context.Background()); err != nil || len(faults) != 0 {
		t.Errorf("Faults() after the zero step = %q, %v", faults, err)
	}
	after := pingRTTs(t, l, "vantage-a", dst, 20, "0.05")
	t.Logf("after the zero step: median %.3f ms (%d of 20)", median(after), len(after))
	if len(after) != 20 || median(after) > 5 {
		t.Errorf("after the zero step: %d of 20 answered, median %.3f ms", len(after), median(after))
	}
	testCongestionErrors(t, l)

	// Down stops a running flood and waits for it.
	if err := l.StepLoss("border", LossStep{Flood: 64}); err != nil {
		t.Fatal(err)
	}
	if err := l.Down(); err != nil {
		t.Fatal(err)
	}
	if st, ok := l.FloodStats(); ok {
		t.Errorf("flood running after Down: %+v", st)
	}
	if err := l.StepLoss("border", LossStep{Flood: 64}); err == nil {
		t.Error("a flood started after Down")
	}
}

// checkCapacity checks the border's qdiscs and Faults for a capacity of
// kbit on its four links toward the networks, and the flood.
func checkCapacity(t *testing.T, l *Lab, kbit int) {
	t.Helper()
	q := tcQdiscs(t, l, "border")
	if got := strings.Count(q, "qdisc tbf 1: dev vlt7-"); got != 4 || strings.Count(q, fmt.Sprintf("rate %dKbit burst", kbit)) != 4 {
		t.Errorf("border qdiscs for %d kbit:\n%s", kbit, q)
	}
	if want := fmt.Sprintf("pfifo 10: dev vlt7-7a parent 1:1 limit %dp", queuePackets(kbit)); !strings.Contains(q, want) {
		t.Errorf("border qdiscs lack %q:\n%s", want, q)
	}
	faults, err := l.Faults(context.Background())
	want := []string{
		fmt.Sprintf("capacity %d kbit at border on vlt7-7a", kbit), fmt.Sprintf("capacity %d kbit at border on vlt7-8a", kbit),
		fmt.Sprintf("capacity %d kbit at border on vlt7-9a", kbit), fmt.Sprintf("capacity %d kbit at border on vlt7-10a", kbit),
	}
	if st, ok := l.FloodStats(); ok {
		want = append(want, fmt.Sprintf("flood %d kbit/s from transit to 32 hosts", st.Kbit))
	}
	if err != nil || !slices.Equal(faults, want) {
		t.Errorf("Faults() = %q, %v\nwant %q", faults, err, want)
	}
}

func testCongestionErrors(t *testing.T, l *Lab) {
	for _, tc := range []struct {
		node string
		s    LossStep
		want string
	}{
		{"upstream", LossStep{Capacity: 256}, "capacity: router upstream has no link to a network"},
		{"border", LossStep{Capacity: 4}, "capacity: 4 kbit/s is below the minimum of 8"},
		{"border", LossStep{Flood: -5}, "flood: -5 must not be negative"},
		{"net0", LossStep{Capacity: 256}, "not a router"},
	} {
		if err := l.StepLoss(tc.node, tc.s); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("StepLoss(%s, %+v) = %v, want %q", tc.node, tc.s, err, tc.want)
		}
	}
	if q := tcQdiscs(t, l, "border"); strings.Contains(q, "tbf") {
		t.Errorf("a refused step left a tbf:\n%s", q)
	}
}
