package netrange

import (
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"
)

func TestTable(t *testing.T) {
	seen := map[netip.Prefix]bool{}
	for _, r := range Special() {
		if r.Prefix != r.Prefix.Masked() {
			t.Errorf("%s has host bits set", r.Prefix)
		}
		if seen[r.Prefix] {
			t.Errorf("%s listed twice", r.Prefix)
		}
		seen[r.Prefix] = true
		if !strings.Contains(r.Name, "(RFC ") {
			t.Errorf("%s: name %q does not cite its RFC", r.Prefix, r.Name)
		}
	}
	for _, f := range Forms() {
		if f.Checked == seen[f.Prefix] {
			t.Errorf("form %s: checked %v, in the table %v: a form is either checked or refused whole", f.Prefix, f.Checked, seen[f.Prefix])
		}
	}
	if special.Len() != len(table) {
		t.Errorf("set holds %d ranges, table %d", special.Len(), len(table))
	}
}

func TestLookup(t *testing.T) {
	tests := []struct {
		addr     string
		want     string // the range hit, "" = not special
		form     string // the form's prefix, if through one
		embedded string
	}{
		{"8.8.8.8", "", "", ""},
		{"2a00:1450::1", "", "", ""},
		{"10.0.0.1", "10.0.0.0/8", "", ""},
		{"255.255.255.255", "255.255.255.255/32", "", ""},
		{"255.255.255.254", "240.0.0.0/4", "", ""},
		{"192.31.196.1", "192.31.196.0/24", "", ""},
		{"192.52.193.1", "192.52.193.0/24", "", ""},
		{"192.175.48.1", "192.175.48.0/24", "", ""},
		{"2620:4f:8000::1", "2620:4f:8000::/48", "", ""},
		{"5f00::1", "5f00::/16", "", ""},
		{"fec0::1", "fec0::/10", "", ""},
		{"::1", "::1/128", "", ""},
		{"::ffff:10.0.0.1", "10.0.0.0/8", "", ""},
		{"::ffff:8.8.8.8", "", "", ""},
		{"64:ff9b::a00:1", "10.0.0.0/8", "64:ff9b::/96", "10.0.0.1/32"},
		{"64:ff9b::a9fe:a9fe", "169.254.0.0/16", "64:ff9b::/96", "169.254.169.254/32"},
		{"64:ff9b::7f00:1", "127.0.0.0/8", "64:ff9b::/96", "127.0.0.1/32"},
		{"64:ff9b::808:808", "", "", ""},
		{"64:ff9b::ffff:ffff", "255.255.255.255/32", "64:ff9b::/96", "255.255.255.255/32"},
		{"64:ff9b:1::808:808", "64:ff9b:1::/48", "", ""},
		{"::a00:1", "::/96", "::/96", "10.0.0.1/32"},
		{"::808:808", "::/96", "::/96", "8.8.8.8/32"},
		{"::ffff:0:a00:1", "::ffff:0:0:0/96", "::ffff:0:0:0/96", "10.0.0.1/32"},
		{"::ffff:0:808:808", "::ffff:0:0:0/96", "::ffff:0:0:0/96", "8.8.8.8/32"},
		{"2002:a00:1::1", "2002::/16", "2002::/16", "10.0.0.1/32"},
		{"2002:808:808::1", "2002::/16", "2002::/16", "8.8.8.8/32"},
		// Teredo: server 65.54.227.120, client 192.0.2.45 obfuscated.
		{"2001:0:4136:e378:8000:63bf:3fff:fdd2", "2001::/32", "2001::/32", "192.0.2.45/32"},
		{"2001:2::1", "2001:2::/48", "", ""},
		{"2001:1ff:ffff::1", "2001::/23", "", ""},
		{"2001:200::1", "", "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.addr, func(t *testing.T) {
			m, ok := Lookup(netip.MustParseAddr(tc.addr))
			if ok != (tc.want != "") {
				t.Fatalf("Lookup = %+v %v, want special %v", m, ok, tc.want != "")
			}
			if !ok {
				return
			}
			if m.Range.Prefix.String() != tc.want {
				t.Errorf("range %s, want %s", m.Range.Prefix, tc.want)
			}
			if got := prefixString(m.Form.Prefix); got != tc.form {
				t.Errorf("form %s, want %q", got, tc.form)
			}
			if got := prefixString(m.Embedded); got != tc.embedded {
				t.Errorf("embedded %s, want %q", got, tc.embedded)
			}
			t.Logf("%s %s", tc.addr, m)
		})
	}
}

func prefixString(p netip.Prefix) string {
	if !p.IsValid() {
		return ""
	}
	return p.String()
}

func TestLookupPrefix(t *testing.T) {
	tests := []struct {
		prefix, want string
	}{
		{"1.0.0.0/8", ""},
		{"0.0.0.0/0", "0.0.0.0/8"},
		{"8.0.0.0/7", ""},
		{"10.1.0.0/16", "10.0.0.0/8"},
		{"192.0.0.0/16", "192.0.0.0/24"},
		{"64:ff9b::a00:0/120", "10.0.0.0/8"},
		{"64:ff9b::808:800/120", ""},
		{"64:ff9b::800:0/101", "10.0.0.0/8"}, // 8.0.0.0/5 holds 10/8
		{"64:ff9b::/96", "0.0.0.0/8"},
		{"64:ff9b::/64", "0.0.0.0/8"},
		{"::ffff:0:0/96", "0.0.0.0/8"},
		{"2002::/15", "2002::/16"},
		{"2000::/3", "2001::/23"},
		{"2a00::/16", ""},
		{"::/0", "::/96"},
	}
	for _, tc := range tests {
		t.Run(tc.prefix, func(t *testing.T) {
			m, ok := LookupPrefix(netip.MustParsePrefix(tc.prefix))
			if got := prefixString(m.Range.Prefix); got != tc.want {
				t.Fatalf("LookupPrefix = %q (%v), want %q", got, ok, tc.want)
			}
		})
	}
}

func TestMatchString(t *testing.T) {
	tests := []struct{ addr, want string }{
		{"10.0.0.1", "is in 10.0.0.0/8 (private use (RFC 1918))"},
		{"64:ff9b::a00:1", "embeds 10.0.0.1/32 (NAT64 well-known prefix (RFC 6052) 64:ff9b::/96), which is in 10.0.0.0/8 (private use (RFC 1918))"},
		{"2002:808:808::1", "is in 2002::/16 (6to4 (RFC 3056)), a form refused whole; it embeds 8.8.8.8/32"},
	}
	for _, tc := range tests {
		m, _ := Lookup(netip.MustParseAddr(tc.addr))
		if got := m.String(); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.addr, got, tc.want)
		}
	}
}

// TestSetOverlapMatchesScan compares Set.Overlap with a linear scan over
// random nested and disjoint prefixes.
func TestSetOverlapMatchesScan(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	randPrefix := func(v6 bool, minBits, maxBits int) netip.Prefix {
		bits := minBits + rng.IntN(maxBits-minBits+1)
		if v6 {
			var b [16]byte
			b[0], b[1], b[2] = 0x20, byte(rng.IntN(4)), byte(rng.IntN(256))
			b[3] = byte(rng.IntN(256))
			return netip.PrefixFrom(netip.AddrFrom16(b), bits).Masked()
		}
		// Few distinct top bytes, so prefixes nest often.
		a := netip.AddrFrom4([4]byte{byte(rng.IntN(4)), byte(rng.IntN(8)), byte(rng.IntN(256)), byte(rng.IntN(256))})
		return netip.PrefixFrom(a, bits).Masked()
	}
	var rs []Range
	for i := range 3000 {
		rs = append(rs, Range{Prefix: randPrefix(i%3 == 0, 4, 32), Name: "r"})
	}
	s := NewSet(rs)
	for range 5000 {
		v6 := rng.IntN(3) == 0
		q := randPrefix(v6, 0, 32)
		if v6 && rng.IntN(2) == 0 {
			q = netip.PrefixFrom(q.Addr(), 33+rng.IntN(96)).Masked()
		}
		got, ok := s.Overlap(q)
		var any bool
		best := -1
		for _, r := range rs {
			if r.Prefix.Overlaps(q) {
				any = true
				if r.Prefix.Bits() <= q.Bits() && r.Prefix.Contains(q.Addr()) {
					best = max(best, r.Prefix.Bits())
				}
			}
		}
		if ok != any {
			t.Fatalf("Overlap(%s) = %v %v, scan says %v", q, got.Prefix, ok, any)
		}
		if !ok {
			continue
		}
		if !got.Prefix.Overlaps(q) {
			t.Fatalf("Overlap(%s) = %s, which does not overlap it", q, got.Prefix)
		}
		if best >= 0 && got.Prefix.Bits() != best {
			t.Fatalf("Overlap(%s) = %s, want the most specific range holding it (/%d)", q, got.Prefix, best)
		}
	}
}

func BenchmarkSetOverlap(b *testing.B) {
	rng := rand.New(rand.NewPCG(3, 4))
	rs := make([]Range, 1_000_000)
	for i := range rs {
		a := netip.AddrFrom4([4]byte{byte(rng.IntN(256)), byte(rng.IntN(256)), byte(rng.IntN(256)), 0})
		rs[i] = Range{Prefix: netip.PrefixFrom(a, 24)}
	}
	s := NewSet(rs)
	b.ResetTimer()
	for i := range b.N {
		a := netip.AddrFrom4([4]byte{byte(i), byte(i >> 8), byte(i >> 16), 1})
		s.Overlap(netip.PrefixFrom(a, 32))
	}
}
