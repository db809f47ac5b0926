package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// JSON output (-o json) is for scripts, so it is not protojson's wire form
// but one stable shape:
//   - keys are the proto field names, snake_case (as vantage-agent probe
//     -o json writes them);
//   - every field is present: a list with no items is [], an unset message
//     or time is null, so `jq '.agents[]'` works on an empty fleet;
//   - enums are lower-case names without their type's prefix
//     (LEVEL_SCOPE -> "scope", PROBE_KIND_ICMP_ECHO -> "icmp_echo"); a
//     number the CLI does not know stays a number;
//   - 64-bit integers are JSON numbers, not strings;
//   - times are RFC 3339 strings in UTC.
// Each command prints one JSON document; only the endless streams
// (verdicts --watch, bgp watch) print one document per line (JSON Lines).

// writeJSON writes m in that shape: compact on one line for stream items,
// or indented for whole responses.
func writeJSON(w io.Writer, m proto.Message, indent bool) error {
	b, err := marshalJSON(m, indent)
	if err != nil {
		return err
	}
	b = append(b, '\n')
	_, err = w.Write(b)
	return err
}

// marshalJSON renders m without a trailing newline.
func marshalJSON(m proto.Message, indent bool) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if indent {
		enc.SetIndent("", "  ")
	}
	if err := enc.Encode(jsonValueOf(m.ProtoReflect())); err != nil {
		return nil, fmt.Errorf("encode %s: %w", m.ProtoReflect().Descriptor().FullName(), err)
	}
	return bytes.TrimRight(buf.Bytes(), "\n"), nil
}

// object is a JSON object whose keys keep the proto field order.
type object []member

type member struct {
	key string
	val any
}

func (o object) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, m := range o {
		if i > 0 {
			b.WriteByte(',')
		}
		k, _ := json.Marshal(m.key)
		b.Write(k)
		b.WriteByte(':')
		var vb bytes.Buffer
		enc := json.NewEncoder(&vb)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(m.val); err != nil {
			return nil, err
		}
		b.Write(bytes.TrimRight(vb.Bytes(), "\n"))
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

const timestampName = "google.protobuf.Timestamp"

func jsonValueOf(m protoreflect.Message) any {
	if !m.IsValid() {
		return nil
	}
	if m.Descriptor().FullName() == timestampName {
		fs := m.Descriptor().Fields()
		secs := m.Get(fs.ByName("seconds")).Int()
		nanos := m.Get(fs.ByName("nanos")).Int()
		return time.Unix(secs, nanos).UTC().Format(time.RFC3339Nano)
	}
	fields := m.Descriptor().Fields()
	o := make(object, 0, fields.Len())
	for i := range fields.Len() {
		fd := fields.Get(i)
		// Of a oneof, only the member that is set.
		if od := fd.ContainingOneof(); od != nil && !od.IsSynthetic() && !m.Has(fd) {
			continue
		}
		o = append(o, member{key: string(fd.Name()), val: fieldValue(m, fd)})
	}
	return o
}

func fieldValue(m protoreflect.Message, fd protoreflect.FieldDescriptor) any {
	v := m.Get(fd)
	switch {
	case fd.IsList():
		l := v.List()
		out := make([]any, l.Len())
		for i := range l.Len() {
			out[i] = scalar(fd, l.Get(i))
		}
		return out
	case fd.IsMap():
		mp := v.Map()
		out := make(map[string]any, mp.Len())
		mp.Range(func(k protoreflect.MapKey, val protoreflect.Value) bool {
			out[k.String()] = scalar(fd.MapValue(), val)
			return true
		})
		return out
	case fd.Message() != nil && !m.Has(fd):
		return nil
	}
	return scalar(fd, v)
}

func scalar(fd protoreflect.FieldDescriptor, v protoreflect.Value) any {
	switch fd.Kind() {
	case protoreflect.MessageKind, protoreflect.GroupKind:
		return jsonValueOf(v.Message())
	case protoreflect.EnumKind:
		return enumJSON(fd.Enum(), v.Enum())
	case protoreflect.BoolKind:
		return v.Bool()
	case protoreflect.StringKind:
		return v.String()
	case protoreflect.BytesKind:
		return base64.StdEncoding.EncodeToString(v.Bytes())
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind,
		protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		return json.Number(strconv.FormatInt(v.Int(), 10))
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind, protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return json.Number(strconv.FormatUint(v.Uint(), 10))
	case protoreflect.FloatKind, protoreflect.DoubleKind:
		f := v.Float()
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return nil
		}
		return f
	}
	return v.Interface()
}

// enumJSON is an enum value's name without its type's prefix, in lower
// case: Level LEVEL_SCOPE is "scope". A number without a name stays a
// number.
func enumJSON(ed protoreflect.EnumDescriptor, n protoreflect.EnumNumber) any {
	vd := ed.Values().ByNumber(n)
	if vd == nil {
		return json.Number(strconv.Itoa(int(n)))
	}
	name := strings.TrimPrefix(string(vd.Name()), enumPrefix(string(ed.Name())))
	return strings.ToLower(name)
}

// enumPrefix turns an enum type name into its values' prefix, as the
// style guide names them: ProbeKind -> "PROBE_KIND_".
func enumPrefix(typeName string) string {
	var b strings.Builder
	for i, r := range typeName {
		if i > 0 && unicode.IsUpper(r) {
			b.WriteByte('_')
		}
		b.WriteRune(unicode.ToUpper(r))
	}
	b.WriteByte('_')
	return b.String()
}
