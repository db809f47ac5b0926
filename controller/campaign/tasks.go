package campaign

import (
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vantage-net/vantage/internal/taskid"
	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// Tasks returns one task per target and probe (one per port for tcp), in
// target order then probe order. Ids follow the shared convention
// (internal/taskid): "<campaign>/icmp/<addr>", "<campaign>/tcp/<addr>:<port>"
// and "<campaign>/trace/<addr>". Every task carries the schedule (round, jitter,
// start, every_rounds) and expires at expires.
func (s *Spec) Tasks(expires time.Time) []*vantagev1.Task {
	n := 0
	for _, p := range s.probes {
		if p.tcp != nil {
			n += len(p.tcp.ports)
		} else {
			n++
		}
	}
	out := make([]*vantagev1.Task, 0, n*len(s.expanded))
	start := timestamppb.New(s.Start())
	exp := timestamppb.New(expires)
	for _, t := range s.expanded {
		addr := t.Addr.String()
		base := func(kind vantagev1.ProbeKind, id string, every uint32) *vantagev1.Task {
			return &vantagev1.Task{
				Id:            id,
				Campaign:      s.name,
				Kind:          kind,
				Target:        addr,
				Role:          t.Role,
				Network:       t.Network,
				RoundMs:       ms(s.schedule.round),
				JitterMs:      ms(s.schedule.jitter),
				ScheduleStart: start,
				EveryRounds:   every,
				ExpiresAt:     exp,
			}
		}
		for _, p := range s.probes {
			switch {
			case p.icmp != nil:
				task := base(vantagev1.ProbeKind_PROBE_KIND_ICMP_ECHO, taskid.New(s.name, taskid.ICMP, addr), 1)
				task.Spec = &vantagev1.Task_Icmp{Icmp: &vantagev1.IcmpSpec{
					Retries:      uint32(p.icmp.retries),
					TimeoutMs:    ms(p.icmp.timeout),
					PayloadBytes: uint32(p.icmp.payloadBytes),
				}}
				out = append(out, task)
			case p.tcp != nil:
				mode := vantagev1.TcpMode_TCP_MODE_CONNECT
				if p.tcp.mode == "syn" {
					mode = vantagev1.TcpMode_TCP_MODE_SYN
				}
				for _, port := range p.tcp.ports {
					task := base(vantagev1.ProbeKind_PROBE_KIND_TCP, taskid.New(s.name, taskid.TCP, taskid.TCPTarget(addr, port)), 1)
					task.Spec = &vantagev1.Task_Tcp{Tcp: &vantagev1.TcpSpec{
						Port:      uint32(port),
						Mode:      mode,
						TimeoutMs: ms(p.tcp.timeout),
					}}
					out = append(out, task)
				}
			case p.trace != nil:
				task := base(vantagev1.ProbeKind_PROBE_KIND_TRACE, taskid.New(s.name, taskid.Trace, addr), s.everyRounds(p))
				task.Spec = &vantagev1.Task_Trace{Trace: &vantagev1.TraceSpec{
					Protocol:  traceProtocol(p.trace.protocol),
					Paris:     p.trace.paris,
					MaxTtl:    uint32(p.trace.maxTTL),
					GapLimit:  uint32(p.trace.gapLimit),
					TimeoutMs: ms(p.trace.timeout),
					Port:      uint32(p.trace.port),
				}}
				out = append(out, task)
			}
		}
	}
	return out
}

func traceProtocol(s string) vantagev1.TraceProtocol {
	switch s {
	case "udp":
		return vantagev1.TraceProtocol_TRACE_PROTOCOL_UDP
	case "tcp":
		return vantagev1.TraceProtocol_TRACE_PROTOCOL_TCP_SYN
	default:
		return vantagev1.TraceProtocol_TRACE_PROTOCOL_ICMP
	}
}

// TraceOnChange reports whether the campaign asks for traces on a state
// change (probes[].trace.on_change). The controller's trigger logic, not a
// task field, acts on it.
func (s *Spec) TraceOnChange() bool {
	for _, p := range s.probes {
		if p.trace != nil && p.trace.onChange {
			return true
		}
	}
	return false
}

// Proto returns the campaign record with what the spec determines: name,
// scope, networks, targets, round and quorum. The store fills state,
// spec_yaml, version, timestamps and agent ids.
func (s *Spec) Proto() *vantagev1.Campaign {
	c := &vantagev1.Campaign{
		Name:     s.name,
		Scope:    s.scope.country,
		RoundMs:  ms(s.schedule.round),
		Quorum:   uint32(s.vantages.quorum),
		Networks: make([]*vantagev1.CampaignNetwork, 0, len(s.targets.networks)),
		Targets:  make([]*vantagev1.CampaignTarget, 0, len(s.expanded)),
	}
	for _, nw := range s.targets.networks {
		ps := make([]string, len(nw.prefixes))
		for i, p := range nw.prefixes {
			ps[i] = p.String()
		}
		c.Networks = append(c.Networks, &vantagev1.CampaignNetwork{Name: nw.name, Prefix: ps[0], Prefixes: ps})
	}
	for _, t := range s.expanded {
		c.Targets = append(c.Targets, &vantagev1.CampaignTarget{Address: t.Addr.String(), Network: t.Network, Role: t.Role, Name: t.Name})
	}
	return c
}
