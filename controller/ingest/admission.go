package ingest

// Session admission: how fast agents may start sessions, so that a
// reconnect storm (a whole fleet back at the same moment after a controller
// restart) is spread over time instead of served at once. A session start
// is the Hello's store write (one transaction, one fsync with the default
// --store-sync full), the first assignment and the backlog the agent sends
// right after it; every one of them competes with result commits for the
// store's one writer.
//
// An agent beyond the rate gets an appointment: the limiter's next free
// start is reserved for it (its token is taken now), and the session ends
// at once with RESOURCE_EXHAUSTED and a retry-after of that delay plus
// jitter. When it comes back at its time it is admitted on its
// appointment, without taking another token. So the refused agents of a
// storm are spread over exactly the time the rate needs for them, in the
// order they came, each refused once; none of that costs a store write.

import (
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// Session admission defaults (docs/OPERATIONS.md, "Reconnect storms and
// shutdown").
const (
	// DefaultSessionRate is how many agent sessions may start per second.
	// A start costs about 1.5 ms of the store's one writer on the 2-core
	// test machine (the Hello's write and its fsync), so 200 a second
	// leaves 70% of the writer to result commits during a storm.
	DefaultSessionRate = 200
	// DefaultSessionBurst sessions may start at once: a fleet this small
	// reconnects without a refusal.
	DefaultSessionBurst = 50
	// DefaultSessionStarts bounds the starts in progress (admitted, first
	// assignment not made yet). At the rate they last 1 to 5 ms each, so
	// the bound is reached only when the store is about 100 times slower
	// than that (a stalled disk); agents are then refused instead of
	// queueing goroutines, buffers and backlogs behind it.
	DefaultSessionStarts = 64
	// MaxSessionWait is the furthest appointment given. Agents beyond it
	// are told to come back after it (with jitter) and are given one then.
	MaxSessionWait = time.Minute
	// appointmentEarly: an agent this much early for its appointment is
	// admitted on it (the retry-after travels in whole milliseconds).
	appointmentEarly = 100 * time.Millisecond
	// appointmentTTL: an appointment not kept this long after its time is
	// forgotten (the agent stopped, or connected elsewhere).
	appointmentTTL = 2 * time.Minute
)

// AdmissionStats counts session starts since the Server started.
type AdmissionStats struct {
	// Admitted sessions went on to their Hello; Refused ended with
	// RESOURCE_EXHAUSTED and a retry-after.
	Admitted, Refused uint64
	// Appointments are refused agents with a start reserved for them now.
	Appointments int
	// InProgress is the starts admitted and not finished now.
	InProgress int
}

// admission decides whether a session may start now.
type admission struct {
	lim   *rate.Limiter // nil: no rate limit
	slots chan struct{} // one per start in progress
	now   func() time.Time
	log   *slog.Logger
	// jitter returns a random duration in [0, n) (tests fix it).
	jitter func(n time.Duration) time.Duration

	admitted, refused atomic.Uint64

	mu    sync.Mutex
	appts map[string]time.Time // agent -> when it may start (its token is taken)
	swept time.Time
	// Since the last "session starts refused" line: logSince is the
	// first refusal not logged yet.
	logSince                time.Time
	logRefused, logAdmitted int
	logMinWait, logMaxWait  time.Duration
}

// sessionDefaults fills the zero session admission fields of c.
func (c *Config) sessionDefaults() {
	if c.SessionRate == 0 {
		c.SessionRate = DefaultSessionRate
	}
	setDefault(&c.SessionBurst, DefaultSessionBurst)
	setDefault(&c.SessionStarts, DefaultSessionStarts)
	setDefault(&c.HelloTimeout, DefaultHelloTimeout)
}

// newAdmission makes an admission of perSecond starts a second (not
// positive: no limit), burst at once, and starts in progress at once.
func newAdmission(perSecond float64, burst, starts int, now func() time.Time, log *slog.Logger) *admission {
	a := &admission{slots: make(chan struct{}, starts), now: now, log: log, appts: map[string]time.Time{},
		jitter: func(n time.Duration) time.Duration { return rand.N(max(n, 1)) }}
	if perSecond > 0 {
		a.lim = rate.NewLimiter(rate.Limit(perSecond), burst)
	}
	return a
}

// enter admits agentID's session start, or refuses it with the delay the
// agent must wait. release ends the start (call it once the first
// assignment is made, or when the session ends before); it may be called
// more than once.
func (a *admission) enter(agentID string) (release func(), refusal *throttled) {
	now := a.now()
	a.mu.Lock()
	defer a.mu.Unlock()
	a.sweep(now)
	if at, ok := a.appts[agentID]; ok {
		if now.Before(at.Add(-appointmentEarly)) {
			return nil, a.refuse(now, at.Sub(now), "early for its appointment")
		}
		delete(a.appts, agentID) // its token was taken when it was booked
	} else if a.lim != nil {
		r := a.lim.ReserveN(now, 1)
		switch d := r.DelayFrom(now); {
		case d > MaxSessionWait:
			r.CancelAt(now)
			return nil, a.refuse(now, MaxSessionWait, "every appointment within the longest wait is taken")
		case d > 0:
			a.appts[agentID] = now.Add(d)
			return nil, a.refuse(now, d, "beyond the session start rate")
		}
	}
	select {
	case a.slots <- struct{}{}:
	default:
		return nil, a.rebook(now, agentID)
	}
	a.admitted.Add(1)
	a.logAdmitted++
	a.logStorm(now)
	var once sync.Once
	return func() { once.Do(func() { <-a.slots }) }, nil
}

// rebook refuses an agent that found every start slot busy: the store is
// slower than the rate assumes. Its new appointment is no sooner than the
// rate takes to admit a full set of starts again.
func (a *admission) rebook(now time.Time, agentID string) *throttled {
	d := DefaultRetryAfter
	if a.lim != nil {
		d = time.Duration(float64(cap(a.slots)) / float64(a.lim.Limit()) * float64(time.Second))
		r := a.lim.ReserveN(now, 1)
		if rd := r.DelayFrom(now); rd > MaxSessionWait {
			r.CancelAt(now)
			d = MaxSessionWait
		} else {
			d = max(d, rd)
			a.appts[agentID] = now.Add(d)
		}
	}
	return a.refuse(now, d, fmt.Sprintf("%d session starts in progress, the most at once", cap(a.slots)))
}

// refuse makes the refusal of a start that must wait d (plus jitter: up to
// a tenth of d and 10 ms, so that agents given neighbouring appointments
// do not arrive in step), counts it and logs the storm at most once a
// second.
func (a *admission) refuse(now time.Time, d time.Duration, why string) *throttled {
	d = (d + a.jitter(d/10+10*time.Millisecond)).Round(time.Millisecond) // as the trailer says it
	a.refused.Add(1)
	if a.logRefused == 0 { // a storm begins: count from here
		a.logSince, a.logMinWait, a.logAdmitted = now, d, 0
	}
	a.logRefused++
	a.logMinWait = min(a.logMinWait, d)
	a.logMaxWait = max(a.logMaxWait, d)
	a.logStorm(now)
	return &throttled{retry: d, reason: fmt.Sprintf("session start refused: %s (%d agents have appointments)", why, len(a.appts))}
}

// logStorm logs the refusals not logged yet once the first of them is a
// second old: a storm costs a line a second, written as agents come and go
// (the refused come back on their appointments).
func (a *admission) logStorm(now time.Time) {
	if a.logRefused == 0 || now.Sub(a.logSince) < time.Second {
		return
	}
	rate := "unlimited"
	if a.lim != nil {
		rate = fmt.Sprintf("%g/s", float64(a.lim.Limit()))
	}
	a.log.Info("session starts refused", slog.Int("refused", a.logRefused), slog.Int("admitted", a.logAdmitted),
		slog.Duration("min_wait", a.logMinWait), slog.Duration("max_wait", a.logMaxWait),
		slog.Int("appointments", len(a.appts)), slog.Int("in_progress", len(a.slots)), slog.String("rate", rate))
	a.logRefused, a.logAdmitted, a.logMaxWait = 0, 0, 0
}

// sweep forgets appointments not kept, at most once a second.
func (a *admission) sweep(now time.Time) {
	if now.Sub(a.swept) < time.Second {
		return
	}
	a.swept = now
	for id, at := range a.appts {
		if now.Sub(at) > appointmentTTL {
			delete(a.appts, id)
		}
	}
}

func (a *admission) stats() AdmissionStats {
	a.mu.Lock()
	defer a.mu.Unlock()
	return AdmissionStats{Admitted: a.admitted.Load(), Refused: a.refused.Load(), Appointments: len(a.appts), InProgress: len(a.slots)}
}

// AdmissionStats returns the session admission's counters.
func (s *Server) AdmissionStats() AdmissionStats { return s.adm.stats() }
