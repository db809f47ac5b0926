package campaign

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"math/bits"
	"net/netip"
	"strconv"
	"strings"
)

// RIR delegated-stats files (the "delegated-<rir>-latest" and
// "delegated-<rir>-extended-latest" files every regional registry
// publishes) list one number resource per line:
//
//	registry|cc|type|start|value|date|status[|opaque-id[|extensions...]]
//
// After an optional version line (`2|apnic|20240101|...`) come summary lines
// (`apnic|*|ipv4|*|48000|summary`) and comments (`#`). For ipv4, value is an
// address count that need not be a power of two, so a block may be several
// CIDR prefixes; for ipv6 it is the prefix length. Only status allocated or
// assigned counts: available and reserved space belongs to nobody yet.

// MaxRIRBytes is the largest delegated-stats file read (the real extended
// files are about 5 MB).
const MaxRIRBytes = 64 << 20

// ErrRIR is wrapped by every RIR file error.
var ErrRIR = errors.New("invalid RIR delegated-stats file")

// RIRError is a broken line of a delegated-stats file.
type RIRError struct {
	// Line is 1-based.
	Line int
	// Field is the column name: registry, cc, type, start, value, date,
	// status, or "" for the line as a whole.
	Field  string
	Reason string
}

func (e *RIRError) Error() string {
	if e.Field == "" {
		return fmt.Sprintf("line %d: %s", e.Line, e.Reason)
	}
	return fmt.Sprintf("line %d: field %s: %s", e.Line, e.Field, e.Reason)
}

// Is makes every RIRError match ErrRIR.
func (e *RIRError) Is(target error) bool { return target == ErrRIR }

// RIRBlock is one allocated or assigned address block of a country.
type RIRBlock struct {
	// Prefixes covers exactly the block (one prefix unless an ipv4 count is
	// not a power of two or not aligned).
	Prefixes []netip.Prefix
	Registry string
	Status   string
	// Line is where the block is in the file.
	Line int
}

// ParseRIR reads a delegated-stats file (plain or extended) and returns the
// IPv4 and IPv6 blocks of country (ISO 3166 alpha-2, upper case) in file
// order. Every record line is checked, not only the country's, so a broken
// file is reported rather than half used; the error names the line and the
// field.
func ParseRIR(data []byte, country string) ([]RIRBlock, error) {
	if len(data) > MaxRIRBytes {
		return nil, &RIRError{Line: 0, Reason: fmt.Sprintf("file is %d bytes, more than the limit of %d", len(data), MaxRIRBytes)}
	}
	var out []RIRBlock
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), 64<<10)
	line, sawVersion := 0, false
	for sc.Scan() {
		line++
		text := strings.TrimRight(sc.Text(), "\r")
		if strings.TrimSpace(text) == "" || strings.HasPrefix(strings.TrimSpace(text), "#") {
			continue
		}
		f := strings.Split(text, "|")
		// The version line: version|registry|serial|records|startdate|enddate|UTCoffset.
		if !sawVersion && len(f) >= 6 && isDigits(strings.ReplaceAll(f[0], ".", "")) {
			sawVersion = true
			continue
		}
		if len(f) >= 6 && f[1] == "*" && f[5] == "summary" {
			continue
		}
		if len(f) < 7 {
			return nil, &RIRError{Line: line, Reason: fmt.Sprintf("has %d fields, want at least 7 (registry|cc|type|start|value|date|status)", len(f))}
		}
		b, ok, err := parseRIRRecord(line, f, country)
		if err != nil {
			return nil, err
		}
		if ok {
			out = append(out, b)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, &RIRError{Line: line + 1, Reason: err.Error()}
	}
	return out, nil
}

func parseRIRRecord(line int, f []string, country string) (RIRBlock, bool, error) {
	bad := func(field, format string, args ...any) (RIRBlock, bool, error) {
		return RIRBlock{}, false, &RIRError{Line: line, Field: field, Reason: fmt.Sprintf(format, args...)}
	}
	registry, cc, typ, start, value, date, status := f[0], f[1], f[2], f[3], f[4], f[5], f[6]
	if registry == "" || strings.ContainsFunc(registry, func(r rune) bool { return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') }) {
		return bad("registry", "%.32q is not a registry name", registry)
	}
	// Extended files leave cc empty (or ZZ) for available/reserved space.
	if cc != "" && (len(cc) != 2 || strings.ToUpper(cc) != cc || !isLetters(cc)) {
		return bad("cc", "%.32q is not a two-letter upper-case country code", cc)
	}
	if date != "" && date != "00000000" && (len(date) != 8 || !isDigits(date)) {
		return bad("date", "%.32q is not YYYYMMDD", date)
	}
	switch status {
	case "allocated", "assigned", "available", "reserved":
	default:
		return bad("status", "%.32q must be allocated, assigned, available or reserved", status)
	}
	n, err := strconv.ParseUint(value, 10, 64)
	if err != nil || n == 0 {
		return bad("value", "%.32q is not a positive integer", value)
	}
	var b RIRBlock
	switch typ {
	case "asn":
		return RIRBlock{}, false, nil
	case "ipv4":
		a, err := netip.ParseAddr(start)
		if err != nil || !a.Is4() {
			return bad("start", "%.64q is not an IPv4 address", start)
		}
		if n > 1<<32 || uint64(v4(a))+n > 1<<32 {
			return bad("value", "%d addresses from %s run past 255.255.255.255", n, a)
		}
		b.Prefixes = splitV4(v4(a), n)
	case "ipv6":
		a, err := netip.ParseAddr(start)
		if err != nil || !a.Is6() || a.Is4In6() || a.Zone() != "" {
			return bad("start", "%.64q is not an IPv6 address", start)
		}
		if n > 128 {
			return bad("value", "%d is not an IPv6 prefix length (0-128)", n)
		}
		p := netip.PrefixFrom(a, int(n))
		if p.Masked() != p {
			return bad("start", "%s has bits set beyond the /%d of value", a, n)
		}
		b.Prefixes = []netip.Prefix{p}
	default:
		return bad("type", "%.32q must be asn, ipv4 or ipv6", typ)
	}
	if cc != country || (status != "allocated" && status != "assigned") {
		return RIRBlock{}, false, nil
	}
	b.Registry, b.Status, b.Line = registry, status, line
	return b, true, nil
}

func v4(a netip.Addr) uint32 {
	b := a.As4()
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

// splitV4 covers [start, start+n) with the fewest CIDR prefixes: at each
// step the largest block that is aligned at start and fits in what is left.
func splitV4(start uint32, n uint64) []netip.Prefix {
	var out []netip.Prefix
	cur := uint64(start)
	for n > 0 {
		size := uint64(1) << 32
		if cur != 0 {
			size = uint64(1) << bits.TrailingZeros64(cur)
		}
		for size > n {
			size >>= 1
		}
		plen := 32 - bits.TrailingZeros64(size)
		a := netip.AddrFrom4([4]byte{byte(cur >> 24), byte(cur >> 16), byte(cur >> 8), byte(cur)})
		out = append(out, netip.PrefixFrom(a, plen))
		cur += size
		n -= size
	}
	return out
}

func isDigits(s string) bool {
	return s != "" && !strings.ContainsFunc(s, func(r rune) bool { return r < '0' || r > '9' })
}

func isLetters(s string) bool {
	return !strings.ContainsFunc(s, func(r rune) bool { return r < 'A' || r > 'Z' })
}
