package api

import (
	"context"
	"fmt"
	"sync"
	"time"

	"google.golang.org/grpc"

	"github.com/vantage-net/vantage/controller/api/rpcerr"
)

// Default StreamLimits.
const (
	DefaultQueriesPerToken = 4
	DefaultSendIdle        = 30 * time.Second
	DefaultQueryMaxAge     = 10 * time.Minute
	DefaultWatchMaxAge     = 24 * time.Hour
)

// StreamLimits bound what one operator token's queries may hold, so that
// a viewer that opens streams and never reads them cannot starve token
// checks, agent sessions or other operators. Zero fields take the
// defaults.
type StreamLimits struct {
	// QueriesPerToken is how many gated calls (queryMethods) one token may
	// have running at once; one more is refused with ResourceExhausted.
	QueriesPerToken int
	// SendIdle ends a stream (DeadlineExceeded) whose send has made no
	// progress this long: the client stopped reading.
	SendIdle time.Duration
	// QueryMaxAge ends a QueryResults or ListBgpUpdates stream
	// (DeadlineExceeded) this long after it began, however it is going.
	QueryMaxAge time.Duration
	// WatchMaxAge ends a WatchVerdicts or WatchBgp stream cleanly this
	// long after it began; clients reopen it (vantagectl watch does) and get the current
	// verdicts again.
	WatchMaxAge time.Duration
}

func (l StreamLimits) withDefaults() StreamLimits {
	if l.QueriesPerToken <= 0 {
		l.QueriesPerToken = DefaultQueriesPerToken
	}
	if l.SendIdle <= 0 {
		l.SendIdle = DefaultSendIdle
	}
	if l.QueryMaxAge <= 0 {
		l.QueryMaxAge = DefaultQueryMaxAge
	}
	if l.WatchMaxAge <= 0 {
		l.WatchMaxAge = DefaultWatchMaxAge
	}
	return l
}

// queryMethods are the calls that read many results or stream, and count
// against StreamLimits.QueriesPerToken.
var queryMethods = map[string]bool{
	"QueryResults":   true,
	"WatchVerdicts":  true,
	"Explain":        true,
	"Replay":         true,
	"ListBgpUpdates": true,
	"WatchBgp":       true,
	"ExportResults":  true,
	"ExportEpisodes": true,
	"ExportBgp":      true,
}

// tokenGate counts the gated calls each token has running.
type tokenGate struct {
	mu      sync.Mutex
	running map[string]int
	most    int
}

// enter admits one more call of token, or refuses it naming the limit.
func (g *tokenGate) enter(token, method string) (leave func(), err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.running[token] >= g.most {
		return nil, fmt.Errorf("%w: %s: token %q already has %d queries running (QueryResults, WatchVerdicts, Explain, Replay, ListBgpUpdates, WatchBgp, Export*), the limit per token (--max-queries-per-token); end one first",
			rpcerr.ErrResourceExhausted, method, token, g.running[token])
	}
	g.running[token]++
	return func() {
		g.mu.Lock()
		defer g.mu.Unlock()
		if g.running[token]--; g.running[token] == 0 {
			delete(g.running, token)
		}
	}, nil
}

// maxAge is a stream method's overall deadline (0: none: the export
// streams, which take as long as the data takes, bounded by SendIdle).
func (l StreamLimits) maxAge(method string) time.Duration {
	switch method {
	case "QueryResults", "ListBgpUpdates":
		return l.QueryMaxAge
	case "WatchVerdicts", "WatchBgp":
		return l.WatchMaxAge
	}
	return 0
}

// pacedStream is an operator stream whose sends run on its own sender
// goroutine, so that the handler can give up on a send that makes no
// progress (a client that does not read holds it on flow control) and
// return, which ends the stream and with it the blocked send.
//
// The sender is owned by the stream's interceptor: close stops it once
// the send under way (if any) returns, which it does at the latest when
// gRPC cancels the stream after the handler has returned; Server.Wait
// waits for it.
type pacedStream struct {
	grpc.ServerStream
	ctx   context.Context
	idle  time.Duration
	wg    *sync.WaitGroup
	msgs  chan any
	sent  chan error
	timer *time.Timer
	err   error // once set, every later send fails with it
}

func newPacedStream(ctx context.Context, ss grpc.ServerStream, idle time.Duration, wg *sync.WaitGroup) *pacedStream {
	return &pacedStream{ServerStream: ss, ctx: ctx, idle: idle, wg: wg}
}

func (p *pacedStream) Context() context.Context { return p.ctx }

// SendMsg hands m to the sender and waits for it to be sent, for the
// idle limit at most.
func (p *pacedStream) SendMsg(m any) error {
	if p.err != nil {
		return p.err
	}
	if p.msgs == nil {
		p.msgs, p.sent = make(chan any), make(chan error, 1)
		p.timer = time.NewTimer(p.idle)
		p.wg.Go(p.sender)
	} else {
		p.timer.Reset(p.idle)
	}
	p.msgs <- m // the sender is idle: the last send returned
	select {
	case err := <-p.sent:
		p.timer.Stop()
		return err
	case <-p.timer.C:
		p.err = fmt.Errorf("%w: no progress sending to the client for %v, the stream send idle limit (--stream-send-idle)", context.DeadlineExceeded, p.idle)
	case <-p.ctx.Done():
		p.err = fmt.Errorf("stream ended: %w", p.ctx.Err())
	}
	return p.err
}

func (p *pacedStream) sender() {
	for m := range p.msgs {
		p.sent <- p.ServerStream.SendMsg(m)
	}
}

// close stops the sender; the handler has returned.
func (p *pacedStream) close() {
	if p.msgs != nil {
		close(p.msgs)
		p.timer.Stop()
	}
}

// Wait waits for the stream senders of ended streams, after the gRPC
// server has stopped.
func (s *Server) Wait() { s.senders.Wait() }

// guardStream runs an authorized stream handler under the token's query
// limit, the method's overall deadline and the send idle limit.
func (s *Server) guardStream(ctx context.Context, method string, srv any, ss grpc.ServerStream, handler grpc.StreamHandler) error {
	if queryMethods[method] {
		leave, err := s.gate.enter(caller(ctx).Name, method)
		if err != nil {
			return err
		}
		defer leave()
	}
	if d := s.limits.maxAge(method); d > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d)
		defer cancel()
	}
	ps := newPacedStream(ctx, ss, s.limits.SendIdle, &s.senders)
	defer ps.close()
	return handler(srv, ps)
}

// guardUnary runs an authorized unary handler under the token's query
// limit.
func (s *Server) guardUnary(ctx context.Context, method string, req any, handler grpc.UnaryHandler) (any, error) {
	if queryMethods[method] {
		leave, err := s.gate.enter(caller(ctx).Name, method)
		if err != nil {
			return nil, err
		}
		defer leave()
	}
	return handler(ctx, req)
}
