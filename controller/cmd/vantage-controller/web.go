package main

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/vantage-net/vantage/controller/web"
	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// serveWeb serves the dashboard on --web-addr: HTTPS with the controller's
// certificate, or plain HTTP with --web-plain on loopback only. It is a
// client of the controller's own OperatorService on grpcAddr, over TLS on
// loopback, so every page passes the API's authentication and role table.
// stop closes the listener, waits for the server's goroutine and closes
// the client.
func (c *controller) serveWeb(grpcAddr net.Addr) (stop func(), err error) {
	if c.cfg.WebPlain {
		if err := web.CheckPlain(c.cfg.WebAddr); err != nil {
			return nil, fmt.Errorf("--web-plain: %w", err)
		}
	}
	conn, err := grpc.NewClient(selfAddr(grpcAddr), grpc.WithTransportCredentials(
		credentials.NewTLS(&tls.Config{RootCAs: c.ca.Pool(), ServerName: "localhost", MinVersion: tls.VersionTLS13})))
	if err != nil {
		return nil, fmt.Errorf("--web-addr: dial the controller: %w", err)
	}
	lis, err := net.Listen("tcp", c.cfg.WebAddr)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("--web-addr: %w", err)
	}
	scheme := "http"
	if !c.cfg.WebPlain {
		scheme = "https"
		lis = tls.NewListener(lis, &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{c.cert}})
	}
	h := web.New(web.Config{Operator: vantagev1.NewOperatorServiceClient(conn), Logger: c.log})
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 30 * time.Second,
		IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 64 << 10, ErrorLog: slog.NewLogLogger(c.log.Handler(), slog.LevelWarn)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			c.log.Warn("web server failed", slog.Any("error", err))
		}
	}()
	c.log.Info("dashboard listening", slog.String("url", scheme+"://"+lis.Addr().String()+"/"))
	if c.cfg.WebReady != nil {
		c.cfg.WebReady(lis.Addr())
	}
	return func() { srv.Close(); <-done; conn.Close() }, nil
}

// selfAddr is where the controller dials its own gRPC listener: loopback
// when it listens on every address, else the one address it listens on.
func selfAddr(grpcAddr net.Addr) string {
	ta, ok := grpcAddr.(*net.TCPAddr)
	if !ok {
		return grpcAddr.String()
	}
	host := "127.0.0.1"
	if ta.IP != nil && !ta.IP.IsUnspecified() {
		host = ta.IP.String()
	}
	return net.JoinHostPort(host, strconv.Itoa(ta.Port))
}
