package spool

import (
	"context"
	"errors"
	"testing"
	"time"

	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

func submitN(o *Outbox, n int) {
	for range n {
		o.Submit(&vantagev1.ProbeResult{TaskId: "x", Target: "192.0.2.1"})
	}
}

// next is Outbox.Next that fails the test on an error.
func next(t *testing.T, o *Outbox) (*vantagev1.ResultBatch, bool) {
	t.Helper()
	b, more, err := o.Next()
	if err != nil {
		t.Fatalf("Next: %v", err)
	}
	return b, more
}

func ack(t *testing.T, o *Outbox, epoch, upTo uint64) bool {
	t.Helper()
	matched, err := o.Ack(&vantagev1.Ack{Epoch: epoch, UpToSeq: upTo})
	if err != nil {
		t.Fatalf("Ack: %v", err)
	}
	return matched
}

// TestOutboxLedger: seqs come from the store's last one; batches handed
// out are in flight until acked, the next one starts after them; acks match
// only what is in flight; Resend hands everything unacked out again.
func TestOutboxLedger(t *testing.T) {
	o := NewOutbox(NewMemory(3, 100), OutboxOptions{BatchMax: 4})
	submitN(o, 10)
	if got := o.Produced(); got != 10 {
		t.Fatalf("Produced = %d, want 10", got)
	}
	b1, more := next(t, o)
	if b1.GetEpoch() != 3 || b1.GetFirstSeq() != 1 || b1.GetLastSeq() != 4 || len(b1.GetResults()) != 4 || !more {
		t.Fatalf("first batch %d..%d (%d results, more %v), want 1..4 and more", b1.GetFirstSeq(), b1.GetLastSeq(), len(b1.GetResults()), more)
	}
	b2, _ := next(t, o)
	if b2.GetFirstSeq() != 5 || b2.GetLastSeq() != 8 {
		t.Fatalf("second batch %d..%d, want 5..8 (after the one in flight)", b2.GetFirstSeq(), b2.GetLastSeq())
	}
	if !ack(t, o, 3, 20) || o.Acked() != (Key{3, 8}) {
		t.Fatalf("an ack beyond what was sent: acked %v, want up to the last sent (3, 8)", o.Acked())
	}
	if ack(t, o, 3, 8) {
		t.Fatal("a second ack of the same batches matched: want ignored")
	}
	b3, more := next(t, o)
	if b3.GetFirstSeq() != 9 || b3.GetLastSeq() != 10 || more {
		t.Fatalf("third batch %d..%d more %v, want 9..10 and no more", b3.GetFirstSeq(), b3.GetLastSeq(), more)
	}
	if b, _ := next(t, o); b != nil {
		t.Fatalf("batch %d..%d with everything in flight, want none", b.GetFirstSeq(), b.GetLastSeq())
	}
	if at, end, ok := o.OldestInFlight(); !ok || end != (Key{3, 10}) || at.IsZero() {
		t.Fatalf("oldest in flight %v %v %v, want (3, 10)", at, end, ok)
	}
	o.Resend() // a new stream: 9..10 were never acked
	if b, _ := next(t, o); b.GetFirstSeq() != 9 || b.GetLastSeq() != 10 {
		t.Fatalf("after Resend: batch %d..%d, want 9..10 again", b.GetFirstSeq(), b.GetLastSeq())
	}
	if st := o.State(); st.GetPendingResults() != 2 {
		t.Fatalf("pending %d, want 2", st.GetPendingResults())
	}
}

// TestOutboxGaps: a gap rides with the next results once per stream, a gap
// with no result to ride along goes alone (acked with up_to_seq 0), and an
// acked gap is forgotten.
func TestOutboxGaps(t *testing.T) {
	m := NewMemory(1, 2)
	o := NewOutbox(m, OutboxOptions{BatchMax: 10})
	submitN(o, 4) // 1 and 2 dropped into a gap
	b, _ := next(t, o)
	if len(b.GetGaps()) != 1 || b.GetGaps()[0].GetFirstSeq() != 1 || b.GetFirstSeq() != 3 {
		t.Fatalf("batch %d..%d gaps %v, want 3..4 carrying the gap 1..2", b.GetFirstSeq(), b.GetLastSeq(), b.GetGaps())
	}
	o.Resend()
	b, _ = next(t, o)
	if len(b.GetGaps()) != 1 {
		t.Fatalf("after Resend: gaps %v, want the gap again", b.GetGaps())
	}
	if !ack(t, o, 1, 4) {
		t.Fatal("ack of 3..4 not matched")
	}
	if b, _ := next(t, o); b != nil {
		t.Fatalf("after the ack: batch %v, want none", b)
	}

	g := &gapsOnly{gaps: []*vantagev1.Gap{{Epoch: 1, FirstSeq: 3, LastSeq: 9, Reason: "spool full"}}}
	o = NewOutbox(g, OutboxOptions{})
	b, _ = next(t, o)
	if len(b.GetResults()) != 0 || b.GetFirstSeq() != 0 || b.GetLastSeq() != 0 || b.GetEpoch() != 1 || len(b.GetGaps()) != 1 {
		t.Fatalf("batch %v, want a gaps-only batch of epoch 1", b)
	}
	if b, _ := next(t, o); b != nil {
		t.Fatalf("the gap handed out twice on one stream: %v", b)
	}
	if !ack(t, o, 1, 0) || len(g.gaps) != 0 || o.Acked() != (Key{}) {
		t.Fatalf("gaps-only ack: gaps left %v, acked %v; want none and no result key", g.gaps, o.Acked())
	}
}

// gapsOnly is a store holding gaps and no results.
type gapsOnly struct {
	Memory
	gaps []*vantagev1.Gap
}

func (g *gapsOnly) Last() Key { return Key{Epoch: 1} }
func (g *gapsOnly) Read(Key, int) (Batch, error) {
	return Batch{Gaps: append([]*vantagev1.Gap(nil), g.gaps...)}, nil
}
func (g *gapsOnly) Ack(_ Key, acked []*vantagev1.Gap) error {
	if len(acked) > 0 {
		g.gaps = nil
	}
	return nil
}

// refusing is a store whose appends fail.
type refusing struct{ *Memory }

func (refusing) Append(*vantagev1.ProbeResult) error { return errors.New("disk on fire") }

func TestOutboxRefusedAppend(t *testing.T) {
	o := NewOutbox(refusing{NewMemory(1, 4)}, OutboxOptions{})
	submitN(o, 3)
	if got := o.Produced(); got != 0 {
		t.Fatalf("Produced = %d after refused appends, want 0 (no seq used)", got)
	}
}

// TestOutboxSignals: Ready fires once a full batch waits, and WaitAcked
// returns once everything sent is acked.
func TestOutboxSignals(t *testing.T) {
	o := NewOutbox(NewMemory(1, 100), OutboxOptions{BatchMax: 3})
	submitN(o, 2)
	select {
	case <-o.Ready():
		t.Fatal("Ready fired with 2 of 3 waiting")
	default:
	}
	submitN(o, 1)
	select {
	case <-o.Ready():
	default:
		t.Fatal("Ready did not fire with a full batch waiting")
	}
	if _, _, err := o.Next(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if o.WaitAcked(ctx) {
		t.Fatal("WaitAcked true with a batch in flight")
	}
	done := make(chan bool, 1)
	go func() { done <- o.WaitAcked(context.Background()) }()
	ack(t, o, 1, 3)
	if !<-done {
		t.Fatal("WaitAcked false after the ack")
	}
	o.ReportStatus(&vantagev1.TaskStatus{TaskId: "a"})
	if st := <-o.Statuses(); st.GetTaskId() != "a" {
		t.Fatalf("status %v, want task a", st)
	}
}
