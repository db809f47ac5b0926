package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"

	"github.com/vantage-net/vantage/controller/api"
	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// serve serves both services on the one TLS port until ctx ends, then
// shuts down (shutdown).
func (c *controller) serve(ctx context.Context) error {
	transport := c.cfg.Transport.withDefaults()
	srv, hs := c.grpcServer(transport)
	lis, err := transport.listen(c.cfg.Listen)
	if err != nil {
		return fmt.Errorf("--listen: %w", err)
	}
	c.log.Info("controller listening", slog.String("addr", lis.Addr().String()), slog.String("ca_hash", c.ca.Hash()),
		slog.String("admin_token", c.adminPath), slog.Bool("admin_token_created", c.adminCreated),
		slog.String("data", c.cfg.DataDir), slog.Bool("approve_agents", c.cfg.ApproveAgents),
		slog.Duration("results_retention", c.cfg.ResultsRetention))
	stopWeb := func() {}
	if c.cfg.WebAddr != "" {
		if stopWeb, err = c.serveWeb(lis.Addr()); err != nil {
			lis.Close()
			srv.Stop()
			return err
		}
	}
	if c.cfg.Ready != nil {
		c.cfg.Ready(lis.Addr())
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(lis) }()

	select {
	case err := <-serveErr:
		stopWeb()
		srv.Stop()
		hs.Shutdown()
		c.ingest.CloseAll()
		c.ingest.Wait()
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	stopWeb() // the pages' calls end before the API's shutdown
	c.shutdown(srv, hs)
	if err := <-serveErr; err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return fmt.Errorf("serve: %w", err)
	}
	c.log.Info("controller stopped")
	return nil
}

// grpcServer is the gRPC server of AgentService, OperatorService,
// ExportService, health and reflection, with mTLS for agents and bearer tokens for operators on
// one port (VerifyClientCertIfGiven).
func (c *controller) grpcServer(transport TransportLimits) (*grpc.Server, *health.Server) {
	tlsCfg := &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{c.cert},
		ClientAuth:   tls.VerifyClientCertIfGiven,
		ClientCAs:    c.ca.Pool(),
	}
	srv := grpc.NewServer(append(transport.serverOptions(),
		grpc.Creds(credentials.NewTLS(tlsCfg)),
		grpc.MaxRecvMsgSize(MaxRecvMsgSize),
		grpc.ConnectionTimeout(10*time.Second),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: KeepaliveMinTime, PermitWithoutStream: true}),
		grpc.ChainUnaryInterceptor(api.DeadlineInterceptor(UnaryTimeout), c.ops.UnaryInterceptor()),
		grpc.ChainStreamInterceptor(publicStreamLimit(transport.MaxPublicStreams), c.ops.StreamInterceptor()),
	)...)
	vantagev1.RegisterAgentServiceServer(srv, c.ingest)
	vantagev1.RegisterOperatorServiceServer(srv, c.ops)
	vantagev1.RegisterExportServiceServer(srv, c.ops.Exporter())
	hs := health.NewServer()
	healthpb.RegisterHealthServer(srv, hs)
	for _, name := range []string{"", vantagev1.AgentService_ServiceDesc.ServiceName, vantagev1.OperatorService_ServiceDesc.ServiceName,
		vantagev1.ExportService_ServiceDesc.ServiceName} {
		hs.SetServingStatus(name, healthpb.HealthCheckResponse_SERVING)
	}
	reflection.Register(srv)
	return srv, hs
}

// shutdown stops serving in order: health says NOT_SERVING, agent sessions
// drain (their batches in progress committed and acked, within
// --shutdown-grace), verdict watchers end with Unavailable, then the gRPC
// server stops gracefully within --shutdown-timeout (10s), and hard after.
func (c *controller) shutdown(srv *grpc.Server, hs *health.Server) {
	c.log.Info("controller stopping")
	hs.Shutdown()
	drain(c.ingest, c.cfg.ShutdownGrace, c.log)
	c.verdicts.Close() // ends verdict watchers with Unavailable
	stopped := make(chan struct{})
	go func() {
		srv.GracefulStop()
		close(stopped)
	}()
	timeout := c.cfg.ShutdownTimeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	select {
	case <-stopped:
	case <-time.After(timeout):
		c.log.Warn("graceful stop timed out; closing connections", slog.Duration("timeout", timeout))
		srv.Stop()
		<-stopped
	}
	c.ingest.Wait()
}
