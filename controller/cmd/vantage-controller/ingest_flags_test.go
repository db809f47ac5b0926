package main

import "testing"

// TestIngestLimitFlags: the ingest limits' flags default to ingest's
// defaults and refuse negative values, naming the flags.
func TestIngestLimitFlags(t *testing.T) {
	checkFlags(t, map[string]string{"ingest-gap-rows": "4096", "ingest-gap-rate": "10000",
		"ingest-gap-burst": "10000000", "ingest-clock-skew": "5m0s"}, []flagRefusal{
		{"--ingest-gap-rate", []string{"--ingest-gap-rate", "-1"}, "--ingest-gap-rate -1, --ingest-gap-burst 10000000, --ingest-clock-skew 5m0s: must not be negative"},
		{"--ingest-gap-burst", []string{"--ingest-gap-burst", "-1"}, "--ingest-gap-rate 10000, --ingest-gap-burst -1, --ingest-clock-skew 5m0s: must not be negative"},
		{"--ingest-clock-skew", []string{"--ingest-clock-skew", "-1s"}, "--ingest-gap-rate 10000, --ingest-gap-burst 10000000, --ingest-clock-skew -1s: must not be negative"},
	})
}
