package campaign

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// TestParseBad pairs every file in testdata/bad with its exact error.
func TestParseBad(t *testing.T) {
	cases := []struct{ file, want string }{
		{"alias.yaml", "line 2: YAML anchors are not supported"},
		{"bad-host.yaml", "targets.networks[1].hosts[0]: \"198.18.1.300\" is not a valid IP address"},
		{"bad-name.yaml", "name: \"KP!\" must match [a-z0-9][a-z0-9-]{0,62}"},
		{"bad-network-name.yaml", "targets.networks[1].name: \"Net_1\" must match [a-z0-9][a-z0-9-]{0,62}"},
		{"bad-prefix.yaml", "targets.networks[1].prefix: \"198.18.0.0/33\" is not a valid CIDR prefix"},
		{"budget-agent.yaml", "budget.agent_pps: 5 targets x 2 packets = 10 packets per round, more than agent_pps 1 x round 5s = 5"},
		{"budget-nan.yaml", "budget.per_target_pps: \".nan\" is not a finite number"},
		{"budget-per-target.yaml", "budget.per_target_pps: probes send 2 packets per target per round (icmp 2), more than per_target_pps 0.2 x round 5s = 1"},
		{"control-inside.yaml", "targets.controls[0]: 198.18.0.200 is inside targets.networks[0] (198.18.0.0/24); controls must be outside the scope"},
		{"discover.yaml", "targets.hosts.per_network: required with targets.hosts.discover: how many answering hosts to keep per network"},
		{"discover-v6.yaml", "targets.networks[1].prefix: 2001:db8:18::/64 is too large to sweep for targets.hosts.discover (more than 65536 addresses); list its hosts"},
		{"discover-sweep.yaml", "targets.networks[1].prefix: the discovery sweep would probe 65788 addresses up to here, more than 65536; list hosts for the largest networks"},
		{"dual-bad-prefix.yaml", "targets.networks[0].prefixes[1]: \"2001:db8:18::1/64\" has host bits set; did you mean 2001:db8:18::/64?"},
		{"dual-both-fields.yaml", "targets.networks[0].prefixes: set together with prefix; write one prefix as prefix, or a dual-stack network's IPv4 and IPv6 prefixes as prefixes"},
		{"dual-budget.yaml", "budget.agent_pps: 4 targets x 2 packets = 8 packets per round, more than agent_pps 1.5 x round 5s = 7.5"},
		{"dual-control-inside.yaml", "targets.controls[0]: 2001:db8:18::99 is inside targets.networks[0] (2001:db8:18::/64); controls must be outside the scope"},
		{"dual-discover-budget.yaml", "budget.agent_pps: 4 targets x 2 packets = 8 packets per round, more than agent_pps 1.5 x round 5s = 7.5"},
		{"dual-discover-v6.yaml", "targets.networks[0].prefixes[1]: 2001:db8:18::/64 is too large to sweep for targets.hosts.discover (more than 65536 addresses); list its hosts"},
		{"dual-empty.yaml", "targets.networks[0].prefixes: needs at least one prefix"},
		{"dual-host-outside.yaml", "targets.networks[0].hosts[1]: 198.18.9.10 is not inside prefix 198.18.0.0/24 or 2001:db8:18::/64"},
		{"dual-no-per-network.yaml", "targets.hosts.per_network: required because targets.networks[0] lists no host inside targets.networks[0].prefixes[1] 2001:db8:18::/64"},
		{"dual-overlap.yaml", "targets.networks[1].prefix: 2001:db8:18::/80 overlaps targets.networks[0].prefixes[1] 2001:db8:18::/64"},
		{"dual-three.yaml", "targets.networks[0].prefixes: has 3 prefixes; a network has at most one IPv4 and one IPv6 prefix"},
		{"dual-too-small.yaml", "targets.networks[0].prefixes[1]: 2001:db8:18::/126 is too small for targets.hosts.per_network 2 starting at offset 10; list hosts explicitly"},
		{"dual-two-v4.yaml", "targets.networks[0].prefixes[1]: 198.18.1.0/24 is a second IPv4 prefix (targets.networks[0].prefixes[0] is 198.18.0.0/24); a network has at most one IPv4 and one IPv6 prefix: make another network"},
		{"dual-two-v6.yaml", "targets.networks[0].prefixes[1]: 2001:db8:19::/64 is a second IPv6 prefix (targets.networks[0].prefixes[0] is 2001:db8:18::/64); a network has at most one IPv4 and one IPv6 prefix: make another network"},
		{"dup-host.yaml", "targets.networks[1].hosts[1]: 198.18.1.10 is already a target (targets.networks[1].hosts[0])"},
		{"dup-key.yaml", "name: defined more than once (line 13)"},
		{"dup-kind.yaml", "probes[1]: a second icmp probe (the first is probes[0]); each kind may appear once"},
		{"dup-network.yaml", "targets.networks[1].name: \"net0\" is already used by targets.networks[0]"},
		{"empty-probes.yaml", "probes: needs at least one probe"},
		{"empty.yaml", "file is empty"},
		{"host-bits.yaml", "targets.networks[1].prefix: \"198.18.1.5/24\" has host bits set; did you mean 198.18.1.0/24?"},
		{"host-outside.yaml", "targets.networks[1].hosts[1]: 198.18.2.10 is not inside prefix 198.18.1.0/24"},
		{"jitter-ge-round.yaml", "schedule.jitter: 5s must be less than schedule.round 5s"},
		{"lower-country.yaml", "scope.country: \"kp\" must be an ISO 3166-1 alpha-2 code in upper case, e.g. KP"},
		{"networks-not-list.yaml", "targets.networks: expected a list, got a string"},
		{"no-country.yaml", "scope.country: required"},
		{"no-kind.yaml", "probes[0]: must have exactly one of icmp, tcp, trace (got none)"},
		{"no-name.yaml", "name: required"},
		{"no-per-network.yaml", "targets.hosts.per_network: required because targets.networks[0] lists no hosts"},
		{"no-probes.yaml", "probes: required"},
		{"no-round.yaml", "schedule.round: required"},
		{"overlap.yaml", "targets.networks[1].prefix: 198.18.0.128/25 overlaps targets.networks[0].prefix 198.18.0.0/24"},
		{"quorum-zero.yaml", "vantages.quorum: 0 is out of range [1, 1000]"},
		{"retries-range.yaml", "probes[0].icmp.retries: 9 is out of range [0, 5]"},
		{"round-short.yaml", "schedule.round: 500ms is out of range [1s, 24h0m0s]"},
		{"round-too-tight.yaml", "schedule.round: 5s must be more than schedule.jitter 3.5s + the longest probe 2s (probes[0].icmp)"},
		{"select-int.yaml", "vantages.select.rack: label values must be strings (quote numbers and booleans), got an integer"},
		{"start-bad.yaml", "schedule.start: \"yesterday\" is not an RFC 3339 timestamp such as 2026-01-01T00:00:00Z"},
		{"start-1700.yaml", "schedule.start: 1700-01-01T00:00:00Z is outside 1970-01-01T00:00:00Z..2200-01-01T00:00:00Z, the starts agents accept"},
		{"start-2200.yaml", "schedule.start: 2200-01-01T00:00:00Z is outside 1970-01-01T00:00:00Z..2200-01-01T00:00:00Z, the starts agents accept"},
		{"syntax.yaml", "not valid YAML: line 1: did not find expected ',' or ']'"},
		{"tcp-mode.yaml", "probes[0].tcp.mode: \"fin\" must be connect or syn"},
		{"tcp-no-ports.yaml", "probes[0].tcp.ports: required, at least one port"},
		{"tcp-port-dup.yaml", "probes[0].tcp.ports[1]: port 80 is listed twice"},
		{"tcp-port-range.yaml", "probes[0].tcp.ports[0]: 0 is out of range [1, 65535]"},
		{"timeout-bad.yaml", "probes[0].icmp.timeout: \"1\" is not a valid duration (use e.g. 1s, 500ms, 10m)"},
		{"timeout-string-int.yaml", "probes[0].icmp.retries: expected an integer, got a string"},
		{"too-small.yaml", "targets.networks[1].prefix: 198.18.1.0/29 is too small for targets.hosts.per_network 2 starting at offset 10; list hosts explicitly"},
		{"top-list.yaml", "expected a mapping, got a list"},
		{"trace-every.yaml", "probes[0].trace.every: 1s must be at least schedule.round 5s"},
		{"trace-gap.yaml", "probes[0].trace.gap_limit: 5 is more than max_ttl 4"},
		{"trace-icmp-port.yaml", "probes[0].trace.port: not used by icmp traces; remove it"},
		{"trace-protocol.yaml", "probes[0].trace.protocol: \"gre\" must be icmp, udp or tcp"},
		{"trailing-garbage.yaml", "trailing data after the document: line 13: did not find expected <document start>"},
		{"two-docs.yaml", "more than one YAML document (line 13); a campaign file holds exactly one"},
		{"two-kinds.yaml", "probes[0]: must have exactly one of icmp, tcp, trace (got icmp, tcp)"},
		{"unassigned-country.yaml", "scope.country: \"ZZ\" is not an assigned ISO 3166-1 alpha-2 code"},
		{"unknown-field.yaml", "probes[0].icmp.retrys: unknown field (known fields: retries, timeout, payload_bytes)"},
		{"unknown-top.yaml", "vantage: unknown field (known fields: name, scope, targets, probes, schedule, vantages, budget, verdict)"},
		{"upstream-dup.yaml", "targets.upstreams[1]: 198.51.100.42 is already a target (targets.upstreams[0])"},
		{"v4mapped.yaml", "targets.upstreams[0]: \"::ffff:198.51.100.42\" is an IPv4-mapped IPv6 address; write 198.51.100.42"},
	}
	covered := map[string]bool{}
	for _, tc := range cases {
		covered[tc.file] = true
		t.Run(tc.file, func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join("testdata", "bad", tc.file))
			if err != nil {
				t.Fatal(err)
			}
			s, err := Parse(data)
			if err == nil {
				t.Fatalf("Parse succeeded (%d targets), want error %q", len(s.Targets()), tc.want)
			}
			if err.Error() != tc.want {
				t.Errorf("error\n got: %s\nwant: %s", err, tc.want)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("error %v does not wrap ErrInvalid", err)
			}
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Errorf("error %v is not a *FieldError", err)
			}
		})
	}
	files, err := filepath.Glob(filepath.Join("testdata", "bad", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if !covered[filepath.Base(f)] {
			t.Errorf("%s has no expected error in this table", f)
		}
	}
}

func mustParse(t *testing.T, data []byte) *Spec {
	t.Helper()
	s, err := Parse(data)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return s
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestParseGood(t *testing.T) {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	cases := []struct {
		file                string
		name, scope         string
		networks            []string
		targets             []string // "addr network role"
		round, jitter       time.Duration
		start               time.Time
		quorum              int
		selects, notSelects map[string]string
	}{
		{
			file: "minimal.yaml", name: "min", scope: "KP", networks: []string{"net0"},
			targets: []string{"198.18.0.10 net0 HOST", "198.18.0.11 net0 HOST"},
			round:   5 * time.Second, start: time.Unix(0, 0).UTC(), quorum: 1,
			selects: map[string]string{"anything": "x"},
		},
		{
			file: "full.yaml", name: "kp", scope: "KP", networks: []string{"star-jv", "net1", "v6"},
			targets: []string{
				"175.45.176.1 star-jv HOST", "175.45.176.8 star-jv HOST",
				"175.45.177.10 net1 HOST", "175.45.177.11 net1 HOST", "175.45.177.12 net1 HOST",
				"2001:db8:18::a v6 HOST", "2001:db8:18::b v6 HOST", "2001:db8:18::c v6 HOST",
				"198.51.100.42  UPSTREAM", "2001:db8:1::1  UPSTREAM", "192.0.2.1  CONTROL",
			},
			round: 5 * time.Second, jitter: time.Second, start: start, quorum: 2,
			selects:    map[string]string{"role": "vps", "asn": "1"},
			notSelects: map[string]string{"role": "home"},
		},
		{
			// Before discovery only the listed targets exist.
			file: "discover.yaml", name: "kp", scope: "KP", networks: []string{"net0", "net1", "net2"},
			targets: []string{"198.18.1.10 net1 HOST", "192.0.2.1  CONTROL"},
			round:   5 * time.Second, jitter: time.Second, start: time.Unix(0, 0).UTC(), quorum: 2,
		},
	}
	for _, tc := range cases {
		t.Run(tc.file, func(t *testing.T) {
			s := mustParse(t, readFile(t, filepath.Join("testdata", "good", tc.file)))
			if s.Name() != tc.name || s.ScopeName() != tc.scope {
				t.Errorf("name, scope = %q, %q; want %q, %q", s.Name(), s.ScopeName(), tc.name, tc.scope)
			}
			if got := strings.Join(s.NetworkNames(), ","); got != strings.Join(tc.networks, ",") {
				t.Errorf("NetworkNames = %s, want %v", got, tc.networks)
			}
			var got []string
			for _, tg := range s.Targets() {
				got = append(got, fmt.Sprintf("%s %s %s", tg.Addr, tg.Network, strings.TrimPrefix(tg.Role.String(), "TARGET_ROLE_")))
			}
			if strings.Join(got, "|") != strings.Join(tc.targets, "|") {
				t.Errorf("Targets\n got: %q\nwant: %q", got, tc.targets)
			}
			if s.Round() != tc.round || s.Jitter() != tc.jitter || !s.Start().Equal(tc.start) || s.Quorum() != tc.quorum {
				t.Errorf("round %s jitter %s start %s quorum %d; want %s %s %s %d",
					s.Round(), s.Jitter(), s.Start(), s.Quorum(), tc.round, tc.jitter, tc.start, tc.quorum)
			}
			if tc.selects != nil && !s.SelectsAgent(tc.selects) {
				t.Errorf("SelectsAgent(%v) = false", tc.selects)
			}
			if tc.notSelects != nil && s.SelectsAgent(tc.notSelects) {
				t.Errorf("SelectsAgent(%v) = true", tc.notSelects)
			}
			// Validate is idempotent on a parsed spec.
			if err := s.Validate(); err != nil {
				t.Errorf("Validate after Parse: %v", err)
			}
		})
	}
}

// exampleStandIns stand in for the files an example names that the user
// downloads (outside.yaml's RIR delegated-stats file), with public ranges.
var exampleStandIns = map[string]string{
	"delegated-ripencc-extended-latest": "ripencc|LI|ipv4|80.0.0.0|512|20010101|allocated\n",
}

// TestExamples parses every campaign file shipped in deploy/examples.
func TestExamples(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("..", "..", "deploy", "examples", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no files in deploy/examples")
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			// Expanded as vantagectl does (targets.rir, relative to the file).
			data, _, err := ExpandRIR(readFile(t, f), func(p string) ([]byte, error) {
				if stand, ok := exampleStandIns[p]; ok {
					return []byte(stand), nil
				}
				return os.ReadFile(filepath.Join(filepath.Dir(f), p))
			})
			if err != nil {
				t.Fatal(err)
			}
			s := mustParse(t, data)
			if s.NeedsDiscovery() {
				// Its tasks exist once discovery has found targets.
				var found []Target
				for _, nw := range s.SweepNetworks() {
					for _, p := range nw.Prefixes {
						found = append(found, Target{Addr: p.Addr().Next(), Network: nw.Name, Role: vantagev1.TargetRole_TARGET_ROLE_HOST})
					}
				}
				if s, err = s.WithTargets(found); err != nil {
					t.Fatal(err)
				}
			}
			if len(s.Tasks(time.Now())) == 0 {
				t.Error("no tasks")
			}
		})
	}
}

// TestCountryExample pins what the lab demo depends on.
func TestCountryExample(t *testing.T) {
	s := mustParse(t, readFile(t, filepath.Join("..", "..", "deploy", "examples", "country.yaml")))
	if s.Name() != "country" || s.ScopeName() != "KP" || s.Round() != 3*time.Second ||
		s.Jitter() != 500*time.Millisecond || s.Quorum() != 2 {
		t.Errorf("name %s scope %s round %s jitter %s quorum %d", s.Name(), s.ScopeName(), s.Round(), s.Jitter(), s.Quorum())
	}
	var want []Target
	for n := range 4 {
		for h := 10; h <= 13; h++ {
			want = append(want, Target{
				Addr:    netip.AddrFrom4([4]byte{198, 18, byte(n), byte(h)}),
				Network: fmt.Sprintf("net%d", n),
				Role:    vantagev1.TargetRole_TARGET_ROLE_HOST,
			})
		}
	}
	for _, r := range []struct {
		addr, name string
		role       vantagev1.TargetRole
	}{
		{"198.51.100.42", "unicom", vantagev1.TargetRole_TARGET_ROLE_UPSTREAM},
		{"198.51.100.58", "satgate", vantagev1.TargetRole_TARGET_ROLE_UPSTREAM},
		{"198.51.100.50", "border", vantagev1.TargetRole_TARGET_ROLE_BORDER},
	} {
		want = append(want, Target{Addr: netip.MustParseAddr(r.addr), Role: r.role, Name: r.name})
	}
	got := s.Targets()
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("Targets\n got: %v\nwant: %v", got, want)
	}
	if n := len(s.Tasks(time.Now())); n != 2*len(want) {
		t.Errorf("%d tasks, want %d (icmp + tcp/80 per target)", n, 2*len(want))
	}
}

func TestTasks(t *testing.T) {
	s := mustParse(t, readFile(t, filepath.Join("testdata", "good", "full.yaml")))
	expires := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	tasks := s.Tasks(expires)
	// 11 targets x (icmp + tcp/80 + tcp/443 + trace).
	if len(tasks) != 44 {
		t.Fatalf("%d tasks, want 44", len(tasks))
	}
	ids := map[string]bool{}
	for _, task := range tasks {
		if ids[task.GetId()] {
			t.Errorf("duplicate task id %s", task.GetId())
		}
		ids[task.GetId()] = true
	}
	start := timestamppb.New(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	exp := timestamppb.New(expires)
	cases := []struct {
		i    int
		want *vantagev1.Task
	}{
		{0, &vantagev1.Task{
			Id: "kp/icmp/175.45.176.1", Campaign: "kp", Kind: vantagev1.ProbeKind_PROBE_KIND_ICMP_ECHO,
			Target: "175.45.176.1", Role: vantagev1.TargetRole_TARGET_ROLE_HOST, Network: "star-jv",
			Spec:    &vantagev1.Task_Icmp{Icmp: &vantagev1.IcmpSpec{Retries: 1, TimeoutMs: 1000, PayloadBytes: 32}},
			RoundMs: 5000, JitterMs: 1000, ScheduleStart: start, EveryRounds: 1, ExpiresAt: exp,
		}},
		{1, &vantagev1.Task{
			Id: "kp/tcp/175.45.176.1:80", Campaign: "kp", Kind: vantagev1.ProbeKind_PROBE_KIND_TCP,
			Target: "175.45.176.1", Role: vantagev1.TargetRole_TARGET_ROLE_HOST, Network: "star-jv",
			Spec:    &vantagev1.Task_Tcp{Tcp: &vantagev1.TcpSpec{Port: 80, Mode: vantagev1.TcpMode_TCP_MODE_SYN, TimeoutMs: 1500}},
			RoundMs: 5000, JitterMs: 1000, ScheduleStart: start, EveryRounds: 1, ExpiresAt: exp,
		}},
		{2, &vantagev1.Task{
			Id: "kp/tcp/175.45.176.1:443", Campaign: "kp", Kind: vantagev1.ProbeKind_PROBE_KIND_TCP,
			Target: "175.45.176.1", Role: vantagev1.TargetRole_TARGET_ROLE_HOST, Network: "star-jv",
			Spec:    &vantagev1.Task_Tcp{Tcp: &vantagev1.TcpSpec{Port: 443, Mode: vantagev1.TcpMode_TCP_MODE_SYN, TimeoutMs: 1500}},
			RoundMs: 5000, JitterMs: 1000, ScheduleStart: start, EveryRounds: 1, ExpiresAt: exp,
		}},
		{3, &vantagev1.Task{
			Id: "kp/trace/175.45.176.1", Campaign: "kp", Kind: vantagev1.ProbeKind_PROBE_KIND_TRACE,
			Target: "175.45.176.1", Role: vantagev1.TargetRole_TARGET_ROLE_HOST, Network: "star-jv",
			Spec: &vantagev1.Task_Trace{Trace: &vantagev1.TraceSpec{
				Protocol: vantagev1.TraceProtocol_TRACE_PROTOCOL_UDP, Paris: true, MaxTtl: 30, GapLimit: 5,
				TimeoutMs: 1000, Port: 33434,
			}},
			RoundMs: 5000, JitterMs: 1000, ScheduleStart: start, EveryRounds: 120, ExpiresAt: exp,
		}},
		{20, &vantagev1.Task{
			Id: "kp/icmp/2001:db8:18::a", Campaign: "kp", Kind: vantagev1.ProbeKind_PROBE_KIND_ICMP_ECHO,
			Target: "2001:db8:18::a", Role: vantagev1.TargetRole_TARGET_ROLE_HOST, Network: "v6",
			Spec:    &vantagev1.Task_Icmp{Icmp: &vantagev1.IcmpSpec{Retries: 1, TimeoutMs: 1000, PayloadBytes: 32}},
			RoundMs: 5000, JitterMs: 1000, ScheduleStart: start, EveryRounds: 1, ExpiresAt: exp,
		}},
		{41, &vantagev1.Task{
			Id: "kp/tcp/192.0.2.1:80", Campaign: "kp", Kind: vantagev1.ProbeKind_PROBE_KIND_TCP,
			Target: "192.0.2.1", Role: vantagev1.TargetRole_TARGET_ROLE_CONTROL,
			Spec:    &vantagev1.Task_Tcp{Tcp: &vantagev1.TcpSpec{Port: 80, Mode: vantagev1.TcpMode_TCP_MODE_SYN, TimeoutMs: 1500}},
			RoundMs: 5000, JitterMs: 1000, ScheduleStart: start, EveryRounds: 1, ExpiresAt: exp,
		}},
	}
	for _, tc := range cases {
		t.Run(tc.want.GetId(), func(t *testing.T) {
			if got := tasks[tc.i]; !proto.Equal(got, tc.want) {
				t.Errorf("task %d\n got: %v\nwant: %v", tc.i, got, tc.want)
			}
		})
	}
	if !s.TraceOnChange() {
		t.Error("TraceOnChange = false, want true")
	}
}

func TestDefaults(t *testing.T) {
	s := mustParse(t, []byte(`name: d
scope: {country: KP}
targets: {networks: [{name: n, prefix: 198.18.0.0/24, hosts: [198.18.0.1]}]}
probes: [{icmp: {}}, {tcp: {ports: [22]}}, {trace: {protocol: tcp}}]
schedule: {round: 1m}
`))
	tasks := s.Tasks(time.Time{})
	want := []string{
		`id:"d/icmp/198.18.0.1" timeout_ms:2000 payload_bytes:16 retries:0 every:1`,
		`id:"d/tcp/198.18.0.1:22" timeout_ms:2000 mode:TCP_MODE_CONNECT every:1`,
		`id:"d/trace/198.18.0.1" timeout_ms:2000 max_ttl:30 gap_limit:5 port:80 every:10`,
	}
	var got []string
	for _, task := range tasks {
		switch {
		case task.GetIcmp() != nil:
			got = append(got, fmt.Sprintf(`id:%q timeout_ms:%d payload_bytes:%d retries:%d every:%d`, task.GetId(),
				task.GetIcmp().GetTimeoutMs(), task.GetIcmp().GetPayloadBytes(), task.GetIcmp().GetRetries(), task.GetEveryRounds()))
		case task.GetTcp() != nil:
			got = append(got, fmt.Sprintf(`id:%q timeout_ms:%d mode:%s every:%d`, task.GetId(),
				task.GetTcp().GetTimeoutMs(), task.GetTcp().GetMode(), task.GetEveryRounds()))
		default:
			tr := task.GetTrace()
			got = append(got, fmt.Sprintf(`id:%q timeout_ms:%d max_ttl:%d gap_limit:%d port:%d every:%d`, task.GetId(),
				tr.GetTimeoutMs(), tr.GetMaxTtl(), tr.GetGapLimit(), tr.GetPort(), task.GetEveryRounds()))
		}
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("tasks\n got: %s\nwant: %s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if s.Quorum() != 1 || !s.Start().Equal(time.Unix(0, 0)) {
		t.Errorf("quorum %d start %s", s.Quorum(), s.Start())
	}
}

func TestProto(t *testing.T) {
	s := mustParse(t, readFile(t, filepath.Join("..", "..", "deploy", "examples", "country.yaml")))
	c := s.Proto()
	if c.GetName() != "country" || c.GetScope() != "KP" || c.GetRoundMs() != 3000 || c.GetQuorum() != 2 {
		t.Errorf("campaign = %v", c)
	}
	if len(c.GetNetworks()) != 4 || c.GetNetworks()[3].GetName() != "net3" || c.GetNetworks()[3].GetPrefix() != "198.18.3.0/24" {
		t.Errorf("networks = %v", c.GetNetworks())
	}
	if ts := c.GetTargets(); len(ts) != 19 || ts[17].GetAddress() != "198.51.100.58" || ts[17].GetName() != "satgate" ||
		ts[17].GetRole() != vantagev1.TargetRole_TARGET_ROLE_UPSTREAM || ts[18].GetRole() != vantagev1.TargetRole_TARGET_ROLE_BORDER {
		t.Errorf("targets = %v", c.GetTargets())
	}
}

// TestLimits covers inputs too big to keep in testdata.
func TestLimits(t *testing.T) {
	head := "name: big\nscope: {country: KP}\nprobes: [{icmp: {}}]\nschedule: {round: 1h}\nbudget: {agent_pps: 1000000}\n"
	cases := []struct {
		name string
		data string
		want string
	}{
		{
			name: "file too big",
			data: head + "# " + strings.Repeat("x", MaxFileBytes),
			want: fmt.Sprintf("file is %d bytes, more than the limit of %d", len(head)+2+MaxFileBytes, MaxFileBytes),
		},
		{
			name: "too many targets",
			data: head + "targets:\n  networks: [{name: a, prefix: 10.0.0.0/8}, {name: b, prefix: 11.0.0.0/8}]\n  hosts: {per_network: 40000}\n",
			want: "targets: expands to 80000 targets, more than the limit of 65536",
		},
		{
			name: "deep nesting",
			data: head + "targets: " + strings.Repeat("[", 100) + strings.Repeat("]", 100) + "\n",
			want: "line 6: nesting deeper than 32 levels",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.data))
			if err == nil || err.Error() != tc.want {
				t.Errorf("error = %v, want %s", err, tc.want)
			}
		})
	}
	// The largest allowed expansion works, IPv6 included.
	s := mustParse(t, []byte(head+"targets:\n  networks: [{name: a, prefix: \"2001:db8::/64\"}]\n  hosts: {per_network: 65536}\n"))
	got := s.Targets()
	if len(got) != MaxTargets || got[0].Addr.String() != "2001:db8::a" || got[MaxTargets-1].Addr.String() != "2001:db8::1:9" {
		t.Errorf("%d targets, first %s last %s", len(got), got[0].Addr, got[len(got)-1].Addr)
	}
}

func TestExpansionEdge(t *testing.T) {
	cases := []struct {
		prefix string
		per    int
		want   string // last address, or the error
	}{
		{"198.18.0.0/28", 5, "198.18.0.14"},
		{"198.18.0.0/28", 6, "targets.networks[0].prefix: 198.18.0.0/28 is too small for targets.hosts.per_network 6 starting at offset 10; list hosts explicitly"},
		{"198.18.0.240/28", 5, "198.18.0.254"},
		{"198.18.0.240/28", 6, "targets.networks[0].prefix: 198.18.0.240/28 is too small for targets.hosts.per_network 6 starting at offset 10; list hosts explicitly"},
		{"198.18.0.255/32", 1, "targets.networks[0].prefix: 198.18.0.255/32 is too small for targets.hosts.per_network 1 starting at offset 10; list hosts explicitly"},
		{"10.0.255.0/16", 1, "targets.networks[0].prefix: \"10.0.255.0/16\" has host bits set; did you mean 10.0.0.0/16?"},
		{"10.255.255.0/24", 2, "10.255.255.11"},
		{"2001:db8::fff0/124", 6, "2001:db8::ffff"},
		{"2001:db8::fff0/124", 7, "targets.networks[0].prefix: 2001:db8::fff0/124 is too small for targets.hosts.per_network 7 starting at offset 10; list hosts explicitly"},
		{"::/0", 1, "::a"},
	}
	for _, tc := range cases {
		t.Run(tc.prefix+"/"+fmt.Sprint(tc.per), func(t *testing.T) {
			s, err := Parse([]byte(fmt.Sprintf(`name: e
scope: {country: KP}
targets: {networks: [{name: n, prefix: "%s"}], hosts: {per_network: %d}}
probes: [{icmp: {}}]
schedule: {round: 10s}
`, tc.prefix, tc.per)))
			var got string
			if err != nil {
				got = err.Error()
			} else {
				ts := s.Targets()
				got = ts[len(ts)-1].Addr.String()
			}
			if got != tc.want {
				t.Errorf("got %s, want %s", got, tc.want)
			}
		})
	}
}

func TestCountryCodes(t *testing.T) {
	if len(iso3166) != 250 {
		t.Errorf("%d codes, want 249 assigned + XK", len(iso3166))
	}
	for _, c := range []string{"KP", "KR", "CN", "RU", "IR", "SY", "CU", "MM", "XK", "SS", "BQ"} {
		if !iso3166[c] {
			t.Errorf("%s missing", c)
		}
	}
	for _, c := range []string{"UK", "EU", "ZZ", "AN", "SU", "YU", "kp"} {
		if iso3166[c] {
			t.Errorf("%s accepted", c)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, dir := range []string{"testdata/good", "testdata/bad", "../../deploy/examples"} {
		files, _ := filepath.Glob(filepath.Join(dir, "*.yaml"))
		for _, file := range files {
			data, err := os.ReadFile(file)
			if err == nil {
				f.Add(data)
			}
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := Parse(data)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v does not wrap ErrInvalid", err)
			}
			return
		}
		// A valid spec always yields consistent output.
		targets := s.Targets()
		// Only a spec waiting for discovery may have no target yet.
		if (len(targets) == 0 && len(s.SweepNetworks()) == 0 && !s.UpstreamsAuto()) || len(targets) > MaxTargets {
			t.Fatalf("%d targets", len(targets))
		}
		if s.Round() < time.Second || s.Jitter() >= s.Round() || s.Quorum() < 1 {
			t.Fatalf("round %s jitter %s quorum %d", s.Round(), s.Jitter(), s.Quorum())
		}
		if len(targets) <= 1024 {
			ids := map[string]bool{}
			for _, task := range s.Tasks(time.Unix(0, 0)) {
				if ids[task.GetId()] {
					t.Fatalf("duplicate task id %s", task.GetId())
				}
				ids[task.GetId()] = true
			}
		}
		_ = s.Proto()
	})
}

func TestWithTargets(t *testing.T) {
	s := mustParse(t, readFile(t, filepath.Join("testdata", "good", "discover.yaml")))
	if !s.NeedsDiscovery() || !s.DiscoverHosts() || !s.UpstreamsAuto() || s.Discovered() || s.PerNetwork() != 2 {
		t.Fatalf("needs %v hosts %v auto %v discovered %v per_network %d", s.NeedsDiscovery(), s.DiscoverHosts(),
			s.UpstreamsAuto(), s.Discovered(), s.PerNetwork())
	}
	var swept []string
	for _, nw := range s.SweepNetworks() {
		swept = append(swept, fmt.Sprint(nw.Name, " ", nw.Prefixes))
	}
	if got := strings.Join(swept, ","); got != "net0 [198.18.0.0/24],net2 [198.18.2.0/25]" {
		t.Errorf("SweepNetworks = %s", got)
	}
	tg := func(a, nw string, r vantagev1.TargetRole) Target {
		return Target{Addr: netip.MustParseAddr(a), Network: nw, Role: r}
	}
	host, up, border := vantagev1.TargetRole_TARGET_ROLE_HOST, vantagev1.TargetRole_TARGET_ROLE_UPSTREAM, vantagev1.TargetRole_TARGET_ROLE_BORDER
	cases := []struct {
		name  string
		found []Target
		want  string // targets "addr network role" joined by |, or the error
	}{
		{"hosts and routers in order", []Target{
			tg("198.51.100.50", "", border), tg("198.18.2.5", "net2", host), tg("198.18.0.12", "net0", host),
			tg("198.51.100.42", "", up), tg("198.18.0.11", "net0", host), tg("198.18.1.10", "net1", host),
		}, "198.18.0.12 net0 HOST|198.18.0.11 net0 HOST|198.18.1.10 net1 HOST|198.18.2.5 net2 HOST|" +
			"198.51.100.42  UPSTREAM|198.51.100.50  BORDER|192.0.2.1  CONTROL"},
		{"host outside its network", []Target{tg("198.18.2.200", "net2", host)},
			"discovered[0]: host 198.18.2.200 is not inside a swept network (network \"net2\")"},
		{"host of a listed network", []Target{tg("198.18.1.11", "net1", host)},
			"discovered[0]: host 198.18.1.11 is not inside a swept network (network \"net1\")"},
		{"control", []Target{tg("192.0.2.2", "", vantagev1.TargetRole_TARGET_ROLE_CONTROL)},
			"discovered[0]: role TARGET_ROLE_CONTROL cannot be discovered"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d, err := s.WithTargets(tc.found)
			if err != nil {
				if err.Error() != tc.want || !errors.Is(err, ErrInvalid) {
					t.Errorf("error\n got: %v\nwant: %s", err, tc.want)
				}
				return
			}
			var got []string
			for _, tg := range d.Targets() {
				got = append(got, fmt.Sprintf("%s %s %s", tg.Addr, tg.Network, strings.TrimPrefix(tg.Role.String(), "TARGET_ROLE_")))
			}
			if strings.Join(got, "|") != tc.want {
				t.Errorf("targets\n got: %s\nwant: %s", strings.Join(got, "|"), tc.want)
			}
			if !d.Discovered() || len(d.Proto().GetTargets()) != len(got) || len(s.Targets()) != 2 {
				t.Errorf("discovered %v, proto targets %d, original targets %d", d.Discovered(), len(d.Proto().GetTargets()), len(s.Targets()))
			}
		})
	}
	t.Run("router without upstreams auto", func(t *testing.T) {
		m := mustParse(t, readFile(t, filepath.Join("testdata", "good", "minimal.yaml")))
		_, err := m.WithTargets([]Target{tg("198.51.100.42", "", up)})
		if want := "discovered[0]: router 198.51.100.42 found, but targets.upstreams is not auto"; err == nil || err.Error() != want {
			t.Errorf("got %v, want %s", err, want)
		}
	})
	t.Run("budget with the real count", func(t *testing.T) {
		// Parse assumes 2 listed + 2x2 hosts + 2 routers: 8 targets x 2 packets = 16 <= 3.2 x 5s.
		b := strings.Replace(string(readFile(t, filepath.Join("testdata", "good", "discover.yaml"))), "vantages: {quorum: 2}",
			"vantages: {quorum: 2}\nbudget: {agent_pps: 3.2}", 1)
		d := mustParse(t, []byte(b))
		_, err := d.WithTargets([]Target{tg("198.18.0.11", "net0", host), tg("198.18.0.12", "net0", host),
			tg("198.18.2.5", "net2", host), tg("198.51.100.42", "", up), tg("198.51.100.50", "", border), tg("198.51.100.58", "", border)})
		if want := "budget.agent_pps: 8 targets x 2 packets = 16 packets per round, more than agent_pps 3.2 x round 5s = 16"; err != nil {
			t.Errorf("got %v, want nil (%s is the limit)", err, want)
		}
		_, err = d.WithTargets([]Target{tg("198.18.0.11", "net0", host), tg("198.18.0.12", "net0", host),
			tg("198.18.2.5", "net2", host), tg("198.18.2.6", "net2", host), tg("198.51.100.42", "", up), tg("198.51.100.50", "", border),
			tg("198.51.100.58", "", border)})
		if want := "budget.agent_pps: 9 targets x 2 packets = 18 packets per round, more than agent_pps 3.2 x round 5s = 16"; err == nil || err.Error() != want {
			t.Errorf("got %v, want %s", err, want)
		}
	})
}
