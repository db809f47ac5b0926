// Package discovery decides which addresses a campaign should watch when the
// operator does not list them, and runs that decision: `targets.hosts.discover`
// (sweep the networks once, keep the hosts that answer most reliably) and
// `targets.upstreams: auto` (the routers just before the target prefixes,
// read off traceroutes).
//
// It exists because a small country is only a few /24s - IODA ignores
// entities with fewer than about 20 responsive /24s, vantage must work with
// one /24 and a handful of hosts - so which handful is watched decides
// whether a verdict can be trusted, and that choice must be made from
// evidence (which hosts answer, from how many vantages, how reliably), not
// guessed.
//
// The package has two layers. The pure logic (discovery.go) builds the
// probe tasks of a sweep and of the upstream traces, and turns their results
// into a host set and labelled routers; it has no I/O and is tested on its
// own. The Runner (runner.go, job.go) runs it with one owner goroutine: it
// sends the sweep and the traceroutes to the agents as Triggers
// (trigger.Sender, ingest), collects the trigger results as ingest commits
// them (it is one of ingest's observers), and stores what was found with
// the campaign (store.PutDiscovery), which then turns ACTIVE and is
// announced through the campaign catalogue's Changed.
//
// The state machine of one campaign (its state is DISCOVERING throughout):
//
//	waiting  no connected agent matches vantages.select: the note says so,
//	         and discovery starts when one connects.
//	sweep    one batch of ICMP echo tasks (Batches: what one agent
//	         may send in one round within budget.agent_pps) per round to
//	         every selected connected agent; then results are awaited until
//	         all are in or the settle time after the last batch has passed.
//	         No host answered: the campaign stays DISCOVERING with a note
//	         (failed) until it is applied again. Never an empty target set.
//	trace    with upstreams: auto, one Paris ICMP traceroute per vantage to
//	         the best TraceHosts hosts of each network; awaited the same way.
//	done     SelectHosts and Upstreams give the targets;
//	         campaign.Spec.WithTargets and the controller's limits check
//	         them; store.PutDiscovery stores them and sets ACTIVE in one
//	         transaction (refused if the campaign was re-applied meanwhile).
//
// A controller restart, a re-apply or a resume starts discovery again from
// the sweep: its results are not kept across runs. What a campaign asks of
// discovery (its sweep networks, probe settings, budget) is read from its
// spec (campaign/discovery.go); the store keeps the outcome
// (store/sqlite/discovery.go).
package discovery
