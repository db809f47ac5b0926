package lab

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"
)

// Rising loss at a router over rounds, as congestion or an attack makes it.

// LossStep is one step of rising loss at a router, on the packets it
// forwards to the target space.
type LossStep struct {
	// Pct of them are dropped at random (nftables numgen), 0-100.
	Pct int
	// Rate, if positive, is a capacity in packets per second: what exceeds
	// it (after a burst of Rate packets) is dropped (nftables limit rate
	// over), as by a saturated link, so the loss grows with the load.
	Rate int
}

func (s LossStep) String() string { return fmt.Sprintf("%d%% random, rate %d/s", s.Pct, s.Rate) }

// StepLoss sets router node's loss step, replacing the previous step in one
// nftables transaction (no packet sees both or neither); the zero step
// removes it. It has its own chain, so it combines with Loss. A caller
// steps it up over rounds (or uses RampLoss).
func (l *Lab) StepLoss(node string, s LossStep) error {
	if err := l.router(node); err != nil {
		return err
	}
	if s.Pct < 0 || s.Pct > 100 {
		return fmt.Errorf("pct: %d must be within 0-100", s.Pct)
	}
	if s.Rate < 0 {
		return fmt.Errorf("rate: %d must not be negative", s.Rate)
	}
	var rules []string
	if s.Rate > 0 {
		rules = append(rules, l.targetRules(fmt.Sprintf("limit rate over %d/second burst %d packets drop", s.Rate, s.Rate))...)
	}
	if s.Pct > 0 {
		rules = append(rules, l.targetRules(randomDrop(s.Pct))...)
	}
	if err := l.setChain(node, chainStep, rules); err != nil {
		return err
	}
	l.log.Info("step loss", slog.String("node", node), slog.Int("pct", s.Pct), slog.Int("rate", s.Rate))
	return nil
}

// RampLoss applies the steps at router node one after the other, every
// period, holds the last until ctx is done, then removes the step loss. It
// returns nil when ctx ends, or the first fault error.
func (l *Lab) RampLoss(ctx context.Context, node string, period time.Duration, steps ...LossStep) error {
	if period <= 0 {
		return fmt.Errorf("period: %v must be positive", period)
	}
	if len(steps) == 0 {
		return errors.New("steps: at least one is required")
	}
	t := time.NewTicker(period)
	defer t.Stop()
	for i := 0; ; i++ {
		if i < len(steps) {
			if err := l.StepLoss(node, steps[i]); err != nil {
				return errors.Join(err, l.StepLoss(node, LossStep{}))
			}
		}
		select {
		case <-ctx.Done():
			return l.StepLoss(node, LossStep{})
		case <-t.C:
		}
	}
}

// randomDrop is the nftables statement dropping pct percent at random.
func randomDrop(pct int) string {
	if pct >= 100 {
		return "drop" // nft rejects "< 100" for a 0-99 value
	}
	return fmt.Sprintf("numgen random mod 100 < %d drop", pct)
}

// targetRules returns one rule per family of the target space: a match on
// its destination prefixes, then body.
func (l *Lab) targetRules(body string) []string {
	v4, v6 := l.targets()
	var rules []string
	if len(v4) > 0 {
		rules = append(rules, fmt.Sprintf("ip daddr { %s } %s", strings.Join(v4, ", "), body))
	}
	if len(v6) > 0 {
		rules = append(rules, fmt.Sprintf("ip6 daddr { %s } %s", strings.Join(v6, ", "), body))
	}
	return rules
}
