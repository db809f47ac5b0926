package lab

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"
)

// ServicePort is the TCP port of the service in every network namespace.
const ServicePort = 80

// services owns the accept loops of the TCP services: one listener per
// network, each with one goroutine, stopped by close.
type services struct {
	lns []net.Listener
	wg  sync.WaitGroup
}

// StartServices opens a TCP listener on port 80 (all host addresses, IPv4
// and IPv6) inside every network namespace and serves it until Down: each
// connection gets a one-line banner and is closed. Up calls it unless
// Options.NoServices is set.
func (l *Lab) StartServices() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.down {
		return fmt.Errorf("%w: lab %s is down", ErrNotUp, l.prefix)
	}
	if l.svc != nil {
		return errors.New("services already running")
	}
	s := &services{}
	for _, n := range l.topo.names(RoleNetwork) {
		var ln net.Listener
		err := onThreadIn(l.ns[n], func() error {
			var err error
			ln, err = net.Listen("tcp", fmt.Sprintf(":%d", ServicePort))
			return err
		})
		if err != nil {
			s.close()
			return fmt.Errorf("service in %s: %w", l.Namespace(n), err)
		}
		s.lns = append(s.lns, ln)
		banner := []byte("vantage-lab " + n + "\r\n")
		s.wg.Go(func() { serve(ln, banner) })
	}
	l.svc = s
	l.log.Debug("services started", slog.Int("networks", len(s.lns)), slog.Int("port", ServicePort))
	return nil
}

// StopServices closes the listeners and waits for the accept loops.
func (l *Lab) StopServices() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.svc != nil {
		l.svc.close()
		l.svc = nil
	}
}

func serve(ln net.Listener, banner []byte) {
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Transient (e.g. EMFILE): back off briefly.
			time.Sleep(10 * time.Millisecond)
			continue
		}
		_ = c.SetWriteDeadline(time.Now().Add(time.Second))
		_, _ = c.Write(banner)
		_ = c.Close()
	}
}

func (s *services) close() {
	for _, ln := range s.lns {
		_ = ln.Close()
	}
	s.wg.Wait()
}
