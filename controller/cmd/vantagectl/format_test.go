package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// testNow is the fixed "now" every golden rendering is relative to.
var testNow = time.Date(2026, 1, 1, 1, 0, 0, 0, time.UTC)

func tsAt(s string) *timestamppb.Timestamp {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return timestamppb.New(t)
}

func ago(d time.Duration) *timestamppb.Timestamp { return timestamppb.New(testNow.Add(-d)) }

var testPrinter = printer{now: testNow, loc: time.UTC}

func fixtureAgents() []*vantagev1.AgentInfo {
	return []*vantagev1.AgentInfo{
		{
			Id: "agt-0123456789abcdef", Name: "vps-fra1", State: vantagev1.AgentState_AGENT_STATE_ACTIVE,
			Connected: true, Healthy: true, LastSeen: ago(3 * time.Second),
			Spool:  &vantagev1.SpoolState{PendingResults: 12},
			Labels: map[string]string{"site": "fra1", "role": "vps"},
		},
		{
			Id: "agt-fedcba9876543210", Name: "vps-sin1", State: vantagev1.AgentState_AGENT_STATE_ACTIVE,
			HealthReason: "no fresh data", LastSeen: ago(5 * time.Minute), Gaps: 2,
		},
		{Id: "agt-00000000000000aa", Name: "evil\x1b[31m\tname", State: vantagev1.AgentState_AGENT_STATE_PENDING},
		{
			Id: "agt-00000000000000bb", Name: "vps-ams1", State: vantagev1.AgentState_AGENT_STATE_ACTIVE,
			Connected: true, Healthy: true, LastSeen: ago(2 * time.Second), Gaps: 5,
			Spool: &vantagev1.SpoolState{PendingResults: 340, DroppedResults: 5, WriteError: "no space left on device",
				WriteFailingSince: ago(90 * time.Second), MemoryResults: 120, WriteDroppedResults: 5},
		},
	}
}

func fixtureVerdicts() []*vantagev1.Verdict {
	return []*vantagev1.Verdict{
		{
			Id: "kp/network/star-jv", Campaign: "kp", Level: vantagev1.Level_LEVEL_NETWORK, Subject: "star-jv",
			State: vantagev1.State_STATE_UNREACHABLE, Since: ago(4 * time.Minute), Up: 0, Total: 8,
			HealthyVantages: 3, TotalVantages: 3, Location: vantagev1.Location_LOCATION_UPSTREAM,
			Notes: []string{"upstream silent", "traces stop at 10.0.0.1"},
		},
		{
			Id: "kp/scope/KP", Campaign: "kp", Level: vantagev1.Level_LEVEL_SCOPE, Subject: "KP",
			State: vantagev1.State_STATE_DEGRADED, Since: ago(4 * time.Minute), Up: 3, Total: 4,
			HealthyVantages: 3, TotalVantages: 3, Location: vantagev1.Location_LOCATION_PATH_SPECIFIC,
		},
		{
			Id: "kp/target/198.18.1.1", Campaign: "kp", Level: vantagev1.Level_LEVEL_TARGET, Subject: "198.18.1.1",
			State: vantagev1.State_STATE_REACHABLE, Since: ago(3 * time.Hour), Up: 3, Total: 3,
			HealthyVantages: 3, TotalVantages: 3, Location: vantagev1.Location_LOCATION_NONE,
		},
	}
}

func fixtureTransition() *vantagev1.Transition {
	return &vantagev1.Transition{
		Id: 7, Campaign: "kp", Level: vantagev1.Level_LEVEL_SCOPE, Subject: "KP",
		From: vantagev1.State_STATE_REACHABLE, To: vantagev1.State_STATE_UNREACHABLE,
		OnsetEarliest: tsAt("2026-01-01T00:04:00Z"), OnsetLatest: tsAt("2026-01-01T00:05:00Z"),
		DetectedAt: tsAt("2026-01-01T00:05:02Z"), Round: 5, Location: vantagev1.Location_LOCATION_UPSTREAM,
		VerdictId: "kp/scope/KP", DownChildren: []string{"net0", "net1", "net2", "net3"},
		LocationHop: &vantagev1.Router{Address: "198.51.100.42", Role: vantagev1.TargetRole_TARGET_ROLE_UPSTREAM, Name: "unicom"},
		Cause:       &vantagev1.CauseFinding{Cause: vantagev1.Cause_CAUSE_UPSTREAM, Confidence: 0.9},
	}
}

func TestFormatTables(t *testing.T) {
	tests := []struct {
		name   string
		render func(*bytes.Buffer) error
		want   string
	}{
		{
			name:   "agents",
			render: func(b *bytes.Buffer) error { return testPrinter.agents(b, fixtureAgents()) },
			want: `ID                    NAME            STATE    CONNECTED  HEALTHY             LAST-SEEN  SPOOL               DROPPED  GAPS  LABELS
agt-0123456789abcdef  vps-fra1        ACTIVE   yes        yes                 3s ago     12                  0        0     role=vps,site=fra1
agt-fedcba9876543210  vps-sin1        ACTIVE   no         no (no fresh data)  5m ago     -                   -        2     -
agt-00000000000000aa  evil?[31m name  PENDING  no         no                  never      -                   -        0     -
agt-00000000000000bb  vps-ams1        ACTIVE   yes        yes                 2s ago     340 (disk failing)  5        5     -
vps-ams1 (agt-00000000000000bb): spool disk refuses writes since 2026-01-01T00:58:30Z: no space left on device; 120 results in memory, 5 dropped into gaps
`,
		},
		{
			name:   "no agents",
			render: func(b *bytes.Buffer) error { return testPrinter.agents(b, nil) },
			want:   "No agents.\n",
		},
		{
			name: "agent changed",
			render: func(b *bytes.Buffer) error {
				return testPrinter.agentChanged(b, &vantagev1.AgentInfo{Id: "agt-1", Name: "a", State: vantagev1.AgentState_AGENT_STATE_REVOKED})
			},
			want: "agent agt-1 (a) is REVOKED\n",
		},
		{
			name: "join token",
			render: func(b *bytes.Buffer) error {
				return testPrinter.joinToken(b, &vantagev1.CreateJoinTokenResponse{
					Token: "jt-abc", ExpiresAt: tsAt("2026-01-01T02:00:00Z"), CaHash: "sha256:00ff",
				}, "ctl.example:7443", nil)
			},
			want: `token:    jt-abc
expires:  2026-01-01T02:00:00Z (in 60m)
ca hash:  sha256:00ff

Enrol an agent with:
  VANTAGE_JOIN_TOKEN=jt-abc vantage-agent --controller ctl.example:7443 --ca-hash sha256:00ff \
    --state /var/lib/vantage-agent --name NAME --label provider=PROVIDER
Replace NAME with this vantage's own name (e.g. vps-fra1) and PROVIDER with its hosting provider or network (e.g. hetzner): the quorum counts one vote per provider.
(or write the token to a file only the agent reads and pass --join-token-file FILE; --join-token would show it in ps)
`,
		},
		{
			name:   "verdicts, widest level first",
			render: func(b *bytes.Buffer) error { return testPrinter.verdicts(b, fixtureVerdicts()) },
			want: `LEVEL    SUBJECT     STATE        SINCE   UP/TOTAL  VANTAGES  LOCATION       NOTES
scope    KP          DEGRADED     4m ago  3/4       3/3       path-specific  -
network  star-jv     UNREACHABLE  4m ago  0/8       3/3       upstream       upstream silent; traces stop at 10.0.0.1
target   198.18.1.1  REACHABLE    3h ago  3/3       3/3       -              -
`,
		},
		{
			name: "verdicts of two campaigns get a campaign column",
			render: func(b *bytes.Buffer) error {
				vs := fixtureVerdicts()[:2]
				vs = append(vs, &vantagev1.Verdict{Campaign: "ir", Level: vantagev1.Level_LEVEL_SCOPE, Subject: "IR",
					State: vantagev1.State_STATE_UNKNOWN, HealthyVantages: 1, TotalVantages: 3})
				return testPrinter.verdicts(b, vs)
			},
			want: `CAMPAIGN  LEVEL    SUBJECT  STATE        SINCE   UP/TOTAL  VANTAGES  LOCATION       NOTES
ir        scope    IR       UNKNOWN      never   0/0       1/3       -              -
kp        scope    KP       DEGRADED     4m ago  3/4       3/3       path-specific  -
kp        network  star-jv  UNREACHABLE  4m ago  0/8       3/3       upstream       upstream silent; traces stop at 10.0.0.1
`,
		},
		{
			name: "timeline",
			render: func(b *bytes.Buffer) error {
				back := &vantagev1.Transition{
					Campaign: "kp", Level: vantagev1.Level_LEVEL_NETWORK, Subject: "net1",
					From: vantagev1.State_STATE_UNREACHABLE, To: vantagev1.State_STATE_REACHABLE,
					OnsetEarliest: tsAt("2026-01-01T00:30:00Z"), OnsetLatest: tsAt("2026-01-01T00:31:30Z"),
					DetectedAt: tsAt("2026-01-01T00:31:31Z"), Round: 31,
					Location: vantagev1.Location_LOCATION_NONE, UpChildren: []string{"198.18.1.1", "198.18.1.2"},
				}
				return testPrinter.timeline(b, []*vantagev1.Transition{fixtureTransition(), back})
			},
			want: `DETECTED  LEVEL    SUBJECT  CHANGE                    ONSET          LATENCY  LOCATION           CAUSE          BGP  CHILDREN
00:05:02  scope    KP       REACHABLE -> UNREACHABLE  00:04:30 ±30s  2s       upstream (unicom)  upstream 0.90  -    up=- down=net0,net1,net2,net3
00:31:31  network  net1     UNREACHABLE -> REACHABLE  00:30:45 ±45s  1s       -                  -              -    up=198.18.1.1,198.18.1.2 down=-
`,
		},
		{
			name:   "empty timeline",
			render: func(b *bytes.Buffer) error { return testPrinter.timeline(b, nil) },
			want:   "No transitions.\n",
		},
		{
			name: "campaigns",
			render: func(b *bytes.Buffer) error {
				return testPrinter.campaigns(b, []*vantagev1.Campaign{fixtureCampaign()})
			},
			want: `NAME  STATE   VERSION  SCOPE  NETWORKS  TARGETS  ROUND  QUORUM  AGENTS  UPDATED
kp    ACTIVE  3        KP     2         3        1m     2       2       10m ago
`,
		},
		{
			name:   "campaign get",
			render: func(b *bytes.Buffer) error { return testPrinter.campaign(b, fixtureCampaign()) },
			want: `name:     kp
state:    ACTIVE
version:  3
scope:    KP
round:    1m
quorum:   2
created:  2025-12-31T00:00:00Z
updated:  2026-01-01T00:50:00Z (10m ago)
targets:  3 (host 2, upstream 1)
agents:   agt-1,agt-2

NETWORK  PREFIX
star-jv  198.18.0.0/24
kptc     198.18.1.0/24

spec:
name: kp
scope: {country: KP}
`,
		},
		{
			name: "campaigns discovering",
			render: func(b *bytes.Buffer) error {
				return testPrinter.campaigns(b, []*vantagev1.Campaign{fixtureCampaign(), fixtureDiscovering()})
			},
			want: `NAME  STATE        VERSION  SCOPE  NETWORKS  TARGETS  ROUND  QUORUM  AGENTS  UPDATED  DISCOVERY
kp    ACTIVE       3        KP     2         3        1m     2       2       10m ago  -
kd    DISCOVERING  1        KP     2         0        1m     2       0       10m ago  running: waiting for agents: no connected agent matches vantages.sel…
`,
		},
		{
			name:   "campaign get discovered",
			render: func(b *bytes.Buffer) error { return testPrinter.campaign(b, fixtureDiscovered()) },
			want: `name:        kd
state:       ACTIVE
version:     1
scope:       KP
round:       1m
quorum:      2
created:     2025-12-31T00:00:00Z
updated:     2026-01-01T00:50:00Z (10m ago)
targets:     2 (host 1, border 1)
agents:      -
discovery:   done: 1 of 3 responsive hosts kept, 1 routers
  started:   2026-01-01T00:40:00Z
  finished:  2026-01-01T00:41:00Z
  swept:     508 addresses, 3 answered
  routers:   198.51.100.50 border (6 traces)
  note:      1 hosts in 1 networks; no host answered in [kptc]

spec:
name: kd
`,
		},
		{
			name: "campaign applied discovering",
			render: func(b *bytes.Buffer) error {
				return testPrinter.campaignApplied(b, fixtureDiscovering(), false)
			},
			want: "campaign kd applied: version 1, discovering targets (2 networks, 0 targets so far); see `vantagectl campaign get kd`\n",
		},
		{
			name: "campaign applied",
			render: func(b *bytes.Buffer) error {
				return testPrinter.campaignApplied(b, fixtureCampaign(), false)
			},
			want: "campaign kp applied: version 3, 2 networks, 3 targets\n",
		},
		{
			name: "campaign dry run",
			render: func(b *bytes.Buffer) error {
				return testPrinter.campaignApplied(b, fixtureCampaign(), true)
			},
			want: "campaign kp is valid (2 networks, 3 targets); dry run, nothing stored\n",
		},
		{
			name:   "explain",
			render: func(b *bytes.Buffer) error { return testPrinter.explain(b, fixtureExplain()) },
			want: `verdict:   kp/network/star-jv
state:     UNREACHABLE
since:     2026-01-01T00:56:00Z (4m ago)
onset:     2026-01-01T00:55:00Z..00:56:00 ±30s
round:     56 (evaluated 2026-01-01T00:59:59Z)
vantages:  2/3 healthy, quorum 2
up/total:  0/8
up:        -
down:      198.18.0.1,198.18.0.2
location:  upstream (last responsive hop 10.0.0.1)
notes:     -

AGENT  NAME  HEALTHY  STATE        UP  DOWN  LAST-ROUND  LAST-RESULT  REASON
agt-1  a     yes      UNREACHABLE  0   8     56          5s ago       -
agt-2  b     no       UNKNOWN      0   0     40          16m ago      no fresh data

1 traces (localisation evidence):
SENT      AGENT  ROUND  TARGET      TRIGGER  PATH
00:59:03  agt-1  56     198.18.0.1  trg-1    10.9.0.1 > 10.0.0.1 > * > * [gap-limit]

2 results:
SENT      AGENT  ROUND  KIND  TARGET          OUTCOME      RTT     FROM      DETAIL
00:59:01  agt-1  56     icmp  198.18.0.1      timeout      -       -         -
00:59:02  agt-1  56     tcp   198.18.0.1:443  unreachable  1.25ms  10.0.0.1  code 1
`,
		},
		{
			name: "audit",
			render: func(b *bytes.Buffer) error {
				return testPrinter.audit(b, []*vantagev1.AuditEntry{
					{Id: 1, At: tsAt("2026-01-01T00:00:00Z"), Actor: "operator:admin", Action: "campaign.apply", Subject: "kp", Detail: "version 1"},
					{Id: 2, At: tsAt("2026-01-01T00:01:00Z"), Actor: "operator:admin", Action: "agent.approve", Subject: "agt-1"},
				})
			},
			want: `ID  AT        ACTOR           ACTION          SUBJECT  DETAIL
1   00:00:00  operator:admin  campaign.apply  kp       version 1
2   00:01:00  operator:admin  agent.approve   agt-1    -
`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b bytes.Buffer
			if err := tt.render(&b); err != nil {
				t.Fatalf("render: %v", err)
			}
			if got := b.String(); got != tt.want {
				t.Errorf("output mismatch\n got:\n%s\nwant:\n%s", got, tt.want)
			}
		})
	}
}

func fixtureCampaign() *vantagev1.Campaign {
	return &vantagev1.Campaign{
		Name: "kp", State: vantagev1.CampaignState_CAMPAIGN_STATE_ACTIVE, Version: 3, Scope: "KP",
		SpecYaml:  "name: kp\nscope: {country: KP}",
		CreatedAt: tsAt("2025-12-31T00:00:00Z"), UpdatedAt: ago(10 * time.Minute),
		Networks: []*vantagev1.CampaignNetwork{
			{Name: "star-jv", Prefix: "198.18.0.0/24"}, {Name: "kptc", Prefix: "198.18.1.0/24"},
		},
		Targets: []*vantagev1.CampaignTarget{
			{Address: "198.18.0.1", Network: "star-jv", Role: vantagev1.TargetRole_TARGET_ROLE_HOST},
			{Address: "198.18.1.1", Network: "kptc", Role: vantagev1.TargetRole_TARGET_ROLE_HOST},
			{Address: "10.0.0.1", Role: vantagev1.TargetRole_TARGET_ROLE_UPSTREAM},
		},
		RoundMs: 60000, Quorum: 2, AgentIds: []string{"agt-1", "agt-2"},
	}
}

func fixtureDiscovering() *vantagev1.Campaign {
	c := fixtureCampaign()
	c.Name, c.State, c.Version, c.Targets, c.AgentIds = "kd", vantagev1.CampaignState_CAMPAIGN_STATE_DISCOVERING, 1, nil, nil
	c.Discovery = &vantagev1.DiscoveryStatus{StartedAt: tsAt("2026-01-01T00:40:00Z"),
		Note: "waiting for agents: no connected agent matches vantages.select; discovery starts when one connects"}
	return c
}

func fixtureDiscovered() *vantagev1.Campaign {
	c := fixtureCampaign()
	c.Name, c.Version, c.AgentIds, c.Networks, c.SpecYaml = "kd", 1, nil, nil, "name: kd"
	c.Targets = []*vantagev1.CampaignTarget{
		{Address: "198.18.0.10", Network: "star-jv", Role: vantagev1.TargetRole_TARGET_ROLE_HOST},
		{Address: "198.51.100.50", Role: vantagev1.TargetRole_TARGET_ROLE_BORDER},
	}
	c.Discovery = &vantagev1.DiscoveryStatus{StartedAt: tsAt("2026-01-01T00:40:00Z"), FinishedAt: tsAt("2026-01-01T00:41:00Z"),
		AddressesSwept: 508, HostsResponsive: 3, HostsSelected: 1, Traces: 6,
		RoutersFound: []*vantagev1.CampaignTarget{{Address: "198.51.100.50", Role: vantagev1.TargetRole_TARGET_ROLE_BORDER}},
		Note:         "1 hosts in 1 networks; no host answered in [kptc]"}
	return c
}

func fixtureExplain() *vantagev1.ExplainResponse {
	return &vantagev1.ExplainResponse{
		Verdict: &vantagev1.Verdict{
			Id: "kp/network/star-jv", Campaign: "kp", Level: vantagev1.Level_LEVEL_NETWORK, Subject: "star-jv",
			State: vantagev1.State_STATE_UNREACHABLE, Since: ago(4 * time.Minute),
			OnsetEarliest: tsAt("2026-01-01T00:55:00Z"), OnsetLatest: tsAt("2026-01-01T00:56:00Z"),
			EvaluatedAt: ago(time.Second), Round: 56, HealthyVantages: 2, TotalVantages: 3, Quorum: 2,
			Total: 8, Location: vantagev1.Location_LOCATION_UPSTREAM, LastResponsiveHop: "10.0.0.1",
			DownChildren: []string{"198.18.0.1", "198.18.0.2"},
			Evidence: []*vantagev1.VantageEvidence{
				{AgentId: "agt-1", AgentName: "a", Healthy: true, TargetsDown: 8, LastResultAt: ago(5 * time.Second), LastRound: 56, State: vantagev1.State_STATE_UNREACHABLE},
				{AgentId: "agt-2", AgentName: "b", Reason: "no fresh data", LastResultAt: ago(16 * time.Minute), LastRound: 40, State: vantagev1.State_STATE_UNKNOWN},
			},
		},
		Results: []*vantagev1.StoredResult{
			{AgentId: "agt-1", Epoch: 1, Result: &vantagev1.ProbeResult{Seq: 1, Target: "198.18.0.1", Kind: vantagev1.ProbeKind_PROBE_KIND_ICMP_ECHO, Round: 56, SentAt: tsAt("2026-01-01T00:59:01Z"), Outcome: vantagev1.Outcome_OUTCOME_TIMEOUT}},
			{AgentId: "agt-1", Epoch: 1, Result: &vantagev1.ProbeResult{Seq: 2, Target: "198.18.0.1", Port: 443, Kind: vantagev1.ProbeKind_PROBE_KIND_TCP, Round: 56, SentAt: tsAt("2026-01-01T00:59:02Z"), Outcome: vantagev1.Outcome_OUTCOME_UNREACHABLE, UnreachableCode: 1, RttUs: 1250, ReplyFrom: "10.0.0.1"}},
			{AgentId: "agt-1", Epoch: 1, Result: &vantagev1.ProbeResult{Seq: 3, Target: "198.18.0.1", Kind: vantagev1.ProbeKind_PROBE_KIND_TRACE, Round: 56, SentAt: tsAt("2026-01-01T00:59:03Z"), Outcome: vantagev1.Outcome_OUTCOME_TIMEOUT,
				Hops:       []*vantagev1.Hop{{Ttl: 1, Addr: "10.9.0.1"}, {Ttl: 2, Addr: "10.0.0.1"}, {Ttl: 3}, {Ttl: 4}},
				StopReason: vantagev1.TraceStopReason_TRACE_STOP_REASON_GAP_LIMIT, TriggerId: "trg-1"}},
		},
	}
}

func TestFormatLines(t *testing.T) {
	many := make([]string, 9)
	for i := range many {
		many[i] = "t" + string(rune('0'+i))
	}
	tests := []struct {
		name, got, want string
	}{
		{"transition line", testPrinter.transitionLine(fixtureTransition()),
			"00:05:02  scope  kp/KP  REACHABLE -> UNREACHABLE  00:04:30 ±30s  2s  upstream (unicom)  upstream 0.90  -  up=- down=net0,net1,net2,net3"},
		{"verdict line", testPrinter.verdictLine(fixtureVerdicts()[0]),
			"verdict  network  kp/star-jv  UNREACHABLE  4m ago  0/8  3/3  upstream  upstream silent; traces stop at 10.0.0.1"},
		{"children summarised", children(nil, many), "up=- down=t0,t1,t2,t3,t4,t5,+3 more"},
		{"onset across days", testPrinter.onset(tsAt("2025-12-31T23:59:30Z"), tsAt("2026-01-01T00:00:30Z")),
			"2025-12-31T23:59:30Z..2026-01-01T00:00:30Z ±30s"},
		{"onset open", testPrinter.onset(nil, tsAt("2026-01-01T00:00:30Z")), "...2026-01-01T00:00:30Z"},
		{"ago future", testPrinter.ago(timestamppb.New(testNow.Add(90 * time.Second))), "in 90s"},
		{"ago days", testPrinter.ago(ago(73 * time.Hour)), "3d ago"},
		{"exact hours", exact(2 * time.Hour), "2h"},
		{"exact minutes and seconds", exact(90 * time.Second), "1m30s"},
		{"exact sub-second", exact(250 * time.Millisecond), "250ms"},
		{"unknown enum value", stateName(vantagev1.State(42)), "42"},
		{"unspecified enum", levelName(vantagev1.Level_LEVEL_UNSPECIFIED), "-"},
		{"clean controls", cell("a\x07b\nc"), "a?b c"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.got != tt.want {
				t.Errorf("got %q, want %q", tt.got, tt.want)
			}
		})
	}
}

func TestWriteJSONIsStable(t *testing.T) {
	var compact, indented bytes.Buffer
	v := fixtureVerdicts()[0]
	if err := writeJSON(&compact, v, false); err != nil {
		t.Fatal(err)
	}
	if err := writeJSON(&indented, v, true); err != nil {
		t.Fatal(err)
	}
	wantCompact := `{"id":"kp/network/star-jv","campaign":"kp","level":"network","subject":"star-jv","state":"unreachable","since":"2026-01-01T00:56:00Z","onset_earliest":null,"onset_latest":null,"evaluated_at":null,"round":0,"healthy_vantages":3,"total_vantages":3,"quorum":0,"up":0,"total":8,"location":"upstream","last_responsive_hop":"","up_children":[],"down_children":[],"evidence":[],"notes":["upstream silent","traces stop at 10.0.0.1"],"network":"","reason":"unspecified","location_hop":null,"cause":null,"upstreams":[]}` + "\n"
	if compact.String() != wantCompact {
		t.Errorf("compact:\n got %s\nwant %s", compact.String(), wantCompact)
	}
	if strings.Count(compact.String(), "\n") != 1 {
		t.Errorf("compact JSON spans several lines")
	}
	if !strings.HasPrefix(indented.String(), "{\n  \"id\": \"kp/network/star-jv\",\n") {
		t.Errorf("indented JSON: %s", indented.String())
	}
}

// TestCampaignDualStackPrefixes: a dual-stack network is one row with both
// of its prefixes; a controller that sends only prefix still shows it.
func TestCampaignDualStackPrefixes(t *testing.T) {
	c := fixtureCampaign()
	c.Networks = []*vantagev1.CampaignNetwork{
		{Name: "star-jv", Prefix: "198.18.0.0/24", Prefixes: []string{"198.18.0.0/24", "2001:db8:18::/64"}},
		{Name: "kptc", Prefix: "198.18.1.0/24"},
	}
	var b bytes.Buffer
	if err := testPrinter.campaign(&b, c); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{"star-jv  198.18.0.0/24,2001:db8:18::/64", "kptc     198.18.1.0/24"} {
		if !strings.Contains(out, want) {
			t.Errorf("campaign get output lacks %q:\n%s", want, out)
		}
	}
}
