// Package scenarios is the verdict engine's acceptance suite in the namespace
// lab (`make test-scenarios`, run by CI). Each scenario breaks the lab's
// miniature internet in one way that matters for a country outage monitor -
// loss at an upstream, a cut inside the border, a blackout at the
// upstreams, one upstream withdrawing, the border failing, congestion at
// the border, flapping routes (with a blackout in the middle), a partial
// restoration, one vantage isolated, ICMP filtered, vantages leaving, ten
// blackouts in a row - and asserts what a trustworthy verdict must say: the
// state, the location, the upstream named, the cause, and how many rounds
// it took.
//
// It exists because unit tests of the pure verdict logic cannot show that
// real packets, real routes, real agents and a real controller add up to the
// right verdict in time. The suite uses deploy/demo's harness: the real
// vantage-controller and vantage-agent binaries run as processes in
// namespaces prefixed "vs", with the campaign in campaign.yaml (2s rounds).
//
// Detection latency. Every fault is applied 150ms before a round boundary,
// so the next round is the first one fully affected. The suite reports the
// wall-clock time from the fault to the stored transition (detected_at),
// in rounds, and "closed rounds": how many affected rounds had closed (end
// plus the engine's grace, live.GraceFor) when the verdict came. A target
// of "within k rounds" means closed rounds <= k: the verdict comes from the
// k-th affected round's data at the latest.
//
// The steady scenario runs ten minutes (300 rounds) in the real lab with one
// vantage behind 20% loss, and ten more minutes of simulated rounds are fed
// to the same pure verdict engine the controller runs (TestSteadySimulated)
// with the same loss, where a failure is cheap to reproduce.
package scenarios
