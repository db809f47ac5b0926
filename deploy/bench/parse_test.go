package bench

import (
	"bytes"
	"maps"
	"math"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vantage-net/vantage/deploy/lab"
	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// The testdata files are real output, captured in the bench lab (fping
// 5.1, zmap 2.1.1, scamper 20211212, GNU time 1.9 on Debian 12): a /24
// sweep, and targets mixing live AnyIP addresses with 198.20.0.1, which
// the exchange answers with ICMP net unreachable.

func read(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseFping(t *testing.T) {
	for _, tc := range []struct {
		name    string
		in      []byte
		want    Count
		wantErr string
	}{
		{"sweep /24", read(t, "fping_24.stderr"), Count{Targets: 254, Replies: 254}, ""},
		{"one unreachable", read(t, "fping_mixed.stderr"), Count{Targets: 3, Replies: 2}, ""},
		{"no summary", []byte("198.19.5.1 is alive\n"), Count{}, `fping summary: no "targets" line (was -s given?)`},
		{"no alive line", []byte("     3 targets\n"), Count{}, `fping summary: no "alive" line (was -s given?)`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseFping(tc.in)
			if msg := errString(err); msg != tc.wantErr {
				t.Fatalf("error %q, want %q", msg, tc.wantErr)
			}
			if got.Targets != tc.want.Targets || got.Replies != tc.want.Replies {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func TestParseZmap(t *testing.T) {
	p24 := netip.MustParsePrefix("198.19.5.0/24")
	for _, tc := range []struct {
		name    string
		in      []byte
		scanned netip.Prefix
		want    Count
		wantErr string
	}{
		{"sweep /24", read(t, "zmap_24.stdout"), p24, Count{Targets: 256, Replies: 256}, ""},
		{"duplicates and header", []byte("saddr\n198.19.5.1\n198.19.5.1\n\n198.19.5.2\n"), p24, Count{Targets: 256, Replies: 2}, ""},
		{"outside the allowlist", []byte("198.19.5.1\n10.0.0.1\n"), p24, Count{}, "zmap output line 2: 10.0.0.1 is outside the scanned 198.19.5.0/24"},
		{"garbage", []byte("hello\n"), p24, Count{}, `zmap output line 1: "hello" is not an address`},
		{"sample outside a smaller scan", read(t, "zmap_24.stdout"), netip.MustParsePrefix("198.19.5.0/25"), Count{}, "is outside the scanned 198.19.5.0/25"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseZmap(bytes.NewReader(tc.in), tc.scanned)
			if msg := errString(err); (tc.wantErr == "") != (msg == "") || !strings.Contains(msg, tc.wantErr) {
				t.Fatalf("error %q, want %q", msg, tc.wantErr)
			}
			if got.Targets != tc.want.Targets || got.Replies != tc.want.Replies {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestParseScamperPing(t *testing.T) {
	for _, tc := range []struct {
		name    string
		in      []byte
		want    Count
		rtt     map[string]float64
		wantErr string
	}{
		// scamper's statistics say replies:1 for 198.20.0.1 too: the net
		// unreachable from the exchange. It must not count.
		{"replies and an unreachable", read(t, "scamper_ping_mixed.json"), Count{Targets: 3, Replies: 2}, nil, ""},
		{"cycle lines only", []byte(`{"type":"cycle-start", "list_name":"default", "id":0}` + "\n"), Count{}, nil, ""},
		{"rtt in ms", []byte(`{"type":"ping","dst":"198.19.0.1","responses":[{"from":"198.19.0.1","rtt":0.063,"icmp_type":0}]}`),
			Count{Targets: 1, Replies: 1}, map[string]float64{"198.19.0.1": 63}, ""},
		{"echo reply from elsewhere", []byte(`{"type":"ping","dst":"198.19.0.1","responses":[{"from":"198.19.0.2","rtt":0.063,"icmp_type":0}]}`),
			Count{Targets: 1}, map[string]float64{}, ""},
		{"truncated", []byte(`{"type":"ping","dst":`), Count{}, nil, "scamper output line 1: unexpected end of JSON input"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseScamperPing(bytes.NewReader(tc.in))
			if msg := errString(err); msg != tc.wantErr {
				t.Fatalf("error %q, want %q", msg, tc.wantErr)
			}
			if got.Targets != tc.want.Targets || got.Replies != tc.want.Replies {
				t.Errorf("got %d/%d, want %d/%d", got.Replies, got.Targets, tc.want.Replies, tc.want.Targets)
			}
			for k, v := range tc.rtt {
				if d := got.RTTus[k] - v; d > 1e-6 || d < -1e-6 {
					t.Errorf("rtt %s = %v µs, want %v", k, got.RTTus[k], v)
				}
			}
			if tc.rtt != nil && len(got.RTTus) != len(tc.rtt) {
				t.Errorf("rtts %v, want %v", got.RTTus, tc.rtt)
			}
		})
	}
}

func TestParseScamperTrace(t *testing.T) {
	want := Path{"198.51.100.1", "198.51.100.26", "198.51.100.42", "198.51.100.50"}
	got, err := ParseScamperTrace(bytes.NewReader(read(t, "scamper_trace.json")))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 {
		t.Fatalf("%d traces, want 3", len(got))
	}
	for _, dst := range []string{"198.19.5.1", "198.19.5.2", "198.19.5.3"} {
		if p := got[dst]; !slices.Equal(p, append(slices.Clone(want), dst)) {
			t.Errorf("%s: path %v", dst, p)
		}
	}
	_, rtt, err := ParseScamperTraces(bytes.NewReader(read(t, "scamper_trace.json")))
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]float64{"198.19.5.1": 12, "198.19.5.2": 5, "198.19.5.3": 5}; !maps.EqualFunc(rtt, want, func(a, b float64) bool { return math.Abs(a-b) < 1e-9 }) {
		t.Errorf("destination RTTs %v µs, want %v", rtt, want)
	}
	for _, tc := range []struct {
		name    string
		in      string
		want    Path
		wantErr string
	}{
		{"gap and trailing silence", `{"type":"trace","dst":"198.19.0.9","hops":[{"addr":"198.51.100.1","probe_ttl":1},{"addr":"198.51.100.42","probe_ttl":3}]}`,
			Path{"198.51.100.1", "*", "198.51.100.42"}, ""},
		{"two answers for one ttl keep the first", `{"type":"trace","dst":"198.19.0.9","hops":[{"addr":"198.51.100.1","probe_ttl":1},{"addr":"198.51.100.9","probe_ttl":1}]}`,
			Path{"198.51.100.1"}, ""},
		{"bad ttl", `{"type":"trace","dst":"198.19.0.9","hops":[{"addr":"198.51.100.1","probe_ttl":0}]}`, nil,
			"scamper output line 1: hop probe_ttl 0 out of 1..255"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseScamperTrace(strings.NewReader(tc.in))
			if msg := errString(err); msg != tc.wantErr {
				t.Fatalf("error %q, want %q", msg, tc.wantErr)
			}
			if tc.wantErr == "" && !slices.Equal(got["198.19.0.9"], tc.want) {
				t.Errorf("path %v, want %v", got["198.19.0.9"], tc.want)
			}
		})
	}
}

func TestParseVantage(t *testing.T) {
	in := `{"target":"198.19.0.1","kind":"PROBE_KIND_ICMP_ECHO","outcome":"OUTCOME_REPLY","rtt_us":41,"reply_from":"198.19.0.1","engine":"icmp/raw","future_field":1}
{"target":"198.19.0.2","kind":"PROBE_KIND_ICMP_ECHO","outcome":"OUTCOME_TIMEOUT"}
{"target":"198.19.0.3","outcome":"OUTCOME_REPLY","rtt_us":7}
{"target":"198.20.0.1","outcome":"OUTCOME_UNREACHABLE","reply_from":"198.51.100.1"}
{"target":"198.19.0.4","outcome":"OUTCOME_REPLY","reply_from":"198.19.0.5","rtt_us":9}
`
	rs, err := ParseVantage(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	c := VantageCount(rs)
	if c.Targets != 5 || c.Replies != 2 {
		t.Errorf("count %d/%d, want 2/5", c.Replies, c.Targets)
	}
	if c.RTTus["198.19.0.1"] != 41 || c.RTTus["198.19.0.3"] != 7 || len(c.RTTus) != 2 {
		t.Errorf("rtts %v", c.RTTus)
	}
	for _, tc := range []struct {
		name, in, wantErr string
	}{
		{"not json", "progress 10%\n", "vantage output line 1: "},
		{"wrong type", `{"rtt_us":"fast"}`, "vantage output line 1: "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseVantage(strings.NewReader(tc.in))
			if err == nil || !strings.HasPrefix(err.Error(), tc.wantErr) {
				t.Errorf("error %v, want prefix %q", err, tc.wantErr)
			}
		})
	}
}

func TestVantagePaths(t *testing.T) {
	rs := []*vantagev1.ProbeResult{
		{Target: "198.19.0.9", Hops: []*vantagev1.Hop{{Ttl: 2, Addr: "198.51.100.26"}, {Ttl: 1, Addr: "198.51.100.1"}, {Ttl: 3}, {Ttl: 4, Addr: "198.19.0.9"}}},
		{Target: "198.19.0.10", Hops: []*vantagev1.Hop{{Ttl: 1, Addr: "198.51.100.1"}, {Ttl: 2}, {Ttl: 3}}},
	}
	got, err := VantagePaths(rs)
	if err != nil {
		t.Fatal(err)
	}
	if p := got["198.19.0.9"]; !slices.Equal(p, Path{"198.51.100.1", "198.51.100.26", "*", "198.19.0.9"}) {
		t.Errorf("path %v", p)
	}
	if p := got["198.19.0.10"]; !slices.Equal(p, Path{"198.51.100.1"}) {
		t.Errorf("path %v", p)
	}
	if _, err := VantagePaths([]*vantagev1.ProbeResult{{Target: "x", Hops: []*vantagev1.Hop{{Ttl: 0}}}}); err == nil {
		t.Error("ttl 0: no error")
	}
	same, diffs := ComparePaths([]string{"198.19.0.9", "198.19.0.10", "198.19.0.11"}, got,
		map[string]Path{"198.19.0.9": {"198.51.100.1", "198.51.100.26", "*", "198.19.0.9"}, "198.19.0.10": {"198.51.100.2"}}, 5)
	if same != 1 || len(diffs) != 2 {
		t.Errorf("same %d, diffs %q", same, diffs)
	}
}

func TestParseGNUTime(t *testing.T) {
	for _, tc := range []struct {
		name     string
		in       []byte
		user     time.Duration
		rss      int64
		wantErr  string
		wantSys0 bool
	}{
		{"ok", read(t, "gnutime_ok.txt"), 0, 1028 * 1024, "", true},
		{"exit status line first", read(t, "gnutime_exit1.txt"), 0, 1004 * 1024, "", true},
		{"signal line first", read(t, "gnutime_signal.txt"), 0, 1620 * 1024, "", true},
		{"seconds", []byte("1.25 0.50 20480\n"), 1250 * time.Millisecond, 20 << 20, "", false},
		{"missing field", []byte("1.25 20480\n"), 0, 0, `GNU time output: last line "1.25 20480", want "user sys maxrss"`, false},
		{"negative", []byte("-1 0 1\n"), 0, 0, `GNU time output: CPU seconds "-1": not a non-negative number`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u, s, rss, err := ParseGNUTime(tc.in)
			if msg := errString(err); msg != tc.wantErr {
				t.Fatalf("error %q, want %q", msg, tc.wantErr)
			}
			if u != tc.user || rss != tc.rss || (tc.wantSys0 && s != 0) {
				t.Errorf("got %v %v %d, want %v _ %d", u, s, rss, tc.user, tc.rss)
			}
		})
	}
}

func TestParseStatCPU(t *testing.T) {
	for _, tc := range []struct {
		name    string
		in      []byte
		want    time.Duration
		wantErr string
	}{
		{"real", read(t, "proc_stat.txt"), 630 * time.Millisecond, ""},
		{"spaces and parens in the name", []byte("42 (a b) c)) S 1 1 1 0 -1 0 0 0 0 0 250 50 0 0 20 0 1 0"), 3 * time.Second, ""},
		{"short", []byte("42 (x) S 1 1"), 0, "stat: 3 fields after the command name, want at least 13"},
		{"no name", []byte("42 x S"), 0, "stat: no ')' after the command name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseStatCPU(tc.in)
			if msg := errString(err); msg != tc.wantErr {
				t.Fatalf("error %q, want %q", msg, tc.wantErr)
			}
			if got != tc.want {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestSpread(t *testing.T) {
	p := netip.MustParsePrefix("198.19.0.0/16")
	got := spread(p, 2000)
	if len(got) != 2000 {
		t.Fatalf("%d addresses", len(got))
	}
	seen := map[netip.Addr]bool{}
	for _, a := range got {
		if !p.Contains(a) || seen[a] || a == p.Addr() || a == netip.MustParseAddr("198.19.255.255") {
			t.Fatalf("bad or repeated address %s", a)
		}
		seen[a] = true
	}
	if n := len(spread(netip.MustParsePrefix("198.19.5.0/24"), 1000)); n != 254 {
		t.Errorf("spread over a /24 asked for more than it has: %d, want 254", n)
	}
	if n := len(allAddrs(netip.MustParsePrefix("198.19.0.0/16"))); n != 65536 {
		t.Errorf("allAddrs /16 = %d", n)
	}
}

func TestIdleCampaignShape(t *testing.T) {
	c := IdleCampaign(1000)
	for _, want := range []string{"prefix: 198.19.0.0/16", "per_network: 1000", "round: 1m0s", "select: {provider: lab-a}"} {
		if !strings.Contains(c, want) {
			t.Errorf("campaign lacks %q:\n%s", want, c)
		}
	}
}

// TestDefaultTopology keeps the embedded bench lab valid and shaped as the
// bench expects: a vantage with one uplink and a bench network with the
// swept AnyIP prefixes.
func TestDefaultTopology(t *testing.T) {
	topo, err := DefaultTopology()
	if err != nil {
		t.Fatal(err)
	}
	var vantage, network bool
	for _, n := range topo.Nodes {
		switch {
		case n.Name == VantageNode && n.Role == lab.RoleVantage:
			vantage = true
		case n.Name == BenchNode && n.Role == lab.RoleNetwork:
			network = slices.Equal(n.AnyIP, []string{"198.19.0.0/16", "2001:db8:ffff::/112"})
		}
	}
	if !vantage || !network {
		t.Errorf("topology lacks %s (%v) or %s with the AnyIP prefixes (%v)", VantageNode, vantage, BenchNode, network)
	}
}
