//go:build linux

package tcp

import (
	"net"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// TestRealSynCountSet: the connect prober's dialer sets TCP_SYNCNT on the
// real socket (read back inside the same Control) and still connects.
func TestRealSynCountSet(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var got int
	var gerr error
	d := net.Dialer{Control: func(network, address string, c syscall.RawConn) error {
		if err := capSYNs(3)(network, address, c); err != nil {
			return err
		}
		return c.Control(func(fd uintptr) { got, gerr = unix.GetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_SYNCNT) })
	}}
	conn, err := d.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	_ = conn.Close()
	if gerr != nil || got != 3 {
		t.Fatalf("TCP_SYNCNT read back %d, %v; want 3", got, gerr)
	}
}
