// Package scenarios is the verdict engine's acceptance suite in the namespace
// lab (`make test-scenarios`, run by CI). Each scenario breaks the lab's
// miniature internet in one way that matters for a country outage monitor -
// a blackout at the upstream, a cut inside the border, flapping routes, a
// partial restoration, one vantage isolated, ICMP filtered, vantages
// leaving - and asserts what a trustworthy verdict must say: the state, the
// location, and how many rounds it took.
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
// The steady scenario runs in two parts: a shorter stretch in the real lab
// (one vantage behind 20% loss) and ten minutes of simulated rounds fed to
// the same pure verdict engine the controller runs (TestSteadySimulated),
// with the same loss, so the 10-minute target does not cost 10 minutes of CI.
package scenarios
