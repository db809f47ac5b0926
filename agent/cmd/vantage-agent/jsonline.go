package main

import (
	"bytes"
	"encoding/json"
	"strconv"
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/reflect/protoreflect"

	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// The one-shot sweep prints one JSON line per result, 65,536 of them for a
// /16; protojson (reflection, then json.Compact for its random spaces) was
// a quarter of the sweep's CPU. appendResultJSON writes the same bytes
// directly: the fields of ProbeResult in declaration order, proto names,
// zero values left out, 64-bit integers quoted, enums by name, sent_at in
// RFC 3339 with 0, 3, 6 or 9 fractional digits. Anything it does not
// handle exactly like protojson (hops, an enum number without a name,
// invalid UTF-8, a timestamp out of range, a ProbeResult with fields this
// code does not know) makes it report false, and the caller falls back to
// protojson. TestResultJSONMatchesProtojson holds it to byte equality.

// probeResultFields are the ProbeResult fields appendResultJSON writes,
// in declaration order (protojson's order).
var probeResultFields = []protoreflect.Name{
	"seq", "task_id", "campaign", "target", "kind", "round", "sent_at", "outcome", "unreachable_code",
	"rtt_us", "reply_from", "reply_ttl", "port", "attempts", "hops", "stop_reason", "error", "engine", "trigger_id",
}

// fastJSON is false when ProbeResult's descriptor has changed from the
// fields above: then every line goes through protojson.
var fastJSON = func() bool {
	fds := (&vantagev1.ProbeResult{}).ProtoReflect().Descriptor().Fields()
	if fds.Len() != len(probeResultFields) {
		return false
	}
	for i, name := range probeResultFields {
		if fds.Get(i).Name() != name {
			return false
		}
	}
	return true
}()

// Timestamp bounds protojson accepts (0001-01-01 to 9999-12-31).
const (
	minJSONSeconds = -62135596800
	maxJSONSeconds = 253402300799
)

// appendResultJSON appends r as one compact protojson object (no newline).
// It returns false, with b's content undefined past its original length,
// when r needs protojson itself.
func appendResultJSON(b []byte, r *vantagev1.ProbeResult) ([]byte, bool) {
	var e jsonEncoder
	return e.appendResult(b, r)
}

// jsonEncoder is appendResultJSON with a memory: the text of the last
// sent_at second (a sweep's results share a few seconds).
type jsonEncoder struct {
	sec     int64
	secText []byte
}

// appendResult is appendResultJSON. The fields go in protojson's order
// (field numbers): what was probed and when, what came back, notes.
func (e *jsonEncoder) appendResult(b []byte, r *vantagev1.ProbeResult) ([]byte, bool) {
	if !fastJSON || len(r.GetHops()) > 0 {
		return b, false
	}
	b = append(b, '{')
	b, ok := e.appendProbe(b, r)
	if ok {
		b, ok = appendAnswer(b, r)
	}
	if ok {
		b, ok = appendStrings(b, strField{"error", r.Error}, strField{"engine", r.Engine}, strField{"trigger_id", r.TriggerId})
	}
	if !ok {
		return b, false
	}
	return append(b, '}'), true
}

// appendProbe writes seq, task_id, campaign, target, kind, round and
// sent_at.
func (e *jsonEncoder) appendProbe(b []byte, r *vantagev1.ProbeResult) ([]byte, bool) {
	if r.Seq != 0 {
		b = appendKey(b, "seq")
		b = append(b, '"')
		b = strconv.AppendUint(b, r.Seq, 10)
		b = append(b, '"')
	}
	b, ok := appendStrings(b, strField{"task_id", r.TaskId}, strField{"campaign", r.Campaign}, strField{"target", r.Target})
	if !ok {
		return b, false
	}
	if b, ok = appendEnum(b, "kind", vantagev1.ProbeKind_name, int32(r.Kind)); !ok {
		return b, false
	}
	if r.Round != 0 {
		b = appendKey(b, "round")
		b = append(b, '"')
		b = strconv.AppendInt(b, r.Round, 10)
		b = append(b, '"')
	}
	if ts := r.SentAt; ts != nil {
		secs, nanos := ts.GetSeconds(), int64(ts.GetNanos())
		if secs < minJSONSeconds || secs > maxJSONSeconds || nanos < 0 || nanos > 999999999 {
			return b, false
		}
		b = appendKey(b, "sent_at")
		b = append(b, '"')
		b = e.appendRFC3339(b, secs, nanos)
		b = append(b, '"')
	}
	return b, true
}

// appendAnswer writes outcome, unreachable_code, rtt_us, reply_from,
// reply_ttl, port, attempts and stop_reason.
func appendAnswer(b []byte, r *vantagev1.ProbeResult) ([]byte, bool) {
	b, ok := appendEnum(b, "outcome", vantagev1.Outcome_name, int32(r.Outcome))
	if !ok {
		return b, false
	}
	b = appendUints(b, uintField{"unreachable_code", r.UnreachableCode}, uintField{"rtt_us", r.RttUs})
	if b, ok = appendStrings(b, strField{"reply_from", r.ReplyFrom}); !ok {
		return b, false
	}
	b = appendUints(b, uintField{"reply_ttl", r.ReplyTtl}, uintField{"port", r.Port}, uintField{"attempts", r.Attempts})
	return appendEnum(b, "stop_reason", vantagev1.TraceStopReason_name, int32(r.StopReason))
}

// strField and uintField are a field's JSON name and its value; zero
// values are left out, as protojson does.
type (
	strField struct {
		n, v string
	}
	uintField struct {
		n string
		v uint32
	}
)

// appendStrings writes the non-empty string fields; false when one needs
// escaping that appendJSONString does not do.
func appendStrings(b []byte, fs ...strField) ([]byte, bool) {
	var ok bool
	for _, f := range fs {
		if f.v != "" {
			b = appendKey(b, f.n)
			if b, ok = appendJSONString(b, f.v); !ok {
				return b, false
			}
		}
	}
	return b, true
}

// appendUints writes the non-zero integer fields (uint32: JSON numbers).
func appendUints(b []byte, fs ...uintField) []byte {
	for _, f := range fs {
		if f.v != 0 {
			b = appendKey(b, f.n)
			b = strconv.AppendUint(b, uint64(f.v), 10)
		}
	}
	return b
}

// appendEnum writes a non-zero enum field by its name; false for a number
// without one (protojson writes the number).
func appendEnum(b []byte, key string, names map[int32]string, v int32) ([]byte, bool) {
	if v == 0 {
		return b, true
	}
	s, ok := names[v]
	if !ok {
		return b, false
	}
	b = appendKey(b, key)
	return appendPlainString(b, s), true
}

// appendRFC3339 writes a Timestamp as protojson does: UTC, "Z", and 0,
// 3, 6 or 9 fractional digits. secs is in the JSON range, nanos in
// [0, 1e9).
func (e *jsonEncoder) appendRFC3339(b []byte, secs, nanos int64) []byte {
	if e.secText == nil || e.sec != secs {
		e.sec = secs
		e.secText = time.Unix(secs, 0).UTC().AppendFormat(e.secText[:0], "2006-01-02T15:04:05")
	}
	b = append(b, e.secText...)
	digits := 9
	switch {
	case nanos == 0:
		return append(b, 'Z')
	case nanos%1e6 == 0:
		nanos, digits = nanos/1e6, 3
	case nanos%1e3 == 0:
		nanos, digits = nanos/1e3, 6
	}
	b = append(b, '.')
	var d [9]byte
	for i := digits - 1; i >= 0; i-- {
		d[i] = byte('0' + nanos%10)
		nanos /= 10
	}
	b = append(b, d[:digits]...)
	return append(b, 'Z')
}

// appendKey writes `"n":`, after a comma unless it is the first field
// (no value ends in '{').
func appendKey(b []byte, n string) []byte {
	if b[len(b)-1] != '{' {
		b = append(b, ',')
	}
	b = append(b, '"')
	b = append(b, n...)
	return append(b, '"', ':')
}

// appendPlainString quotes s, which needs no escaping (an enum name).
func appendPlainString(b []byte, s string) []byte {
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// appendJSONString quotes s as protojson does: only '"', '\\' and control
// characters are escaped (\b \f \n \r \t, else \u00xx in lower case);
// invalid UTF-8 is an error (false).
func appendJSONString(b []byte, s string) ([]byte, bool) {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= utf8.RuneSelf {
			r, n := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError && n == 1 {
				return b, false
			}
			i += n
			continue
		}
		if jsonSafe[c] {
			i++
			continue
		}
		b = append(b, s[start:i]...)
		switch c {
		case '"', '\\':
			b = append(b, '\\', c)
		case '\b':
			b = append(b, '\\', 'b')
		case '\f':
			b = append(b, '\\', 'f')
		case '\n':
			b = append(b, '\\', 'n')
		case '\r':
			b = append(b, '\\', 'r')
		case '\t':
			b = append(b, '\\', 't')
		default:
			const hex = "0123456789abcdef"
			b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		}
		i++
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"'), true
}

// jsonSafe marks the ASCII bytes a JSON string holds as they are.
var jsonSafe = func() (t [utf8.RuneSelf]bool) {
	for c := ' '; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// protoJSONLine is the reference path: protojson with proto names, made
// compact (protojson may add spaces at random).
type protoJSONLine struct {
	raw  []byte
	line bytes.Buffer
}

func (p *protoJSONLine) append(b []byte, r *vantagev1.ProbeResult) []byte {
	p.raw, _ = protojson.MarshalOptions{UseProtoNames: true}.MarshalAppend(p.raw[:0], r) // a ProbeResult always marshals
	p.line.Reset()
	if json.Compact(&p.line, p.raw) != nil {
		return append(b, p.raw...)
	}
	return append(b, p.line.Bytes()...)
}
