package ingest

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/vantage-net/vantage/controller/internal/fixture"
	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// newFakeClock is a clock the test moves.
func newFakeClock() *fixture.Clock            { return fixture.NewClock(time.Unix(1_800_000_000, 0)) }
func noJitter(time.Duration) time.Duration    { return 0 }
func maxJitter(n time.Duration) time.Duration { return n - 1 }

func newTestAdmission(perSecond float64, burst, starts int, clk *fixture.Clock) *admission {
	a := newAdmission(perSecond, burst, starts, clk.Now, slog.New(slog.DiscardHandler))
	a.jitter = noJitter
	return a
}

// TestAdmissionAppointments: a storm beyond the burst is refused with
// waits spread at the rate, one appointment per agent in arrival order;
// each agent coming back on time is admitted without a second refusal,
// and one coming back early is refused again with what is left, without
// taking another start.
func TestAdmissionAppointments(t *testing.T) {
	clk := newFakeClock()
	a := newTestAdmission(10, 2, 100, clk)
	waits := map[string]time.Duration{}
	for i := range 12 {
		id := fmt.Sprintf("agt-%02d", i)
		release, th := a.enter(id)
		switch {
		case i < 2 && th != nil:
			t.Fatalf("%s: refused within the burst: %v", id, th)
		case i < 2:
			release()
		case th == nil:
			t.Fatalf("%s: admitted beyond the burst", id)
		default:
			if want := time.Duration(i-1) * 100 * time.Millisecond; th.retry != want {
				t.Fatalf("%s: retry after %v; want %v (the %d-th start past the burst at 10/s)", id, th.retry, want, i-1)
			}
			waits[id] = th.retry
		}
	}
	if st := a.stats(); st.Appointments != 10 || st.Refused != 10 || st.Admitted != 2 {
		t.Fatalf("stats %+v; want 10 appointments, 10 refused, 2 admitted", st)
	}
	// agt-05 comes back 200 ms early: refused with the rest of its wait.
	clk.Add(waits["agt-05"] - 200*time.Millisecond)
	if _, th := a.enter("agt-05"); th == nil || th.retry != 200*time.Millisecond {
		t.Fatalf("early agt-05: %v; want refused, retry after 200ms", th)
	}
	if st := a.stats(); st.Appointments != 10 {
		t.Fatalf("an early agent took a new appointment: %d", st.Appointments)
	}
	// At the last appointment every agent is admitted on its own, though
	// the limiter has no start left for anyone else.
	clk.Add(waits["agt-11"] - waits["agt-05"] + 200*time.Millisecond)
	for i := 2; i < 12; i++ {
		release, th := a.enter(fmt.Sprintf("agt-%02d", i))
		if th != nil {
			t.Fatalf("agt-%02d refused at its appointment: %v", i, th)
		}
		release()
	}
	if _, th := a.enter("agt-new"); th == nil || th.retry != 100*time.Millisecond {
		t.Fatalf("a newcomer after the storm: %v; want the next start, 100ms on", th)
	}
}

// TestAdmissionLimits: the furthest appointment, the starts in progress,
// no rate limit, forgotten appointments and jitter.
func TestAdmissionLimits(t *testing.T) {
	t.Run("beyond the longest wait", func(t *testing.T) {
		clk := newFakeClock()
		a := newTestAdmission(1, 1, 100, clk)
		var last *throttled
		for i := range 70 {
			release, th := a.enter(fmt.Sprintf("agt-%02d", i))
			if th == nil {
				release()
			}
			last = th
		}
		if last == nil || last.retry != MaxSessionWait {
			t.Fatalf("the 70th agent at 1/s: %v; want retry after %v", last, MaxSessionWait)
		}
		if st := a.stats(); st.Appointments != 60 {
			t.Fatalf("%d appointments; want 60 (one a second up to a minute)", st.Appointments)
		}
	})
	t.Run("every start slot busy", func(t *testing.T) {
		clk := newFakeClock()
		a := newTestAdmission(100, 10, 2, clk)
		r1, _ := a.enter("agt-a")
		r2, _ := a.enter("agt-b")
		_, th := a.enter("agt-c")
		if th == nil || th.retry != 20*time.Millisecond {
			t.Fatalf("third start with 2 in progress: %v; want refused for 2 starts at 100/s = 20ms", th)
		}
		r1()
		r1() // twice is once
		r2()
		clk.Add(th.retry)
		if release, th := a.enter("agt-c"); th != nil {
			t.Fatalf("agt-c at its appointment: %v", th)
		} else {
			release()
		}
		if st := a.stats(); st.InProgress != 0 {
			t.Fatalf("%d starts still in progress", st.InProgress)
		}
	})
	t.Run("no rate limit", func(t *testing.T) {
		clk := newFakeClock()
		a := newTestAdmission(-1, 0, 1000, clk)
		for i := range 1000 {
			release, th := a.enter(fmt.Sprintf("agt-%04d", i))
			if th != nil {
				t.Fatalf("refused without a limit: %v", th)
			}
			release()
		}
	})
	t.Run("appointment forgotten", func(t *testing.T) {
		clk := newFakeClock()
		a := newTestAdmission(1, 1, 10, clk)
		release, _ := a.enter("agt-a")
		release()
		if _, th := a.enter("agt-b"); th == nil {
			t.Fatal("agt-b admitted beyond the burst")
		}
		clk.Add(time.Second + appointmentTTL + time.Second)
		a.enter("agt-c") // sweeps
		if st := a.stats(); st.Appointments != 0 {
			t.Fatalf("%d appointments kept %v after their time", st.Appointments, appointmentTTL)
		}
	})
	t.Run("jitter", func(t *testing.T) {
		clk := newFakeClock()
		a := newTestAdmission(10, 1, 10, clk)
		a.jitter = maxJitter
		a.enter("agt-a")
		_, th := a.enter("agt-b")
		if want := 120 * time.Millisecond; th == nil || th.retry != want {
			t.Fatalf("retry %v; want 100ms plus at most a tenth and 10ms, in ms (%v)", th, want)
		}
	})
}

// TestSessionAdmission: over gRPC, a session beyond the start rate ends
// at once with RESOURCE_EXHAUSTED and a retry-after-ms trailer, before its
// Hello is written to the store.
func TestSessionAdmission(t *testing.T) {
	ta := newTestAgentWith(t, nil, nil, nil, func(c *Config) { c.SessionRate, c.SessionBurst = 0.1, 1 })
	tb := ta.another(t)
	ta.session(t, 1)
	sctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s, err := vantagev1.NewAgentServiceClient(tb.conn).Session(sctx)
	if err != nil {
		t.Fatal(err)
	}
	s.Send(&vantagev1.AgentMessage{Msg: &vantagev1.AgentMessage_Hello{Hello: &vantagev1.Hello{Epoch: 1, AgentVersion: "refused"}}})
	_, err = s.Recv()
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("second session at 0.1/s, burst 1: %v; want ResourceExhausted", err)
	}
	ms, _ := strconv.Atoi(s.Trailer().Get(RetryAfterKey)[0])
	if ms < 9000 || ms > 12000 {
		t.Fatalf("retry-after-ms %d; want about 10s (the next start at 0.1/s)", ms)
	}
	ag, err := tb.db.GetAgent(context.Background(), tb.id)
	if err != nil {
		t.Fatal(err)
	}
	if ag.AgentVersion != "" || !ag.LastSeen.IsZero() {
		t.Fatalf("the refused Hello was written to the store: version %q, last seen %v", ag.AgentVersion, ag.LastSeen)
	}
	if st := ta.srv.AdmissionStats(); st.Refused != 1 || st.Admitted != 1 || st.Appointments != 1 {
		t.Fatalf("admission stats %+v; want 1 admitted, 1 refused with an appointment", st)
	}
}
