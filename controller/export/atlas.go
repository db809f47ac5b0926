package export

import (
	"hash/fnv"
	"math"
	"net/netip"
	"strconv"
	"strings"

	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// RIPE Atlas's result format (atlas.ripe.net/docs/apis/measurement-result-format),
// for tools written for Atlas results. Ping and traceroute results follow
// the version 5000 field lists, which the fw field names; what vantage
// does not record is given the documented value for "unknown" or left
// out, never made up:
//   - fw is 5000, the documented version the records follow; lts is -1
//     ("does not know whether it is in sync"); from, src_addr are ""
//     (the agent's addresses are not in a stored result); size is 0 (the
//     packet size is the campaign's, not the result's), and a hop reply
//     has no size;
//   - prb_id and msm_id are integers where vantage has strings: the
//     FNV-1a 32-bit hash of the agent id and of the task id, so one agent
//     is one probe and one task one measurement across exports;
//   - a ping result is one vantage result: sent is its attempts, and each
//     attempt before the one answered is a timeout ({"x": "*"});
//     min/avg/max are the one RTT, or -1 with no reply;
//   - a traceroute's proto and paris_id come from the engine that took it
//     (trace/icmp, trace/udp, trace/tcp-syn, -paris: paris_id 1, else 0);
//     endtime is the send time plus its slowest answer, rounded up (a
//     result does not record when the trace ended); every TTL is one
//     probe.
//
// Each record also carries a "vantage" object (agent, campaign, round,
// cursor), which Atlas tools ignore: its cursor resumes the export. TCP
// results have no Atlas form (Atlas's ping is ICMP) and are left out.

// AtlasFirmware is the fw of every Atlas record: the documented version
// whose field lists the records follow.
const AtlasFirmware = 5000

// AtlasVantage is what an Atlas record carries of vantage's own.
type AtlasVantage struct {
	Cursor    string `json:"cursor"`
	Campaign  string `json:"campaign"`
	Round     int64  `json:"round"`
	AgentID   string `json:"agent_id"`
	AgentName string `json:"agent_name"`
	TaskID    string `json:"task_id"`
	Outcome   string `json:"outcome"`
}

// AtlasPing is a ping result in Atlas's format.
type AtlasPing struct {
	AF        int          `json:"af"`
	Avg       float64      `json:"avg"`
	DstAddr   string       `json:"dst_addr"`
	DstName   string       `json:"dst_name"`
	Dup       int          `json:"dup"`
	From      string       `json:"from"`
	Fw        int          `json:"fw"`
	Lts       int          `json:"lts"`
	Max       float64      `json:"max"`
	Min       float64      `json:"min"`
	MsmID     uint32       `json:"msm_id"`
	MsmName   string       `json:"msm_name"`
	PrbID     uint32       `json:"prb_id"`
	Proto     string       `json:"proto"`
	Rcvd      int          `json:"rcvd"`
	Result    []AtlasReply `json:"result"`
	Sent      int          `json:"sent"`
	Size      int          `json:"size"`
	SrcAddr   string       `json:"src_addr"`
	Timestamp int64        `json:"timestamp"`
	TTL       *uint32      `json:"ttl,omitempty"`
	Type      string       `json:"type"`
	Vantage   AtlasVantage `json:"vantage"`
}

// AtlasReply is one element of a ping's result, or of a traceroute hop's:
// a reply (rtt, and from and ttl in a traceroute), a timeout (x: "*") or
// an error.
type AtlasReply struct {
	X       string        `json:"x,omitempty"`
	Error   string        `json:"error,omitempty"`
	From    string        `json:"from,omitempty"`
	RTT     *float64      `json:"rtt,omitempty"`
	TTL     *uint32       `json:"ttl,omitempty"`
	Err     any           `json:"err,omitempty"`
	ITTL    uint32        `json:"ittl,omitempty"`
	ICMPExt *AtlasICMPExt `json:"icmpext,omitempty"`
}

// AtlasICMPExt is a reply's ICMP extension (RFC 4884): its MPLS stack.
type AtlasICMPExt struct {
	Version int               `json:"version"`
	RFC4884 int               `json:"rfc4884"`
	Obj     []AtlasICMPExtObj `json:"obj"`
}

// AtlasICMPExtObj is one extension object: class 1 type 1 is MPLS.
type AtlasICMPExtObj struct {
	Class int         `json:"class"`
	Type  int         `json:"type"`
	MPLS  []AtlasMPLS `json:"mpls"`
}

// AtlasMPLS is one label stack entry.
type AtlasMPLS struct {
	Label uint32 `json:"label"`
	Exp   uint32 `json:"exp"`
	S     int    `json:"s"`
	TTL   uint32 `json:"ttl"`
}

// AtlasTraceroute is a traceroute result in Atlas's format.
type AtlasTraceroute struct {
	AF        int          `json:"af"`
	DstAddr   string       `json:"dst_addr"`
	DstName   string       `json:"dst_name"`
	Endtime   int64        `json:"endtime"`
	From      string       `json:"from"`
	Fw        int          `json:"fw"`
	Lts       int          `json:"lts"`
	MsmID     uint32       `json:"msm_id"`
	MsmName   string       `json:"msm_name"`
	ParisID   int          `json:"paris_id"`
	PrbID     uint32       `json:"prb_id"`
	Proto     string       `json:"proto"`
	Result    []AtlasHop   `json:"result"`
	Size      int          `json:"size"`
	SrcAddr   string       `json:"src_addr"`
	Timestamp int64        `json:"timestamp"`
	Type      string       `json:"type"`
	Vantage   AtlasVantage `json:"vantage"`
}

// AtlasHop is one TTL of a traceroute.
type AtlasHop struct {
	Hop    uint32       `json:"hop"`
	Result []AtlasReply `json:"result"`
}

func fnv32(s string) uint32 {
	h := fnv.New32a()
	h.Write([]byte(s))
	return h.Sum32()
}

func family(addr string) int {
	if a, err := netip.ParseAddr(addr); err == nil && a.Unmap().Is6() {
		return 6
	}
	return 4
}

func msF(us uint32) float64 { return float64(us) / 1000 }

// unreachableErr is a hop's err for an ICMP destination unreachable: the
// letters Atlas documents, else the code.
func unreachableErr(v6 bool, typ, code uint32) any {
	if v6 {
		if typ != 1 {
			return nil
		}
		switch code {
		case 0:
			return "N"
		case 1:
			return "A"
		case 3:
			return "H"
		case 4:
			return "p"
		}
		return code
	}
	if typ != 3 {
		return nil
	}
	switch code {
	case 0:
		return "N"
	case 1:
		return "H"
	case 2:
		return "P"
	case 3:
		return "p"
	case 13:
		return "A"
	}
	return code
}

// Atlas makes a result's Atlas record: an *AtlasPing or an
// *AtlasTraceroute; ok is false for a result with no Atlas form (TCP).
func Atlas(m *vantagev1.ExportedResult) (rec any, ok bool) {
	sr, r := m.GetResult(), m.GetResult().GetResult()
	v := AtlasVantage{Cursor: m.GetCursor(), Campaign: r.GetCampaign(), Round: r.GetRound(), AgentID: sr.GetAgentId(),
		AgentName: m.GetAgentName(), TaskID: r.GetTaskId(), Outcome: word(r.GetOutcome().String(), "OUTCOME_", r.GetOutcome() == 0)}
	ts := r.GetSentAt().AsTime().Unix()
	switch r.GetKind() {
	case vantagev1.ProbeKind_PROBE_KIND_ICMP_ECHO:
		p := &AtlasPing{AF: family(r.GetTarget()), Avg: -1, Min: -1, Max: -1, DstAddr: r.GetTarget(), DstName: r.GetTarget(),
			Fw: AtlasFirmware, Lts: -1, MsmID: fnv32(r.GetTaskId()), MsmName: "Ping", PrbID: fnv32(sr.GetAgentId()), Proto: "ICMP",
			Sent: int(max(r.GetAttempts(), 1)), Timestamp: ts, Type: "ping", Vantage: v, Result: []AtlasReply{}}
		switch r.GetOutcome() {
		case vantagev1.Outcome_OUTCOME_REPLY:
			for range p.Sent - 1 {
				p.Result = append(p.Result, AtlasReply{X: "*"})
			}
			rtt := msF(r.GetRttUs())
			p.Result = append(p.Result, AtlasReply{RTT: &rtt})
			p.Rcvd, p.Avg, p.Min, p.Max = 1, rtt, rtt, rtt
			if t := r.GetReplyTtl(); t != 0 {
				p.TTL = &t
			}
		case vantagev1.Outcome_OUTCOME_TIMEOUT:
			for range p.Sent {
				p.Result = append(p.Result, AtlasReply{X: "*"})
			}
		case vantagev1.Outcome_OUTCOME_UNREACHABLE:
			p.Result = append(p.Result, AtlasReply{Error: "destination unreachable (ICMP code " +
				strconv.FormatUint(uint64(r.GetUnreachableCode()), 10) + ") from " + r.GetReplyFrom()})
		default:
			p.Result = append(p.Result, AtlasReply{Error: r.GetError()})
		}
		return p, true
	case vantagev1.ProbeKind_PROBE_KIND_TRACE:
		tr := &AtlasTraceroute{AF: family(r.GetTarget()), DstAddr: r.GetTarget(), DstName: r.GetTarget(), Fw: AtlasFirmware, Lts: -1,
			MsmID: fnv32(r.GetTaskId()), MsmName: "Traceroute", PrbID: fnv32(sr.GetAgentId()), Timestamp: ts, Type: "traceroute",
			Vantage: v, Result: []AtlasHop{}}
		engine := r.GetEngine()
		switch {
		case strings.HasPrefix(engine, "trace/icmp"):
			tr.Proto = "ICMP"
		case strings.HasPrefix(engine, "trace/udp"):
			tr.Proto = "UDP"
		case strings.HasPrefix(engine, "trace/tcp"):
			tr.Proto = "TCP"
		}
		if strings.HasSuffix(engine, "-paris") {
			tr.ParisID = 1
		}
		v6 := tr.AF == 6
		var slowest uint32
		for _, h := range r.GetHops() {
			if h.GetAddr() == "" {
				tr.Result = append(tr.Result, AtlasHop{Hop: h.GetTtl(), Result: []AtlasReply{{X: "*"}}})
				continue
			}
			rtt, ttl := msF(h.GetRttUs()), h.GetReplyTtl()
			slowest = max(slowest, h.GetRttUs())
			rep := AtlasReply{From: h.GetAddr(), RTT: &rtt, TTL: &ttl, Err: unreachableErr(v6, h.GetIcmpType(), h.GetIcmpCode())}
			if q := h.GetQuotedTtl(); q > 1 {
				rep.ITTL = q
			}
			if len(h.GetMpls()) > 0 {
				obj := AtlasICMPExtObj{Class: 1, Type: 1}
				for _, l := range h.GetMpls() {
					s := 0
					if l.GetBottomOfStack() {
						s = 1
					}
					obj.MPLS = append(obj.MPLS, AtlasMPLS{Label: l.GetLabel(), Exp: l.GetExp(), S: s, TTL: l.GetTtl()})
				}
				rep.ICMPExt = &AtlasICMPExt{Version: 2, RFC4884: 1, Obj: []AtlasICMPExtObj{obj}}
			}
			tr.Result = append(tr.Result, AtlasHop{Hop: h.GetTtl(), Result: []AtlasReply{rep}})
		}
		if len(r.GetHops()) == 0 && r.GetError() != "" {
			tr.Result = append(tr.Result, AtlasHop{Hop: 1, Result: []AtlasReply{{Error: r.GetError()}}})
		}
		tr.Endtime = ts + int64(math.Ceil(float64(slowest)/1e6))
		return tr, true
	}
	return nil, false
}
