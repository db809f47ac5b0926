package export

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// SchemaVersion is the version of the three record schemas: a record's
// schema_version. It grows when a field changes meaning or goes; a new
// field may be added within a version (readers ignore what they do not
// know).
const SchemaVersion = 1

// Record kinds: a record's "record" field.
const (
	KindResult    = "result"
	KindEpisode   = "episode"
	KindBGPUpdate = "bgp_update"
)

// ResultRecord is one raw result (docs/schema/export-result-v1.json).
// Times are RFC 3339 in UTC with nanoseconds; enums are lower-case words;
// rtt_ms is null when the result measured no round trip (rtt_us 0).
type ResultRecord struct {
	Record          string      `json:"record"`
	SchemaVersion   int         `json:"schema_version"`
	Cursor          string      `json:"cursor"`
	Campaign        string      `json:"campaign"`
	Round           int64       `json:"round"`
	SentAt          string      `json:"sent_at"`
	ReceivedAt      string      `json:"received_at"`
	AgentID         string      `json:"agent_id"`
	AgentName       string      `json:"agent_name"`
	Epoch           uint64      `json:"epoch"`
	Seq             uint64      `json:"seq"`
	TaskID          string      `json:"task_id"`
	Target          string      `json:"target"`
	Kind            string      `json:"kind"`
	Outcome         string      `json:"outcome"`
	RTTMs           *float64    `json:"rtt_ms"`
	Attempts        uint32      `json:"attempts"`
	ReplyFrom       string      `json:"reply_from"`
	ReplyTTL        uint32      `json:"reply_ttl"`
	Port            uint32      `json:"port"`
	UnreachableCode uint32      `json:"unreachable_code"`
	StopReason      string      `json:"stop_reason"`
	Error           string      `json:"error"`
	Engine          string      `json:"engine"`
	TriggerID       string      `json:"trigger_id"`
	Hops            []HopRecord `json:"hops"`
}

// HopRecord is one TTL of a trace; addr is "" for a TTL nothing answered.
type HopRecord struct {
	TTL       uint32       `json:"ttl"`
	Addr      string       `json:"addr"`
	RTTMs     *float64     `json:"rtt_ms"`
	ICMPType  uint32       `json:"icmp_type"`
	ICMPCode  uint32       `json:"icmp_code"`
	QuotedTTL uint32       `json:"quoted_ttl"`
	ReplyTTL  uint32       `json:"reply_ttl"`
	MPLS      []MPLSRecord `json:"mpls"`
}

// MPLSRecord is one label of an ICMP extension's MPLS stack.
type MPLSRecord struct {
	Label         uint32 `json:"label"`
	Exp           uint32 `json:"exp"`
	BottomOfStack bool   `json:"bottom_of_stack"`
	TTL           uint32 `json:"ttl"`
}

// EpisodeRecord is one episode (docs/schema/export-episode-v1.json): what
// a newsroom charts. start is the onset the dashboard draws (the latest
// it can be), start_earliest the earliest: the error bar; end and
// end_earliest likewise, null while it lasts.
type EpisodeRecord struct {
	Record            string   `json:"record"`
	SchemaVersion     int      `json:"schema_version"`
	Cursor            string   `json:"cursor"`
	Campaign          string   `json:"campaign"`
	Level             string   `json:"level"`
	Subject           string   `json:"subject"`
	VerdictID         string   `json:"verdict_id"`
	Start             string   `json:"start"`
	StartEarliest     string   `json:"start_earliest"`
	End               *string  `json:"end"`
	EndEarliest       *string  `json:"end_earliest"`
	DurationS         *float64 `json:"duration_s"`
	State             string   `json:"state"`
	Location          string   `json:"location"`
	Upstream          string   `json:"upstream"`
	UpstreamAddress   string   `json:"upstream_address"`
	UpstreamAS        *uint32  `json:"upstream_as"`
	Cause             string   `json:"cause"`
	Confidence        *float64 `json:"confidence"`
	FirstTransitionID int64    `json:"first_transition_id"`
	LastTransitionID  int64    `json:"last_transition_id"`
	Transitions       uint32   `json:"transitions"`
}

// BGPRecord is one stored BGP update (docs/schema/export-bgp-v1.json).
type BGPRecord struct {
	Record        string   `json:"record"`
	SchemaVersion int      `json:"schema_version"`
	Cursor        string   `json:"cursor"`
	ID            int64    `json:"id"`
	At            string   `json:"at"`
	Type          string   `json:"type"`
	Prefix        string   `json:"prefix"`
	Peer          string   `json:"peer"`
	PeerAS        uint32   `json:"peer_as"`
	ASPath        []uint32 `json:"as_path"`
	OriginAS      *uint32  `json:"origin_as"`
	NextHop       string   `json:"next_hop"`
	Source        string   `json:"source"`
}

func rfc3339(t *timestamppb.Timestamp) string {
	if t == nil {
		return ""
	}
	return t.AsTime().UTC().Format(time.RFC3339Nano)
}

// word is an enum's name without its prefix, lower case: "" for the zero
// value.
func word(name, prefix string, zero bool) string {
	if zero {
		return ""
	}
	return strings.ToLower(strings.TrimPrefix(name, prefix))
}

func ms(us uint32) *float64 {
	if us == 0 {
		return nil
	}
	v := float64(us) / 1000
	return &v
}

// Result makes a result's record.
func Result(m *vantagev1.ExportedResult) ResultRecord {
	sr, r := m.GetResult(), m.GetResult().GetResult()
	rec := ResultRecord{Record: KindResult, SchemaVersion: SchemaVersion, Cursor: m.GetCursor(), Campaign: r.GetCampaign(), Round: r.GetRound(),
		SentAt: rfc3339(r.GetSentAt()), ReceivedAt: rfc3339(sr.GetReceivedAt()), AgentID: sr.GetAgentId(), AgentName: m.GetAgentName(),
		Epoch: sr.GetEpoch(), Seq: r.GetSeq(), TaskID: r.GetTaskId(), Target: r.GetTarget(),
		Kind:    word(r.GetKind().String(), "PROBE_KIND_", r.GetKind() == 0),
		Outcome: word(r.GetOutcome().String(), "OUTCOME_", r.GetOutcome() == 0),
		RTTMs:   ms(r.GetRttUs()), Attempts: r.GetAttempts(), ReplyFrom: r.GetReplyFrom(), ReplyTTL: r.GetReplyTtl(), Port: r.GetPort(),
		UnreachableCode: r.GetUnreachableCode(), StopReason: word(r.GetStopReason().String(), "TRACE_STOP_REASON_", r.GetStopReason() == 0),
		Error: r.GetError(), Engine: r.GetEngine(), TriggerID: r.GetTriggerId(), Hops: []HopRecord{}}
	for _, h := range r.GetHops() {
		hr := HopRecord{TTL: h.GetTtl(), Addr: h.GetAddr(), RTTMs: ms(h.GetRttUs()), ICMPType: h.GetIcmpType(), ICMPCode: h.GetIcmpCode(),
			QuotedTTL: h.GetQuotedTtl(), ReplyTTL: h.GetReplyTtl(), MPLS: []MPLSRecord{}}
		for _, l := range h.GetMpls() {
			hr.MPLS = append(hr.MPLS, MPLSRecord{Label: l.GetLabel(), Exp: l.GetExp(), BottomOfStack: l.GetBottomOfStack(), TTL: l.GetTtl()})
		}
		rec.Hops = append(rec.Hops, hr)
	}
	return rec
}

// Episode makes an episode's record.
func Episode(m *vantagev1.ExportedEpisode) EpisodeRecord {
	e := m.GetEpisode()
	rec := EpisodeRecord{Record: KindEpisode, SchemaVersion: SchemaVersion, Cursor: m.GetCursor(), Campaign: e.GetCampaign(),
		Level: word(e.GetLevel().String(), "LEVEL_", e.GetLevel() == 0), Subject: e.GetSubject(), VerdictID: e.GetVerdictId(),
		Start: rfc3339(e.GetStartLatest()), StartEarliest: rfc3339(e.GetStartEarliest()),
		State:             word(e.GetState().String(), "STATE_", e.GetState() == 0),
		Location:          word(e.GetLocation().String(), "LOCATION_", e.GetLocation() == 0),
		Cause:             word(e.GetCause().GetCause().String(), "CAUSE_", e.GetCause().GetCause() == 0),
		FirstTransitionID: e.GetFirstTransitionId(), LastTransitionID: e.GetLastTransitionId(), Transitions: e.GetTransitions()}
	if e.GetEndLatest() != nil {
		end, early := rfc3339(e.GetEndLatest()), rfc3339(e.GetEndEarliest())
		d := e.GetEndLatest().AsTime().Sub(e.GetStartLatest().AsTime()).Seconds()
		rec.End, rec.EndEarliest, rec.DurationS = &end, &early, &d
	}
	if h := e.GetUpstream(); h.GetAddress() != "" {
		rec.Upstream, rec.UpstreamAddress = h.GetName(), h.GetAddress()
		if rec.Upstream == "" {
			rec.Upstream = h.GetAddress()
		}
		if as := h.GetAsn(); as != 0 {
			rec.UpstreamAS = &as
		}
	}
	if rec.Cause != "" {
		c := e.GetCause().GetConfidence()
		rec.Confidence = &c
	}
	return rec
}

// BGP makes a BGP update's record.
func BGP(m *vantagev1.ExportedBgpUpdate) BGPRecord {
	u := m.GetUpdate()
	rec := BGPRecord{Record: KindBGPUpdate, SchemaVersion: SchemaVersion, Cursor: m.GetCursor(), ID: u.GetId(), At: rfc3339(u.GetAt()),
		Type: "announce", Prefix: u.GetPrefix(), Peer: u.GetPeer(), PeerAS: u.GetPeerAs(), ASPath: append([]uint32{}, u.GetAsPath()...),
		NextHop: u.GetNextHop(), Source: u.GetSource()}
	if u.GetWithdraw() {
		rec.Type = "withdraw"
	}
	if as := u.GetOriginAs(); as != 0 {
		rec.OriginAS = &as
	}
	return rec
}

// Writer writes records as JSON lines or CSV.
type Writer struct {
	jsonl *json.Encoder
	atlas bool
	csv   *csv.Writer
	// header is written before the first CSV row.
	header []string
}

// Formats are the export formats a Writer writes: atlas is JSON lines of
// RIPE Atlas's result format (results only; see Atlas).
var Formats = []string{"jsonl", "csv", "atlas"}

// NewWriter returns a Writer of format (jsonl or csv) to w; a CSV one
// starts with header, the record's fields in order (none when nil: a
// resumed export appending to an earlier one's rows).
func NewWriter(w io.Writer, format string, header []string) (*Writer, error) {
	switch format {
	case "jsonl", "atlas":
		enc := json.NewEncoder(w)
		enc.SetEscapeHTML(false)
		return &Writer{jsonl: enc, atlas: format == "atlas"}, nil
	case "csv":
		return &Writer{csv: csv.NewWriter(w), header: header}, nil
	}
	return nil, fmt.Errorf("format: want %s, got %q", strings.Join(Formats, ", "), format)
}

// Atlas reports whether the Writer writes RIPE Atlas records.
func (w *Writer) Atlas() bool { return w.atlas }

// Write writes one record: rec is a *Record of this package; row is its
// CSV row.
func (w *Writer) Write(rec any, row func() []string) error {
	if w.jsonl != nil {
		return w.jsonl.Encode(rec)
	}
	if w.header != nil {
		if err := w.csv.Write(w.header); err != nil {
			return err
		}
		w.header = nil
	}
	if err := w.csv.Write(row()); err != nil {
		return err
	}
	// Each row leaves csv's own buffer at once, so that what is under
	// the Writer sees where every record ends.
	w.csv.Flush()
	return w.csv.Error()
}

// Flush writes out what is buffered (CSV) and reports a write error.
func (w *Writer) Flush() error {
	if w.csv == nil {
		return nil
	}
	if w.header != nil { // no record: the header alone
		if err := w.csv.Write(w.header); err != nil {
			return err
		}
		w.header = nil
	}
	w.csv.Flush()
	return w.csv.Error()
}

// CSV columns: the JSON keys in order. Nested values are flattened: hops
// become one JSON array in the hops column, an AS path its numbers
// separated by spaces; null is the empty string.
var (
	ResultColumns = []string{"record", "schema_version", "cursor", "campaign", "round", "sent_at", "received_at", "agent_id", "agent_name",
		"epoch", "seq", "task_id", "target", "kind", "outcome", "rtt_ms", "attempts", "reply_from", "reply_ttl", "port", "unreachable_code",
		"stop_reason", "error", "engine", "trigger_id", "hops"}
	EpisodeColumns = []string{"record", "schema_version", "cursor", "campaign", "level", "subject", "verdict_id", "start", "start_earliest",
		"end", "end_earliest", "duration_s", "state", "location", "upstream", "upstream_address", "upstream_as", "cause", "confidence",
		"first_transition_id", "last_transition_id", "transitions"}
	BGPColumns = []string{"record", "schema_version", "cursor", "id", "at", "type", "prefix", "peer", "peer_as", "as_path", "origin_as",
		"next_hop", "source"}
)

func u64(v uint64) string { return strconv.FormatUint(v, 10) }
func i64(v int64) string  { return strconv.FormatInt(v, 10) }

func optF(v *float64) string {
	if v == nil {
		return ""
	}
	return strconv.FormatFloat(*v, 'f', -1, 64)
}

func optS(v *string) string {
	if v == nil {
		return ""
	}
	return *v
}

func optU(v *uint32) string {
	if v == nil {
		return ""
	}
	return u64(uint64(*v))
}

// Row is the record's CSV row (ResultColumns).
func (r *ResultRecord) Row() []string {
	hops, _ := json.Marshal(r.Hops)
	return []string{r.Record, i64(int64(r.SchemaVersion)), r.Cursor, r.Campaign, i64(r.Round), r.SentAt, r.ReceivedAt, r.AgentID, r.AgentName,
		u64(r.Epoch), u64(r.Seq), r.TaskID, r.Target, r.Kind, r.Outcome, optF(r.RTTMs), u64(uint64(r.Attempts)), r.ReplyFrom,
		u64(uint64(r.ReplyTTL)), u64(uint64(r.Port)), u64(uint64(r.UnreachableCode)), r.StopReason, r.Error, r.Engine, r.TriggerID, string(hops)}
}

// Row is the record's CSV row (EpisodeColumns).
func (r *EpisodeRecord) Row() []string {
	return []string{r.Record, i64(int64(r.SchemaVersion)), r.Cursor, r.Campaign, r.Level, r.Subject, r.VerdictID, r.Start, r.StartEarliest,
		optS(r.End), optS(r.EndEarliest), optF(r.DurationS), r.State, r.Location, r.Upstream, r.UpstreamAddress, optU(r.UpstreamAS), r.Cause,
		optF(r.Confidence), i64(r.FirstTransitionID), i64(r.LastTransitionID), u64(uint64(r.Transitions))}
}

// Row is the record's CSV row (BGPColumns).
func (r *BGPRecord) Row() []string {
	path := make([]string, len(r.ASPath))
	for i, as := range r.ASPath {
		path[i] = u64(uint64(as))
	}
	return []string{r.Record, i64(int64(r.SchemaVersion)), r.Cursor, i64(r.ID), r.At, r.Type, r.Prefix, r.Peer, u64(uint64(r.PeerAS)),
		strings.Join(path, " "), optU(r.OriginAS), r.NextHop, r.Source}
}
