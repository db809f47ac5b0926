package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vantage-net/vantage/agent/probe/trace"
	"github.com/vantage-net/vantage/internal/taskid"
	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

func TestParseTargets(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good")
	_ = os.WriteFile(good, []byte("# lab hosts\n198.18.0.1\n\n198.18.1.0/30  # a small net\n2001:db8::1\n"), 0o644)
	bad := filepath.Join(dir, "bad")
	_ = os.WriteFile(bad, []byte("198.18.0.1\nnot-an-address\n"), 0o644)
	tests := []struct {
		name    string
		arg     string
		want    []string
		wantErr string
	}{
		{"cidr", "198.18.0.0/31", []string{"198.18.0.0", "198.18.0.1"}, ""},
		{"address", "2001:db8::5", []string{"2001:db8::5"}, ""},
		{"unmasked cidr", "198.18.0.1/31", []string{"198.18.0.0", "198.18.0.1"}, ""},
		{"file", good, []string{"198.18.0.1", "198.18.1.0", "198.18.1.1", "198.18.1.2", "198.18.1.3", "2001:db8::1"}, ""},
		{"bad line", bad, nil, `line 2: "not-an-address": not an address or CIDR`},
		{"too big", "10.0.0.0/7", nil, "not a CIDR or address"},
		{"missing file", filepath.Join(dir, "nope"), nil, "not a CIDR or address, and not a readable file"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			src, err := parseTargets(tc.arg)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want it to contain %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseTargets: %v", err)
			}
			var got []string
			_ = src.each(func(a netip.Addr) error { got = append(got, a.String()); return nil })
			if strings.Join(got, " ") != strings.Join(tc.want, " ") || src.count() != len(tc.want) {
				t.Fatalf("targets %v (count %d), want %v", got, src.count(), tc.want)
			}
		})
	}
}

func TestProbeOptionsValidate(t *testing.T) {
	base := probeOptions{timeout: time.Second, maxTTL: 30, protocol: "icmp", output: "json", ports: []int{80}}
	tests := []struct {
		name    string
		mod     func(o *probeOptions)
		wantErr string
	}{
		{"ok", func(*probeOptions) {}, ""},
		{"negative rate", func(o *probeOptions) { o.rate = -1 }, "--rate -1: must be >= 0"},
		{"negative router rate", func(o *probeOptions) { o.routerRate = -5 }, "--router-rate -5: must be >= 0"},
		{"timeout", func(o *probeOptions) { o.timeout = time.Minute }, "--timeout 1m0s: must be in (0, 30s]"},
		{"retries", func(o *probeOptions) { o.retries = 6 }, "--retries 6: must be 0..5"},
		{"max ttl", func(o *probeOptions) { o.maxTTL = 65 }, "--max-ttl 65: must be 1..64"},
		{"output", func(o *probeOptions) { o.output = "yaml" }, `-o "yaml": want json or text`},
		{"protocol", func(o *probeOptions) { o.protocol = "sctp" }, `--protocol "sctp": want icmp, udp or tcp`},
		{"port", func(o *probeOptions) { o.ports = []int{0} }, "--ports 0: must be 1..65535"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := base
			tc.mod(&o)
			err := o.validate(2)
			if (err == nil) != (tc.wantErr == "") || err != nil && err.Error() != tc.wantErr {
				t.Fatalf("validate = %v, want %q", err, tc.wantErr)
			}
		})
	}
}

func TestUnlimited(t *testing.T) {
	for _, tc := range []struct{ in, want float64 }{{0, trace.NoLimit}, {100, 100}, {1e5, 1e5}} {
		t.Run(fmt.Sprint(tc.in), func(t *testing.T) {
			if got := unlimited(tc.in); got != tc.want {
				t.Errorf("unlimited(%v) = %v, want %v", tc.in, got, tc.want)
			}
		})
	}
}

func TestRealOneShotLoopback(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: raw sockets")
	}
	o := probeOptions{targets: "127.0.0.0/29", timeout: time.Second, maxTTL: 30, protocol: "icmp", output: "json",
		ports: []int{80}, allowSpecialRanges: true, logLevel: "warn"}
	var out bytes.Buffer
	if err := runProbe(context.Background(), "icmp", o, &out, os.Stderr); err != nil {
		t.Fatalf("runProbe: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 8 {
		t.Fatalf("%d lines, want 8:\n%s", len(lines), out.String())
	}
	for _, l := range lines {
		var r map[string]any
		if err := json.Unmarshal([]byte(l), &r); err != nil || r["outcome"] != "OUTCOME_REPLY" || r["engine"] != "icmp/bulk-raw" ||
			!strings.HasPrefix(r["task_id"].(string), "oneshot/icmp/127.0.0.") || strings.Contains(l, ", ") {
			t.Fatalf("line %q (%v): want a compact REPLY by icmp/bulk-raw with proto field names", l, err)
		}
	}
	o.allowSpecialRanges = false
	if err := runProbe(context.Background(), "icmp", o, &out, os.Stderr); err == nil || !strings.Contains(err.Error(), "special-purpose address range") {
		t.Fatalf("without --allow-special-ranges: %v, want a refusal", err)
	}
}

// TestTaskIDsAgree: a one-shot task's id is spelled as the controller
// spells a campaign's (internal/taskid), so it parses back into the
// one-shot campaign, the task's kind and its target (with the port for tcp,
// IPv6 unbracketed). This is the agent's half of internal/taskid's
// agreement test, which cannot import package main.
func TestTaskIDsAgree(t *testing.T) {
	o := probeOptions{timeout: time.Second, maxTTL: 30, protocol: "udp", ports: []int{80, 443}}
	for _, kind := range []vantagev1.ProbeKind{vantagev1.ProbeKind_PROBE_KIND_ICMP_ECHO, vantagev1.ProbeKind_PROBE_KIND_TCP, vantagev1.ProbeKind_PROBE_KIND_TRACE} {
		mk := newTaskMaker(kind, o)
		for _, s := range []string{"198.18.0.1", "2001:db8::1"} {
			for _, task := range mk.tasks(netip.MustParseAddr(s)) {
				want := s
				if kind == vantagev1.ProbeKind_PROBE_KIND_TCP {
					want = taskid.TCPTarget(s, int64(task.GetTcp().GetPort()))
				}
				camp, k, target, ok := taskid.Parse(task.GetId())
				if !ok || camp != oneShotCampaign || k != taskid.Kind(kind) || target != want {
					t.Errorf("%v %s: id %q parses as %q, %q, %q, %v; want %q, %q, %q", kind, s, task.GetId(), camp, k, target, ok, oneShotCampaign, taskid.Kind(kind), want)
				}
				if id := taskid.New(oneShotCampaign, taskid.Kind(kind), want); task.GetId() != id {
					t.Errorf("%v %s: id %q, a campaign would spell it %q", kind, s, task.GetId(), id)
				}
			}
		}
	}
}

func TestTaskMaker(t *testing.T) {
	o := probeOptions{timeout: time.Second, maxTTL: 30, protocol: "udp", ports: []int{80, 443}, retries: 2}
	for _, kind := range []vantagev1.ProbeKind{vantagev1.ProbeKind_PROBE_KIND_ICMP_ECHO, vantagev1.ProbeKind_PROBE_KIND_TCP, vantagev1.ProbeKind_PROBE_KIND_TRACE} {
		mk := newTaskMaker(kind, o)
		for _, s := range []string{"198.18.0.1", "2001:db8::1", "0.0.0.0", "ffff::ffff"} {
			a := netip.MustParseAddr(s)
			ts := mk.tasks(a)
			if want := portsFor(kind, o); len(ts) != want {
				t.Fatalf("%v %s: %d tasks, want %d", kind, s, len(ts), want)
			}
			for i, task := range ts {
				port := uint32(0)
				if kind == vantagev1.ProbeKind_PROBE_KIND_TCP {
					port = uint32(o.ports[i])
					if task.GetTcp().GetPort() != port || task.GetTcp().GetTimeoutMs() != 1000 {
						t.Fatalf("tcp spec %v", task.GetTcp())
					}
				}
				if task.GetId() != taskID(kind, s, port) || task.GetTarget() != s || task.GetKind() != kind || task.GetCampaign() != oneShotCampaign {
					t.Fatalf("task %v, want id %q target %q", task, taskID(kind, s, port), s)
				}
				switch kind {
				case vantagev1.ProbeKind_PROBE_KIND_ICMP_ECHO:
					if task.GetIcmp().GetRetries() != 2 || task.GetIcmp().GetTimeoutMs() != 1000 {
						t.Fatalf("icmp spec %v", task.GetIcmp())
					}
				case vantagev1.ProbeKind_PROBE_KIND_TRACE:
					if sp := task.GetTrace(); sp.GetMaxTtl() != 30 || sp.GetPort() != 80 || sp.GetProtocol() != vantagev1.TraceProtocol_TRACE_PROTOCOL_UDP {
						t.Fatalf("trace spec %v", sp)
					}
				}
			}
		}
	}
}
