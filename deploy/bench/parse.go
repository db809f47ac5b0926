package bench

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/netip"
	"regexp"
	"slices"
	"strconv"

	"google.golang.org/protobuf/encoding/protojson"

	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// Count is what one sweep reported: how many targets the tool probed, how
// many answered with an echo reply from the target itself, and the RTT of
// each reply where the tool gives one (µs, keyed by target).
type Count struct {
	Targets int
	Replies int
	RTTus   map[string]float64
}

// maxLine bounds one line of tool output (a scamper trace is a few KB).
const maxLine = 1 << 20

func lines(r io.Reader, fn func(n int, line []byte) error) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), maxLine)
	n := 0
	for sc.Scan() {
		n++
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		if err := fn(n, line); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("line %d: %w", n+1, err)
	}
	return nil
}

var (
	fpingTargetsRE = regexp.MustCompile(`(?m)^\s*(\d+) targets$`)
	fpingAliveRE   = regexp.MustCompile(`(?m)^\s*(\d+) alive$`)
)

// ParseFping reads the summary fping -s writes on stderr ("N targets",
// "N alive"). fping gives no per-host RTT with -q.
func ParseFping(stderr []byte) (Count, error) {
	var c Count
	for _, f := range []struct {
		re   *regexp.Regexp
		name string
		dst  *int
	}{{fpingTargetsRE, "targets", &c.Targets}, {fpingAliveRE, "alive", &c.Replies}} {
		m := f.re.FindSubmatch(stderr)
		if m == nil {
			return Count{}, fmt.Errorf("fping summary: no %q line (was -s given?)", f.name)
		}
		n, err := strconv.Atoi(string(m[1]))
		if err != nil {
			return Count{}, fmt.Errorf("fping summary: %s count %q: %w", f.name, m[1], err)
		}
		*f.dst = n
	}
	return c, nil
}

// ParseZmap reads zmap's "-f saddr" output: one responding address per
// line. Addresses outside scanned are an error (zmap was not confined);
// duplicates count once. Targets is the size of scanned (zmap probes every
// address of its allowlist).
func ParseZmap(r io.Reader, scanned netip.Prefix) (Count, error) {
	seen := map[netip.Addr]bool{}
	err := lines(r, func(n int, line []byte) error {
		if line[0] == '#' || string(line) == "saddr" {
			return nil
		}
		a, err := netip.ParseAddr(string(line))
		if err != nil {
			return fmt.Errorf("zmap output line %d: %q is not an address", n, line)
		}
		if !scanned.Contains(a) {
			return fmt.Errorf("zmap output line %d: %s is outside the scanned %s", n, a, scanned)
		}
		seen[a] = true
		return nil
	})
	if err != nil {
		return Count{}, err
	}
	return Count{Targets: prefixSize(scanned), Replies: len(seen)}, nil
}

func prefixSize(p netip.Prefix) int {
	bits := p.Addr().BitLen() - p.Bits()
	if bits >= 31 {
		return math.MaxInt32
	}
	return 1 << bits
}

type scamperTime struct {
	Sec  int64 `json:"sec"`
	Usec int64 `json:"usec"`
}

type scamperPing struct {
	Type      string `json:"type"`
	Dst       string `json:"dst"`
	Responses []struct {
		From     string  `json:"from"`
		RTT      float64 `json:"rtt"` // ms
		ICMPType int     `json:"icmp_type"`
	} `json:"responses"`
}

// ParseScamperPing reads scamper -O json output of ping tasks. Only an echo
// reply (ICMP type 0) from the target itself counts as a reply: scamper's
// own statistics.replies also counts ICMP errors from routers.
func ParseScamperPing(r io.Reader) (Count, error) {
	c := Count{RTTus: map[string]float64{}}
	err := lines(r, func(n int, line []byte) error {
		var p scamperPing
		if err := json.Unmarshal(line, &p); err != nil {
			return fmt.Errorf("scamper output line %d: %w", n, err)
		}
		if p.Type != "ping" {
			return nil // cycle-start, cycle-stop
		}
		c.Targets++
		for _, resp := range p.Responses {
			if resp.ICMPType == 0 && resp.From == p.Dst {
				c.Replies++
				c.RTTus[p.Dst] = resp.RTT * 1000
				break
			}
		}
		return nil
	})
	if err != nil {
		return Count{}, err
	}
	return c, nil
}

type scamperTrace struct {
	Type       string `json:"type"`
	Dst        string `json:"dst"`
	StopReason string `json:"stop_reason"`
	Hops       []struct {
		Addr     string  `json:"addr"`
		ProbeTTL int     `json:"probe_ttl"`
		RTT      float64 `json:"rtt"` // ms
		ICMPType int     `json:"icmp_type"`
	} `json:"hops"`
}

// Path is a trace's hop list: the responding address at TTL i+1, "*" for
// a silent TTL, with trailing silent TTLs dropped.
type Path []string

// maxTTL bounds the TTLs a parsed trace may name.
const maxTTL = 255

func trimPath(p Path) Path {
	for len(p) > 0 && p[len(p)-1] == "*" {
		p = p[:len(p)-1]
	}
	return p
}

// setHop records addr at ttl (1-based) in p, keeping the first answer a
// TTL got.
func setHop(p Path, ttl int, addr string) Path {
	for len(p) < ttl {
		p = append(p, "*")
	}
	if p[ttl-1] == "*" && addr != "" {
		p[ttl-1] = addr
	}
	return p
}

// ParseScamperTrace reads scamper -O json output of trace tasks and
// returns each destination's path.
func ParseScamperTrace(r io.Reader) (map[string]Path, error) {
	out, _, err := ParseScamperTraces(r)
	return out, err
}

// ParseScamperTraces is ParseScamperTrace that also returns, in µs, the RTT
// of the destination's echo reply in every trace that reached it.
func ParseScamperTraces(r io.Reader) (map[string]Path, map[string]float64, error) {
	out, rtt := map[string]Path{}, map[string]float64{}
	err := lines(r, func(n int, line []byte) error {
		var t scamperTrace
		if err := json.Unmarshal(line, &t); err != nil {
			return fmt.Errorf("scamper output line %d: %w", n, err)
		}
		if t.Type != "trace" {
			return nil
		}
		var p Path
		for _, h := range t.Hops {
			if h.ProbeTTL < 1 || h.ProbeTTL > maxTTL {
				return fmt.Errorf("scamper output line %d: hop probe_ttl %d out of 1..%d", n, h.ProbeTTL, maxTTL)
			}
			p = setHop(p, h.ProbeTTL, h.Addr)
			if _, ok := rtt[t.Dst]; !ok && h.Addr == t.Dst && h.ICMPType == 0 {
				rtt[t.Dst] = h.RTT * 1000
			}
		}
		out[t.Dst] = trimPath(p)
		return nil
	})
	return out, rtt, err
}

// ParseVantage reads the one-shot mode's output: one ProbeResult per line
// in protojson (proto field names). Unknown fields are ignored, so the
// bench keeps working when results grow.
func ParseVantage(r io.Reader) ([]*vantagev1.ProbeResult, error) {
	var out []*vantagev1.ProbeResult
	opts := protojson.UnmarshalOptions{DiscardUnknown: true}
	err := lines(r, func(n int, line []byte) error {
		res := &vantagev1.ProbeResult{}
		if err := opts.Unmarshal(line, res); err != nil {
			return fmt.Errorf("vantage output line %d: %w", n, err)
		}
		out = append(out, res)
		return nil
	})
	return out, err
}

// VantageCount counts echo replies from the targets themselves.
func VantageCount(rs []*vantagev1.ProbeResult) Count {
	c := Count{Targets: len(rs), RTTus: map[string]float64{}}
	for _, r := range rs {
		if r.GetOutcome() != vantagev1.Outcome_OUTCOME_REPLY {
			continue
		}
		if from := r.GetReplyFrom(); from != "" && !sameAddr(from, r.GetTarget()) {
			continue
		}
		c.Replies++
		c.RTTus[r.GetTarget()] = float64(r.GetRttUs())
	}
	return c
}

func sameAddr(a, b string) bool {
	x, err1 := netip.ParseAddr(a)
	y, err2 := netip.ParseAddr(b)
	return err1 == nil && err2 == nil && x == y
}

// VantagePaths returns each trace result's path.
func VantagePaths(rs []*vantagev1.ProbeResult) (map[string]Path, error) {
	out := map[string]Path{}
	for _, r := range rs {
		var p Path
		for _, h := range r.GetHops() {
			ttl := int(h.GetTtl())
			if ttl < 1 || ttl > maxTTL {
				return nil, fmt.Errorf("vantage trace to %s: hop ttl %d out of 1..%d", r.GetTarget(), ttl, maxTTL)
			}
			p = setHop(p, ttl, h.GetAddr())
		}
		out[r.GetTarget()] = trimPath(p)
	}
	return out, nil
}

// ComparePaths counts the targets whose two paths are identical. A target
// missing from either side counts as different. diffs lists up to max
// differing targets with both paths.
func ComparePaths(targets []string, a, b map[string]Path, max int) (same int, diffs []string) {
	for _, t := range targets {
		pa, oka := a[t]
		pb, okb := b[t]
		if oka && okb && slices.Equal(pa, pb) {
			same++
			continue
		}
		if len(diffs) < max {
			diffs = append(diffs, fmt.Sprintf("%s: vantage %v (found %v), scamper %v (found %v)", t, pa, oka, pb, okb))
		}
	}
	return same, diffs
}

// Median returns the median of the values (0 for none).
func Median(m map[string]float64) float64 {
	if len(m) == 0 {
		return 0
	}
	v := make([]float64, 0, len(m))
	for _, x := range m {
		v = append(v, x)
	}
	slices.Sort(v)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}
