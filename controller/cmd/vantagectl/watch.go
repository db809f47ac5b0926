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
		return st.Code().String() + ": " + st.Message()
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
	sctx, cancel := context.WithCancel(ctx)
	stream, err := w.client.WatchVerdicts(sctx, w.req)
	if err != nil {
		cancel()
		return false, err
	}
	// The receive loop is owned by once: cancel stops it, done waits for it.
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
	defer func() {
		cancel()
		<-done
	}()

	// In table mode the current verdicts are gathered into one table, printed
	// when the first transition arrives or when the stream has been quiet
	// for the settle time.
	buffering := !w.app.json() && !w.tablePrinted
	var pending []*vantagev1.Verdict
	settle := time.NewTimer(w.app.env.settle)
	defer settle.Stop()
	settleC := settle.C
	if !buffering && w.connected && !w.lost {
		settle.Stop()
		settleC = nil
	}
	p := w.app.printer()
	flush := func() error {
		buffering, settleC = false, nil
		w.tablePrinted = true
		if len(pending) == 0 {
			_, err := fmt.Fprintln(w.app.env.stdout, "No verdicts yet; waiting for transitions.")
			return err
		}
		err := p.verdicts(w.app.env.stdout, pending)
		pending = nil
		return err
	}
	for {
		select {
		case <-ctx.Done():
			if buffering && len(pending) > 0 {
				_ = flush() // Ctrl-C before the table: still show it
			}
			return got, ctx.Err()
		case <-settleC:
			// The stream has stayed open: the address, CA and token work,
			// so a later break is worth reconnecting even if there were no
			// verdicts to send.
			w.up()
			settleC = nil
			if buffering {
				if err := flush(); err != nil {
					return got, err
				}
			}
		case r := <-ch:
			if r.err != nil {
				if buffering {
					if err := flush(); err != nil {
						return got, err
					}
				}
				if errors.Is(r.err, io.EOF) {
					w.connected = true
					return got, errStreamEnded
				}
				return got, r.err
			}
			got = true
			w.up()
			p = w.app.printer() // ages are relative to now, which moves on
			if w.app.json() {
				w.remember(r.u)
				if err := writeJSON(w.app.env.stdout, r.u, false); err != nil {
					return got, err
				}
				continue
			}
			switch u := r.u.GetUpdate().(type) {
			case *vantagev1.VerdictUpdate_Verdict:
				if buffering {
					w.remember(r.u)
					pending = append(pending, u.Verdict)
					settle.Reset(w.app.env.settle)
					settleC = settle.C
					continue
				}
				if old, ok := w.known[u.Verdict.GetId()]; ok && old == u.Verdict.GetState() {
					continue // unchanged while we were away
				}
				w.remember(r.u)
				if _, err := fmt.Fprintln(w.app.env.stdout, p.verdictLine(u.Verdict)); err != nil {
					return got, err
				}
			case *vantagev1.VerdictUpdate_Transition:
				if buffering {
					if err := flush(); err != nil {
						return got, err
					}
				}
				w.remember(r.u)
				if _, err := fmt.Fprintln(w.app.env.stdout, p.transitionLine(u.Transition)); err != nil {
					return got, err
				}
			}
		}
	}
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
