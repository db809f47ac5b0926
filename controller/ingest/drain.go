package ingest

// Draining at shutdown: every batch a session has already taken from its
// stream is committed and acked, then the session ends with UNAVAILABLE;
// batches that arrive after the drain began are left unread (neither
// committed nor acked), so the agent sends them again to the next
// controller and nothing is stored twice.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// DefaultShutdownGrace bounds Drain in the controller: long enough for the
// commit in progress and the one queued behind it (each well under a
// second unless the store is overloaded, see DefaultMaxCommitLatency).
const DefaultShutdownGrace = 5 * time.Second

// errDraining: a message arrived after the drain began; it is not handled.
var errDraining = errors.New("controller draining: message left for the next session")

// DrainStats is what Drain did.
type DrainStats struct {
	// Sessions were live when the drain began; Left still were when it
	// ended (only when Cut).
	Sessions, Left int
	// Batches were committed and Acks sent after the drain began: the
	// work sessions had taken from their streams before it.
	Batches, Acks uint64
	Took          time.Duration
	// Cut: the grace ended first; the sessions left end when the gRPC
	// server stops, and the acks of batches still committing are lost
	// (those batches are stored, and deduplicated when sent again).
	Cut bool
}

// Drain stops new sessions and ends every live one once the batch it is
// handling, if any, is committed and acked; it returns when every session
// has ended or ctx ends (the grace), whichever comes first. The group
// committer keeps running until Wait. Call it before stopping the gRPC
// server.
func (s *Server) Drain(ctx context.Context) DrainStats {
	start := time.Now()
	s.mu.Lock()
	s.closing = true
	st := DrainStats{Sessions: len(s.sessions)}
	s.mu.Unlock()
	s.drainOnce.Do(func() {
		s.drainCtx = ctx
		close(s.drainc)
	})
	ended := make(chan struct{})
	go func() { // ends with the last session, which Wait also waits for
		s.wg.Wait()
		close(ended)
	}()
	select {
	case <-ended:
	case <-ctx.Done():
		st.Cut = true
	}
	s.mu.Lock()
	st.Left = len(s.sessions)
	s.mu.Unlock()
	st.Batches, st.Acks, st.Took = s.drainBatches.Load(), s.drainAcks.Load(), time.Since(start)
	return st
}

// draining reports whether Drain has begun.
func (s *Server) draining() bool {
	select {
	case <-s.drainc:
		return true
	default:
		return false
	}
}

// recvFirst reads a session's first message, unless the server drains
// first: a stream that has not said Hello must not hold up a shutdown.
func (s *Server) recvFirst(stream vantagev1.AgentService_SessionServer) (*vantagev1.AgentMessage, error) {
	type received struct {
		m   *vantagev1.AgentMessage
		err error
	}
	c := make(chan received, 1)
	s.wg.Add(1) // the handler is counted: Wait cannot have begun
	go func() { // ends with the stream, at the latest when the handler returns
		defer s.wg.Done()
		m, err := stream.Recv()
		c <- received{m, err}
	}()
	hello := time.NewTimer(s.cfg.HelloTimeout)
	defer hello.Stop()
	select {
	case r := <-c:
		return r.m, r.err
	case <-s.drainc:
		return nil, ErrShuttingDown
	case <-hello.C: // a stream that never says hello holds nothing for long
		return nil, fmt.Errorf("%w within %s of the session's start", ErrHelloTimeout, s.cfg.HelloTimeout)
	}
}

// begin marks the recv loop busy with a message it has read; false once
// the server drains: the message is then dropped unhandled.
func (ss *session) begin() bool {
	select {
	case ss.busy <- struct{}{}:
	case <-ss.s.drainc:
		return false
	}
	if ss.s.draining() {
		<-ss.busy
		return false
	}
	return true
}

// finish ends what begin began.
func (ss *session) finish() { <-ss.busy }

// drain waits until the recv loop is between messages and keeps it there,
// so that everything it took is committed and its ack queued, then ends
// the session. After the grace it ends the session anyway.
func (ss *session) drain(ctx context.Context) error {
	select {
	case ss.busy <- struct{}{}: // never released: the loop handles nothing more
	case <-ss.s.drainCtx.Done():
		ss.s.log.Warn("agent session cut at shutdown: its batch was still committing when the grace ended",
			slog.String("agent", ss.agent.ID))
	case <-ctx.Done():
	}
	return ErrShuttingDown
}

// sentDuringDrain counts an Ack sent after the drain began.
func (ss *session) sentDuringDrain(m *vantagev1.ControllerMessage) {
	if m.GetAck() != nil && ss.s.draining() {
		ss.s.drainAcks.Add(1)
	}
}
