package trigger

import (
	"regexp"
	"testing"
	"time"

	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

func TestNew(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tasks := []*vantagev1.Task{{Id: "c/icmp/198.18.0.1"}}
	a, b := New(now, tasks, "why"), New(now, tasks, "why")
	id := regexp.MustCompile(`^trg-[0-9a-f]{16}$`)
	if !id.MatchString(a.GetId()) || a.GetId() == b.GetId() {
		t.Errorf("ids %q, %q; want two distinct trg-<16 hex>", a.GetId(), b.GetId())
	}
	if !a.GetIssuedAt().AsTime().Equal(now) || !a.GetExpiresAt().AsTime().Equal(now.Add(Lifetime)) || !Expiry(now).Equal(now.Add(Lifetime)) {
		t.Errorf("issued %v, expires %v; want %v and %v", a.GetIssuedAt().AsTime(), a.GetExpiresAt().AsTime(), now, now.Add(Lifetime))
	}
	if a.GetReason() != "why" || len(a.GetTasks()) != 1 || &a.GetTasks()[0] != &tasks[0] {
		t.Errorf("trigger %v; want the reason and the task list itself, not a copy", a)
	}
}
