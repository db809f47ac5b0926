package bgp

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// MaxASPath is the longest AS path an Update may carry: a path longer than
// this is not a route anyone monitors, and it bounds what a peer (or an
// MRT file) can make the controller keep.
const MaxASPath = 64

// ErrInvalid wraps every validation error of an Update.
var ErrInvalid = errors.New("invalid BGP update")

// Update is one announcement or withdrawal of one prefix by one peer.
type Update struct {
	At       time.Time
	Peer     netip.Addr
	PeerAS   uint32
	Prefix   netip.Prefix
	Withdraw bool
	// Announcements: the flattened AS path (the peer's AS first, the
	// origin last) and the next hop.
	ASPath  []uint32
	NextHop netip.Addr
	// "bgp:<peer>", "bmp:<router>", "mrt:<file>".
	Source string
}

// Origin is the path's last AS (0 for a withdrawal or an empty path).
func (u Update) Origin() uint32 {
	if u.Withdraw || len(u.ASPath) == 0 {
		return 0
	}
	return u.ASPath[len(u.ASPath)-1]
}

// PeerEvent is a peer's session coming up or going down. A peer that goes
// down loses its routes (its Adj-RIB-In is gone) and leaves the
// visibility's denominator until it comes back.
type PeerEvent struct {
	At     time.Time
	Peer   netip.Addr
	PeerAS uint32
	Source string
	Up     bool
	// FullFeed: the peer counts in visibility. Collectors' peers are
	// configured as full-feed or not; MRT peers are.
	FullFeed bool
}

// Sink takes what a source (a collector session, a BMP station, an MRT
// reader) sees, in time order per peer. Implementations are safe for
// concurrent use.
type Sink interface {
	Update(Update)
	PeerState(PeerEvent)
}

// Validate checks what a peer or a file can get wrong, naming the field.
func (u Update) Validate() error {
	bad := func(field, format string, a ...any) error {
		return fmt.Errorf("%w: %s: %s", ErrInvalid, field, fmt.Sprintf(format, a...))
	}
	switch {
	case u.At.IsZero():
		return bad("at", "missing")
	case !u.Peer.IsValid():
		return bad("peer", "missing or not an address")
	case !u.Prefix.IsValid():
		return bad("prefix", "missing or not a prefix")
	case u.Prefix != u.Prefix.Masked():
		return bad("prefix", "%s has host bits set", u.Prefix)
	case len(u.ASPath) > MaxASPath:
		return bad("as_path", "%d ASes, more than %d", len(u.ASPath), MaxASPath)
	case !u.Withdraw && len(u.ASPath) == 0 && u.PeerAS != 0:
		// iBGP-learned and locally originated routes have an empty path;
		// an eBGP peer's announcement never does.
		return bad("as_path", "empty in an eBGP announcement")
	}
	return nil
}

// Proto is u as the API's BgpUpdate (id 0).
func (u Update) Proto() *vantagev1.BgpUpdate {
	p := &vantagev1.BgpUpdate{At: timestamppb.New(u.At), Peer: u.Peer.String(), PeerAs: u.PeerAS,
		Prefix: u.Prefix.String(), Withdraw: u.Withdraw, Source: u.Source}
	if !u.Withdraw {
		p.AsPath = append([]uint32(nil), u.ASPath...)
		p.OriginAs = u.Origin()
		if u.NextHop.IsValid() {
			p.NextHop = u.NextHop.String()
		}
	}
	return p
}

// FromProto parses and validates an API (or stored) BgpUpdate.
func FromProto(p *vantagev1.BgpUpdate) (Update, error) {
	u := Update{Withdraw: p.GetWithdraw(), PeerAS: p.GetPeerAs(), Source: p.GetSource()}
	var err error
	if p.GetAt() != nil {
		if err := p.GetAt().CheckValid(); err != nil {
			return Update{}, fmt.Errorf("%w: at: %w", ErrInvalid, err)
		}
		u.At = p.GetAt().AsTime()
	}
	if u.Peer, err = netip.ParseAddr(p.GetPeer()); err != nil {
		return Update{}, fmt.Errorf("%w: peer: %w", ErrInvalid, err)
	}
	if u.Prefix, err = netip.ParsePrefix(p.GetPrefix()); err != nil {
		return Update{}, fmt.Errorf("%w: prefix: %w", ErrInvalid, err)
	}
	if !u.Withdraw {
		u.ASPath = append([]uint32(nil), p.GetAsPath()...)
		if nh := p.GetNextHop(); nh != "" {
			if u.NextHop, err = netip.ParseAddr(nh); err != nil {
				return Update{}, fmt.Errorf("%w: next_hop: %w", ErrInvalid, err)
			}
		}
	}
	return u, u.Validate()
}
