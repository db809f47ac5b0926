package trace

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/vantage-net/vantage/deploy/lab"
	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// Lab tests: the engine runs inside vantage-a's namespace (this test binary
// re-executed there with "ip netns exec", so every socket, route lookup
// included, lives in the namespace) and its hop lists are compared with the
// system traceroute and scamper run from the same namespace.

type labJob struct {
	PPS       float64   `json:"pps"`
	RouterPPS float64   `json:"router_pps"`
	Tasks     []labTask `json:"tasks"`
}

type labTask struct {
	Target    string `json:"target"`
	Proto     int32  `json:"proto"`
	Paris     bool   `json:"paris"`
	Port      uint32 `json:"port"`
	GapLimit  uint32 `json:"gap_limit"`
	TimeoutMs uint32 `json:"timeout_ms"`
}

type labStats struct {
	WallMs  float64 `json:"wall_ms"`
	Ignored uint64  `json:"ignored"`
	Late    uint64  `json:"late"`
}

const helperEnv = "VTR_TRACE_HELPER_JOB"

// TestVtrHelper is not a test: it is the engine run inside a namespace by
// runInLab. It prints one "vtr-result " line per result, then "vtr-stats ".
func TestVtrHelper(t *testing.T) {
	jobFile := os.Getenv(helperEnv)
	if jobFile == "" {
		t.Skip("helper process for the lab tests (runs only when re-executed inside a namespace)")
	}
	raw, err := os.ReadFile(jobFile)
	if err != nil {
		t.Fatal(err)
	}
	var job labJob
	if err := json.Unmarshal(raw, &job); err != nil {
		t.Fatal(err)
	}
	e, err := NewTracer(Config{PPS: job.PPS, Burst: 256, RouterPPS: job.RouterPPS, RouterBurst: 64})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	tasks := make(chan *vantagev1.Task)
	go func() {
		defer close(tasks)
		for i, lt := range job.Tasks {
			tasks <- &vantagev1.Task{Id: fmt.Sprint(i), Kind: vantagev1.ProbeKind_PROBE_KIND_TRACE, Target: lt.Target,
				Spec: &vantagev1.Task_Trace{Trace: &vantagev1.TraceSpec{Protocol: vantagev1.TraceProtocol(lt.Proto), Paris: lt.Paris,
					Port: lt.Port, GapLimit: lt.GapLimit, TimeoutMs: lt.TimeoutMs}}}
		}
	}()
	w := bufio.NewWriter(os.Stdout)
	start := time.Now()
	err = e.Run(context.Background(), tasks, func(r *vantagev1.ProbeResult) {
		b, _ := protojson.Marshal(r)
		fmt.Fprintf(w, "vtr-result %s\n", b)
	})
	wall := time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	st, _ := json.Marshal(labStats{WallMs: float64(wall.Microseconds()) / 1000, Ignored: e.PacketsIgnored(), Late: e.PacketsLate()})
	fmt.Fprintf(w, "vtr-stats %s\n", st)
	_ = w.Flush()
}

// runInLab runs job with the engine inside node's namespace.
func runInLab(t *testing.T, l *lab.Lab, node string, job labJob) ([]*vantagev1.ProbeResult, labStats) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := json.Marshal(job)
	jobFile := filepath.Join(t.TempDir(), "job.json")
	if err := os.WriteFile(jobFile, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := l.Command(ctx, node, exe, "-test.run=^TestVtrHelper$", "-test.count=1")
	cmd.Env = append(os.Environ(), helperEnv+"="+jobFile)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("engine in %s: %v\n%s\n%s", node, err, out, stderr.String())
	}
	var res []*vantagev1.ProbeResult
	var st labStats
	for line := range strings.Lines(string(out)) {
		switch {
		case strings.HasPrefix(line, "vtr-result "):
			r := &vantagev1.ProbeResult{}
			if err := protojson.Unmarshal([]byte(strings.TrimPrefix(line, "vtr-result ")), r); err != nil {
				t.Fatal(err)
			}
			res = append(res, r)
		case strings.HasPrefix(line, "vtr-stats "):
			if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "vtr-stats ")), &st); err != nil {
				t.Fatal(err)
			}
		}
	}
	if len(res) != len(job.Tasks) {
		t.Fatalf("%d results for %d tasks:\n%s\n%s", len(res), len(job.Tasks), out, stderr.String())
	}
	// Back in task order (Run emits in completion order).
	ordered := make([]*vantagev1.ProbeResult, len(res))
	for _, r := range res {
		var i int
		if _, err := fmt.Sscan(r.GetTaskId(), &i); err != nil || i < 0 || i >= len(res) || ordered[i] != nil {
			t.Fatalf("result with task id %q", r.GetTaskId())
		}
		ordered[i] = r
	}
	return ordered, st
}

// hopList is a path as addresses by TTL, "*" for silence.
func hopList(r *vantagev1.ProbeResult) []string {
	var out []string
	for _, h := range r.GetHops() {
		a := h.GetAddr()
		if a == "" {
			a = "*"
		}
		out = append(out, a)
	}
	return out
}

var hopLine = regexp.MustCompile(`^\s*(\d+)\s+(\S+)`)

// systemTraceroute runs iputils/traceroute -n in node's namespace.
func systemTraceroute(t *testing.T, l *lab.Lab, node string, proto vantagev1.TraceProtocol, dst netip.Addr) []string {
	t.Helper()
	args := []string{"-n", "-q", "1", "-w", "1", "-m", "10"}
	if dst.Is6() {
		args = append(args, "-6")
	}
	switch proto {
	case pICMP:
		args = append(args, "-I")
	case pTCP:
		args = append(args, "-T", "-p", "80")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := l.Command(ctx, node, "traceroute", append(args, dst.String())...).Output()
	if err != nil {
		t.Fatalf("traceroute %v: %v\n%s", args, err, out)
	}
	var hops []string
	for line := range strings.Lines(string(out)) {
		if m := hopLine.FindStringSubmatch(line); m != nil {
			hops = append(hops, m[2])
		}
	}
	return hops
}

// scamperTrace runs scamper's Paris trace in node's namespace.
func scamperTrace(t *testing.T, l *lab.Lab, node string, proto vantagev1.TraceProtocol, dst netip.Addr) []string {
	t.Helper()
	method := map[vantagev1.TraceProtocol]string{pICMP: "icmp-paris", pUDP: "udp-paris", pTCP: "tcp -d 80"}[proto]
	if proto == pUDP && dst.Is6() {
		// scamper's udp-paris gets no answer at all over IPv6 in this lab
		// (not even from the first router); its classic UDP trace works.
		method = "udp"
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := l.Command(ctx, node, "scamper", "-O", "json", "-c", "trace -w 1 -P "+method, "-i", dst.String()).Output()
	if err != nil {
		t.Fatalf("scamper %s: %v\n%s", method, err, out)
	}
	for line := range strings.Lines(string(out)) {
		var tr struct {
			Type     string `json:"type"`
			HopCount int    `json:"hop_count"`
			Hops     []struct {
				Addr     string `json:"addr"`
				ProbeTTL int    `json:"probe_ttl"`
			} `json:"hops"`
		}
		if json.Unmarshal([]byte(line), &tr) != nil || tr.Type != "trace" {
			continue
		}
		n := 0
		for _, h := range tr.Hops {
			n = max(n, h.ProbeTTL)
		}
		hops := slices.Repeat([]string{"*"}, n)
		for _, h := range tr.Hops {
			if hops[h.ProbeTTL-1] == "*" {
				hops[h.ProbeTTL-1] = h.Addr
			}
		}
		return hops
	}
	t.Fatalf("scamper %s: no trace in output:\n%s", method, out)
	return nil
}

func upLab(t *testing.T) *lab.Lab {
	t.Helper()
	if os.Getenv(helperEnv) != "" {
		t.Skip("inside the helper process")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root: network namespaces and raw sockets")
	}
	if err := lab.CheckHost(); err != nil {
		t.Skipf("lab unavailable: %v", err)
	}
	for _, tool := range []string{"traceroute", "scamper"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s (apt-get install %s)", tool, tool)
		}
	}
	topo, err := lab.DefaultTopology()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	l, err := lab.Up(ctx, topo, lab.Options{Prefix: "vtr"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := l.Down(); err != nil {
			t.Errorf("lab down: %v", err)
		}
	})
	return l
}

// labTargets: one host in each network and every router, both families.
func labTargets(l *lab.Lab) []netip.Addr {
	var out []netip.Addr
	for _, n := range l.Networks() {
		out = append(out, l.Hosts(n)[0], l.Hosts6(n)[0])
	}
	for _, r := range l.Routers() {
		out = append(out, l.Addr(r), l.Addr6(r))
	}
	return out
}

func TestLabTrace(t *testing.T) {
	l := upLab(t)
	const vantage = "vantage-a"
	targets := labTargets(l)
	protos := []vantagev1.TraceProtocol{pICMP, pUDP, pTCP}

	t.Run("same path as traceroute and scamper", func(t *testing.T) {
		var job labJob
		for _, p := range protos {
			for _, d := range targets {
				job.Tasks = append(job.Tasks, labTask{Target: d.String(), Proto: int32(p), Paris: true, TimeoutMs: 1000})
			}
		}
		res, _ := runInLab(t, l, vantage, job)
		for i, r := range res {
			p, d := vantagev1.TraceProtocol(job.Tasks[i].Proto), netip.MustParseAddr(job.Tasks[i].Target)
			if r.GetStopReason() != vantagev1.TraceStopReason_TRACE_STOP_REASON_COMPLETED {
				t.Errorf("%s %v: stop %v (error %q) hops %v", d, p, r.GetStopReason(), r.GetError(), hopList(r))
				continue
			}
			ours := hopList(r)
			sys := systemTraceroute(t, l, vantage, p, d)
			sc := scamperTrace(t, l, vantage, p, d)
			if !slices.Equal(ours, sys) || !slices.Equal(ours, sc) {
				t.Errorf("%s %v: vantage %v, traceroute %v, scamper %v", d, p, ours, sys, sc)
				continue
			}
			t.Logf("%-22s %-22v %v", d, p, ours)
		}
	})

	t.Run("blackout stops at the net unreachable from ix", func(t *testing.T) {
		if err := l.Blackout("net0"); err != nil {
			t.Fatal(err)
		}
		defer func() {
			if err := l.Restore("net0"); err != nil {
				t.Error(err)
			}
		}()
		for _, p := range protos {
			for _, d := range []netip.Addr{l.Hosts("net0")[0], l.Hosts6("net0")[0]} {
				// Linux routers send "net unreachable" (ip_error) at most
				// once a second per destination host, whatever
				// icmp_ratelimit says, and a trace fires all its TTLs at
				// ix at once: one trace at a time, a second apart.
				time.Sleep(1100 * time.Millisecond)
				job := labJob{Tasks: []labTask{{Target: d.String(), Proto: int32(p), Paris: true, TimeoutMs: 1000}}}
				res, _ := runInLab(t, l, vantage, job)
				r := res[0]
				ix := netip.MustParseAddr("198.51.100.1")
				if d.Is6() {
					ix = netip.MustParseAddr("2001:db8:1::1")
				}
				// Code 0: net unreachable; for ICMPv6, no route.
				if r.GetStopReason() != vantagev1.TraceStopReason_TRACE_STOP_REASON_UNREACHABLE ||
					r.GetOutcome() != vantagev1.Outcome_OUTCOME_UNREACHABLE || r.GetReplyFrom() != ix.String() ||
					r.GetUnreachableCode() != 0 || len(r.GetHops()) != 1 {
					t.Errorf("%s %v: stop %v outcome %v from %s code %d hops %v", d, p,
						r.GetStopReason(), r.GetOutcome(), r.GetReplyFrom(), r.GetUnreachableCode(), hopList(r))
				}
			}
		}
	})

	t.Run("gap limit after a router drops everything", func(t *testing.T) {
		if err := l.Loss("upstream", 100); err != nil {
			t.Fatal(err)
		}
		defer func() {
			if err := l.Loss("upstream", 0); err != nil {
				t.Error(err)
			}
		}()
		var job labJob
		for _, p := range protos {
			for _, d := range []netip.Addr{l.Hosts("net1")[0], l.Hosts6("net1")[0]} {
				job.Tasks = append(job.Tasks, labTask{Target: d.String(), Proto: int32(p), Paris: true, GapLimit: 3, TimeoutMs: 500})
			}
		}
		res, _ := runInLab(t, l, vantage, job)
		for i, r := range res {
			hops := hopList(r)
			// ix, transit and upstream (whose TTL check comes before the
			// forward hook) answer; then three silent TTLs.
			if r.GetStopReason() != vantagev1.TraceStopReason_TRACE_STOP_REASON_GAP_LIMIT || len(hops) != 6 ||
				hops[2] == "*" || !slices.Equal(hops[3:], []string{"*", "*", "*"}) {
				t.Errorf("%s %v: stop %v hops %v", job.Tasks[i].Target, vantagev1.TraceProtocol(job.Tasks[i].Proto), r.GetStopReason(), hops)
			}
		}
	})

	t.Run("200 concurrent traces from one engine", func(t *testing.T) {
		// The path each target must show, from single traces above.
		var one labJob
		for _, d := range targets {
			one.Tasks = append(one.Tasks, labTask{Target: d.String(), Proto: int32(pICMP), Paris: true, TimeoutMs: 1000})
		}
		single, _ := runInLab(t, l, vantage, one)
		want := map[string][]string{}
		for _, r := range single {
			want[r.GetTarget()] = hopList(r)
		}
		var job labJob
		for i := range 200 {
			d := targets[i%len(targets)]
			job.Tasks = append(job.Tasks, labTask{Target: d.String(), Proto: int32(protos[i%3]), Paris: true, TimeoutMs: 2000})
		}
		res, st := runInLab(t, l, vantage, job)
		for i, r := range res {
			if r.GetStopReason() != vantagev1.TraceStopReason_TRACE_STOP_REASON_COMPLETED || !slices.Equal(hopList(r), want[r.GetTarget()]) {
				t.Errorf("trace %d %s %v: stop %v hops %v, want %v", i, r.GetTarget(), vantagev1.TraceProtocol(job.Tasks[i].Proto),
					r.GetStopReason(), hopList(r), want[r.GetTarget()])
			}
		}
		t.Logf("200 traces: wall %.1f ms, ignored %d, late %d", st.WallMs, st.Ignored, st.Late)
	})
}

// TestLabTrace2000 measures 2,000 Paris ICMP traces (the lab's 16 IPv4
// hosts and 4 routers, repeated) with the engine and with scamper -p 10000,
// and checks the hop lists agree. A measurement, not a timed assertion:
// run with VTR_BENCH=1 and -v to see the figures.
func TestLabTrace2000(t *testing.T) {
	if os.Getenv("VTR_BENCH") == "" {
		t.Skip("measurement: set VTR_BENCH=1")
	}
	l := upLab(t)
	const vantage = "vantage-a"
	var targets []netip.Addr
	for _, n := range l.Networks() {
		targets = append(targets, l.Hosts(n)...)
	}
	for _, r := range l.Routers() {
		targets = append(targets, l.Addr(r))
	}
	pps := 10000.0 // as scamper -p 10000
	if v := os.Getenv("VTR_BENCH_PPS"); v != "" {
		if _, err := fmt.Sscan(v, &pps); err != nil {
			t.Fatalf("VTR_BENCH_PPS=%q: %v", v, err)
		}
	}
	job := labJob{PPS: pps, RouterPPS: pps}
	var list strings.Builder
	for i := range 2000 {
		d := targets[i%len(targets)]
		job.Tasks = append(job.Tasks, labTask{Target: d.String(), Proto: int32(pICMP), Paris: true, TimeoutMs: 1000})
		fmt.Fprintln(&list, d)
	}
	res, st := runInLab(t, l, vantage, job)
	ours := map[string]map[string]int{}
	for _, r := range res {
		if ours[r.GetTarget()] == nil {
			ours[r.GetTarget()] = map[string]int{}
		}
		ours[r.GetTarget()][strings.Join(hopList(r), " ")]++
	}

	f, err := os.CreateTemp("", "vtr-targets-*")
	if err != nil {
		t.Fatal(err)
	}
	defer os.Remove(f.Name())
	if _, err := f.WriteString(list.String()); err != nil {
		t.Fatal(err)
	}
	_ = f.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	start := time.Now()
	out, err := l.Command(ctx, vantage, "scamper", "-p", "10000", "-O", "json", "-c", "trace -P icmp-paris", "-f", f.Name()).Output()
	scWall := time.Since(start)
	if err != nil {
		t.Fatalf("scamper: %v", err)
	}
	theirs := map[string]map[string]int{}
	n := 0
	var scRTT, ourRTT []float64 // destination hop, µs
	for line := range strings.Lines(string(out)) {
		var tr struct {
			Type string `json:"type"`
			Dst  string `json:"dst"`
			Hops []struct {
				Addr     string  `json:"addr"`
				ProbeTTL int     `json:"probe_ttl"`
				RTT      float64 `json:"rtt"`
			} `json:"hops"`
		}
		if json.Unmarshal([]byte(line), &tr) != nil || tr.Type != "trace" {
			continue
		}
		n++
		if k := len(tr.Hops); k > 0 && tr.Hops[k-1].Addr == tr.Dst {
			scRTT = append(scRTT, tr.Hops[k-1].RTT*1000)
		}
		hops := []string{}
		for _, h := range tr.Hops {
			for len(hops) < h.ProbeTTL {
				hops = append(hops, "*")
			}
			if hops[h.ProbeTTL-1] == "*" {
				hops[h.ProbeTTL-1] = h.Addr
			}
		}
		if theirs[tr.Dst] == nil {
			theirs[tr.Dst] = map[string]int{}
		}
		theirs[tr.Dst][strings.Join(hops, " ")]++
	}
	same := 0
	for _, r := range res {
		if h := r.GetHops(); len(h) > 0 && h[len(h)-1].GetAddr() == r.GetTarget() {
			ourRTT = append(ourRTT, float64(h[len(h)-1].GetRttUs()))
		}
		p := strings.Join(hopList(r), " ")
		if theirs[r.GetTarget()][p] > 0 && len(theirs[r.GetTarget()]) == 1 {
			same++
		}
	}
	t.Logf("vantage at %.0f pps: 2000 traces in %.0f ms (ignored %d, late %d); scamper -p 10000: %d traces in %.0f ms; identical hop lists %d/2000",
		pps, st.WallMs, st.Ignored, st.Late, n, float64(scWall.Milliseconds()), same)
	median := func(v []float64) float64 {
		if len(v) == 0 {
			return 0
		}
		slices.Sort(v)
		return v[len(v)/2]
	}
	t.Logf("median destination RTT: vantage %.0f µs (%d), scamper %.0f µs (%d)", median(ourRTT), len(ourRTT), median(scRTT), len(scRTT))
	for _, d := range targets {
		t.Logf("%-14s vantage %v scamper %v", d, ours[d.String()], theirs[d.String()])
	}
	if same != 2000 {
		t.Errorf("%d of 2000 hop lists identical to scamper's", same)
	}
}
