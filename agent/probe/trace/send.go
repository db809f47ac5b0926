package trace

// Sending: one packet per write, its send time taken right before it.

import (
	"fmt"
	"log/slog"
	"time"
)

func (tc *Tracer) isFinished(tr *traceState) bool {
	tc.mu.Lock()
	defer tc.mu.Unlock()
	return tr.finished
}

// dropped accounts a queued probe that will not be sent.
func (tc *Tracer) dropped(tr *traceState) {
	tc.mu.Lock()
	defer tc.mu.Unlock()
	tc.noteDone(tr)
}

// noteDone counts a probe of tr as sent or dropped. Called with tc.mu held.
func (tc *Tracer) noteDone(tr *traceState) {
	tr.nDone++
	if tr.nDone == tr.nQueued {
		tr.signal()
	}
}

// write builds a batch and sends it, per family, one packet per write.
// Each packet's send time is taken right before its own write and recorded
// before it, so even an answer faster than the bookkeeping finds it. (One
// sendmmsg for the batch with one time for all would add the time the
// kernel takes over the packets before it to each RTT: up to ~130 µs for
// 64 packets.)
func (tc *Tracer) write(batch []pending, bufs *[2][batchSize][hdr6 + 64]byte, out *[2][]outPacket, trs *[2][]pending) {
	out[0], out[1] = out[0][:0], out[1][:0]
	trs[0], trs[1] = trs[0][:0], trs[1][:0]
	for _, p := range batch {
		if tc.cfg.Limiter != nil {
			if err := tc.cfg.Limiter.Wait(tc.ctx); err != nil {
				tc.mu.Lock()
				if p.tr.sendErr == nil {
					p.tr.sendErr = fmt.Errorf("pacing: %w", err)
				}
				tc.noteDone(p.tr)
				tc.mu.Unlock()
				continue
			}
		}
		f := b2i(p.tr.id.dst.Is6())
		id := p.tr.id
		id.ttl = p.ttl
		b := bufs[f][len(out[f])][:]
		n := buildProbe(b, &id)
		out[f] = append(out[f], outPacket{b: b[:n], dst: id.dst})
		trs[f] = append(trs[f], p)
	}
	for f := range 2 {
		pk := out[f]
		failed := 0
		for i := range pk {
			p := trs[f][i]
			now := time.Now()
			tc.mu.Lock()
			if p.tr.finished { // ended while the batch was being written
				tc.mu.Unlock()
				continue
			}
			p.tr.sent[p.ttl] = now
			p.tr.lastSent = now
			tc.mu.Unlock()
			if _, err := tc.fam[f].icmp.WriteBatch(pk[i : i+1]); err != nil {
				tc.sendErr.Add(1)
				failed++
				tc.mu.Lock()
				p.tr.sent[p.ttl] = time.Time{}
				if p.tr.sendErr == nil {
					p.tr.sendErr = fmt.Errorf("send ttl %d: %w", p.ttl, err)
				}
				tc.mu.Unlock()
			}
		}
		tc.mu.Lock()
		for _, p := range trs[f] {
			tc.noteDone(p.tr)
		}
		tc.mu.Unlock()
		if failed > 0 {
			tc.log.Debug("trace probe send failed", slog.Int("packets", failed))
		}
	}
}
