package web

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

	"google.golang.org/grpc/metadata"

	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// WatchHeartbeat is how often an idle event stream sends a comment, so
// that proxies and the browser keep it open.
const WatchHeartbeat = 15 * time.Second

// watch relays WatchVerdicts as server-sent events: "verdict" events first
// (the current verdicts), then a "transition" event for each change, each
// with the message as JSON. The page's EventSource reconnects by itself;
// the stream ends when the browser goes away or the controller stops.
func (s *Server) watch(w http.ResponseWriter, r *http.Request) {
	campaign := r.URL.Query().Get("campaign")
	if campaign == "" {
		writeError(w, http.StatusBadRequest, "campaign: required")
		return
	}
	level := vantagev1.Level_LEVEL_UNSPECIFIED
	if l := r.URL.Query().Get("level"); l != "" {
		v, ok := vantagev1.Level_value["LEVEL_"+strings.ToUpper(l)]
		if !ok {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("level: %q is not scope, network or target", l))
			return
		}
		level = vantagev1.Level(v)
	}
	flusher, ok := w.(http.Flusher)
	if !ok {
		writeError(w, http.StatusInternalServerError, "streaming unsupported")
		return
	}
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+sessionOf(r).secret)
	stream, err := s.cfg.Operator.WatchVerdicts(ctx, &vantagev1.WatchVerdictsRequest{Campaign: campaign, Level: level})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	// The first message says whether the call was accepted (a gRPC stream
	// reports its status at the first Recv).
	first, err := stream.Recv()
	if err != nil {
		s.fail(w, r, err)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)

	updates := make(chan *vantagev1.VerdictUpdate)
	done := make(chan error, 1)
	go func() { // owned by this handler: ends when ctx does (Recv fails)
		for {
			u, err := stream.Recv()
			if err != nil {
				done <- err
				return
			}
			select {
			case updates <- u:
			case <-ctx.Done():
				done <- ctx.Err()
				return
			}
		}
	}()
	defer func() { cancel(); <-done }()

	if !s.sendUpdate(w, first) {
		return
	}
	flusher.Flush()
	beat := time.NewTicker(WatchHeartbeat)
	defer beat.Stop()
	for {
		select {
		case u := <-updates:
			if !s.sendUpdate(w, u) {
				return
			}
		case <-beat.C:
			if _, err := fmt.Fprint(w, ": heartbeat\n\n"); err != nil {
				return
			}
		case err := <-done:
			fmt.Fprintf(w, "event: end\ndata: %q\n\n", err.Error())
			flusher.Flush()
			done <- err // for the deferred wait
			return
		case <-ctx.Done():
			return
		}
		flusher.Flush()
	}
}

// sendUpdate writes one update as an event; false when the browser is gone.
func (s *Server) sendUpdate(w http.ResponseWriter, u *vantagev1.VerdictUpdate) bool {
	event, msg := "verdict", any(u.GetVerdict())
	if tr := u.GetTransition(); tr != nil {
		event, msg = "transition", tr
	}
	var b []byte
	var err error
	switch m := msg.(type) {
	case *vantagev1.Verdict:
		b, err = marshal.Marshal(m)
	case *vantagev1.Transition:
		b, err = marshal.Marshal(m)
	}
	if err != nil {
		return false
	}
	_, err = fmt.Fprintf(w, "event: %s\ndata: %s\n\n", event, b)
	return err == nil
}
