package netrange

import (
	"cmp"
	"encoding/binary"
	"net/netip"
	"slices"
	"sort"
)

// Set answers "which of these ranges overlaps that prefix" in time
// logarithmic in the set's size (times the nesting depth), where a scan is
// linear: the controller checks every target of a campaign (up to 65,536)
// against blocklists that may hold a million prefixes.
//
// CIDR prefixes never partly overlap: two are disjoint or one holds the
// other. So the set is a forest: each level sorted by first address and
// disjoint, each node holding the prefixes nested in it. A query binary
// searches one level and descends only into the node that holds it.
type Set struct {
	roots [2][]*node // IPv4, IPv6
	n     int
}

type node struct {
	r    Range
	kids []*node // nested prefixes, sorted, disjoint
}

// NewSet builds a Set. Invalid prefixes are skipped, host bits are
// cleared, and a prefix listed twice is kept once (the first name).
func NewSet(rs []Range) *Set {
	sorted := make([]Range, 0, len(rs))
	for _, r := range rs {
		if r.Prefix.IsValid() {
			r.Prefix = r.Prefix.Masked()
			sorted = append(sorted, r)
		}
	}
	// By first address, then shorter first: a prefix comes before the
	// prefixes nested in it.
	slices.SortStableFunc(sorted, func(a, b Range) int {
		if c := a.Prefix.Addr().Compare(b.Prefix.Addr()); c != 0 {
			return c
		}
		return cmp.Compare(a.Prefix.Bits(), b.Prefix.Bits())
	})
	s := &Set{}
	var stack []*node // the chain of prefixes holding the current one
	for _, r := range sorted {
		for len(stack) > 0 && !stack[len(stack)-1].r.Prefix.Contains(r.Prefix.Addr()) {
			stack = stack[:len(stack)-1]
		}
		if len(stack) > 0 && stack[len(stack)-1].r.Prefix == r.Prefix {
			continue // listed twice
		}
		n := &node{r: r}
		if len(stack) == 0 {
			fam := family(r.Prefix.Addr())
			s.roots[fam] = append(s.roots[fam], n)
		} else {
			top := stack[len(stack)-1]
			top.kids = append(top.kids, n)
		}
		stack = append(stack, n)
		s.n++
	}
	return s
}

// Len is the number of distinct prefixes in the set.
func (s *Set) Len() int { return s.n }

// Overlap returns a range of the set that shares an address with p: the
// most specific one holding all of p if there is one, else one nested in
// p. p must be masked; an IPv4-mapped p is not unmapped.
func (s *Set) Overlap(p netip.Prefix) (Range, bool) {
	if s == nil || !p.IsValid() {
		return Range{}, false
	}
	level := s.roots[family(p.Addr())]
	first, last := p.Addr(), lastAddr(p)
	// The last node starting at or before p's first address.
	i := sort.Search(len(level), func(i int) bool { return level[i].r.Prefix.Addr().Compare(first) > 0 })
	if i > 0 && level[i-1].r.Prefix.Contains(first) {
		n := level[i-1]
		if n.r.Prefix.Bits() > p.Bits() {
			return n.r, true // nested in p, starting where p starts
		}
		return deepest(n, p).r, true
	}
	if i < len(level) && level[i].r.Prefix.Addr().Compare(last) <= 0 {
		return level[i].r, true // nested in p
	}
	return Range{}, false
}

// deepest returns the most specific node under n (n included) that holds
// all of p; n holds p.
func deepest(n *node, p netip.Prefix) *node {
	for {
		kids := n.kids
		i := sort.Search(len(kids), func(i int) bool { return kids[i].r.Prefix.Addr().Compare(p.Addr()) > 0 })
		if i == 0 {
			return n
		}
		k := kids[i-1]
		if k.r.Prefix.Bits() > p.Bits() || !k.r.Prefix.Contains(p.Addr()) {
			return n
		}
		n = k
	}
}

func family(a netip.Addr) int {
	if a.Is4() {
		return 0
	}
	return 1
}

// lastAddr is the last address of p (p masked).
func lastAddr(p netip.Prefix) netip.Addr {
	a := p.Addr()
	if a.Is4() {
		b := a.As4()
		v := binary.BigEndian.Uint32(b[:]) | (uint32(1)<<(32-p.Bits()) - 1)
		binary.BigEndian.PutUint32(b[:], v)
		return netip.AddrFrom4(b)
	}
	b := a.As16()
	hi, lo := binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])
	if host := 128 - p.Bits(); host >= 64 {
		lo = ^uint64(0)
		hi |= uint64(1)<<(host-64) - 1
	} else {
		lo |= uint64(1)<<host - 1
	}
	binary.BigEndian.PutUint64(b[:8], hi)
	binary.BigEndian.PutUint64(b[8:], lo)
	return netip.AddrFrom16(b)
}
