//go:build race

package reliability

// raceEnabled: the race detector slows the test process about ten times;
// the fleet tests scale their agents and rates down under it (the volume
// is what plain runs check).
const raceEnabled = true
