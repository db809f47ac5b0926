package bulk

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/vantage-net/vantage/agent/probe/rawsock"
	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// fakeConn is a loop: every packet written may be answered by respond,
// and the answer is read back. Packets are [slot u32][cookie u64][addr 16].
type fakeConn struct {
	respond func(pkt []byte) []byte
	in      chan []byte
	once    sync.Once
	closed  chan struct{}
}

func newFake(respond func([]byte) []byte) *fakeConn {
	return &fakeConn{respond: respond, in: make(chan []byte, 1024), closed: make(chan struct{})}
}

func (c *fakeConn) WriteBatch(ms []rawsock.Message) (int, error) {
	for _, m := range ms {
		if r := c.respond(append([]byte(nil), m.Buffers[0]...)); r != nil {
			c.in <- r
		}
	}
	return len(ms), nil
}

func (c *fakeConn) ReadBatch(ms []rawsock.Message) (int, error) {
	select {
	case p := <-c.in:
		ms[0].N = copy(ms[0].Buffers[0], p)
		ms[0].NN = 0
		return 1, nil
	case <-c.closed:
		return 0, net.ErrClosed
	}
}

func (c *fakeConn) Close() error { c.once.Do(func() { close(c.closed) }); return nil }

func encode(b []byte, j *Job, slot uint32, cookie uint64) (int, error) {
	binary.BigEndian.PutUint32(b[0:], slot)
	binary.BigEndian.PutUint64(b[4:], cookie)
	a := j.Addr.As16()
	copy(b[12:], a[:])
	return 28, nil
}

func decode(pkt []byte, _ netip.Addr, _ int, m *Match) Verdict {
	if len(pkt) < 28 {
		return Malformed
	}
	m.Slot = binary.BigEndian.Uint32(pkt)
	m.Cookie, m.CookieMask = binary.BigEndian.Uint64(pkt[4:]), ^uint64(0)
	m.Dst = netip.AddrFrom16([16]byte(pkt[12:28])).Unmap()
	m.From, m.TTL, m.Outcome = m.Dst, 64, vantagev1.Outcome_OUTCOME_REPLY
	return Ours
}

func newMux(t *testing.T, slots int, respond func([]byte) []byte) (*Mux, *fakeConn) {
	t.Helper()
	c := newFake(respond)
	e, err := New(Config{EngineName: "fake", Kind: vantagev1.ProbeKind_PROBE_KIND_ICMP_ECHO, Send4: c, Slots: slots,
		Recv: []Receiver{{Conn: c, Decode: decode}}, Encode: encode})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = e.Close() })
	return e, c
}

func prepare(timeout time.Duration, retries int) func(*vantagev1.Task, *vantagev1.ProbeResult) (*Job, error) {
	return func(t *vantagev1.Task, res *vantagev1.ProbeResult) (*Job, error) {
		a, err := netip.ParseAddr(t.GetTarget())
		if err != nil {
			return nil, errors.New("bad target")
		}
		return &Job{Addr: a, Timeout: timeout, Retries: retries, res: res}, nil
	}
}

func tasks(n int) <-chan *vantagev1.Task {
	ch := make(chan *vantagev1.Task, n)
	a := netip.MustParseAddr("198.18.0.0")
	for range n {
		ch <- &vantagev1.Task{Target: a.String()}
		a = a.Next()
	}
	close(ch)
	return ch
}

func TestRun(t *testing.T) {
	echo := func(p []byte) []byte { return p }
	silent := func([]byte) []byte { return nil }
	spoof := func(p []byte) []byte { p[4] ^= 0xff; return p }
	tests := []struct {
		name         string
		slots, n     int
		respond      func([]byte) []byte
		retries      int
		want         vantagev1.Outcome
		wantAttempts uint32
		check        func(t *testing.T, s Stats)
	}{
		{"all answer", 64, 1000, echo, 0, vantagev1.Outcome_OUTCOME_REPLY, 1, func(t *testing.T, s Stats) {
			if s.Answered != 1000 || s.Ignored() != 0 {
				t.Fatalf("stats %+v", s)
			}
		}},
		{"silent with retries", 64, 20, silent, 2, vantagev1.Outcome_OUTCOME_TIMEOUT, 3, nil},
		{"table smaller than the sweep", 2, 20, silent, 0, vantagev1.Outcome_OUTCOME_TIMEOUT, 1, nil},
		{"spoofed answers rejected and counted", 64, 10, spoof, 0, vantagev1.Outcome_OUTCOME_TIMEOUT, 1, func(t *testing.T, s Stats) {
			if s.Spoofed != 10 {
				t.Fatalf("spoofed = %d, want 10", s.Spoofed)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e, _ := newMux(t, tc.slots, tc.respond)
			var got []*vantagev1.ProbeResult
			err := e.Run(context.Background(), tasks(tc.n), prepare(20*time.Millisecond, tc.retries), func(r *vantagev1.ProbeResult) { got = append(got, r) })
			if err != nil || len(got) != tc.n {
				t.Fatalf("Run = %v with %d results, want %d", err, len(got), tc.n)
			}
			for _, r := range got {
				if r.GetOutcome() != tc.want || r.GetAttempts() != tc.wantAttempts || r.GetEngine() != "fake" || r.GetSentAt() == nil {
					t.Fatalf("result %v, want %v after %d attempts", r, tc.want, tc.wantAttempts)
				}
			}
			if tc.check != nil {
				tc.check(t, e.Stats())
			}
		})
	}
}

func TestRunBadTaskAndCancel(t *testing.T) {
	e, _ := newMux(t, 4, func([]byte) []byte { return nil })
	ch := make(chan *vantagev1.Task, 1)
	ch <- &vantagev1.Task{Target: "not-an-ip"}
	var got []*vantagev1.ProbeResult
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	err := e.Run(ctx, ch, prepare(time.Hour, 0), func(r *vantagev1.ProbeResult) { got = append(got, r) })
	if !errors.Is(err, context.DeadlineExceeded) || len(got) != 1 || got[0].GetOutcome() != vantagev1.Outcome_OUTCOME_ERROR || got[0].GetError() != "bad target" {
		t.Fatalf("Run = %v, results %v; want the deadline and one ERROR for the bad target", err, got)
	}
}

func TestCloseFailsPending(t *testing.T) {
	e, _ := newMux(t, 4, func([]byte) []byte { return nil })
	res := &vantagev1.ProbeResult{}
	done := make(chan *vantagev1.ProbeResult, 1)
	j := e.NewJob(res, netip.MustParseAddr("198.18.0.1"), func(r *vantagev1.ProbeResult) { done <- r })
	j.Timeout = time.Hour
	if err := e.Submit(context.Background(), j); err != nil {
		t.Fatalf("Submit: %v", err)
	}
	for e.Stats().Sent == 0 {
		time.Sleep(time.Millisecond)
	}
	_ = e.Close()
	if r := <-done; r.GetOutcome() != vantagev1.Outcome_OUTCOME_ERROR || r.GetError() != ErrClosed.Error() {
		t.Fatalf("result %v, want ERROR %q", r, ErrClosed)
	}
	if err := e.Submit(context.Background(), j); !errors.Is(err, ErrClosed) {
		t.Fatalf("Submit after Close = %v, want ErrClosed", err)
	}
}

// TestRunSenders: with three send loops, every probe goes out once on one
// of the three sockets and is answered.
func TestRunSenders(t *testing.T) {
	primary := newFake(func(p []byte) []byte { return p })
	var mu sync.Mutex
	var extra []*fakeConn
	open := func(bool) (Conn, error) {
		mu.Lock()
		defer mu.Unlock()
		// Answers to the extra sockets' probes arrive on the primary one.
		c := newFake(func(p []byte) []byte { primary.in <- p; return nil })
		extra = append(extra, c)
		return c, nil
	}
	e, err := New(Config{EngineName: "fake", Send4: primary, Slots: 256, Senders: 3, OpenSend: open,
		Recv: []Receiver{{Conn: primary, Decode: decode}}, Encode: encode})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	defer e.Close()
	if len(extra) != 2 {
		t.Fatalf("%d extra send sockets, want 2", len(extra))
	}
	const n = 5000
	got := 0
	err = e.Run(context.Background(), tasks(n), prepare(time.Second, 0), func(r *vantagev1.ProbeResult) {
		if r.GetOutcome() != vantagev1.Outcome_OUTCOME_REPLY || r.GetAttempts() != 1 {
			t.Errorf("result %v", r)
		}
		got++
	})
	if err != nil || got != n {
		t.Fatalf("Run = %v with %d results, want %d", err, got, n)
	}
	if s := e.Stats(); s.Sent != n || s.Answered != n || s.Ignored() != 0 {
		t.Fatalf("stats %+v", s)
	}
	_ = e.Close()
	for i, c := range extra {
		select {
		case <-c.closed:
		default:
			t.Errorf("extra send socket %d not closed", i)
		}
	}
}

func TestDeadlineHeap(t *testing.T) {
	base := time.Unix(1700000000, 0)
	var h deadlines
	for _, d := range []int{5, 3, 9, 1, 7, 3, 0, 8, 2, 6, 4} {
		h.push(deadline{at: base.Add(time.Duration(d) * time.Second).UnixNano(), slot: uint32(d)})
	}
	prev := -1
	for h.Len() > 0 {
		d := h.pop()
		if int(d.slot) < prev {
			t.Fatalf("popped %d after %d", d.slot, prev)
		}
		prev = int(d.slot)
	}
	if a := testing.AllocsPerRun(100, func() {
		h.push(deadline{at: 1, slot: 1})
		h.pop()
	}); a != 0 {
		t.Fatalf("push+pop: %v allocations, want 0", a)
	}
}

// lateConn's reader never wakes: answers wait in the socket until
// ReadBatchNow takes them.
type lateConn struct{ *fakeConn }

func (c lateConn) ReadBatch([]rawsock.Message) (int, error) {
	<-c.closed
	return 0, net.ErrClosed
}

func (c lateConn) ReadBatchNow(ms []rawsock.Message) (int, error) {
	select {
	case p := <-c.in:
		ms[0].N = copy(ms[0].Buffers[0], p)
		ms[0].NN = 0
		return 1, nil
	default:
		return 0, nil
	}
}

// TestDrainBeforeTimeout: answers that reached the socket before their
// deadline count even when the reader has not read them.
func TestDrainBeforeTimeout(t *testing.T) {
	c := lateConn{newFake(func(p []byte) []byte { return p })}
	e, err := New(Config{EngineName: "fake", Send4: c, Slots: 64, Recv: []Receiver{{Conn: c, Decode: decode}}, Encode: encode})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	defer e.Close()
	var got []*vantagev1.ProbeResult
	if err := e.Run(context.Background(), tasks(8), prepare(30*time.Millisecond, 0), func(r *vantagev1.ProbeResult) { got = append(got, r) }); err != nil {
		t.Fatalf("Run: %v", err)
	}
	for _, r := range got {
		if r.GetOutcome() != vantagev1.Outcome_OUTCOME_REPLY {
			t.Fatalf("result %v, want REPLY (drained before the deadline)", r)
		}
	}
	if len(got) != 8 {
		t.Fatalf("%d results, want 8", len(got))
	}
}

// TestCompactDeadlines: answered probes' deadlines are dropped, live ones
// and retries stay, and the heap order holds.
func TestCompactDeadlines(t *testing.T) {
	e := &Mux{slots: make([]slot, 64), epoch: time.Unix(1700000000, 0)}
	for i := range 64 {
		e.dl.push(deadline{at: int64(64 - i), slot: uint32(i), cookie: uint64(i + 1), retry: i%16 == 5})
		if i%4 == 0 { // still in flight with the same cookie
			e.slots[i] = slot{busy: true, cookie: uint64(i + 1)}
		}
		if i%8 == 2 { // in flight again, with a new cookie: the old deadline is stale
			e.slots[i] = slot{busy: true, cookie: 999}
		}
	}
	e.compactDeadlines()
	want := 0
	for i := range 64 {
		if i%4 == 0 || i%16 == 5 {
			want++
		}
	}
	if e.dl.Len() != want {
		t.Fatalf("%d deadlines left, want %d", e.dl.Len(), want)
	}
	prev := int64(-1)
	for e.dl.Len() > 0 {
		d := e.dl.pop()
		if d.at < prev || !(d.slot%4 == 0 || d.slot%16 == 5) {
			t.Fatalf("popped %+v after %d", d, prev)
		}
		prev = d.at
	}
}
