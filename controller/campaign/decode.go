package campaign

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// FieldError is a problem with one field of a campaign file. Path is the
// field's location in the document, e.g. "targets.networks[1].prefix" (empty
// for the document itself).
type FieldError struct {
	Path   string
	Reason string
}

func (e *FieldError) Error() string {
	if e.Path == "" {
		return e.Reason
	}
	return e.Path + ": " + e.Reason
}

// ErrInvalid is wrapped by every error Parse and Validate return, so callers
// can map "bad campaign file" to one status code.
var ErrInvalid = errors.New("invalid campaign")

// Is makes every FieldError match ErrInvalid.
func (e *FieldError) Is(target error) bool { return target == ErrInvalid }

func fieldErr(path, format string, args ...any) error {
	return &FieldError{Path: path, Reason: fmt.Sprintf(format, args...)}
}

// join builds a child path: join("targets", "networks") = "targets.networks".
func join(parent, key string) string {
	if parent == "" {
		return key
	}
	return parent + "." + key
}

func index(parent string, i int) string { return parent + "[" + strconv.Itoa(i) + "]" }

// readDocument parses exactly one YAML document. Empty input, several
// documents and trailing garbage are errors, as are anchors and aliases (a
// campaign file has no use for them, and they are how YAML bombs work).
func readDocument(data []byte) (*yaml.Node, error) {
	if len(data) > MaxFileBytes {
		return nil, fieldErr("", "file is %d bytes, more than the limit of %d", len(data), MaxFileBytes)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	// Strictness comes from the walker below, which knows every field by
	// name; decoding into a Node keeps positions for the error messages.
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fieldErr("", "file is empty")
		}
		return nil, fieldErr("", "not valid YAML: %s", strings.TrimPrefix(err.Error(), "yaml: "))
	}
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case errors.Is(err, io.EOF):
	case err != nil:
		return nil, fieldErr("", "trailing data after the document: %s", strings.TrimPrefix(err.Error(), "yaml: "))
	default:
		return nil, fieldErr("", "more than one YAML document (line %d); a campaign file holds exactly one", extra.Line)
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 {
		return nil, fieldErr("", "file is empty")
	}
	if err := checkNoAliases(doc.Content[0], 0); err != nil {
		return nil, err
	}
	return doc.Content[0], nil
}

// maxDepth bounds nesting; the schema is at most five levels deep.
const maxDepth = 32

func checkNoAliases(n *yaml.Node, depth int) error {
	if depth > maxDepth {
		return fieldErr("", "line %d: nesting deeper than %d levels", n.Line, maxDepth)
	}
	if n.Kind == yaml.AliasNode {
		return fieldErr("", "line %d: YAML aliases are not supported", n.Line)
	}
	if n.Anchor != "" {
		return fieldErr("", "line %d: YAML anchors are not supported", n.Line)
	}
	for _, c := range n.Content {
		if err := checkNoAliases(c, depth+1); err != nil {
			return err
		}
	}
	return nil
}

// kindName describes a node for "expected X, got Y" messages.
func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!int":
			return "an integer"
		case "!!float":
			return "a number"
		case "!!bool":
			return "a boolean"
		case "!!null":
			return "null"
		case "!!timestamp":
			return "a timestamp"
		}
		return "a string"
	}
	return "an unexpected node"
}

func isNull(n *yaml.Node) bool { return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" }

// field decodes the value of one known key.
type field struct {
	key    string
	decode func(path string, v *yaml.Node) error
}

// decodeMapping walks a mapping node strictly: unknown and duplicate keys are
// errors, null values count as absent, and fields are decoded in the order
// of the schema (not of the file), so the first error reported is stable.
func decodeMapping(path string, n *yaml.Node, fields []field) error {
	if n.Kind != yaml.MappingNode {
		return fieldErr(path, "expected a mapping, got %s", kindName(n))
	}
	values := make(map[string]*yaml.Node, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode || k.ShortTag() != "!!str" {
			return fieldErr(path, "line %d: keys must be strings, got %s", k.Line, kindName(k))
		}
		known := slices.ContainsFunc(fields, func(f field) bool { return f.key == k.Value })
		if !known {
			names := make([]string, len(fields))
			for j, f := range fields {
				names[j] = f.key
			}
			return fieldErr(join(path, k.Value), "unknown field (known fields: %s)", strings.Join(names, ", "))
		}
		if _, dup := values[k.Value]; dup {
			return fieldErr(join(path, k.Value), "defined more than once (line %d)", k.Line)
		}
		values[k.Value] = v
	}
	for _, f := range fields {
		v, ok := values[f.key]
		if !ok || isNull(v) {
			continue
		}
		if err := f.decode(join(path, f.key), v); err != nil {
			return err
		}
	}
	return nil
}

// decodeSequence calls item for every element of a list.
func decodeSequence(path string, n *yaml.Node, limit int, item func(path string, i int, v *yaml.Node) error) error {
	if n.Kind != yaml.SequenceNode {
		return fieldErr(path, "expected a list, got %s", kindName(n))
	}
	if len(n.Content) > limit {
		return fieldErr(path, "has %d entries, more than the limit of %d", len(n.Content), limit)
	}
	for i, v := range n.Content {
		if err := item(index(path, i), i, v); err != nil {
			return err
		}
	}
	return nil
}

func scalar(path string, n *yaml.Node, want string, tags ...string) (string, error) {
	if n.Kind != yaml.ScalarNode || !slices.Contains(tags, n.ShortTag()) {
		return "", fieldErr(path, "expected %s, got %s", want, kindName(n))
	}
	return n.Value, nil
}

func decodeString(path string, n *yaml.Node, out *string) error {
	s, err := scalar(path, n, "a string", "!!str")
	if err != nil {
		return err
	}
	*out = s
	return nil
}

func decodeBool(path string, n *yaml.Node, out *bool) error {
	if _, err := scalar(path, n, "a boolean (true or false)", "!!bool"); err != nil {
		return err
	}
	if err := n.Decode(out); err != nil {
		return fieldErr(path, "%q is not a boolean", n.Value)
	}
	return nil
}

// decodeInt reads an integer in [lo, hi].
func decodeInt(path string, n *yaml.Node, lo, hi int64, out *int64) error {
	if _, err := scalar(path, n, "an integer", "!!int"); err != nil {
		return err
	}
	var v int64
	if err := n.Decode(&v); err != nil {
		return fieldErr(path, "%q is not an integer in [%d, %d]", n.Value, lo, hi)
	}
	if v < lo || v > hi {
		return fieldErr(path, "%d is out of range [%d, %d]", v, lo, hi)
	}
	*out = v
	return nil
}

// decodeFloat reads a finite number in (0, hi].
func decodeFloat(path string, n *yaml.Node, hi float64, out *float64) error {
	if _, err := scalar(path, n, "a number", "!!int", "!!float"); err != nil {
		return err
	}
	v, err := strconv.ParseFloat(strings.ReplaceAll(n.Value, "_", ""), 64)
	if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
		return fieldErr(path, "%q is not a finite number", n.Value)
	}
	if v <= 0 || v > hi {
		return fieldErr(path, "%s is out of range (0, %g]", n.Value, hi)
	}
	*out = v
	return nil
}

// text reads a scalar written as text whatever YAML resolved it to (a
// duration "0" resolves to an integer, an address never does).
func text(path string, n *yaml.Node, want string) (string, error) {
	return scalar(path, n, want, "!!str", "!!int", "!!float")
}

// decodeDuration reads a Go duration ("1s", "500ms") that is a whole number
// of milliseconds in [lo, hi].
func decodeDuration(path string, n *yaml.Node, lo, hi time.Duration, out *time.Duration) error {
	s, err := text(path, n, "a duration such as 1s or 500ms")
	if err != nil {
		return err
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return fieldErr(path, "%q is not a valid duration (use e.g. 1s, 500ms, 10m)", s)
	}
	if d%time.Millisecond != 0 {
		return fieldErr(path, "%s is not a whole number of milliseconds", d)
	}
	if d < lo || d > hi {
		return fieldErr(path, "%s is out of range [%s, %s]", d, lo, hi)
	}
	*out = d
	return nil
}

func decodeTime(path string, n *yaml.Node, out *time.Time) error {
	s, err := scalar(path, n, "an RFC 3339 timestamp", "!!str", "!!timestamp")
	if err != nil {
		return err
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return fieldErr(path, "%q is not an RFC 3339 timestamp such as 2026-01-01T00:00:00Z", s)
	}
	*out = t
	return nil
}

// parseAddr accepts a plain IPv4 or IPv6 address: no zone, no IPv4-mapped
// IPv6 form (each host has one spelling, so task ids are unique).
func parseAddr(path string, n *yaml.Node) (netip.Addr, error) {
	s, err := text(path, n, "an IP address")
	if err != nil {
		return netip.Addr{}, err
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, fieldErr(path, "%q is not a valid IP address", s)
	}
	switch {
	case a.Zone() != "":
		return netip.Addr{}, fieldErr(path, "%q has a zone; use a global address", s)
	case a.Is4In6():
		return netip.Addr{}, fieldErr(path, "%q is an IPv4-mapped IPv6 address; write %s", s, a.Unmap())
	case a.IsUnspecified():
		return netip.Addr{}, fieldErr(path, "%q is the unspecified address", s)
	}
	return a, nil
}

func decodeAddrList(path string, n *yaml.Node, limit int, out *[]netip.Addr) error {
	return decodeSequence(path, n, limit, func(p string, _ int, v *yaml.Node) error {
		a, err := parseAddr(p, v)
		if err != nil {
			return err
		}
		*out = append(*out, a)
		return nil
	})
}

func decodePrefix(path string, n *yaml.Node, out *netip.Prefix) error {
	s, err := text(path, n, "a CIDR prefix")
	if err != nil {
		return err
	}
	p, err := netip.ParsePrefix(s)
	if err != nil || p.Addr().Zone() != "" || p.Addr().Is4In6() {
		return fieldErr(path, "%q is not a valid CIDR prefix", s)
	}
	if p.Masked() != p {
		return fieldErr(path, "%q has host bits set; did you mean %s?", s, p.Masked())
	}
	*out = p
	return nil
}
