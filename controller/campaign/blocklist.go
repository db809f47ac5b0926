package campaign

import (
	"bufio"
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"strings"
)

// Limits is the controller's policy on where campaigns may aim and how
// hard, checked before a campaign is stored (the agents enforce their own
// guard as well, whatever the controller says). The zero value refuses
// special-purpose ranges and applies no blocklist and no rate caps.
type Limits struct {
	// AllowSpecial permits special-purpose ranges (loopback, RFC 1918,
	// documentation, benchmarking, multicast...): the lab only.
	AllowSpecial bool
	// Blocklist holds ranges the operator never probes; OptOut holds
	// networks whose owners asked not to be probed. Both are refused.
	Blocklist []netip.Prefix
	OptOut    []netip.Prefix
	// MaxPerTargetPPS and MaxAgentPPS cap budget.per_target_pps and
	// budget.agent_pps (0: no cap).
	MaxPerTargetPPS float64
	MaxAgentPPS     float64
}

// specialRange is one IANA special-purpose block (RFC 6890 and successors).
type specialRange struct {
	prefix netip.Prefix
	name   string
}

var specialRanges = func() []specialRange {
	list := []struct{ p, name string }{
		{"0.0.0.0/8", "this network (RFC 791)"},
		{"10.0.0.0/8", "private use (RFC 1918)"},
		{"100.64.0.0/10", "shared address space (RFC 6598)"},
		{"127.0.0.0/8", "loopback (RFC 1122)"},
		{"169.254.0.0/16", "link local (RFC 3927)"},
		{"172.16.0.0/12", "private use (RFC 1918)"},
		{"192.0.0.0/24", "IETF protocol assignments (RFC 6890)"},
		{"192.0.2.0/24", "documentation TEST-NET-1 (RFC 5737)"},
		{"192.88.99.0/24", "6to4 relay anycast (RFC 7526)"},
		{"192.168.0.0/16", "private use (RFC 1918)"},
		{"198.18.0.0/15", "benchmarking (RFC 2544)"},
		{"198.51.100.0/24", "documentation TEST-NET-2 (RFC 5737)"},
		{"203.0.113.0/24", "documentation TEST-NET-3 (RFC 5737)"},
		{"224.0.0.0/4", "multicast (RFC 5771)"},
		{"240.0.0.0/4", "reserved and limited broadcast (RFC 1112, RFC 919)"},
		{"::/128", "unspecified (RFC 4291)"},
		{"::1/128", "loopback (RFC 4291)"},
		{"::ffff:0:0/96", "IPv4-mapped (RFC 4291)"},
		{"64:ff9b:1::/48", "local-use IPv4/IPv6 translation (RFC 8215)"},
		{"100::/64", "discard-only (RFC 6666)"},
		{"2001:2::/48", "benchmarking (RFC 5180)"},
		{"2001:10::/28", "ORCHID (RFC 4843)"},
		{"2001:db8::/32", "documentation (RFC 3849)"},
		{"3fff::/20", "documentation (RFC 9637)"},
		{"fc00::/7", "unique local (RFC 4193)"},
		{"fe80::/10", "link local (RFC 4291)"},
		{"ff00::/8", "multicast (RFC 4291)"},
	}
	out := make([]specialRange, len(list))
	for i, r := range list {
		out[i] = specialRange{netip.MustParsePrefix(r.p), r.name}
	}
	return out
}()

// SpecialPurpose returns the special-purpose ranges refused without
// AllowSpecial.
func SpecialPurpose() []netip.Prefix {
	out := make([]netip.Prefix, len(specialRanges))
	for i, r := range specialRanges {
		out[i] = r.prefix
	}
	return out
}

// MaxPrefixFileBytes bounds a blocklist or opt-out file.
const MaxPrefixFileBytes = 16 << 20

// LoadPrefixFile reads a blocklist or opt-out file: one CIDR prefix or
// address per line; blank lines and text after '#' are ignored. Errors name
// the file and line.
func LoadPrefixFile(path string) ([]netip.Prefix, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if len(b) > MaxPrefixFileBytes {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, MaxPrefixFileBytes)
	}
	return ParsePrefixes(path, b)
}

// ParsePrefixes parses the body of a prefix file; name prefixes errors.
func ParsePrefixes(name string, data []byte) ([]netip.Prefix, error) {
	var out []netip.Prefix
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), 4096)
	line := 0
	for sc.Scan() {
		line++
		text, _, _ := strings.Cut(sc.Text(), "#")
		text = strings.TrimSpace(text)
		if text == "" {
			continue
		}
		p, err := parsePrefixOrAddr(text)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %.64q is not a CIDR prefix or an IP address", name, line, text)
		}
		out = append(out, p)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s:%d: %w", name, line+1, err)
	}
	return out, nil
}

func parsePrefixOrAddr(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return p, err
		}
		return unmapPrefix(p).Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// unmapPrefix turns ::ffff:a.b.c.d/n (n >= 96) into a.b.c.d/(n-96).
func unmapPrefix(p netip.Prefix) netip.Prefix {
	if p.Addr().Is4In6() && p.Bits() >= 96 {
		return netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
	}
	return p
}

// Check refuses a campaign aimed at a special-purpose range (unless
// AllowSpecial), a blocklisted or opted-out network, or with a budget above
// the caps. The error is a *FieldError naming the field.
func (l *Limits) Check(s *Spec) error {
	b := s.budget
	if l.MaxPerTargetPPS > 0 && b.perTargetPPS > l.MaxPerTargetPPS {
		return fieldErr("budget.per_target_pps", "%g is above the controller's cap of %g", b.perTargetPPS, l.MaxPerTargetPPS)
	}
	if l.MaxAgentPPS > 0 && b.agentPPS > l.MaxAgentPPS {
		return fieldErr("budget.agent_pps", "%g is above the controller's cap of %g", b.agentPPS, l.MaxAgentPPS)
	}
	for i, nw := range s.targets.networks {
		if err := l.checkPrefix(join(index("targets.networks", i), "prefix"), nw.prefix); err != nil {
			return err
		}
	}
	for _, t := range s.expanded {
		p := netip.PrefixFrom(t.Addr.Unmap(), t.Addr.Unmap().BitLen())
		if err := l.checkPrefix("targets: "+t.Addr.String(), p); err != nil {
			return err
		}
	}
	return nil
}

func (l *Limits) checkPrefix(field string, p netip.Prefix) error {
	if !p.IsValid() {
		return nil
	}
	p = unmapPrefix(p)
	if !l.AllowSpecial {
		for _, r := range specialRanges {
			if r.prefix.Overlaps(p) {
				return fieldErr(field, "%s overlaps the special-purpose range %s (%s); refused unless the controller runs with --allow-special-ranges (lab only)", p, r.prefix, r.name)
			}
		}
	}
	for _, b := range l.Blocklist {
		if b.Overlaps(p) {
			return fieldErr(field, "%s overlaps %s on the controller's blocklist", p, b)
		}
	}
	for _, o := range l.OptOut {
		if o.Overlaps(p) {
			return fieldErr(field, "%s overlaps %s, whose operator opted out of probing", p, o)
		}
	}
	return nil
}
