package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// errStreamEnded is a watch stream the controller closed cleanly, e.g. on
// its shutdown.
var errStreamEnded = errors.New("watch: the controller ended the stream")

// watcher follows WatchVerdicts until Ctrl-C. Once a stream has worked (it
// delivered something, or stayed open for the settle time), a broken one is
// reopened with exponential backoff and a notice on stderr; a first
// connection that fails is an error at once, since retrying a wrong address,
// CA or token forever helps nobody.
type watcher struct {
	app       *app
	client    vantagev1.OperatorServiceClient
	req       *vantagev1.WatchVerdictsRequest
	reconnect bool

	// known is the last state seen per verdict id, so that a reconnect
	// prints only the verdicts that changed while the stream was down.
	known        map[string]vantagev1.State
	tablePrinted bool
	connected    bool
	// lost is set while reconnecting, until a stream works again.
	lost bool
}

func (w *watcher) run(ctx context.Context) error {
	w.known = make(map[string]vantagev1.State)
	delay := w.app.env.reconnectBase
	for {
		got, err := w.once(ctx)
		if ctx.Err() != nil {
			return nil // Ctrl-C is how a watch ends
		}
		if got {
			delay = w.app.env.reconnectBase
		}
		if !w.reconnect || !w.connected || !retryable(err) {
			return err
		}
		w.lost = true
		fmt.Fprintf(w.app.env.stderr, "vantagectl: watch: stream lost (%s); reconnecting in %s\n", describe(err), exact(delay))
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		delay = min(delay*2, w.app.env.reconnectMax)
	}
}

// retryable says whether a broken stream is worth reopening.
func retryable(err error) bool {
	if errors.Is(err, errStreamEnded) {
		return true
	}
	switch status.Code(err) {
	case codes.Unavailable, codes.Aborted:
		return true
	}
	return false
}

func describe(err error) string {
	if st, ok := status.FromError(err); ok {
		_, msg := statusMessage(st)
		return msg
	}
	return err.Error()
}

type received struct {
	u   *vantagev1.VerdictUpdate
	err error
}

// once runs one stream until it breaks or ctx ends. got reports whether it
// delivered anything.
func (w *watcher) once(ctx context.Context) (got bool, err error) {
	ch, stop, err := w.open(ctx)
	if err != nil {
		return false, err
	}
	defer stop()
	s := w.newStreamState()
	defer s.settle.Stop()
	for {
		select {
		case <-ctx.Done():
			if s.buffering && len(s.pending) > 0 {
				_ = s.flush() // Ctrl-C before the table: still show it
			}
			return got, ctx.Err()
		case <-s.settleC:
			// The stream has stayed open: the address, CA and token work,
			// so a later break is worth reconnecting even if there were no
			// verdicts to send.
			w.up()
			s.settleC = nil
			if s.buffering {
				if err := s.flush(); err != nil {
					return got, err
				}
			}
		case r := <-ch:
			if r.err != nil {
				return got, s.end(r.err)
			}
			got = true
			if err := s.show(r.u); err != nil {
				return got, err
			}
		}
	}
}

// open starts one WatchVerdicts stream and its receive loop. The loop is
// owned by once: stop cancels it and waits for it.
func (w *watcher) open(ctx context.Context) (<-chan received, func(), error) {
	sctx, cancel := context.WithCancel(ctx)
	stream, err := w.client.WatchVerdicts(sctx, w.req)
	if err != nil {
		cancel()
		return nil, nil, err
	}
	ch := make(chan received)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			u, err := stream.Recv()
			select {
			case ch <- received{u: u, err: err}:
			case <-sctx.Done():
				return
			}
			if err != nil {
				return
			}
		}
	}()
	stop := func() {
		cancel()
		<-done
	}
	return ch, stop, nil
}

// streamState is what once keeps for one stream. In table mode the current
// verdicts are gathered into one table (pending), printed when the first
// transition arrives or when the stream has been quiet for the settle time.
type streamState struct {
	w         *watcher
	buffering bool
	pending   []*vantagev1.Verdict
	settle    *time.Timer
	settleC   <-chan time.Time
	p         printer
}

func (w *watcher) newStreamState() *streamState {
	s := &streamState{w: w, buffering: !w.app.json() && !w.tablePrinted, p: w.app.printer()}
	s.settle = time.NewTimer(w.app.env.settle)
	s.settleC = s.settle.C
	if !s.buffering && w.connected && !w.lost {
		s.settle.Stop()
		s.settleC = nil
	}
	return s
}

// flush prints the gathered table and stops gathering.
func (s *streamState) flush() error {
	s.buffering, s.settleC = false, nil
	s.w.tablePrinted = true
	if len(s.pending) == 0 {
		_, err := fmt.Fprintln(s.w.app.env.stdout, "No verdicts yet; waiting for transitions.")
		return err
	}
	err := s.p.verdicts(s.w.app.env.stdout, s.pending)
	s.pending = nil
	return err
}

// end handles the stream breaking with err: the gathered table still
// shows, and a clean end (EOF) is errStreamEnded.
func (s *streamState) end(err error) error {
	if s.buffering {
		if err := s.flush(); err != nil {
			return err
		}
	}
	if errors.Is(err, io.EOF) {
		s.w.connected = true
		return errStreamEnded
	}
	return err
}

// show handles one update: JSON as it comes, or a verdict gathered into
// the table, or a line for a verdict that changed and for a transition.
func (s *streamState) show(u *vantagev1.VerdictUpdate) error {
	w := s.w
	w.up()
	s.p = w.app.printer() // ages are relative to now, which moves on
	if w.app.json() {
		w.remember(u)
		return writeJSON(w.app.env.stdout, u, false)
	}
	switch x := u.GetUpdate().(type) {
	case *vantagev1.VerdictUpdate_Verdict:
		if s.buffering {
			w.remember(u)
			s.pending = append(s.pending, x.Verdict)
			s.settle.Reset(w.app.env.settle)
			s.settleC = s.settle.C
			return nil
		}
		if old, ok := w.known[x.Verdict.GetId()]; ok && old == x.Verdict.GetState() {
			return nil // unchanged while we were away
		}
		w.remember(u)
		_, err := fmt.Fprintln(w.app.env.stdout, s.p.verdictLine(x.Verdict))
		return err
	case *vantagev1.VerdictUpdate_Transition:
		if s.buffering {
			if err := s.flush(); err != nil {
				return err
			}
		}
		w.remember(u)
		_, err := fmt.Fprintln(w.app.env.stdout, s.p.transitionLine(x.Transition))
		return err
	}
	return nil
}

// up notes that a stream works, and says so after a reconnect.
func (w *watcher) up() {
	w.connected = true
	if w.lost {
		w.lost = false
		fmt.Fprintln(w.app.env.stderr, "vantagectl: watch: reconnected")
	}
}

// remember records the state an update leaves its verdict in.
func (w *watcher) remember(u *vantagev1.VerdictUpdate) {
	switch x := u.GetUpdate().(type) {
	case *vantagev1.VerdictUpdate_Verdict:
		w.known[x.Verdict.GetId()] = x.Verdict.GetState()
	case *vantagev1.VerdictUpdate_Transition:
		id := x.Transition.GetVerdictId()
		if id == "" {
			id = x.Transition.GetCampaign() + "/" + levelName(x.Transition.GetLevel()) + "/" + x.Transition.GetSubject()
		}
		w.known[id] = x.Transition.GetTo()
	}
}
