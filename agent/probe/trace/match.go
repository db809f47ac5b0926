package trace

// Matching: the reader goroutines parse every answer and find its trace and
// TTL from what it quotes alone; loops and completion are decided here.

import (
	"encoding/binary"
	"errors"
	"log/slog"
	"net"
	"time"

	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// readLoop reads one receive socket until it is closed.
func (tc *Tracer) readLoop(c rawConn, kind rxKind) {
	defer tc.wg.Done()
	in := make([]inPacket, 32)
	for i := range in {
		in[i].buf = make([]byte, 1600)
	}
	for {
		n, err := c.ReadBatch(in)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			select {
			case <-tc.stop:
				return
			default:
			}
			tc.log.Warn("trace socket read failed", slog.Any("error", err))
			select {
			case <-time.After(10 * time.Millisecond):
			case <-tc.stop:
				return
			}
			continue
		}
		for i := range n {
			tc.handle(kind, &in[i])
		}
	}
}

// handle parses one received packet and matches it to its trace and TTL,
// or counts it.
func (tc *Tracer) handle(kind rxKind, p *inPacket) {
	b := p.buf[:min(p.n, len(p.buf))]
	var r reply
	var err error
	hl := p.hopLimit
	switch kind {
	case rxICMP4:
		r, err = parseICMP4(b)
		hl = int(r.replyTTL)
	case rxICMP6:
		r, err = parseICMP6(b, p.src)
	case rxTCP4:
		r, err = parseTCP4(b)
		hl = int(r.replyTTL)
	case rxTCP6:
		r, err = parseTCP6(b, p.src)
	}
	if err != nil {
		tc.ignored.Add(1)
		return
	}
	tc.match(&r, hl, p.at)
}

// match finds the trace and TTL an answer belongs to from the answer alone,
// and records it as that TTL's hop. Everything that does not fit is
// counted: late (an answer for a trace that ended), duplicate or ignored.
func (tc *Tracer) match(r *reply, hopLimit int, at time.Time) {
	idx, ok := slotIndex(r)
	if !ok {
		tc.ignored.Add(1)
		return
	}
	tc.mu.Lock()
	defer tc.mu.Unlock()
	tr, ttl, ok := tc.traceOf(idx, r)
	if !ok {
		return
	}
	if !tr.id.echoedBy(r) || ttl < 1 || int(ttl) > tr.maxTTL || tr.sent[ttl].IsZero() {
		tc.ignored.Add(1)
		return
	}
	if tr.ans[ttl].hop != nil {
		tc.dups.Add(1)
		return
	}
	final := finalOf(r, &tr.id)
	tr.ans[ttl] = answer{final: final, hop: newHop(r, ttl, max(at.Sub(tr.sent[ttl]), 0), hopLimit)}
	tc.matched.Add(1)
	if final != finalDest || tr.lowestFinal() == int(ttl) {
		tc.learn(tr.id.dst, uint8(ttl), r.src, final)
	}
	if !tr.doneSet && tr.complete() {
		tr.doneSet = true
		close(tr.done)
	} else if tr.shouldExtend(false) {
		tr.signal()
	}
}

// slotIndex is the trace slot an answer names: the echo id, or the source
// port above portBase.
func slotIndex(r *reply) (uint16, bool) {
	switch r.proto {
	case protoICMP, protoICMPv6:
		return r.sport, true
	case protoUDP, protoTCP:
		if r.sport < portBase {
			return 0, false
		}
		return r.sport - portBase, true
	}
	return 0, false
}

// traceOf is the running trace in slot idx that r answers, and the TTL
// it answers (the generation and the destination must be the trace's);
// an answer for the slot's previous trace counts as late, anything else
// as ignored. tc.mu is held.
func (tc *Tracer) traceOf(idx uint16, r *reply) (*traceState, uint16, bool) {
	gen, ttl := uint8(r.tag>>8), r.tag&0xff
	dst := r.quotedDst
	if r.kind == kindEchoReply {
		dst = r.src
	}
	if int(idx) >= len(tc.slots) {
		tc.ignored.Add(1)
		return nil, 0, false
	}
	s := &tc.slots[idx]
	tr := s.tr
	if tr != nil && r.proto == protoUDP && !tr.id.paris {
		// Classic UDP: the destination port names the TTL; the
		// checksum is not ours to read.
		ttl, gen = r.dport-tr.id.port, tr.id.gen
	}
	if tr == nil || tr.finished || s.gen != gen || tr.id.dst != dst || tr.id.proto != r.proto {
		if s.gen == gen && s.lastDst == dst {
			tc.late.Add(1)
		} else {
			tc.ignored.Add(1)
		}
		return nil, 0, false
	}
	return tr, ttl, true
}

// echoedBy reports whether r carries what only an answer to this probe
// can: the cookie (in the TCP sequence number, or the quoted or echoed
// payload when there is one) and the destination port.
func (id *probeID) echoedBy(r *reply) bool {
	switch r.proto {
	case protoTCP:
		return r.hiSeq == uint16(id.cookie) && r.dport == id.port
	case protoUDP:
		if id.paris && r.dport != id.port {
			return false
		}
	}
	return r.payloadN < 6 || binary.BigEndian.Uint32(r.payload[2:6]) == id.cookie
}

// finalOf says whether r ends the trace: the destination answered
// (an echo reply, a SYN-ACK or RST, or the destination's own UDP port
// unreachable), or another unreachable; 0 for a router on the way.
func finalOf(r *reply, id *probeID) uint8 {
	switch r.kind {
	case kindEchoReply, kindTCP:
		return finalDest
	case kindUnreachable:
		if r.src == id.dst && r.proto == protoUDP &&
			((id.dst.Is4() && r.icmpCode == v4PortUnreach) || (id.dst.Is6() && r.icmpCode == v6PortUnreach)) {
			return finalDest // the destination's own port unreachable
		}
		return finalUnreach
	}
	return 0
}

// newHop is the hop r makes at ttl, rtt after its probe.
func newHop(r *reply, ttl uint16, rtt time.Duration, hopLimit int) *vantagev1.Hop {
	hop := &vantagev1.Hop{
		Ttl:       uint32(ttl),
		Addr:      r.src.String(),
		RttUs:     uint32(min(rtt.Microseconds(), 1<<32-1)),
		IcmpType:  uint32(r.icmpType),
		IcmpCode:  uint32(r.icmpCode),
		QuotedTtl: uint32(r.quotedTTL),
		ReplyTtl:  uint32(max(hopLimit, 0)),
	}
	if r.kind == kindTCP {
		hop.IcmpType, hop.IcmpCode = 0, 0
	}
	if r.kind == kindEchoReply || r.kind == kindTCP {
		hop.QuotedTtl = 0
	}
	for _, l := range r.labels[:r.nLabels] {
		hop.Mpls = append(hop.Mpls, &vantagev1.MplsLabel{Label: l.label, Exp: uint32(l.exp), BottomOfStack: l.s, Ttl: uint32(l.ttl)})
	}
	return hop
}

// lowestFinal is the lowest TTL with a final answer, or 0.
func (tr *traceState) lowestFinal() int {
	for ttl := 1; ttl <= tr.maxTTL; ttl++ {
		if tr.ans[ttl].final != 0 {
			return ttl
		}
	}
	return 0
}

// signal wakes the trace's Probe goroutine.
func (tr *traceState) signal() {
	select {
	case tr.kick <- struct{}{}:
	default:
	}
}

// complete reports whether the answers decide the trace already: a final
// answer, or a loop, with every TTL below it answered.
func (tr *traceState) complete() bool {
	for ttl := 1; ttl <= tr.maxTTL; ttl++ {
		a := tr.ans[ttl]
		if a.hop == nil {
			return loopAt(tr.ans[:ttl]) != 0
		}
		if a.final != 0 {
			return true
		}
	}
	return loopAt(tr.ans[:tr.maxTTL+1]) != 0
}

// loopRepeat is how many consecutive TTLs one router may answer before the
// trace counts as a loop. Two in a row are common (a router that answers
// for its own next hop, or does not decrement the TTL); three are not.
const loopRepeat = 3

// loopAt returns the TTL at which the answers (ans[ttl], ttl >= 1) show a
// forwarding loop, or 0: the same address answering time exceeded at
// loopRepeat consecutive TTLs, or answering again after another address or
// a silent TTL came between (a cycle). Only TTLs below the first final
// answer count.
func loopAt(ans []answer) int {
	run := 0
	for ttl := 1; ttl < len(ans); ttl++ {
		a := ans[ttl]
		if a.hop == nil {
			run = 0
			continue
		}
		if a.final != 0 {
			return 0
		}
		addr := a.hop.GetAddr()
		if run > 0 && ans[ttl-1].hop.GetAddr() == addr {
			if run++; run >= loopRepeat {
				return ttl
			}
			continue
		}
		run = 1
		for prev := 1; prev < ttl; prev++ {
			if h := ans[prev].hop; h != nil && h.GetAddr() == addr {
				return ttl // seen before, with something else between
			}
		}
	}
	return 0
}
