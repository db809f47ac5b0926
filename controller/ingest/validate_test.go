package ingest

import (
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"

	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// TestValidateHello: every field of a Hello the controller stores or
// shows is bounded, and the error names the field.
func TestValidateHello(t *testing.T) {
	long := strings.Repeat("e", MaxEngineLen+1)
	withUnknown := func(n int) *vantagev1.Capabilities {
		c := &vantagev1.Capabilities{RawIcmp: true}
		c.ProtoReflect().SetUnknown(protowire.AppendBytes(protowire.AppendTag(nil, 99, protowire.BytesType), make([]byte, n)))
		return c
	}
	spoolUnknown := &vantagev1.SpoolState{PendingResults: 1}
	spoolUnknown.ProtoReflect().SetUnknown(protowire.AppendBytes(protowire.AppendTag(nil, 99, protowire.BytesType), make([]byte, 1000)))
	engines := func(n int) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = "icmp=bulk-raw"
		}
		return out
	}
	tests := []struct {
		name  string
		h     *vantagev1.Hello
		field string // "" means valid
	}{
		{"valid", &vantagev1.Hello{Epoch: 1, AgentVersion: "v1.2.3", Capabilities: &vantagev1.Capabilities{Engines: engines(3),
			TraceProtocols: []vantagev1.TraceProtocol{vantagev1.TraceProtocol_TRACE_PROTOCOL_ICMP}}, Spool: &vantagev1.SpoolState{PendingResults: 5}}, ""},
		{"epoch zero", &vantagev1.Hello{}, "hello.epoch"},
		{"epoch over 2^63-1", &vantagev1.Hello{Epoch: 1 << 63}, "hello.epoch"},
		{"agent_version too long", &vantagev1.Hello{Epoch: 1, AgentVersion: strings.Repeat("v", MaxVersionLen+1)}, "hello.agent_version: 65 bytes"},
		{"agent_version not printable", &vantagev1.Hello{Epoch: 1, AgentVersion: "v1\n"}, "hello.agent_version: non-printable"},
		{"a label too long", &vantagev1.Hello{Epoch: 1, Labels: map[string]string{"k": strings.Repeat("x", 1000)}}, "hello.labels[k]"},
		{"too many engines", &vantagev1.Hello{Epoch: 1, Capabilities: &vantagev1.Capabilities{Engines: engines(MaxEngines + 1)}}, "hello.capabilities.engines: 33 entries"},
		{"an engine too long", &vantagev1.Hello{Epoch: 1, Capabilities: &vantagev1.Capabilities{Engines: []string{"a", long}}}, "hello.capabilities.engines[1]: 65 bytes"},
		{"an engine not printable", &vantagev1.Hello{Epoch: 1, Capabilities: &vantagev1.Capabilities{Engines: []string{"a\x00"}}}, "hello.capabilities.engines[0]: non-printable"},
		{"too many trace protocols", &vantagev1.Hello{Epoch: 1, Capabilities: &vantagev1.Capabilities{
			TraceProtocols: make([]vantagev1.TraceProtocol, MaxTraceProtocols+1)}}, "hello.capabilities.trace_protocols"},
		{"capabilities with a large unknown field", &vantagev1.Hello{Epoch: 1, Capabilities: withUnknown(MaxCapabilitiesBytes)}, "hello.capabilities: "},
		{"capabilities with a small unknown field (a newer agent)", &vantagev1.Hello{Epoch: 1, Capabilities: withUnknown(16)}, ""},
		{"spool with a large unknown field", &vantagev1.Hello{Epoch: 1, Spool: spoolUnknown}, "hello.spool: "},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := validateHello(tc.h)
			if tc.field == "" {
				if err != nil {
					t.Fatalf("validateHello = %v; want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.field) {
				t.Fatalf("validateHello = %v; want an error naming %q", err, tc.field)
			}
		})
	}
	if err := validateSpool("heartbeat.spool", spoolUnknown); err == nil || !strings.Contains(err.Error(), "heartbeat.spool: ") {
		t.Errorf("validateSpool(heartbeat) = %v; want an error naming heartbeat.spool", err)
	}
}

func TestValidateGapReason(t *testing.T) {
	b := &vantagev1.ResultBatch{Epoch: 1, Gaps: []*vantagev1.Gap{{Epoch: 1, FirstSeq: 1, LastSeq: 1, Reason: strings.Repeat("r", MaxGapReasonLen)},
		{Epoch: 1, FirstSeq: 3, LastSeq: 3, Reason: strings.Repeat("r", MaxGapReasonLen+1)}}}
	if err := ValidateBatch(b); err == nil || !strings.Contains(err.Error(), "results.gaps[1].reason: 257 bytes, at most 256") {
		t.Errorf("ValidateBatch = %v; want the long reason refused, naming results.gaps[1].reason", err)
	}
}
