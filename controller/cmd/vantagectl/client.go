package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"strings"
	"unicode"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// defaultPort is the controller's one TLS port; an address without a port
// gets it.
const defaultPort = "7443"

// maxRecvBytes bounds one response; Explain and large result pages can pass
// gRPC's 4 MiB default.
const maxRecvBytes = 64 << 20

// bearer sends the operator token as "authorization: Bearer <token>" on every
// call. It refuses to travel without TLS.
type bearer string

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(b)}, nil
}

func (bearer) RequireTransportSecurity() bool { return true }

// connSettings is everything needed to reach the controller, after flags and
// environment have been merged.
type connSettings struct {
	controller string
	caPath     string
	token      string
}

// dial opens a lazy client connection; nothing is sent until the first call.
func dial(s connSettings) (*grpc.ClientConn, vantagev1.OperatorServiceClient, error) {
	target, err := controllerTarget(s.controller)
	if err != nil {
		return nil, nil, err
	}
	if s.caPath == "" {
		return nil, nil, usageErrorf("no CA certificate: pass --ca or set VANTAGE_CA to the controller's ca.pem (it is in the controller's --data directory)")
	}
	if s.token == "" {
		return nil, nil, usageErrorf("no token: pass --token or --token-file, or set VANTAGE_TOKEN (the admin token is in <data>/admin.token)")
	}
	if err := checkToken(s.token); err != nil {
		return nil, nil, err
	}
	pemBytes, err := os.ReadFile(s.caPath)
	if err != nil {
		return nil, nil, fmt.Errorf("read CA certificate: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemBytes) {
		return nil, nil, fmt.Errorf("CA certificate %s: no PEM certificate found", s.caPath)
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: pool}
	conn, err := grpc.NewClient(target,
		grpc.WithTransportCredentials(credentials.NewTLS(cfg)),
		grpc.WithPerRPCCredentials(bearer(s.token)),
		grpc.WithUserAgent("vantagectl"),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxRecvBytes)),
	)
	if err != nil {
		return nil, nil, fmt.Errorf("controller %q: %w", s.controller, err)
	}
	return conn, vantagev1.NewOperatorServiceClient(conn), nil
}

// controllerTarget turns "host", "host:port", "[::1]" or a gRPC target URI
// ("dns:///host:port") into a target grpc.NewClient accepts.
func controllerTarget(addr string) (string, error) {
	if addr == "" {
		return "", usageErrorf("--controller: empty address")
	}
	if strings.Contains(addr, "://") {
		return addr, nil
	}
	if _, _, err := net.SplitHostPort(addr); err == nil {
		return addr, nil
	}
	host := strings.TrimSuffix(strings.TrimPrefix(addr, "["), "]")
	if host == "" || strings.ContainsAny(host, "[]/ ") {
		return "", usageErrorf("--controller: %q is not host[:port]", addr)
	}
	return net.JoinHostPort(host, defaultPort), nil
}

// checkToken rejects tokens that would corrupt the metadata header.
func checkToken(tok string) error {
	for _, r := range tok {
		if unicode.IsSpace(r) || !unicode.IsPrint(r) || r > unicode.MaxASCII {
			return usageErrorf("token: contains whitespace or non-printable characters")
		}
	}
	return nil
}
