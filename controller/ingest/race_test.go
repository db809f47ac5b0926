//go:build race

package ingest

// raceEnabled: the race detector slows the pure-Go SQLite about 20 times;
// volume tests scale down under it (the volume is what plain runs check).
const raceEnabled = true
