package reliability

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vantage-net/vantage/agent/spool"
	"github.com/vantage-net/vantage/controller/ingest"
	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

const stormCampaign = `name: storm
scope: {country: KP}
targets:
  networks:
    - {name: net0, prefix: 198.18.0.0/24}
  hosts: {per_network: 16}
probes:
  - icmp: {timeout: 500ms}
schedule: {round: 5s}
budget: {per_target_pps: 1, agent_pps: 500}
`

// stormFigures is what one reconnect of the fleet measured.
type stormFigures struct {
	delays     []time.Duration   // per agent: controller listening -> first assignment
	refusals   int               // sessions ended RESOURCE_EXHAUSTED
	retryIns   []time.Duration   // the waits the agents chose after those
	early      []string          // a reconnect sooner than the wait chosen
	ignored    []string          // a wait chosen shorter than the controller asked
	asked      int               // refusals whose message names the retry-after
	endCodes   map[string]int    // every session end after the restart, by code
	endText    map[string]string // an example of each
	attempts   []int             // sessions opened (Hello sent), per second since listening
	notBack    int
	peakRSSMiB float64
}

func (s stormFigures) String() string {
	var b strings.Builder
	lo, med, p99, hi := quantiles(s.delays)
	fmt.Fprintf(&b, "back: %d agents, min %v median %v p99 %v max %v; not back %d\n", len(s.delays),
		lo.Round(time.Millisecond), med.Round(time.Millisecond), p99.Round(time.Millisecond), hi.Round(time.Millisecond), s.notBack)
	rlo, rmed, rp99, rhi := quantiles(s.retryIns)
	fmt.Fprintf(&b, "RESOURCE_EXHAUSTED refusals %d; waits chosen after them min %v median %v p99 %v max %v; waits shorter than asked %d; reconnects sooner than the wait %d\n",
		s.refusals, rlo.Round(time.Millisecond), rmed.Round(time.Millisecond), rp99.Round(time.Millisecond), rhi.Round(time.Millisecond), len(s.ignored), len(s.early))
	fmt.Fprintf(&b, "session ends after the restart by code %v\n", s.endCodes)
	for code, text := range s.endText {
		fmt.Fprintf(&b, "  e.g. %q: %s\n", code, text)
	}
	fmt.Fprintf(&b, "sessions attempted per second since listening %v\n", s.attempts)
	fmt.Fprintf(&b, "controller peak RSS %.1f MiB", s.peakRSSMiB)
	return b.String()
}

// retryAfterRE is the wait a refusal's message asks for (ingest's
// throttled error; the trailer says the same in milliseconds).
var retryAfterRE = regexp.MustCompile(`retry after (\S+)$`)

// measureStorm reads every agent's reconnect after back (the restarted
// controller's "controller listening").
func measureStorm(f *upFleet, back time.Time) stormFigures {
	s := stormFigures{endCodes: map[string]int{}, endText: map[string]string{}}
	for _, a := range f.agents {
		if at := a.h.firstApplyAfter(back); !at.IsZero() {
			s.delays = append(s.delays, at.Sub(back))
		} else {
			s.notBack++
		}
		opens, ends := a.rec.snapshot()
		for _, o := range opens {
			if o.Before(back) {
				continue
			}
			sec := int(o.Sub(back) / time.Second)
			for len(s.attempts) <= sec {
				s.attempts = append(s.attempts, 0)
			}
			s.attempts[sec]++
		}
		for _, e := range ends {
			if e.at.Before(back) {
				continue
			}
			code := errCode(e.err)
			s.endCodes[code]++
			s.endText[code] = e.err
			// Run waits what it logged before the next session, whatever
			// ended the last one.
			if next := firstAfter(opens, e.at); !next.IsZero() && next.Sub(e.at) < e.retryIn {
				s.early = append(s.early, fmt.Sprintf("%s: %v after a wait of %v", a.name, next.Sub(e.at), e.retryIn))
			}
			if code == "ResourceExhausted" {
				s.refusals++
				s.retryIns = append(s.retryIns, e.retryIn)
				if m := retryAfterRE.FindStringSubmatch(e.err); m != nil {
					if asked, err := time.ParseDuration(m[1]); err == nil {
						s.asked++
						if e.retryIn < asked {
							s.ignored = append(s.ignored, fmt.Sprintf("%s: waited %v, asked %v", a.name, e.retryIn, asked))
						}
					}
				}
			}
		}
	}
	return s
}

// openFiles counts a process's open file descriptors (pid or "self").
func openFiles(pid string) int {
	fds, _ := os.ReadDir("/proc/" + pid + "/fd")
	return len(fds)
}

// fileLimit is a process's "Max open files" line of /proc/<pid>/limits.
func fileLimit(pid string) string {
	b, _ := os.ReadFile("/proc/" + pid + "/limits")
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "Max open files") {
			return strings.Join(strings.Fields(l), " ")
		}
	}
	return "limit unknown"
}

// peakRSS is a process's peak resident set (VmHWM), in MiB.
func peakRSS(pid int) float64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			return kb / 1024
		}
	}
	return 0
}

func (c *vkController) pid() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cmd.Process.Pid
}

// stormBound is how soon after the restarted controller listens every
// agent must have its assignment again.
// The controller starts (ingest.DefaultSessionRate, DefaultSessionBurst)
// 50 at once and 200 a second: the appointments of 1,000 agents reach
// 4.75 s past the first, and the agents come back within about a second of
// the controller listening (gRPC's reconnect attempts), so about 6 s on a
// quiet machine. The bound is five times that: this machine is shared,
// and TLS handshakes of both sides compete for its 2 cores.
const stormBound = 30 * time.Second

// TestReconnectStorm: 1,000 agents (the real agent/uplink session code,
// each enrolled for real with its own spool, see upFleet) stream to a real
// controller process on loopback; the controller is SIGKILLed and started
// again on the same address and data 10 s later, so every agent reconnects
// at once. Printed: per agent the time from "controller listening" to its
// first assignment (min, median, p99, max), the RESOURCE_EXHAUSTED
// refusals and the waits the agents chose after them, the sessions
// attempted per second, and the controller's peak RSS. Asserted: every
// agent back within stormBound, none reconnecting sooner than the wait it
// was given, and every result produced stored once (no gap).
func TestReconnectStorm(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a controller and 1,000 agent uplinks")
	}
	const (
		down = 10 * time.Second
		rate = 2 // results per second per agent: a backlog of 20 each at the restart
	)
	agents := 1000
	if raceEnabled {
		agents = 300 // still six times the burst
	}
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	c := startVKController(t, "--allow-special-ranges")
	t0 := time.Now()
	f := enrolFleet(t, ctx, c, agents, "storm", spool.MinMaxBytes)
	t.Logf("%d agents enrolled in %v", agents, time.Since(t0).Round(time.Millisecond))
	if _, err := c.ops(t).ApplyCampaign(c.bearer(ctx, c.admin), &vantagev1.ApplyCampaignRequest{SpecYaml: stormCampaign, AllowFewerVantages: true}); err != nil {
		t.Fatalf("apply campaign: %v", err)
	}
	started := time.Now()
	f.start(t, c.addr, rate, nil)
	waitFor(t, ctx, 3*time.Minute, "every agent's first assignment", func() (bool, error) {
		for _, a := range f.agents {
			if a.h.firstApplyAfter(started).IsZero() {
				return false, nil
			}
		}
		return true, nil
	})
	first := measureStorm(f, started)
	t.Logf("first connection of %d agents (from their start):\n%s", agents, first)
	// Go raises the soft RLIMIT_NOFILE to the hard limit at start; say
	// what the fleet holds against it.
	var lim syscall.Rlimit
	_ = syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim)
	cpid := strconv.Itoa(c.pid())
	t.Logf("open files: this process %d (RLIMIT_NOFILE %d), the controller %d (%s)", openFiles("self"), lim.Cur, openFiles(cpid), fileLimit(cpid))
	sleepCtx(t, ctx, 5*time.Second)

	c.kill(t)
	killed := time.Now()
	sleepCtx(t, ctx, down)
	back := c.restart(t, ctx)
	deadline := time.Now().Add(stormBound + 30*time.Second)
	for time.Now().Before(deadline) {
		if measureStorm(f, back).notBack == 0 {
			break
		}
		sleepCtx(t, ctx, 200*time.Millisecond)
	}
	s := measureStorm(f, back)
	s.peakRSSMiB = peakRSS(c.pid())
	t.Logf("controller SIGKILLed %v (down %v), %d agents reconnecting:\n%s", killed.Format(time.TimeOnly), down, agents, s)
	perSecond := logAdmission(t, c, back)
	if s.notBack > 0 {
		t.Errorf("%d of %d agents have no assignment %v after the controller listened again", s.notBack, agents, time.Since(back).Round(time.Second))
	} else if _, _, _, hi := quantiles(s.delays); hi > stormBound {
		t.Errorf("the last agent was back %v after the controller listened again, bound %v", hi.Round(time.Millisecond), stormBound)
	}
	if len(s.early) > 0 {
		t.Errorf("%d reconnects came sooner than the wait the agent chose, e.g. %s", len(s.early), s.early[0])
	}
	if len(s.ignored) > 0 || s.asked != s.refusals {
		t.Errorf("%d of %d refusals named their retry-after; %d agents chose a shorter wait than asked %v",
			s.asked, s.refusals, len(s.ignored), s.ignored[:min(3, len(s.ignored))])
	}
	// 1,000 agents back within about a second are far beyond the burst:
	// the controller must have refused some, each with its own wait (its
	// appointment, at the rate, plus jitter: a constant retry-after would
	// bring them back together), and started no more sessions in any
	// second than the rate and burst allow (plus the starts in progress,
	// which are logged after their Hello is written).
	distinct := map[time.Duration]bool{}
	for _, d := range s.retryIns {
		distinct[d.Round(time.Millisecond)] = true
	}
	if s.refusals == 0 || len(distinct) < s.refusals/2 {
		t.Errorf("%d RESOURCE_EXHAUSTED refusals with %d distinct waits; want refusals, each with its own appointment", s.refusals, len(distinct))
	}
	if most := ingest.DefaultSessionRate + ingest.DefaultSessionBurst + ingest.DefaultSessionStarts; slices.Max(perSecond) > most {
		t.Errorf("the controller started %d sessions in one second; at most %d (--session-rate %d, --session-burst %d, --session-starts %d)",
			slices.Max(perSecond), most, ingest.DefaultSessionRate, ingest.DefaultSessionBurst, ingest.DefaultSessionStarts)
	}

	sleepCtx(t, ctx, 3*time.Second)
	f.stopProducing()
	f.waitAllAcked(t, ctx, 2*time.Minute)
	b := f.books(t, ctx, c)
	t.Logf("books: produced %d, stored %d, duplicates dropped %d, gaps %d", b.produced, b.stored, b.duplicates, b.gaps)
	if len(b.short) > 0 || b.gaps > 0 || b.stored != b.produced {
		t.Errorf("%d agents short (e.g. %v); produced %d stored %d gaps %d", len(b.short), b.short[:min(3, len(b.short))], b.produced, b.stored, b.gaps)
	}
}

var refusedRE = regexp.MustCompile(`msg="session starts refused" refused=(\d+)`)

// logAdmission prints the controller's session starts per second since
// back and the refusals it logged, and returns the starts per second.
func logAdmission(t *testing.T, c *vkController, back time.Time) []int {
	t.Helper()
	var per []int
	for _, at := range logTimes(t, c.logPath, "agent session started") {
		if at.Before(back) {
			continue
		}
		sec := int(at.Sub(back) / time.Second)
		for len(per) <= sec {
			per = append(per, 0)
		}
		per[sec]++
	}
	b, err := os.ReadFile(c.logPath)
	if err != nil {
		t.Fatal(err)
	}
	refused := 0
	for _, l := range strings.Split(string(b), "\n") {
		m := refusedRE.FindStringSubmatch(l)
		ts, _, _ := strings.Cut(strings.TrimPrefix(l, "time="), " ")
		if at, err := time.Parse(time.RFC3339Nano, ts); m == nil || err != nil || at.Before(back) {
			continue
		}
		n, _ := strconv.Atoi(m[1])
		refused += n
	}
	t.Logf("controller: sessions started per second since listening %v; refusals logged %d (the lines of the last second may be missing)", per, refused)
	return append(per, 0)
}

// restart starts the controller again and returns when it logs that it
// listens (the operator API may be slow to answer under the storm).
func (c *vkController) restart(t *testing.T, ctx context.Context) time.Time {
	t.Helper()
	n := len(logTimes(t, c.logPath, "controller listening"))
	done := c.spawn(t)
	var at []time.Time
	waitFor(t, ctx, 30*time.Second, "the controller listening again", func() (bool, error) {
		select {
		case <-done:
			return false, errors.New("controller exited at start")
		default:
		}
		at = logTimes(t, c.logPath, "controller listening")
		return len(at) > n, nil
	})
	return at[len(at)-1]
}
