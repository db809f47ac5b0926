package reliability

import (
	"bufio"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vantage-net/vantage/deploy/demo"
)

// procSocket is one line of /proc/<pid>/net/{tcp,udp,raw,icmp}[6].
type procSocket struct {
	table  string // tcp, tcp6, udp, ...
	local  netip.AddrPort
	remote netip.AddrPort
	state  uint64 // TCP states; 0x0A is LISTEN, 0x07 is CLOSE (an unconnected datagram socket)
	inode  string
}

const (
	tcpEstablished = 0x01
	tcpListen      = 0x0A
	tcpClose       = 0x07
)

// procAddr decodes the kernel's hex "ADDR:PORT": IPv4 as one host-order
// (little-endian) word, IPv6 as four.
func procAddr(s string) (netip.AddrPort, error) {
	a, p, ok := strings.Cut(s, ":")
	if !ok {
		return netip.AddrPort{}, fmt.Errorf("address %q: no port", s)
	}
	port, err := strconv.ParseUint(p, 16, 16)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("address %q: port: %w", s, err)
	}
	b, err := hex.DecodeString(a)
	if err != nil || (len(b) != 4 && len(b) != 16) {
		return netip.AddrPort{}, fmt.Errorf("address %q: not 4 or 16 hex bytes", s)
	}
	for i := 0; i < len(b); i += 4 {
		b[i], b[i+1], b[i+2], b[i+3] = b[i+3], b[i+2], b[i+1], b[i]
	}
	addr, _ := netip.AddrFromSlice(b)
	return netip.AddrPortFrom(addr, uint16(port)), nil
}

// processSockets returns the inet sockets the process holds open, read from
// its main thread's view of its network namespace (/proc/<pid>/net) and
// matched to its file descriptors by inode.
func processSockets(pid int) ([]procSocket, error) {
	return sockets(fmt.Sprintf("/proc/%d/fd", pid), fmt.Sprintf("/proc/%d/net", pid))
}

func sockets(fdDir, netDir string) ([]procSocket, error) {
	fds, err := os.ReadDir(fdDir)
	if err != nil {
		return nil, fmt.Errorf("read fds: %w", err)
	}
	mine := map[string]bool{}
	for _, fd := range fds {
		l, err := os.Readlink(filepath.Join(fdDir, fd.Name()))
		if err != nil {
			continue // closed meanwhile
		}
		if in, ok := strings.CutPrefix(l, "socket:["); ok {
			mine[strings.TrimSuffix(in, "]")] = true
		}
	}
	var out []procSocket
	for _, table := range []string{"tcp", "tcp6", "udp", "udp6", "raw", "raw6", "icmp", "icmp6"} {
		f, err := os.Open(filepath.Join(netDir, table))
		if os.IsNotExist(err) {
			continue
		}
		if err != nil {
			return nil, err
		}
		sc := bufio.NewScanner(f)
		sc.Scan() // header
		for sc.Scan() {
			fs := strings.Fields(sc.Text())
			if len(fs) < 10 || !mine[fs[9]] {
				continue
			}
			s := procSocket{table: table, inode: fs[9]}
			if s.local, err = procAddr(fs[1]); err == nil {
				s.remote, err = procAddr(fs[2])
			}
			if err == nil {
				s.state, err = strconv.ParseUint(fs[3], 16, 8)
			}
			if err != nil {
				f.Close()
				return nil, fmt.Errorf("%s/%s: %w", netDir, table, err)
			}
			out = append(out, s)
		}
		err = sc.Err()
		f.Close()
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

func isLoopback(a netip.Addr) bool { return a.Unmap().IsLoopback() }

// TestAgentListensNowhere runs an agent with ICMP, TCP and UDP traceroute
// probes and samples the sockets it holds for 10 s: it must have no
// listening TCP socket and no unconnected bound UDP socket on a
// non-loopback address. Raw and ICMP datagram sockets (what a prober
// receives replies on) are counted and printed, not failed. `ss -lntup`
// inside the namespace cross-checks.
func TestAgentListensNowhere(t *testing.T) {
	ctx, cancel := labTest(t, 4*time.Minute)
	defer cancel()
	const v = "vantage-a"
	h := startLab(t, ctx, "d", demo.Config{Agents: []string{v}})
	spec := countryCampaign(t,
		[2]string{"name: country", "name: listen"},
		[2]string{"  - tcp: {ports: [80], mode: connect, timeout: 1s}",
			"  - tcp: {ports: [80], mode: connect, timeout: 1s}\n  - trace: {protocol: udp, port: 33434, every: 3s, max_ttl: 8, timeout: 500ms}"},
		[2]string{"per_target_pps: 2", "per_target_pps: 4"})
	applyCampaign(t, ctx, h, spec)
	id := waitConnected(t, ctx, h, v)
	// Every engine has run at least once.
	waitFor(t, ctx, 60*time.Second, "icmp, tcp and trace results stored", func() (bool, error) {
		st, err := queryStored(ctx, h, id)
		return len(st.kinds) == 3, err
	})

	// The detector itself: this process's own loopback listeners are seen.
	checkDetector(t)

	pid := h.Pid(v)
	if comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid)); err != nil || strings.TrimSpace(string(comm)) != "vantage-agent" {
		t.Fatalf("pid %d is not the agent (comm %q, %v)", pid, comm, err)
	}
	var samples, established, listeners, boundUDP, raw, ping, connectedUDP int
	var bad []string
	seen := map[string]bool{}
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); {
		socks, err := processSockets(pid)
		if err != nil {
			t.Fatal(err)
		}
		samples++
		for _, s := range socks {
			first := !seen[s.inode]
			seen[s.inode] = true
			udp := s.table == "udp" || s.table == "udp6"
			switch {
			case (s.table == "tcp" || s.table == "tcp6") && s.state == tcpListen:
				if first {
					listeners++
				}
				if !isLoopback(s.local.Addr()) {
					bad = append(bad, fmt.Sprintf("%s LISTEN on %s", s.table, s.local))
				}
			case udp && s.state == tcpClose && s.local.Port() != 0:
				if first {
					boundUDP++
				}
				if !isLoopback(s.local.Addr()) {
					bad = append(bad, fmt.Sprintf("%s bound on %s, unconnected", s.table, s.local))
				}
			case udp && first:
				connectedUDP++
			case (s.table == "tcp" || s.table == "tcp6") && s.state == tcpEstablished && first:
				established++
			case (s.table == "raw" || s.table == "raw6") && first:
				raw++
			case (s.table == "icmp" || s.table == "icmp6") && first:
				ping++
			}
		}
		sleepCtx(t, ctx, 100*time.Millisecond)
	}

	// Cross-check with ss, inside the vantage's namespace.
	ssLines := 0
	if _, err := exec.LookPath("ss"); err == nil {
		out, err := h.Lab.Command(ctx, v, "ss", "-Hlntup").CombinedOutput()
		if err != nil {
			t.Fatalf("ss -lntup in %s: %v: %s", v, err, out)
		}
		for _, l := range strings.Split(string(out), "\n") {
			if strings.Contains(l, fmt.Sprintf("pid=%d,", pid)) {
				ssLines++
				bad = append(bad, "ss: "+l)
			}
		}
	}
	t.Logf("agent %s pid %d: samples=%d distinct_sockets=%d tcp_listen=%d udp_bound_unconnected=%d (non-loopback violations=%d) tcp_established=%d udp_connected=%d raw=%d icmp_datagram=%d ss_listening_lines=%d",
		v, pid, samples, len(seen), listeners, boundUDP, len(bad), established, connectedUDP, raw, ping, ssLines)
	if established == 0 {
		t.Errorf("no established TCP socket seen: the uplink should be one; the socket matching is broken")
	}
	for _, b := range bad {
		t.Errorf("agent listens: %s", b)
	}
}

// checkDetector opens a TCP listener and a bound UDP socket on loopback in
// this process and fails unless the parser reports both. It reads its own
// thread's namespace view: this process's main thread may have been left
// in a lab namespace by the lab code.
func checkDetector(t *testing.T) {
	t.Helper()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	socks, err := sockets("/proc/self/fd", "/proc/thread-self/net")
	if err != nil {
		t.Fatal(err)
	}
	var tcpSeen, udpSeen bool
	for _, s := range socks {
		tcpSeen = tcpSeen || (s.table == "tcp" && s.state == tcpListen && s.local.String() == ln.Addr().String())
		udpSeen = udpSeen || (s.table == "udp" && s.state == tcpClose && s.local.String() == pc.LocalAddr().String())
	}
	if !tcpSeen || !udpSeen {
		t.Fatalf("socket detector broken: own listener %s seen=%v, own UDP socket %s seen=%v", ln.Addr(), tcpSeen, pc.LocalAddr(), udpSeen)
	}
}
