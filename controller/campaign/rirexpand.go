package campaign

import (
	"bytes"
	"fmt"
	"strings"

	"go.yaml.in/yaml/v3"
)

// How `targets.rir` reaches the controller: it does not. The controller
// receives campaign YAML over gRPC and must never open a path an operator
// names (that would let a campaign file read the controller's disk). So the
// client expands it: `vantagectl campaign apply` calls ExpandRIR, which
// reads the file on the operator's machine, checks every line (errors name
// the line and the field), and replaces
//
//	targets:
//	  rir: {file: delegated-apnic-extended-latest, country: KP}
//
// with the country's blocks appended to targets.networks, one network per
// CIDR prefix, named "rir-<prefix with - for . and :>-<bits>". What is
// stored is therefore an ordinary campaign whose networks anyone can read
// in GetCampaign, and re-applying with a newer file is an ordinary change.
//
// Expanded networks stay one per allocation, IPv4 and IPv6 apart, although
// a network may be dual-stack: a delegated-stats file does not say which
// IPv4 block and which IPv6 block are one network (the extended format's
// opaque-id names a holder, and a holder often has several blocks of one
// family, more than a network's one per family), and pairing them by guess
// would merge networks that are routed apart into one verdict. An operator
// who knows the pairing writes the dual-stack networks by hand.
// Parse (on the controller) rejects a targets.rir that was not expanded.

// RIRNetworkName is the network name ExpandRIR gives a prefix.
func RIRNetworkName(p string) string {
	r := strings.NewReplacer(".", "-", ":", "-", "/", "-")
	return "rir-" + r.Replace(p)
}

// ExpandRIR resolves targets.rir in a campaign file, reading the file with
// readFile, and returns the file with the country's networks listed
// instead. A file without targets.rir is returned unchanged (expanded
// false). Errors are *FieldError (a malformed rir section) or wrap ErrRIR
// (a broken delegated-stats line: "targets.rir.file: PATH: line 7: field
// value: ...").
func ExpandRIR(spec []byte, readFile func(path string) ([]byte, error)) (out []byte, expanded bool, err error) {
	root, err := readDocument(spec)
	if err != nil {
		return nil, false, err
	}
	doc := root
	if doc.Kind != yaml.MappingNode {
		return spec, false, nil // Parse reports it
	}
	targets := mappingValue(doc, "targets")
	if targets == nil || targets.Kind != yaml.MappingNode {
		return spec, false, nil
	}
	rirKey, rir := mappingEntry(targets, "rir")
	if rir == nil {
		return spec, false, nil
	}
	file, country, err := decodeRIR(doc, rir)
	if err != nil {
		return nil, false, err
	}
	blocks, err := readRIR(file, country, readFile)
	if err != nil {
		return nil, false, err
	}
	nwKey, err := appendRIRNetworks(targets, blocks)
	if err != nil {
		return nil, false, err
	}
	// Drop targets.rir and say where the networks came from.
	for i := 0; i+1 < len(targets.Content); i += 2 {
		if targets.Content[i] == rirKey {
			targets.Content = append(targets.Content[:i], targets.Content[i+2:]...)
			break
		}
	}
	nwKey.HeadComment = strings.TrimSpace(nwKey.HeadComment + "\n" +
		fmt.Sprintf("# networks of %s expanded from %s by vantagectl (targets.rir)", country, file))
	out, err = encodeDocument(doc)
	if err != nil {
		return nil, false, err
	}
	return out, true, nil
}

// decodeRIR reads the targets.rir section: the file, and the country
// (default scope.country).
func decodeRIR(doc, rir *yaml.Node) (file, country string, err error) {
	err = decodeMapping("targets.rir", rir, []field{
		{"file", func(p string, v *yaml.Node) error { return decodeString(p, v, &file) }},
		{"country", func(p string, v *yaml.Node) error { return decodeString(p, v, &country) }},
	})
	if err != nil {
		return "", "", err
	}
	if file == "" {
		return "", "", fieldErr("targets.rir.file", "required: the path of a delegated-stats file")
	}
	if country == "" {
		if sc := mappingValue(doc, "scope"); sc != nil {
			if c := mappingValue(sc, "country"); c != nil && c.Kind == yaml.ScalarNode {
				country = c.Value
			}
		}
	}
	if len(country) != 2 || !isLetters(country) {
		return "", "", fieldErr("targets.rir.country", "%q must be an ISO 3166-1 alpha-2 code in upper case (default: scope.country)", country)
	}
	return file, country, nil
}

// readRIR reads the delegated-stats file and returns the country's
// blocks, at least one.
func readRIR(file, country string, readFile func(path string) ([]byte, error)) ([]RIRBlock, error) {
	data, err := readFile(file)
	if err != nil {
		return nil, fieldErr("targets.rir.file", "%v", err)
	}
	blocks, err := ParseRIR(data, country)
	if err != nil {
		return nil, fmt.Errorf("targets.rir.file: %s: %w", file, err)
	}
	if len(blocks) == 0 {
		return nil, fieldErr("targets.rir", "%s has no allocated or assigned ipv4/ipv6 block for country %s; the campaign would have no targets", file, country)
	}
	return blocks, nil
}

// appendRIRNetworks appends one network per prefix of blocks to
// targets.networks (creating it when absent) and returns its key node.
func appendRIRNetworks(targets *yaml.Node, blocks []RIRBlock) (*yaml.Node, error) {
	nwKey, networks := mappingEntry(targets, "networks")
	if networks == nil {
		nwKey = &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: "networks"}
		networks = &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq"}
		targets.Content = append(targets.Content, nwKey, networks)
	} else if networks.Kind != yaml.SequenceNode {
		return nil, fieldErr("targets.networks", "expected a list, got %s", kindName(networks))
	}
	for _, b := range blocks {
		for _, p := range b.Prefixes {
			str := func(v string) *yaml.Node { return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: v} }
			networks.Content = append(networks.Content, &yaml.Node{
				Kind: yaml.MappingNode, Tag: "!!map", Style: yaml.FlowStyle,
				LineComment: fmt.Sprintf("%s line %d (%s)", b.Registry, b.Line, b.Status),
				Content: []*yaml.Node{
					str("name"), str(RIRNetworkName(p.String())),
					str("prefix"), str(p.String()),
				},
			})
		}
	}
	return nwKey, nil
}

// encodeDocument writes doc back as YAML, indented by two.
func encodeDocument(doc *yaml.Node) ([]byte, error) {
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(&yaml.Node{Kind: yaml.DocumentNode, Content: []*yaml.Node{doc}}); err != nil {
		return nil, fmt.Errorf("re-encode campaign: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("re-encode campaign: %w", err)
	}
	return buf.Bytes(), nil
}

func mappingEntry(m *yaml.Node, key string) (k, v *yaml.Node) {
	if m == nil || m.Kind != yaml.MappingNode {
		return nil, nil
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i], m.Content[i+1]
		}
	}
	return nil, nil
}

func mappingValue(m *yaml.Node, key string) *yaml.Node {
	_, v := mappingEntry(m, key)
	return v
}
