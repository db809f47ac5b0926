package ingest

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// sessionEnd collects what a session receives until it ends.
type sessionEnd struct {
	acks []*vantagev1.Ack
	err  error
}

func readToEnd(s vantagev1.AgentService_SessionClient) <-chan sessionEnd {
	c := make(chan sessionEnd, 1)
	go func() {
		var e sessionEnd
		for {
			m, err := s.Recv()
			if err != nil {
				e.err = err
				c <- e
				return
			}
			if a := m.GetAck(); a != nil {
				e.acks = append(e.acks, a)
			}
		}
	}()
	return c
}

func batchOf(epoch, seq uint64, task *vantagev1.Task) *vantagev1.AgentMessage {
	r := &vantagev1.ProbeResult{Seq: seq, TaskId: task.GetId(), Campaign: "c", Target: task.GetTarget(), SentAt: timestamppb.Now()}
	return &vantagev1.AgentMessage{Msg: &vantagev1.AgentMessage_Results{Results: &vantagev1.ResultBatch{
		Epoch: epoch, FirstSeq: seq, LastSeq: seq, Results: []*vantagev1.ProbeResult{r}}}}
}

// TestDrainAcksBatchInCommit: a batch whose commit is in progress when
// the drain begins is committed and acked before the session ends with
// UNAVAILABLE; a batch sent after the drain began is not stored (the
// agent sends it again to the next controller). Shutting down used to end
// the session at once: the batch was stored but never acked, so the agent
// sent it again and it was counted as a duplicate.
func TestDrainAcksBatchInCommit(t *testing.T) {
	var gs *gatedStore
	ta := newTestAgent(t, wrapped(&gs, newGatedStore), nil, nil)
	s, task := ta.session(t, 3)
	end := readToEnd(s)
	if err := s.Send(batchOf(3, 1, task)); err != nil {
		t.Fatal(err)
	}
	<-gs.entered // the commit is in progress and held

	drained := make(chan DrainStats, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	go func() { drained <- ta.srv.Drain(ctx) }()
	for !ta.srv.draining() {
		time.Sleep(time.Millisecond)
	}
	if err := s.Send(batchOf(3, 2, task)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // the second batch reaches the controller
	close(gs.release)
	e := <-end
	d := <-drained
	if len(e.acks) != 1 || e.acks[0].GetUpToSeq() != 1 || status.Code(e.err) != codes.Unavailable {
		t.Fatalf("session got acks %v and ended %v; want the ack of seq 1, then Unavailable", e.acks, e.err)
	}
	ag, err := ta.db.GetAgent(context.Background(), ta.id)
	if err != nil {
		t.Fatal(err)
	}
	if ag.ResultsStored != 1 {
		t.Fatalf("%d results stored; want 1 (the batch sent after the drain began is not)", ag.ResultsStored)
	}
	if d.Cut || d.Sessions != 1 || d.Batches != 1 || d.Acks != 1 {
		t.Fatalf("drain %+v; want 1 session, 1 batch committed and acked, not cut", d)
	}
}

// TestDrainEndsIdleStreams: a session that never said Hello, and one
// that sends nothing, do not hold the drain up.
func TestDrainEndsIdleStreams(t *testing.T) {
	ta := newTestAgent(t, nil, nil, nil)
	tb := ta.another(t)
	ta.session(t, 1)
	sctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	mute, err := vantagev1.NewAgentServiceClient(tb.conn).Session(sctx)
	if err != nil {
		t.Fatal(err)
	}
	muteEnd := readToEnd(mute)
	time.Sleep(100 * time.Millisecond) // the mute stream reaches its handler
	ctx, cancelDrain := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancelDrain()
	d := ta.srv.Drain(ctx)
	if d.Cut || d.Sessions != 1 {
		t.Fatalf("drain %+v; want 1 session drained, not cut", d)
	}
	if e := <-muteEnd; status.Code(e.err) != codes.Unavailable {
		t.Fatalf("the Hello-less session ended %v; want Unavailable", e.err)
	}
	late, err := vantagev1.NewAgentServiceClient(ta.conn).Session(sctx)
	if err != nil {
		t.Fatal(err)
	}
	late.Send(&vantagev1.AgentMessage{Msg: &vantagev1.AgentMessage_Hello{Hello: &vantagev1.Hello{Epoch: 2}}})
	if _, err := late.Recv(); status.Code(err) != codes.Unavailable {
		t.Fatalf("a session opened after the drain: %v; want Unavailable", err)
	}
}

// TestDrainCutAfterGrace: a commit stuck past the grace does not hold the
// shutdown: Drain returns at the grace and says so.
func TestDrainCutAfterGrace(t *testing.T) {
	var gs *gatedStore
	ta := newTestAgent(t, wrapped(&gs, newGatedStore), nil, nil)
	defer close(gs.release) // before the server's cleanup waits for the committer
	s, task := ta.session(t, 3)
	end := readToEnd(s)
	s.Send(batchOf(3, 1, task))
	<-gs.entered
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	d := ta.srv.Drain(ctx)
	if !d.Cut {
		t.Fatalf("drain %+v; want cut at the grace", d)
	}
	if e := <-end; len(e.acks) != 0 || status.Code(e.err) != codes.Unavailable {
		t.Fatalf("session got acks %v and ended %v; want no ack (still committing), Unavailable", e.acks, e.err)
	}
}

// TestHelloTimeout: a session that never sends its Hello is ended with
// DeadlineExceeded, not held until the connection closes.
func TestHelloTimeout(t *testing.T) {
	ta := newTestAgentWith(t, nil, nil, nil, func(c *Config) { c.HelloTimeout = 300 * time.Millisecond })
	sctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	mute, err := vantagev1.NewAgentServiceClient(ta.conn).Session(sctx)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case e := <-readToEnd(mute):
		if status.Code(e.err) != codes.DeadlineExceeded || !strings.Contains(e.err.Error(), "no hello") {
			t.Fatalf("the Hello-less session ended %v; want DeadlineExceeded naming the hello", e.err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the Hello-less session is still open 20s after a 300ms hello timeout")
	}
	// An agent that says hello in time is served as before.
	ta.session(t, 1)
}
