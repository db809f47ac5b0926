package main

import (
	"net"
	"strings"
	"time"

	"golang.org/x/net/netutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"

	"github.com/vantage-net/vantage/controller/api/rpcerr"
)

// Default TransportLimits (docs/OPERATIONS.md, "Operator API limits").
const (
	DefaultMaxConnections    = 4096
	DefaultMaxStreamsPerConn = 64
	DefaultMaxPublicStreams  = 256
	DefaultMaxConnIdle       = 5 * time.Minute
	// DefaultMaxConnAge is long: an agent's Session stream lives on one
	// connection and is cut when the age and its grace run out. The agent
	// reconnects at once and re-sends what was not acknowledged (the
	// results are deduplicated), so a cut loses nothing, but it costs a
	// TLS handshake, a Hello, an assignment and a moment the vantage is
	// not counted; once a day per agent is nothing. gRPC spreads it by
	// +-10% so that agents do not all reconnect together.
	DefaultMaxConnAge = 24 * time.Hour
	// DefaultMaxConnAgeGrace lets a call begun before the GOAWAY finish:
	// every unary call (UnaryTimeout) and a QueryResults stream
	// (api.DefaultQueryMaxAge) end before it.
	DefaultMaxConnAgeGrace = 10 * time.Minute
)

// TransportLimits bound what clients may hold before they authenticate:
// connections, streams per connection, health and reflection streams, and
// how long a connection lives. Zero fields take the defaults.
type TransportLimits struct {
	// MaxConnections is how many connections are served at once; more
	// wait in the kernel's accept queue until one closes.
	MaxConnections int
	// MaxStreamsPerConn is HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS.
	MaxStreamsPerConn uint32
	// MaxPublicStreams bounds the streams that need no credential (health
	// Watch, reflection) of all clients together; one more is refused with
	// RESOURCE_EXHAUSTED.
	MaxPublicStreams int
	// MaxConnIdle closes a connection with no stream for this long;
	// MaxConnAge sends GOAWAY to a connection this old, and MaxConnAgeGrace
	// later closes it with whatever streams it still has.
	MaxConnIdle     time.Duration
	MaxConnAge      time.Duration
	MaxConnAgeGrace time.Duration
}

func (l TransportLimits) withDefaults() TransportLimits {
	if l.MaxConnections <= 0 {
		l.MaxConnections = DefaultMaxConnections
	}
	if l.MaxStreamsPerConn == 0 {
		l.MaxStreamsPerConn = DefaultMaxStreamsPerConn
	}
	if l.MaxPublicStreams <= 0 {
		l.MaxPublicStreams = DefaultMaxPublicStreams
	}
	if l.MaxConnIdle <= 0 {
		l.MaxConnIdle = DefaultMaxConnIdle
	}
	if l.MaxConnAge <= 0 {
		l.MaxConnAge = DefaultMaxConnAge
	}
	if l.MaxConnAgeGrace <= 0 {
		l.MaxConnAgeGrace = DefaultMaxConnAgeGrace
	}
	return l
}

// serverOptions are the gRPC server options that enforce the limits.
func (l TransportLimits) serverOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.MaxConcurrentStreams(l.MaxStreamsPerConn),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 30 * time.Second, Timeout: 10 * time.Second,
			MaxConnectionIdle: l.MaxConnIdle, MaxConnectionAge: l.MaxConnAge, MaxConnectionAgeGrace: l.MaxConnAgeGrace}),
	}
}

// listen opens the listener, serving at most MaxConnections at once.
func (l TransportLimits) listen(addr string) (net.Listener, error) {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	return netutil.LimitListener(lis, l.MaxConnections), nil
}

// publicPrefixes are the services any client may call without a credential
// that hold a stream open.
var publicPrefixes = []string{"/grpc.health.v1.Health/", "/grpc.reflection."}

// publicStreamLimit refuses a health or reflection stream beyond the
// limit of all clients together.
func publicStreamLimit(most int) grpc.StreamServerInterceptor {
	slots := make(chan struct{}, most)
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		public := false
		for _, p := range publicPrefixes {
			public = public || strings.HasPrefix(info.FullMethod, p)
		}
		if !public {
			return handler(srv, ss)
		}
		select {
		case slots <- struct{}{}:
			defer func() { <-slots }()
			return handler(srv, ss)
		default:
			// The operator surface's table: these are the unauthenticated
			// streams of the shared port, not AgentService's.
			return rpcerr.Status(nil, info.FullMethod, rpcerr.Reasonf(rpcerr.ErrResourceExhausted,
				"%s: %d health and reflection streams are open, the limit of all clients together (--max-public-streams)", info.FullMethod, most))
		}
	}
}
