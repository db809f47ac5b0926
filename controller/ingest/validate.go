package ingest

import (
	"fmt"
	"math"
	"net/netip"

	"google.golang.org/protobuf/proto"

	"github.com/vantage-net/vantage/controller/fleet"
	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// Bounds on what an agent's messages may carry. Each is far above what a
// real agent sends (its engine names are a dozen bytes, its gap reasons
// under 80) and low enough that a stored row stays small.
const (
	// MaxGapReasonLen bounds Gap.reason, stored with every gap row.
	MaxGapReasonLen = 256
	// MaxEngines and MaxEngineLen bound Hello.capabilities.engines.
	MaxEngines   = 32
	MaxEngineLen = 64
	// MaxTraceProtocols bounds Hello.capabilities.trace_protocols.
	MaxTraceProtocols = 8
	// MaxCapabilitiesBytes and MaxSpoolBytes bound the encoded
	// Capabilities and SpoolState (stored as they came, unknown fields
	// included, so their size is what counts).
	MaxCapabilitiesBytes = 4096
	MaxSpoolBytes        = 256
)

// ValidateBatch checks a ResultBatch's framing and every result's shape.
func ValidateBatch(b *vantagev1.ResultBatch) error {
	if b.GetEpoch() == 0 {
		return fmt.Errorf("%w: results.epoch: must be > 0", ErrInvalid)
	}
	first, last := b.GetFirstSeq(), b.GetLastSeq()
	if first == 0 && last == 0 && len(b.GetResults()) == 0 {
		// Gaps only: an agent reporting lost results with nothing else
		// to send. It is acked with up_to_seq 0.
		if len(b.GetGaps()) == 0 {
			return fmt.Errorf("%w: results: no results and no gaps", ErrInvalid)
		}
		if b.GetEpoch() > math.MaxInt64 {
			return fmt.Errorf("%w: results.epoch %d: at most 2^63-1 (stored as SQL integers)", ErrInvalid, b.GetEpoch())
		}
		return validateGaps(b.GetGaps())
	}
	if first == 0 || first > last {
		return fmt.Errorf("%w: results.first_seq %d, last_seq %d: want 1 <= first_seq <= last_seq", ErrInvalid, first, last)
	}
	if last > math.MaxInt64 || b.GetEpoch() > math.MaxInt64 {
		return fmt.Errorf("%w: results.last_seq %d, epoch %d: at most 2^63-1 (stored as SQL integers)", ErrInvalid, last, b.GetEpoch())
	}
	n := len(b.GetResults())
	if n > MaxBatchResults {
		return fmt.Errorf("%w: results.results: %d results, at most %d", ErrInvalid, n, MaxBatchResults)
	}
	if uint64(n) != last-first+1 {
		return fmt.Errorf("%w: results.results: %d results for seq %d..%d", ErrInvalid, n, first, last)
	}
	for i, r := range b.GetResults() {
		if r.GetSeq() != first+uint64(i) {
			return fmt.Errorf("%w: results.results[%d].seq: %d, want %d (contiguous)", ErrInvalid, i, r.GetSeq(), first+uint64(i))
		}
		if _, err := netip.ParseAddr(r.GetTarget()); err != nil {
			return fmt.Errorf("%w: results.results[%d].target: %.64q is not an IP address", ErrInvalid, i, r.GetTarget())
		}
		if r.GetSentAt() == nil || !r.GetSentAt().IsValid() {
			return fmt.Errorf("%w: results.results[%d].sent_at: missing or invalid", ErrInvalid, i)
		}
		if len(r.GetHops()) > 255 {
			return fmt.Errorf("%w: results.results[%d].hops: %d hops, at most 255", ErrInvalid, i, len(r.GetHops()))
		}
	}
	return validateGaps(b.GetGaps())
}

// validateGaps checks a batch's gap records.
func validateGaps(gaps []*vantagev1.Gap) error {
	if len(gaps) > MaxBatchResults {
		return fmt.Errorf("%w: results.gaps: %d gaps, at most %d", ErrInvalid, len(gaps), MaxBatchResults)
	}
	for i, g := range gaps {
		if g.GetEpoch() == 0 || g.GetFirstSeq() == 0 || g.GetFirstSeq() > g.GetLastSeq() {
			return fmt.Errorf("%w: results.gaps[%d]: want epoch > 0 and 1 <= first_seq <= last_seq", ErrInvalid, i)
		}
		if g.GetLastSeq() > math.MaxInt64 || g.GetEpoch() > math.MaxInt64 {
			return fmt.Errorf("%w: results.gaps[%d]: last_seq and epoch at most 2^63-1", ErrInvalid, i)
		}
		if n := len(g.GetReason()); n > MaxGapReasonLen {
			return fmt.Errorf("%w: results.gaps[%d].reason: %d bytes, at most %d", ErrInvalid, i, n, MaxGapReasonLen)
		}
	}
	return nil
}

// validateHello checks every field of a Hello that the controller stores
// or shows, and names the field that is wrong.
func validateHello(h *vantagev1.Hello) error {
	if h.GetEpoch() == 0 || h.GetEpoch() > math.MaxInt64 {
		return fmt.Errorf("%w: hello.epoch: %d: want 1..2^63-1", ErrInvalid, h.GetEpoch())
	}
	if err := printable("hello.agent_version", h.GetAgentVersion(), MaxVersionLen); err != nil {
		return err
	}
	if err := fleet.ValidateLabels("hello.labels", h.GetLabels()); err != nil {
		return err
	}
	c := h.GetCapabilities()
	if n := len(c.GetEngines()); n > MaxEngines {
		return fmt.Errorf("%w: hello.capabilities.engines: %d entries, at most %d", ErrInvalid, n, MaxEngines)
	}
	for i, e := range c.GetEngines() {
		if err := printable(fmt.Sprintf("hello.capabilities.engines[%d]", i), e, MaxEngineLen); err != nil {
			return err
		}
	}
	if n := len(c.GetTraceProtocols()); n > MaxTraceProtocols {
		return fmt.Errorf("%w: hello.capabilities.trace_protocols: %d entries, at most %d", ErrInvalid, n, MaxTraceProtocols)
	}
	if n := proto.Size(c); n > MaxCapabilitiesBytes {
		return fmt.Errorf("%w: hello.capabilities: %d bytes encoded, at most %d", ErrInvalid, n, MaxCapabilitiesBytes)
	}
	return validateSpool("hello.spool", h.GetSpool())
}

// validateSpool bounds a SpoolState (Hello, Heartbeat): its fields are
// numbers, but unknown fields would be stored too.
func validateSpool(field string, sp *vantagev1.SpoolState) error {
	if n := proto.Size(sp); n > MaxSpoolBytes {
		return fmt.Errorf("%w: %s: %d bytes encoded, at most %d", ErrInvalid, field, n, MaxSpoolBytes)
	}
	return nil
}

// printable checks that s has at most max bytes, all printable ASCII.
func printable(field, s string, max int) error {
	if len(s) > max {
		return fmt.Errorf("%w: %s: %d bytes, at most %d", ErrInvalid, field, len(s), max)
	}
	for _, c := range []byte(s) {
		if c < 0x20 || c > 0x7e {
			return fmt.Errorf("%w: %s: non-printable byte %#x", ErrInvalid, field, c)
		}
	}
	return nil
}
