package ingest

import (
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// FuzzAgentMessage decodes arbitrary bytes as an AgentMessage, as the
// Session handler does, and runs the handler's validation on it: nothing
// may panic, and the validators must not allocate beyond the message.
func FuzzAgentMessage(f *testing.F) {
	good := &vantagev1.ResultBatch{Epoch: 1, FirstSeq: 1, LastSeq: 2, Results: []*vantagev1.ProbeResult{
		{Seq: 1, TaskId: "c/icmp/198.18.0.1", Campaign: "c", Target: "198.18.0.1", SentAt: timestamppb.Now()},
		{Seq: 2, TaskId: "c/icmp/198.18.0.1", Campaign: "c", Target: "::1", SentAt: timestamppb.Now(),
			Hops: []*vantagev1.Hop{{Ttl: 1}}},
	}, Gaps: []*vantagev1.Gap{{Epoch: 1, FirstSeq: 3, LastSeq: 9, Reason: "spool full"}}}
	for _, m := range []*vantagev1.AgentMessage{
		{Msg: &vantagev1.AgentMessage_Results{Results: good}},
		{Msg: &vantagev1.AgentMessage_Hello{Hello: &vantagev1.Hello{Epoch: 3, AgentVersion: "v1",
			Labels: map[string]string{"role": "vps"}, Capabilities: &vantagev1.Capabilities{Engines: []string{"icmp=raw"}}}}},
		{Msg: &vantagev1.AgentMessage_TaskStatus{TaskStatus: &vantagev1.TaskStatus{TaskId: "x", Refused: true}}},
	} {
		b, err := proto.Marshal(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var m vantagev1.AgentMessage
		if err := proto.Unmarshal(data, &m); err != nil {
			return
		}
		switch msg := m.GetMsg().(type) {
		case *vantagev1.AgentMessage_Results:
			if err := ValidateBatch(msg.Results); err == nil {
				n := uint64(len(msg.Results.GetResults()))
				gapsOnly := n == 0 && msg.Results.GetFirstSeq() == 0 && msg.Results.GetLastSeq() == 0 && len(msg.Results.GetGaps()) > 0
				if !gapsOnly && (n == 0 || n > MaxBatchResults || msg.Results.GetLastSeq()-msg.Results.GetFirstSeq()+1 != n) {
					t.Fatalf("ValidateBatch accepted a batch of %d results for seq %d..%d", n, msg.Results.GetFirstSeq(), msg.Results.GetLastSeq())
				}
			}
		case *vantagev1.AgentMessage_Hello:
			_ = validateHello(msg.Hello)
		}
	})
}
