package reliability

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"

	"github.com/vantage-net/vantage/deploy/demo"
	"github.com/vantage-net/vantage/internal/testpki"
	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// vkController is a real vantage-controller process on loopback (no lab):
// the controller-side negative cases need nothing else. It can be killed
// and started again on the same address and data directory.
type vkController struct {
	addr, dir string
	caPEM     []byte
	admin     string
	args      []string
	logPath   string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

func startVKController(t *testing.T, extra ...string) *vkController {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	c := &vkController{addr: addr, dir: filepath.Join(t.TempDir(), "data"), logPath: filepath.Join(t.TempDir(), "controller.log")}
	c.args = append([]string{"--data", c.dir, "--listen", addr}, extra...)
	t.Cleanup(func() {
		c.stop()
		if t.Failed() {
			if b, err := os.ReadFile(c.logPath); err == nil {
				t.Logf("---- controller.log (tail) ----\n%s", tailOf(string(b), 3000))
			}
		}
	})
	c.start(t)
	return c
}

// spawn starts the controller process, its output appended to c.logPath,
// and returns a channel closed when it exits.
func (c *vkController) spawn(t *testing.T) <-chan struct{} {
	t.Helper()
	logf, err := os.OpenFile(c.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(filepath.Join(labBinaries(t), "vantage-controller"), c.args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	// StartChild: the forking thread lives as long as the child, so the
	// lab tests ending threads cannot send it the Pdeathsig.
	waited, err := demo.StartChild(cmd)
	logf.Close()
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { <-waited; close(done) }()
	c.mu.Lock()
	c.cmd, c.done = cmd, done
	c.mu.Unlock()
	return done
}

// start runs the controller process and waits until it serves.
func (c *vkController) start(t *testing.T) {
	t.Helper()
	done := c.spawn(t)
	deadline := time.Now().Add(20 * time.Second)
	for {
		ca, e1 := os.ReadFile(filepath.Join(c.dir, "ca.pem"))
		tok, e2 := os.ReadFile(filepath.Join(c.dir, "admin.token"))
		if e1 == nil && e2 == nil && len(ca) > 0 && len(tok) > 0 {
			c.caPEM, c.admin = ca, strings.TrimSpace(string(tok))
			break
		}
		select {
		case <-done:
			t.Fatalf("controller exited at start")
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("controller did not start within 20s")
		}
	}
	// Wait until it serves.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := c.ops(t).ListAgents(c.bearer(ctx, c.admin), &vantagev1.ListAgentsRequest{}, grpc.WaitForReady(true)); err != nil {
		t.Fatalf("controller not serving: %v", err)
	}
}

// kill ends the controller with SIGKILL and waits until it is gone.
func (c *vkController) kill(t *testing.T) {
	t.Helper()
	c.mu.Lock()
	cmd, done := c.cmd, c.done
	c.mu.Unlock()
	if err := cmd.Process.Kill(); err != nil {
		t.Fatalf("kill controller: %v", err)
	}
	<-done
}

// stop ends the controller with SIGTERM (SIGKILL after 15 s).
func (c *vkController) stop() {
	c.mu.Lock()
	cmd, done := c.cmd, c.done
	c.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
}

func (c *vkController) tls(certs ...tls.Certificate) *tls.Config {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(c.caPEM)
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS13, Certificates: certs, ServerName: "127.0.0.1"}
}

func (c *vkController) dial(t *testing.T, certs ...tls.Certificate) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient("passthrough:///"+c.addr, grpc.WithTransportCredentials(credentials.NewTLS(c.tls(certs...))))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func (c *vkController) ops(t *testing.T, certs ...tls.Certificate) vantagev1.OperatorServiceClient {
	return vantagev1.NewOperatorServiceClient(c.dial(t, certs...))
}

func (c *vkController) bearer(ctx context.Context, tok string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tok)
}

// vkAgent is an enrolled agent's identity.
type vkAgent struct {
	id   string
	cert tls.Certificate
	key  *ecdsa.PrivateKey
}

func (c *vkController) joinToken(t *testing.T, req *vantagev1.CreateJoinTokenRequest) string {
	t.Helper()
	resp, err := c.ops(t).CreateJoinToken(c.bearer(context.Background(), c.admin), req)
	if err != nil {
		t.Fatalf("CreateJoinToken: %v", err)
	}
	return resp.GetToken()
}

func (c *vkController) enroll(t *testing.T, token, name, cn string) (vkAgent, error) {
	t.Helper()
	key, csr := testpki.AgentCSR(t, cn)
	resp, err := vantagev1.NewAgentServiceClient(c.dial(t)).Enroll(context.Background(),
		&vantagev1.EnrollRequest{JoinToken: token, CsrDer: csr, Name: name})
	if err != nil {
		return vkAgent{}, err
	}
	cert, err := tls.X509KeyPair(resp.GetCertificatePem(), testpki.KeyPEM(t, key))
	if err != nil {
		t.Fatal(err)
	}
	return vkAgent{id: resp.GetAgentId(), cert: cert, key: key}, nil
}

// selfCA makes a throwaway CA and signs a client certificate for cn with
// it (or with the given CA cert and key).
func signClient(t *testing.T, caCert *x509.Certificate, caKey any, cn string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), testpki.KeyPEM(t, key))
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

func otherCA(t *testing.T) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "not the vantage CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert, key
}

// controllerCA reads the controller's own CA key from its data directory:
// the "stolen CA key" case, to forge certificates with chosen CNs.
func (c *vkController) controllerCA(t *testing.T) (*x509.Certificate, any) {
	t.Helper()
	pair, err := tls.LoadX509KeyPair(filepath.Join(c.dir, "ca.pem"), filepath.Join(c.dir, "ca-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	return cert, pair.PrivateKey
}

func hello(epoch uint64) *vantagev1.AgentMessage {
	return &vantagev1.AgentMessage{Msg: &vantagev1.AgentMessage_Hello{Hello: &vantagev1.Hello{AgentVersion: "vk-test", Epoch: epoch}}}
}

// sessionErr opens a Session with the given client certificate, sends a
// Hello, and returns how the stream ends (nil if an Assignment came first).
func (c *vkController) sessionErr(t *testing.T, certs ...tls.Certificate) error {
	t.Helper()
	return c.sessionErrTLS(t, c.tls(certs...))
}

// forced presents cert whatever CAs the server asks for (Go's client
// otherwise withholds a certificate the server would not accept).
func (c *vkController) forced(cert tls.Certificate) *tls.Config {
	cfg := c.tls()
	cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert, nil }
	return cfg
}

func (c *vkController) sessionErrTLS(t *testing.T, cfg *tls.Config) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	conn, err := grpc.NewClient("passthrough:///"+c.addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	s, err := vantagev1.NewAgentServiceClient(conn).Session(ctx)
	if err != nil {
		return err
	}
	if err := s.Send(hello(1)); err != nil {
		_, err = s.Recv()
		return err
	}
	for {
		m, err := s.Recv()
		if err != nil {
			return err
		}
		if m.GetAssignment() != nil {
			return nil
		}
	}
}

func fileMode(t *testing.T, path string) os.FileMode {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

func fmtCode(err error) string {
	if err == nil {
		return "OK"
	}
	return fmt.Sprint(statusCode(err))
}

func execOut(bin string, args ...string) (string, error) {
	out, err := exec.Command(bin, args...).Output()
	return string(out), err
}

func tailOf(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "..." + s[len(s)-n:]
}
