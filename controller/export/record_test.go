package export

import (
	"bytes"
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/vantage-net/vantage/controller/store"
)

// keys returns a JSON object's top-level keys in order.
func keys(t *testing.T, v any) []string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	if _, err := dec.Token(); err != nil {
		t.Fatal(err)
	}
	var out []string
	for dec.More() {
		k, err := dec.Token()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, k.(string))
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// TestColumnsAreTheJSONKeys: a CSV header is the record's JSON keys, in
// order, and each row has one value per column.
func TestColumnsAreTheJSONKeys(t *testing.T) {
	for _, tc := range []struct {
		name string
		rec  any
		cols []string
		row  []string
	}{
		{"result", &ResultRecord{}, ResultColumns, (&ResultRecord{}).Row()},
		{"episode", &EpisodeRecord{}, EpisodeColumns, (&EpisodeRecord{}).Row()},
		{"bgp", &BGPRecord{}, BGPColumns, (&BGPRecord{}).Row()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := keys(t, tc.rec); !slices.Equal(got, tc.cols) {
				t.Errorf("JSON keys %v\ncolumns   %v", got, tc.cols)
			}
			if len(tc.row) != len(tc.cols) {
				t.Errorf("row of %d values for %d columns", len(tc.row), len(tc.cols))
			}
		})
	}
}

// TestCursorsRoundTrip: each cursor parses back to its place, and is
// refused by the other kinds.
func TestCursorsRoundTrip(t *testing.T) {
	at := time.Date(2026, 3, 1, 12, 0, 0, 123456789, time.UTC)
	k := store.ResultKey{SentAt: at, AgentID: "agt-1", Epoch: 2, Seq: 3}
	if got, err := ParseResultCursor(ResultCursor(k)); err != nil || got != k {
		t.Errorf("result cursor: %+v, %v; want %+v", got, err, k)
	}
	p := TransitionPlace{VerdictID: "kp/scope/KP", DetectedAt: at, ID: 7}
	if got, err := ParseEpisodeCursor(EpisodeCursor(p)); err != nil || got != p {
		t.Errorf("episode cursor: %+v, %v; want %+v", got, err, p)
	}
	if gotAt, id, err := ParseBGPCursor(BGPCursor(at, 9)); err != nil || !gotAt.Equal(at) || id != 9 {
		t.Errorf("bgp cursor: %v %d, %v", gotAt, id, err)
	}
	if _, err := ParseEpisodeCursor(ResultCursor(k)); err == nil {
		t.Error("a result cursor parsed as an episode cursor")
	}
	if _, _, err := ParseBGPCursor(EpisodeCursor(p)); err == nil {
		t.Error("an episode cursor parsed as a BGP cursor")
	}
}
