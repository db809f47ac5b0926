package campaign

import (
	"net/netip"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/vantage-net/vantage/internal/tracedefaults"
)

// Parse decodes a campaign file, applies defaults and validates it. Every
// error wraps ErrInvalid and is a *FieldError naming the field.
func Parse(data []byte) (*Spec, error) {
	root, err := readDocument(data)
	if err != nil {
		return nil, err
	}
	s := &Spec{present: map[string]bool{}}
	if err := s.decode(root); err != nil {
		return nil, err
	}
	s.applyDefaults()
	targets, err := s.check()
	if err != nil {
		return nil, err
	}
	s.expanded = targets
	return s, nil
}

func (s *Spec) mark(path string) { s.present[path] = true }

func (s *Spec) decode(root *yaml.Node) error {
	return decodeMapping("", root, []field{
		{"name", func(p string, v *yaml.Node) error { s.mark(p); return decodeString(p, v, &s.name) }},
		{"scope", func(p string, v *yaml.Node) error {
			s.mark(p)
			return decodeMapping(p, v, []field{
				{"country", func(p string, v *yaml.Node) error { s.mark(p); return decodeString(p, v, &s.scope.country) }},
				{"name", func(p string, v *yaml.Node) error { return decodeString(p, v, &s.scope.name) }},
			})
		}},
		{"targets", func(p string, v *yaml.Node) error { s.mark(p); return s.decodeTargets(p, v) }},
		{"probes", func(p string, v *yaml.Node) error {
			s.mark(p)
			return decodeSequence(p, v, 16, func(p string, _ int, v *yaml.Node) error {
				pr, err := decodeProbe(p, v)
				if err != nil {
					return err
				}
				s.probes = append(s.probes, pr)
				return nil
			})
		}},
		{"schedule", func(p string, v *yaml.Node) error {
			s.mark(p)
			return decodeMapping(p, v, []field{
				{"round", func(p string, v *yaml.Node) error {
					s.mark(p)
					return decodeDuration(p, v, time.Second, maxRound, &s.schedule.round)
				}},
				{"jitter", func(p string, v *yaml.Node) error {
					return decodeDuration(p, v, 0, maxRound, &s.schedule.jitter)
				}},
				{"start", func(p string, v *yaml.Node) error {
					s.schedule.hasStart = true
					return decodeTime(p, v, &s.schedule.start)
				}},
			})
		}},
		{"vantages", func(p string, v *yaml.Node) error {
			return decodeMapping(p, v, []field{
				{"select", func(p string, v *yaml.Node) error { return decodeLabels(p, v, &s.vantages.selector) }},
				{"quorum", func(p string, v *yaml.Node) error { return decodeInt(p, v, 1, 1000, &s.vantages.quorum) }},
			})
		}},
		{"budget", func(p string, v *yaml.Node) error {
			return decodeMapping(p, v, []field{
				{"per_target_pps", func(p string, v *yaml.Node) error {
					return decodeFloat(p, v, 1000, &s.budget.perTargetPPS)
				}},
				{"agent_pps", func(p string, v *yaml.Node) error {
					return decodeFloat(p, v, 1e6, &s.budget.agentPPS)
				}},
			})
		}},
		{"verdict", func(p string, v *yaml.Node) error { return s.decodeVerdict(p, v) }},
	})
}

func (s *Spec) decodeTargets(path string, n *yaml.Node) error {
	t := &s.targets
	return decodeMapping(path, n, []field{
		{"networks", func(p string, v *yaml.Node) error {
			s.mark(p)
			return decodeSequence(p, v, MaxTargets, func(p string, _ int, v *yaml.Node) error {
				nw, err := decodeNetwork(p, v)
				t.networks = append(t.networks, nw)
				return err
			})
		}},
		{"hosts", func(p string, v *yaml.Node) error {
			return decodeMapping(p, v, []field{
				{"per_network", func(p string, v *yaml.Node) error { return decodeInt(p, v, 1, MaxTargets, &t.perNetwork) }},
				{"discover", func(p string, v *yaml.Node) error { return decodeBool(p, v, &t.discover) }},
			})
		}},
		{"upstreams", func(p string, v *yaml.Node) error {
			if v.Kind == yaml.ScalarNode {
				if v.Value == "auto" && v.ShortTag() == "!!str" {
					t.upstreamsAuto = true
					return nil
				}
				return fieldErr(p, "expected a list of addresses or {name, addrs}, or \"auto\", got %s", kindName(v))
			}
			return decodeRouters(p, v, &t.upstreams)
		}},
		{"borders", func(p string, v *yaml.Node) error { return decodeRouters(p, v, &t.borders) }},
		{"controls", func(p string, v *yaml.Node) error { return decodeAddrList(p, v, MaxTargets, &t.controls) }},
		{"rir", func(p string, v *yaml.Node) error {
			return fieldErr(p, "must be expanded before the campaign reaches the controller: `vantagectl campaign apply` "+
				"reads the file and lists the country's networks instead (see ExpandRIR); the controller never opens files")
		}},
	})
}

// decodeNetwork reads one entry of targets.networks: a name, and either
// prefix (one prefix) or prefixes (a dual-stack network's IPv4 and IPv6
// prefixes), and the hosts.
func decodeNetwork(path string, n *yaml.Node) (networkSpec, error) {
	var nw networkSpec
	err := decodeMapping(path, n, []field{
		{"name", func(p string, v *yaml.Node) error { return decodeString(p, v, &nw.name) }},
		{"prefix", func(p string, v *yaml.Node) error {
			var pr netip.Prefix
			err := decodePrefix(p, v, &pr)
			nw.prefixes = append(nw.prefixes, pr)
			return err
		}},
		{"prefixes", func(p string, v *yaml.Node) error {
			if len(nw.prefixes) > 0 {
				return fieldErr(p, "set together with prefix; write one prefix as prefix, or a dual-stack network's IPv4 and IPv6 prefixes as prefixes")
			}
			nw.listed = true
			switch {
			case v.Kind == yaml.SequenceNode && len(v.Content) == 0:
				return fieldErr(p, "needs at least one prefix")
			case v.Kind == yaml.SequenceNode && len(v.Content) > maxPrefixes:
				return fieldErr(p, "has %d prefixes; a network has at most one IPv4 and one IPv6 prefix", len(v.Content))
			}
			return decodeSequence(p, v, maxPrefixes, func(p string, _ int, v *yaml.Node) error {
				var pr netip.Prefix
				err := decodePrefix(p, v, &pr)
				nw.prefixes = append(nw.prefixes, pr)
				return err
			})
		}},
		{"hosts", func(p string, v *yaml.Node) error { return decodeAddrList(p, v, MaxTargets, &nw.hosts) }},
	})
	return nw, err
}

func decodeLabels(path string, n *yaml.Node, out *map[string]string) error {
	if n.Kind != yaml.MappingNode {
		return fieldErr(path, "expected a mapping of labels, got %s", kindName(n))
	}
	m := make(map[string]string, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode || k.ShortTag() != "!!str" || k.Value == "" {
			return fieldErr(path, "line %d: label names must be non-empty strings", k.Line)
		}
		p := join(path, k.Value)
		if _, dup := m[k.Value]; dup {
			return fieldErr(p, "defined more than once (line %d)", k.Line)
		}
		var val string
		if err := decodeString(p, v, &val); err != nil {
			return fieldErr(p, "label values must be strings (quote numbers and booleans), got %s", kindName(v))
		}
		m[k.Value] = val
	}
	*out = m
	return nil
}

func decodeProbe(path string, n *yaml.Node) (probeSpec, error) {
	var pr probeSpec
	err := decodeMapping(path, n, []field{
		{"icmp", func(p string, v *yaml.Node) error {
			pr.icmp = &icmpSpec{}
			return decodeMapping(p, v, []field{
				{"retries", func(p string, v *yaml.Node) error { return decodeInt(p, v, 0, 5, &pr.icmp.retries) }},
				{"timeout", func(p string, v *yaml.Node) error {
					return decodeDuration(p, v, time.Millisecond, maxTimeout, &pr.icmp.timeout)
				}},
				{"payload_bytes", func(p string, v *yaml.Node) error { return decodeInt(p, v, 1, 1400, &pr.icmp.payloadBytes) }},
			})
		}},
		{"tcp", func(p string, v *yaml.Node) error {
			pr.tcp = &tcpSpec{}
			return decodeMapping(p, v, []field{
				{"ports", func(p string, v *yaml.Node) error {
					return decodeSequence(p, v, maxPorts, func(p string, _ int, v *yaml.Node) error {
						var port int64
						if err := decodeInt(p, v, 1, 65535, &port); err != nil {
							return err
						}
						if slices.Contains(pr.tcp.ports, port) {
							return fieldErr(p, "port %d is listed twice", port)
						}
						pr.tcp.ports = append(pr.tcp.ports, port)
						return nil
					})
				}},
				{"mode", func(p string, v *yaml.Node) error { return decodeString(p, v, &pr.tcp.mode) }},
				{"timeout", func(p string, v *yaml.Node) error {
					return decodeDuration(p, v, time.Millisecond, maxTimeout, &pr.tcp.timeout)
				}},
			})
		}},
		{"trace", func(p string, v *yaml.Node) error {
			pr.trace = &traceSpec{}
			tr := pr.trace
			return decodeMapping(p, v, []field{
				{"protocol", func(p string, v *yaml.Node) error { return decodeString(p, v, &tr.protocol) }},
				{"paris", func(p string, v *yaml.Node) error { return decodeBool(p, v, &tr.paris) }},
				{"every", func(p string, v *yaml.Node) error {
					return decodeDuration(p, v, time.Second, 7*24*time.Hour, &tr.every)
				}},
				{"max_ttl", func(p string, v *yaml.Node) error { return decodeInt(p, v, 1, tracedefaults.MaxTTLCap, &tr.maxTTL) }},
				{"gap_limit", func(p string, v *yaml.Node) error { return decodeInt(p, v, 1, tracedefaults.MaxTTLCap, &tr.gapLimit) }},
				{"timeout", func(p string, v *yaml.Node) error {
					return decodeDuration(p, v, time.Millisecond, maxTimeout, &tr.timeout)
				}},
				{"port", func(p string, v *yaml.Node) error { return decodeInt(p, v, 1, 65535, &tr.port) }},
				{"on_change", func(p string, v *yaml.Node) error { return decodeBool(p, v, &tr.onChange) }},
			})
		}},
	})
	if err != nil {
		return pr, err
	}
	var kinds []string
	for _, k := range []struct {
		name string
		set  bool
	}{{"icmp", pr.icmp != nil}, {"tcp", pr.tcp != nil}, {"trace", pr.trace != nil}} {
		if k.set {
			kinds = append(kinds, k.name)
		}
	}
	if len(kinds) != 1 {
		got := "none"
		if len(kinds) > 0 {
			got = strings.Join(kinds, ", ")
		}
		return pr, fieldErr(path, "must have exactly one of icmp, tcp, trace (got %s)", got)
	}
	return pr, nil
}
