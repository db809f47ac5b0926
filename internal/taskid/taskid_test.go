package taskid_test

import (
	"testing"

	"github.com/vantage-net/vantage/internal/taskid"
	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

func TestNewAndParse(t *testing.T) {
	for _, c := range []struct {
		name                   string
		campaign, kind, target string
		want                   string
	}{
		{"icmp", "kp", taskid.ICMP, "198.18.0.10", "kp/icmp/198.18.0.10"},
		{"tcp", "kp", taskid.TCP, taskid.TCPTarget("198.18.0.10", 443), "kp/tcp/198.18.0.10:443"},
		{"tcp over IPv6, unbracketed", "kp", taskid.TCP, taskid.TCPTarget("2001:db8::1", 80), "kp/tcp/2001:db8::1:80"},
		{"trace", "kp-2", taskid.Trace, "2001:db8::1", "kp-2/trace/2001:db8::1"},
	} {
		t.Run(c.name, func(t *testing.T) {
			id := taskid.New(c.campaign, c.kind, c.target)
			if id != c.want {
				t.Fatalf("New = %q, want %q", id, c.want)
			}
			if p := taskid.Prefix(c.campaign, c.kind); p+c.target != id {
				t.Errorf("Prefix + target = %q, want %q", p+c.target, id)
			}
			camp, kind, target, ok := taskid.Parse(id)
			if !ok || camp != c.campaign || kind != c.kind || target != c.target {
				t.Errorf("Parse(%q) = %q, %q, %q, %v", id, camp, kind, target, ok)
			}
			if got := taskid.Campaign(id); got != c.campaign {
				t.Errorf("Campaign(%q) = %q, want %q", id, got, c.campaign)
			}
		})
	}
}

func TestParseRefuses(t *testing.T) {
	for _, id := range []string{"", "kp", "kp/icmp", "kp/icmp/", "/icmp/198.18.0.1", "kp//198.18.0.1"} {
		if c, k, tg, ok := taskid.Parse(id); ok {
			t.Errorf("Parse(%q) = %q, %q, %q, true; want false", id, c, k, tg)
		}
	}
	if got := taskid.Campaign("no-slash"); got != "no-slash" {
		t.Errorf("Campaign of an id without a slash = %q, want it whole", got)
	}
}

func TestKind(t *testing.T) {
	for k, want := range map[vantagev1.ProbeKind]string{
		vantagev1.ProbeKind_PROBE_KIND_ICMP_ECHO:   taskid.ICMP,
		vantagev1.ProbeKind_PROBE_KIND_TCP:         taskid.TCP,
		vantagev1.ProbeKind_PROBE_KIND_TRACE:       taskid.Trace,
		vantagev1.ProbeKind_PROBE_KIND_UNSPECIFIED: "",
	} {
		if got := taskid.Kind(k); got != want {
			t.Errorf("Kind(%v) = %q, want %q", k, got, want)
		}
	}
}
