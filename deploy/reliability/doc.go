// Package reliability holds the fleet's reliability tests (make
// test-reliability): real processes killed, links cut, acks lost, spools
// filled, each printing the counts it checked. Agent-side tests are in
// agent_*_test.go and spool_*_test.go; controller-side ones in
// controller_*_test.go.
package reliability
