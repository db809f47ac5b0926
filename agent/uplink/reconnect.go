package uplink

// Reconnection: Run's loop, the retry-after an overloaded controller asks
// for, and the backoff between sessions that opened and failed.

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Run keeps a session open until ctx ends, reconnecting with backoff. On
// shutdown it flushes what it can and waits briefly for the acks.
func (c *Client) Run(ctx context.Context) error {
	defer func() { c.conn.Close() }()
	b := newBackoff(c.cfg.BackoffMin, c.cfg.BackoffMax)
	for {
		opened, err := c.session(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, errRenewed) {
			// A new connection, so the next session presents the new
			// certificate (a stream on the old one would reuse its TLS).
			c.redial()
			b.reset()
			continue
		}
		if errors.Is(err, errOpenTimeout) {
			// gRPC keeps trying the connection at its own pace: wait on.
			c.log.Warn("controller unreachable; still trying", slog.Any("error", err))
			continue
		}
		if !opened.IsZero() && time.Since(opened) > 2*c.cfg.BackoffMax {
			b.reset() // the session was healthy for a while
		}
		d := b.next()
		if ra := time.Duration(c.retryAfter.Swap(0)); ra > 0 {
			d = max(d, ra)
		}
		c.log.Warn("session ended; reconnecting", slog.String("error", errString(err)), slog.Duration("retry_in", d))
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(d):
		}
	}
}

// RetryAfter is the delay a RESOURCE_EXHAUSTED status asks for in a
// RetryInfo detail (0 when none), capped at MaxRetryAfter.
func RetryAfter(err error) time.Duration {
	st, ok := status.FromError(err)
	if !ok || st.Code() != codes.ResourceExhausted {
		return 0
	}
	for _, d := range st.Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok && ri.GetRetryDelay() != nil {
			return min(max(ri.GetRetryDelay().AsDuration(), 0), MaxRetryAfter)
		}
	}
	return 0
}

// trailerRetryAfter reads the retry-after-ms trailer of a finished stream.
func trailerRetryAfter(stream grpc.ClientStream) time.Duration {
	for _, v := range stream.Trailer().Get(RetryAfterTrailer) {
		if ms, err := strconv.ParseUint(strings.TrimSpace(v), 10, 32); err == nil {
			return min(time.Duration(ms)*time.Millisecond, MaxRetryAfter)
		}
	}
	return 0
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// backoff is exponential with full jitter in [d/2, d).
type backoff struct {
	min, max, cur time.Duration
}

func newBackoff(lo, hi time.Duration) *backoff { return &backoff{min: lo, max: hi, cur: lo} }

func (b *backoff) reset() { b.cur = b.min }

func (b *backoff) next() time.Duration {
	d := b.cur
	b.cur = min(b.cur*2, b.max)
	half := d / 2
	return half + rand.N(half+1)
}
