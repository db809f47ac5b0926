package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// serveMetrics serves /metrics (Prometheus exposition) over plain HTTP on
// its own listener. Unlike --debug-addr it may listen on any address:
// metrics are meant to be scraped from another host. It has no
// authentication; what it shows (campaign, network and target names and
// their states, counts) is for the operators' network only, so bind it to
// an internal address or filter the port. stop closes the listener and
// waits for the server's goroutine.
func serveMetrics(addr string, log *slog.Logger, h http.Handler) (bound net.Addr, stop func(), err error) {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, nil, fmt.Errorf("--metrics-addr: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", h)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, WriteTimeout: 30 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Warn("metrics server failed", slog.Any("error", err))
		}
	}()
	log.Info("metrics server listening", slog.String("addr", lis.Addr().String()), slog.String("path", "/metrics"))
	return lis.Addr(), func() { srv.Close(); <-done }, nil
}
