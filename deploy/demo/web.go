package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The dashboard in the lab. The controller serves it on its namespace's
// loopback (WebPort), so nothing outside the lab can reach it; the
// harness forwards a host loopback port into the namespace, as a proxy in
// front of a real controller would. A browser on the host (Chromium in
// the browser tests, a person after `make demo DASHBOARD=1`) opens
// WebURL.

// WebPort is where the controller's dashboard listens, on the loopback of
// the controller's namespace.
const WebPort = 8443

// Web modes of Config.Web.
const (
	// WebHTTPS serves the dashboard over HTTPS with the controller's
	// certificate (the controller's default).
	WebHTTPS = "https"
	// WebPlain serves plain HTTP (--web-plain; loopback only), so a person's
	// browser on the host opens it without a certificate warning.
	WebPlain = "http"
)

// webArgs are the controller's dashboard flags for Config.Web.
func (h *Harness) webArgs() []string {
	switch h.cfg.Web {
	case WebHTTPS:
		return []string{"--web-addr", net.JoinHostPort("127.0.0.1", strconv.Itoa(WebPort))}
	case WebPlain:
		return []string{"--web-addr", net.JoinHostPort("127.0.0.1", strconv.Itoa(WebPort)), "--web-plain"}
	}
	return nil
}

// WebURL is the dashboard's address on the host ("" when Config.Web is
// off).
func (h *Harness) WebURL() string {
	if h.web == nil {
		return ""
	}
	return h.cfg.Web + "://" + h.web.lis.Addr().String()
}

// forward is a host loopback listener whose connections are copied to a
// socket dialled inside a namespace. Close stops accepting, ends every
// open connection and waits for their goroutines.
type forward struct {
	lis  net.Listener
	dial func(ctx context.Context, addr string) (net.Conn, error)
	to   string
	log  *slog.Logger

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// startWebForward listens on 127.0.0.1 (port 0: any free one, so
// concurrent labs never clash) and forwards to the dashboard.
func (h *Harness) startWebForward(port int) error {
	lis, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return fmt.Errorf("dashboard forward: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	f := &forward{lis: lis, dial: namespaceDialer(h.Lab.Namespace("controller")),
		to: net.JoinHostPort("127.0.0.1", strconv.Itoa(WebPort)), log: h.log, ctx: ctx, cancel: cancel}
	f.wg.Add(1)
	go f.accept()
	h.web = f
	return nil
}

func (f *forward) accept() {
	defer f.wg.Done()
	for {
		c, err := f.lis.Accept()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				f.log.Warn("dashboard forward: accept", slog.Any("error", err))
			}
			return
		}
		f.wg.Add(1)
		go f.serve(c)
	}
}

// serve copies both ways until either side closes, or Close.
func (f *forward) serve(c net.Conn) {
	defer f.wg.Done()
	defer c.Close()
	dctx, cancel := context.WithTimeout(f.ctx, 5*time.Second)
	up, err := f.dial(dctx, f.to)
	cancel()
	if err != nil {
		f.log.Warn("dashboard forward: dial", slog.String("to", f.to), slog.Any("error", err))
		return
	}
	defer up.Close()
	stop := context.AfterFunc(f.ctx, func() { c.Close(); up.Close() })
	defer stop()
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		if _, err := io.Copy(dst, src); err != nil && !errors.Is(err, net.ErrClosed) && !strings.Contains(err.Error(), "reset by peer") {
			f.log.Debug("dashboard forward: copy", slog.Any("error", err))
		}
		if tc, ok := dst.(*net.TCPConn); ok {
			tc.CloseWrite()
		}
		done <- struct{}{}
	}
	go pipe(up, c)
	go pipe(c, up)
	<-done
	<-done
}

// Close stops the forward and waits for its connections to end.
func (f *forward) Close() error {
	err := f.lis.Close()
	f.cancel()
	f.wg.Wait()
	return err
}

// OperatorToken creates an operator token with this name and role
// ("viewer", "operator" or "admin") as a controller's operator would: the
// controller binary's operator-token command on its data directory, beside
// the running controller (SQLite allows it; the API reads tokens from the
// store on each call).
func (h *Harness) OperatorToken(ctx context.Context, name, role string) (string, error) {
	out, err := exec.CommandContext(ctx, filepath.Join(h.cfg.BinDir, "vantage-controller"), "operator-token",
		"--data", h.dataDir, "--name", name, "--role", role).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return "", fmt.Errorf("operator-token %s: %w: %s", name, err, strings.TrimSpace(string(ee.Stderr)))
		}
		return "", fmt.Errorf("operator-token %s: %w", name, err)
	}
	return strings.TrimSpace(string(out)), nil
}
