package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/vantage-net/vantage/controller/ingest"
)

// serveDebug serves the Go profiler on a loopback address only: profiles
// reveal memory contents, so they must never be reachable from the network.
// It also serves /debug/ingest: the commit->ack histogram as JSON
// ({"ack_us_log2_buckets": [...]}, bucket i = [2^i, 2^(i+1)) us), which
// vantage-loadtest reads.
func serveDebug(addr string, log *slog.Logger, ackBuckets func() [ingest.AckBuckets]uint64) (stop func(), err error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("--debug-addr: %w", err)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return nil, fmt.Errorf("--debug-addr: %q is not a loopback address", host)
	}
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--debug-addr: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	mux.HandleFunc("/debug/ingest", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"ack_us_log2_buckets": ackBuckets()})
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Warn("debug server failed", slog.Any("error", err))
		}
	}()
	log.Info("debug server listening", slog.String("addr", lis.Addr().String()))
	return func() { srv.Close(); <-done }, nil
}
