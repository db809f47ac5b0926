package collector

import (
	"bufio"
	"bytes"
	"compress/bzip2"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"time"

	bgppkt "github.com/osrg/gobgp/v3/pkg/packet/bgp"
	"github.com/osrg/gobgp/v3/pkg/packet/mrt"

	"github.com/vantage-net/vantage/controller/bgp"
)

// MaxMRTRecord caps one MRT record's length. A BGP message is at most
// 64 KiB; a TABLE_DUMP_V2 RIB record carries one prefix for every peer of
// the collector (a few hundred), far below this.
const MaxMRTRecord = 4 << 20

// ErrMRT wraps every error reading an MRT file's records.
var ErrMRT = errors.New("bad MRT record")

// Stats counts what ReadMRT read.
type Stats struct {
	Records int // MRT records read
	Updates int // Updates passed to fn
	// Invalid: Updates that failed bgp.Update.Validate (an AS path over
	// bgp.MaxASPath, an eBGP announcement with no path…), dropped.
	Invalid int
	// Skipped: records of types ReadMRT does not read (BGP4MP state
	// changes, TABLE_DUMP (v1), multicast and ADD-PATH RIBs, OSPF…).
	Skipped int
	// FlagsFixed: RIB entries' attributes whose flags were set right
	// before parsing (fixRIBFlags: BIRD 2.0's dumps write NEXT_HOP and
	// LOCAL_PREF with no flags).
	FlagsFixed int
}

// ReadMRT reads an MRT file (RFC 6396), plain, gzip- or bzip2-compressed
// (told apart by their magic bytes), and calls fn for each announcement
// and withdrawal, in file order, with Source set to source. It reads:
//
//   - BGP4MP and BGP4MP_ET, subtypes MESSAGE and MESSAGE_AS4: the peer's
//     UPDATEs, at the record's time (BGP4MP_ET: to the microsecond);
//   - TABLE_DUMP_V2 PEER_INDEX_TABLE, RIB_IPV4_UNICAST and
//     RIB_IPV6_UNICAST: each RIB entry is an announcement at the entry's
//     originated time (when the peer's route last changed), or the
//     record's time when that is zero. The originated time keeps a RIB
//     snapshot from looking like a burst of updates at the dump's time.
//
// Other records are skipped and counted. A malformed record stops the
// read with an error naming its number (from 1) and byte offset (in the
// decompressed stream); fn's error stops it too and is returned wrapped.
func ReadMRT(r io.Reader, source string, fn func(bgp.Update) error) (Stats, error) {
	var st Stats
	in, err := decompress(r)
	if err != nil {
		return st, err
	}
	rd := mrtReader{source: source, fn: fn, st: &st}
	var off int64
	for n := 1; ; n++ {
		var hb [mrt.MRT_COMMON_HEADER_LEN]byte
		if _, err := io.ReadFull(in, hb[:]); err != nil {
			if errors.Is(err, io.EOF) {
				return st, nil
			}
			return st, fmt.Errorf("%w %d at offset %d: header: %w", ErrMRT, n, off, truncated(err))
		}
		var h mrt.MRTHeader
		if err := h.DecodeFromBytes(hb[:]); err != nil {
			return st, fmt.Errorf("%w %d at offset %d: header: %w", ErrMRT, n, off, err)
		}
		if h.Len > MaxMRTRecord {
			return st, fmt.Errorf("%w %d at offset %d: length %d over the %d-byte cap", ErrMRT, n, off, h.Len, MaxMRTRecord)
		}
		body := make([]byte, h.Len)
		if _, err := io.ReadFull(in, body); err != nil {
			return st, fmt.Errorf("%w %d at offset %d: body of %d bytes: %w", ErrMRT, n, off, h.Len, truncated(err))
		}
		st.Records++
		if err := rd.record(h, body); err != nil {
			if errors.Is(err, errFn) {
				return st, fmt.Errorf("mrt record %d at offset %d: %w", n, off, err)
			}
			return st, fmt.Errorf("%w %d at offset %d (type %d subtype %d): %w", ErrMRT, n, off, h.Type, h.SubType, err)
		}
		off += int64(len(hb)) + int64(h.Len)
	}
}

// errFn marks fn's errors, which are not the file's fault.
var errFn = errors.New("mrt: the update callback failed")

func truncated(err error) error {
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return fmt.Errorf("truncated: %w", io.ErrUnexpectedEOF)
	}
	return err
}

// decompress looks at the first bytes: gzip (RIS) and bzip2 (RouteViews)
// are unwrapped, anything else is read as is.
func decompress(r io.Reader) (io.Reader, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	magic, err := br.Peek(3)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("mrt: reading the first bytes: %w", err)
	}
	switch {
	case len(magic) >= 2 && magic[0] == 0x1f && magic[1] == 0x8b:
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("mrt: gzip header: %w", err)
		}
		return zr, nil
	case bytes.Equal(magic, []byte("BZh")):
		return bzip2.NewReader(br), nil
	}
	return br, nil
}

// mrtReader keeps what records depend on: the last PEER_INDEX_TABLE.
type mrtReader struct {
	source string
	fn     func(bgp.Update) error
	st     *Stats
	peers  []*mrt.Peer
}

func (rd *mrtReader) record(h mrt.MRTHeader, body []byte) error {
	at := time.Unix(int64(h.Timestamp), 0).UTC()
	switch h.Type {
	case mrt.BGP4MP_ET:
		if len(body) < 4 {
			return fmt.Errorf("BGP4MP_ET: %d bytes, no microseconds field", len(body))
		}
		us := binary.BigEndian.Uint32(body)
		if us >= 1e6 {
			return fmt.Errorf("BGP4MP_ET: microseconds %d out of range", us)
		}
		at = at.Add(time.Duration(us) * time.Microsecond)
		h.Type, h.Len, body = mrt.BGP4MP, h.Len-4, body[4:]
		fallthrough
	case mrt.BGP4MP:
		switch mrt.MRTSubTypeBGP4MP(h.SubType) {
		case mrt.MESSAGE, mrt.MESSAGE_AS4:
			return rd.bgp4mp(h, body, at)
		}
	case mrt.TABLE_DUMPv2:
		switch mrt.MRTSubTypeTableDumpv2(h.SubType) {
		case mrt.PEER_INDEX_TABLE:
			return rd.peerIndex(h, body)
		case mrt.RIB_IPV4_UNICAST, mrt.RIB_IPV6_UNICAST:
			return rd.rib(h, body, at)
		}
	}
	rd.st.Skipped++
	return nil
}

// parse is GoBGP's MRT body parser, panics turned into errors.
func parse(h mrt.MRTHeader, body []byte) (*mrt.MRTMessage, error) {
	var m *mrt.MRTMessage
	err := safely("mrt body", func() error {
		var err error
		m, err = mrt.ParseMRTBody(&h, body)
		return err
	})
	return m, err
}

func (rd *mrtReader) bgp4mp(h mrt.MRTHeader, body []byte, at time.Time) error {
	m, err := parse(h, body)
	if err != nil {
		return fmt.Errorf("BGP4MP: %w", err)
	}
	msg, ok := m.Body.(*mrt.BGP4MPMessage)
	if !ok {
		return fmt.Errorf("BGP4MP: unexpected body %T", m.Body)
	}
	f := from{at: at, peer: ipAddr(msg.PeerIpAddress), peerAS: msg.PeerAS, source: rd.source}
	for _, u := range fromUpdate(msg.BGPMessage, f) {
		if err := rd.emit(u); err != nil {
			return err
		}
	}
	return nil
}

func (rd *mrtReader) peerIndex(h mrt.MRTHeader, body []byte) error {
	m, err := parse(h, body)
	if err != nil {
		return fmt.Errorf("PEER_INDEX_TABLE: %w", err)
	}
	t, ok := m.Body.(*mrt.PeerIndexTable)
	if !ok {
		return fmt.Errorf("PEER_INDEX_TABLE: unexpected body %T", m.Body)
	}
	rd.peers = t.Peers
	return nil
}

func (rd *mrtReader) rib(h mrt.MRTHeader, body []byte, at time.Time) error {
	if rd.peers == nil {
		return errors.New("RIB record before any PEER_INDEX_TABLE")
	}
	body = slices.Clone(body)
	rd.st.FlagsFixed += fixRIBFlags(body, h.SubType == uint16(mrt.RIB_IPV4_UNICAST))
	m, err := parse(h, body)
	if err != nil {
		return fmt.Errorf("RIB: %w", err)
	}
	rib, ok := m.Body.(*mrt.Rib)
	if !ok {
		return fmt.Errorf("RIB: unexpected body %T", m.Body)
	}
	for i, e := range rib.Entries {
		if int(e.PeerIndex) >= len(rd.peers) {
			return fmt.Errorf("RIB entry %d: peer index %d, the table has %d peers", i, e.PeerIndex, len(rd.peers))
		}
		p := rd.peers[e.PeerIndex]
		f := from{at: at, peer: ipAddr(p.IpAddress), peerAS: p.AS, source: rd.source}
		if e.OriginatedTime != 0 {
			f.at = time.Unix(int64(e.OriginatedTime), 0).UTC()
		}
		u, err := fromPath(rib.Prefix, e.PathAttributes, false, f)
		if err != nil {
			return fmt.Errorf("RIB entry %d: %w", i, err)
		}
		if err := rd.emit(u); err != nil {
			return err
		}
	}
	return nil
}

func (rd *mrtReader) emit(u bgp.Update) error {
	if u.Validate() != nil {
		rd.st.Invalid++
		return nil
	}
	if err := rd.fn(u); err != nil {
		return fmt.Errorf("%w: %w", errFn, err)
	}
	rd.st.Updates++
	return nil
}

// WriteMRT writes each update as one BGP4MP_ET MESSAGE_AS4 record (RFC
// 6396 section 3: BGP4MP with a microseconds field), holding one UPDATE
// message with 4-byte AS numbers: IPv4 prefixes in the classic fields,
// IPv6 in MP_REACH/MP_UNREACH_NLRI. ReadMRT reads it back to the same
// Updates, times to the microsecond (Source aside: the reader sets it).
// What an Update does not keep is written as a fixed value: ORIGIN is
// IGP, the local AS 0 and the local address the unspecified one. A
// missing next hop is written as 0.0.0.0 or :: and read back as missing.
func WriteMRT(w io.Writer, updates []bgp.Update) error {
	bw := bufio.NewWriter(w)
	for i, u := range updates {
		rec, err := mrtRecord(u)
		if err != nil {
			return fmt.Errorf("mrt: updates[%d]: %w", i, err)
		}
		if _, err := bw.Write(rec); err != nil {
			return fmt.Errorf("mrt: writing updates[%d]: %w", i, err)
		}
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("mrt: flushing: %w", err)
	}
	return nil
}

func mrtRecord(u bgp.Update) ([]byte, error) {
	if err := u.Validate(); err != nil {
		return nil, err
	}
	sec := u.At.Unix()
	if sec < 0 || sec > 1<<32-1 {
		return nil, fmt.Errorf("at: %s does not fit MRT's 32-bit seconds", u.At)
	}
	local := "0.0.0.0"
	if u.Peer.Is6() {
		local = "::"
	}
	bm := mrt.NewBGP4MPMessage(u.PeerAS, 0, 0, u.Peer.String(), local, true, updateMessage(u))
	body, err := bm.Serialize()
	if err != nil {
		return nil, fmt.Errorf("serializing the BGP4MP message: %w", err)
	}
	rec := make([]byte, mrt.MRT_COMMON_HEADER_LEN+4, mrt.MRT_COMMON_HEADER_LEN+4+len(body))
	binary.BigEndian.PutUint32(rec[0:], uint32(sec))
	binary.BigEndian.PutUint16(rec[4:], uint16(mrt.BGP4MP_ET))
	binary.BigEndian.PutUint16(rec[6:], uint16(mrt.MESSAGE_AS4))
	binary.BigEndian.PutUint32(rec[8:], uint32(4+len(body)))
	binary.BigEndian.PutUint32(rec[12:], uint32(u.At.Nanosecond()/1000))
	return append(rec, body...), nil
}

// updateMessage is u as a BGP UPDATE.
func updateMessage(u bgp.Update) *bgppkt.BGPMessage {
	bits := uint8(u.Prefix.Bits())
	addr := u.Prefix.Addr().String()
	v6 := u.Prefix.Addr().Is6()
	if u.Withdraw {
		if v6 {
			unreach := bgppkt.NewPathAttributeMpUnreachNLRI([]bgppkt.AddrPrefixInterface{bgppkt.NewIPv6AddrPrefix(bits, addr)})
			return bgppkt.NewBGPUpdateMessage(nil, []bgppkt.PathAttributeInterface{unreach}, nil)
		}
		return bgppkt.NewBGPUpdateMessage([]*bgppkt.IPAddrPrefix{bgppkt.NewIPAddrPrefix(bits, addr)}, nil, nil)
	}
	var segs []bgppkt.AsPathParamInterface
	for path := u.ASPath; len(path) > 0; {
		n := min(len(path), 255)
		segs = append(segs, bgppkt.NewAs4PathParam(bgppkt.BGP_ASPATH_ATTR_TYPE_SEQ, path[:n]))
		path = path[n:]
	}
	pas := []bgppkt.PathAttributeInterface{
		bgppkt.NewPathAttributeOrigin(bgppkt.BGP_ORIGIN_ATTR_TYPE_IGP),
		bgppkt.NewPathAttributeAsPath(segs),
	}
	nh := u.NextHop
	if !v6 && (!nh.IsValid() || nh.Is4()) {
		if !nh.IsValid() {
			nh = netip.IPv4Unspecified()
		}
		pas = append(pas, bgppkt.NewPathAttributeNextHop(nh.String()))
		return bgppkt.NewBGPUpdateMessage(nil, pas, []*bgppkt.IPAddrPrefix{bgppkt.NewIPAddrPrefix(bits, addr)})
	}
	if !nh.IsValid() {
		nh = netip.IPv6Unspecified()
	}
	var nlri bgppkt.AddrPrefixInterface = bgppkt.NewIPAddrPrefix(bits, addr)
	if v6 {
		nlri = bgppkt.NewIPv6AddrPrefix(bits, addr)
	}
	pas = append(pas, bgppkt.NewPathAttributeMpReachNLRI(nh.String(), []bgppkt.AddrPrefixInterface{nlri}))
	return bgppkt.NewBGPUpdateMessage(nil, pas, nil)
}

// Path attribute flags (RFC 4271 4.3).
const (
	attrOptional   = 0x80
	attrTransitive = 0x40
	attrExtended   = 0x10
)

// fixRIBFlags sets, in a RIB_IPV4/IPV6_UNICAST record's body, the flags
// of the attributes whose flags are all zero to what RFC 4271 fixes for
// their type: well-known (ORIGIN, AS_PATH, NEXT_HOP, LOCAL_PREF,
// ATOMIC_AGGREGATE) transitive, MULTI_EXIT_DISC optional. BIRD 2.0.12's
// `mrt dump` writes NEXT_HOP and LOCAL_PREF with zero flags, which
// GoBGP's parser refuses; no other flag is touched. It returns how many it
// set; a body it cannot walk is left for the parser to refuse.
func fixRIBFlags(body []byte, v4 bool) int {
	if len(body) < 5 {
		return 0
	}
	off := 5 + (int(body[4])+7)/8 // sequence number, prefix length and prefix
	if !v4 && body[4] > 128 || v4 && body[4] > 32 || off+2 > len(body) {
		return 0
	}
	count := int(body[off])<<8 | int(body[off+1])
	off += 2
	fixed := 0
	for range count {
		if off+8 > len(body) {
			return fixed
		}
		alen := int(body[off+6])<<8 | int(body[off+7])
		off += 8
		if off+alen > len(body) {
			return fixed
		}
		fixed += fixAttrFlags(body[off : off+alen])
		off += alen
	}
	return fixed
}

// fixAttrFlags is fixRIBFlags for one entry's attributes.
func fixAttrFlags(attrs []byte) int {
	fixed := 0
	for off := 0; off+3 <= len(attrs); {
		flags, typ := attrs[off], attrs[off+1]
		hdr, n := 3, int(attrs[off+2])
		if flags&attrExtended != 0 {
			if off+4 > len(attrs) {
				return fixed
			}
			hdr, n = 4, int(attrs[off+2])<<8|int(attrs[off+3])
		}
		if flags == 0 {
			switch typ {
			case 1, 2, 3, 5, 6: // ORIGIN, AS_PATH, NEXT_HOP, LOCAL_PREF, ATOMIC_AGGREGATE
				attrs[off], fixed = attrTransitive, fixed+1
			case 4: // MULTI_EXIT_DISC
				attrs[off], fixed = attrOptional, fixed+1
			}
		}
		off += hdr + n
	}
	return fixed
}
