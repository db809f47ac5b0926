package campaign

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"sync/atomic"

	"github.com/vantage-net/vantage/internal/netrange"
)

// Limits is the controller's policy on where campaigns may aim and how
// hard, checked before a campaign is stored (the agents enforce their own
// guard as well, whatever the controller says, from the same table of
// special-purpose ranges: internal/netrange). The zero value refuses
// special-purpose ranges and applies no blocklist and no rate caps. Use it
// by pointer; it must not be copied once Check has run.
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

	// sets caches Blocklist and OptOut for lookups; it is rebuilt when
	// either slice is replaced, so replace a list rather than edit its
	// elements in place once Check has run.
	sets atomic.Pointer[limitSets]
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

// Check is CheckContext without a deadline.
func (l *Limits) Check(s *Spec) error { return l.CheckContext(context.Background(), s) }

// CheckContext refuses a campaign aimed at a special-purpose range (unless
// AllowSpecial), a blocklisted or opted-out network, or with a budget above
// the caps. The error is a *FieldError naming the field, unless ctx ended
// first (checked every checkEvery targets). Each target costs a lookup
// logarithmic in the size of the lists, so a campaign of 65,536 targets
// against a million blocklisted prefixes takes well under a second.
//
// IPv6 targets that embed an IPv4 address are checked as that address too
// (netrange.EmbeddedIPv4: NAT64's 64:ff9b::/96), against the special
// ranges and the lists, because that is where their packets go.
func (l *Limits) CheckContext(ctx context.Context, s *Spec) error {
	b := s.budget
	if l.MaxPerTargetPPS > 0 && b.perTargetPPS > l.MaxPerTargetPPS {
		return fieldErr("budget.per_target_pps", "%g is above the controller's cap of %g", b.perTargetPPS, l.MaxPerTargetPPS)
	}
	if l.MaxAgentPPS > 0 && b.agentPPS > l.MaxAgentPPS {
		return fieldErr("budget.agent_pps", "%g is above the controller's cap of %g", b.agentPPS, l.MaxAgentPPS)
	}
	sets := l.prefixSets()
	for i, nw := range s.targets.networks {
		for k, p := range nw.prefixes {
			if err := l.checkPrefix(nw.prefixPath(index("targets.networks", i), k), p, sets); err != nil {
				return err
			}
		}
	}
	for i, t := range s.expanded {
		if i%checkEvery == 0 {
			if err := ctx.Err(); err != nil {
				return fmt.Errorf("campaign limits: %d of %d targets checked: %w", i, len(s.expanded), err)
			}
		}
		a := t.Addr.Unmap()
		if err := l.checkPrefix("targets: "+t.Addr.String(), netip.PrefixFrom(a, a.BitLen()), sets); err != nil {
			return err
		}
	}
	return nil
}

// checkEvery is how many targets CheckContext checks between looks at ctx.
const checkEvery = 1024

// limitSets are Blocklist and OptOut as netrange.Sets, and the slices they
// were built from.
type limitSets struct {
	block, optOut       []netip.Prefix
	blockSet, optOutSet *netrange.Set
}

// prefixSets returns the lists as Sets, built at the first Check and again
// when either slice has been replaced since.
func (l *Limits) prefixSets() *limitSets {
	if c := l.sets.Load(); c != nil && sameSlice(c.block, l.Blocklist) && sameSlice(c.optOut, l.OptOut) {
		return c
	}
	c := &limitSets{block: l.Blocklist, optOut: l.OptOut, blockSet: prefixSet(l.Blocklist), optOutSet: prefixSet(l.OptOut)}
	l.sets.Store(c) // a concurrent Check may build the same sets; either wins
	return c
}

func sameSlice(a, b []netip.Prefix) bool {
	return len(a) == len(b) && (len(a) == 0 || &a[0] == &b[0])
}

func prefixSet(ps []netip.Prefix) *netrange.Set {
	rs := make([]netrange.Range, len(ps))
	for i, p := range ps {
		rs[i] = netrange.Range{Prefix: unmapPrefix(p)}
	}
	return netrange.NewSet(rs)
}

func (l *Limits) checkPrefix(field string, p netip.Prefix, sets *limitSets) error {
	if !p.IsValid() {
		return nil
	}
	p = unmapPrefix(p).Masked()
	if !l.AllowSpecial {
		if m, ok := netrange.LookupPrefix(p); ok {
			subject, whole := p.String(), ""
			switch {
			case m.Form.Checked:
				subject = embedsSubject(p, m.Embedded, m.Form)
			case m.Form.Prefix.IsValid() && m.Embedded.IsValid():
				whole = ", a form refused whole; it embeds " + m.Embedded.String()
			case m.Form.Prefix.IsValid():
				whole = ", a form refused whole"
			}
			return fieldErr(field, "%s overlaps the special-purpose range %s (%s)%s; refused unless the controller runs with --allow-special-ranges (lab only)",
				subject, m.Range.Prefix, m.Range.Name, whole)
		}
	}
	if subject, r, ok := overlapping(sets.blockSet, p); ok {
		return fieldErr(field, "%s overlaps %s on the controller's blocklist", subject, r.Prefix)
	}
	if subject, r, ok := overlapping(sets.optOutSet, p); ok {
		return fieldErr(field, "%s overlaps %s, whose operator opted out of probing", subject, r.Prefix)
	}
	return nil
}

// overlapping finds a range of set that p, or the IPv4 prefix p embeds,
// overlaps; subject describes which of the two did.
func overlapping(set *netrange.Set, p netip.Prefix) (string, netrange.Range, bool) {
	if r, ok := set.Overlap(p); ok {
		return p.String(), r, true
	}
	if v4, f, ok := netrange.EmbeddedIPv4(p); ok {
		if r, ok := set.Overlap(v4); ok {
			return embedsSubject(p, v4, f), r, true
		}
	}
	return "", netrange.Range{}, false
}

func embedsSubject(p, v4 netip.Prefix, f netrange.Form) string {
	return fmt.Sprintf("%s embeds %s (%s %s), which", p, v4, f.Name, f.Prefix)
}
