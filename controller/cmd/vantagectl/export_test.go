package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"google.golang.org/grpc"

	"github.com/vantage-net/vantage/controller/api"
	"github.com/vantage-net/vantage/controller/export"
	"github.com/vantage-net/vantage/controller/fleet"
	"github.com/vantage-net/vantage/controller/internal/fixture"
	"github.com/vantage-net/vantage/internal/syncbuf"
	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

var exportT0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// exportServer serves the real OperatorService and ExportService, as the
// controller registers them, over TLS on loopback from a real store
// holding fixture.StoreEvidence's 10 rounds; it returns the CLI's
// environment (a viewer's token) and the evidence.
func exportServer(t *testing.T) (map[string]string, fixture.Evidence) {
	t.Helper()
	db, ca, dir := fixture.StoreAndCA(t)
	ev := fixture.StoreEvidence(t, db, exportT0, 10)
	fixture.OperatorTokens(t, db, exportT0)
	s := api.New(api.Config{Store: db, Fleet: fleet.New(db, ca, fleet.Options{})})
	addr := fixture.ServeTLS(t, ca, func(g *grpc.Server) {
		vantagev1.RegisterOperatorServiceServer(g, s)
		vantagev1.RegisterExportServiceServer(g, s.Exporter())
	}, s.Wait, grpc.UnaryInterceptor(s.UnaryInterceptor()), grpc.StreamInterceptor(s.StreamInterceptor()))
	return map[string]string{envController: addr, envToken: "viewer-secret", envCA: filepath.Join(dir, fleet.CACertFile)}, ev
}

// schema compiles a published record schema from docs/schema, asserting
// formats (date-time) too.
func schema(t *testing.T, name string) *jsonschema.Schema {
	t.Helper()
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	s, err := c.Compile(filepath.Join("..", "..", "..", "docs", "schema", name))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func exportArgs(kind string, ev fixture.Evidence, extra ...string) []string {
	return append([]string{"export", kind, "--campaign", "kp", "--from", ev.From.Format(time.RFC3339), "--to", ev.To.Format(time.RFC3339)}, extra...)
}

// lines splits JSON lines output, checking each line against the schema.
func jsonLines(t *testing.T, out string, s *jsonschema.Schema) []map[string]any {
	t.Helper()
	var recs []map[string]any
	for i, line := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		inst, err := jsonschema.UnmarshalJSON(strings.NewReader(line))
		if err != nil {
			t.Fatalf("line %d: %v", i+1, err)
		}
		if err := s.Validate(inst); err != nil {
			t.Fatalf("line %d does not follow the schema: %v\n%s", i+1, err, line)
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatal(err)
		}
		recs = append(recs, m)
	}
	return recs
}

// TestExportJSONLines exports each kind over the real API, checks every
// record against its published JSON Schema (an independent validator),
// checks what the records say, and resumes after a record in the middle:
// the rest, byte for byte.
func TestExportJSONLines(t *testing.T) {
	env, ev := exportServer(t)
	wantResults := 0
	for _, n := range ev.Results {
		wantResults += n
	}
	for _, tc := range []struct {
		kind, schema string
		n            int
		check        func(t *testing.T, recs []map[string]any)
	}{
		{"results", "export-result-v1.json", wantResults, func(t *testing.T, recs []map[string]any) {
			kinds := map[any]int{}
			for _, r := range recs {
				kinds[r["kind"]]++
				if r["kind"] == "trace" {
					hops := r["hops"].([]any)
					if len(hops) != 3 || hops[1].(map[string]any)["addr"] != "" || hops[1].(map[string]any)["rtt_ms"] != nil ||
						hops[2].(map[string]any)["rtt_ms"] != 45.0 {
						t.Fatalf("trace hops = %v", hops)
					}
				}
				if r["outcome"] == "timeout" && r["rtt_ms"] != nil {
					t.Fatalf("a timeout with rtt_ms %v", r["rtt_ms"])
				}
				if r["agent_name"] != "vantage-"+r["agent_id"].(string) {
					t.Fatalf("agent_name %v of %v", r["agent_name"], r["agent_id"])
				}
			}
			if kinds["icmp_echo"] != 20 || kinds["tcp"] != 20 || kinds["trace"] != 20 {
				t.Errorf("kinds = %v, want 20 each", kinds)
			}
		}},
		{"episodes", "export-episode-v1.json", 3, func(t *testing.T, recs []map[string]any) {
			var got []string
			for _, r := range recs {
				got = append(got, strings.Join([]string{r["subject"].(string), r["start"].(string), str(r["end"]), r["state"].(string),
					r["location"].(string), r["upstream"].(string), r["cause"].(string)}, " "))
			}
			want := []string{
				"net0 2026-03-01T12:00:20Z 2026-03-01T12:00:50Z unreachable upstream upstream-a upstream",
				"KP 2026-03-01T12:00:30Z 2026-03-01T12:01:00Z unreachable target_network  ",
				"KP 2026-03-01T12:01:20Z <nil> degraded   ",
			}
			if !slices.Equal(got, want) {
				t.Errorf("episodes:\n got %q\nwant %q", got, want)
			}
		}},
		{"bgp", "export-bgp-v1.json", 3, func(t *testing.T, recs []map[string]any) {
			if recs[0]["type"] != "withdraw" || recs[1]["type"] != "announce" || len(recs[1]["as_path"].([]any)) != 2 {
				t.Errorf("updates = %v", recs)
			}
		}},
	} {
		t.Run(tc.kind, func(t *testing.T) {
			res := runSync(t, cliRun{args: exportArgs(tc.kind, ev), env: env})
			if res.code != 0 {
				t.Fatalf("exit %d: %s", res.code, res.stderr)
			}
			if res.stderr != "" { // stderr is no terminal: no progress
				t.Errorf("stderr = %q", res.stderr)
			}
			recs := jsonLines(t, res.stdout, schema(t, tc.schema))
			if len(recs) != tc.n {
				t.Fatalf("%d records, want %d", len(recs), tc.n)
			}
			tc.check(t, recs)
			lines := strings.SplitAfter(res.stdout, "\n")
			mid := len(recs) / 2
			rest := runSync(t, cliRun{args: exportArgs(tc.kind, ev, "--after", recs[mid]["cursor"].(string)), env: env})
			if rest.code != 0 {
				t.Fatalf("resumed: exit %d: %s", rest.code, rest.stderr)
			}
			if want := strings.Join(lines[mid+1:], ""); rest.stdout != want {
				t.Errorf("resumed after record %d of %d: got %d bytes, want the %d bytes after it", mid+1, len(recs), len(rest.stdout), len(want))
			}
		})
	}
}

func str(v any) string {
	if v == nil {
		return "<nil>"
	}
	return v.(string)
}

// TestExportCSV reads each kind's CSV back with encoding/csv: a header of
// the record's fields, then the same records as the JSON lines, field for
// field where a field is a plain value.
func TestExportCSV(t *testing.T) {
	env, ev := exportServer(t)
	for _, tc := range []struct {
		kind   string
		header []string
	}{{"results", export.ResultColumns}, {"episodes", export.EpisodeColumns}, {"bgp", export.BGPColumns}} {
		t.Run(tc.kind, func(t *testing.T) {
			res := runSync(t, cliRun{args: exportArgs(tc.kind, ev, "--format", "csv"), env: env})
			if res.code != 0 {
				t.Fatalf("exit %d: %s", res.code, res.stderr)
			}
			rows, err := csv.NewReader(strings.NewReader(res.stdout)).ReadAll()
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(rows[0], tc.header) {
				t.Fatalf("header = %v", rows[0])
			}
			// Resumed after the middle row: no header, the rows after it.
			mid := len(rows) / 2
			rest := runSync(t, cliRun{args: exportArgs(tc.kind, ev, "--format", "csv", "--after", rows[mid][2]), env: env})
			restRows, err := csv.NewReader(strings.NewReader(rest.stdout)).ReadAll()
			if err != nil || rest.code != 0 {
				t.Fatalf("resumed: exit %d, %v: %s", rest.code, err, rest.stderr)
			}
			if !reflect.DeepEqual(restRows, rows[mid+1:]) {
				t.Errorf("resumed after row %d: %d rows, want the %d after it", mid, len(restRows), len(rows)-mid-1)
			}
			js := runSync(t, cliRun{args: exportArgs(tc.kind, ev), env: env})
			var recs []map[string]any
			dec := json.NewDecoder(strings.NewReader(js.stdout))
			dec.UseNumber()
			for dec.More() {
				var m map[string]any
				if err := dec.Decode(&m); err != nil {
					t.Fatal(err)
				}
				recs = append(recs, m)
			}
			if len(rows)-1 != len(recs) {
				t.Fatalf("%d rows, %d JSON records", len(rows)-1, len(recs))
			}
			for i, row := range rows[1:] {
				for j, col := range tc.header {
					var want string
					switch v := recs[i][col].(type) {
					case nil:
						want = ""
					case string:
						want = v
					case json.Number:
						want = v.String()
					case bool:
						want = map[bool]string{true: "true", false: "false"}[v]
					case []any:
						if col == "as_path" { // numbers separated by spaces
							var ns []string
							for _, n := range v {
								ns = append(ns, n.(json.Number).String())
							}
							want = strings.Join(ns, " ")
							break
						}
						// hops: the same JSON array in one cell
						dec := json.NewDecoder(strings.NewReader(row[j]))
						dec.UseNumber()
						var cell any
						if err := dec.Decode(&cell); err != nil || !reflect.DeepEqual(cell, v) {
							t.Fatalf("row %d %s = %s (%v), JSON says %v", i+1, col, row[j], err, v)
						}
						continue
					default:
						t.Fatalf("row %d %s: unexpected JSON %T", i+1, col, v)
					}
					if row[j] != want {
						t.Fatalf("row %d %s = %q, JSON says %q", i+1, col, row[j], want)
					}
				}
			}
		})
	}
}

func TestExportRefuses(t *testing.T) {
	env, ev := exportServer(t)
	for _, tc := range []struct {
		name string
		args []string
		code int
		msg  string
	}{
		{"no campaign", []string{"export", "results", "--from", "1h", "--to", "0s"}, exitUsage, "--campaign: required"},
		{"no window", []string{"export", "results", "--campaign", "kp"}, exitUsage, "--from and --to: required"},
		{"inverted window", exportArgs("results", fixture.Evidence{From: ev.To, To: ev.From}), exitUsage, "is not before --to"},
		{"bad format", exportArgs("results", ev, "--format", "xml"), exitUsage, `--format: want jsonl, csv, atlas, got "xml"`},
		{"unknown campaign", []string{"export", "bgp", "--campaign", "nope", "--from", "2d", "--to", "1d"}, exitNotFound, `campaign "nope": not found`},
		{"bad cursor", exportArgs("episodes", ev, "--after", "r1.xyz"), exitInvalid, "after: not a cursor of this export"},
		{"atlas of episodes", exportArgs("episodes", ev, "--format", "atlas"), exitUsage, "--format: atlas is RIPE Atlas's ping and traceroute result format, for results only"},
		{"no kind", []string{"export"}, exitUsage, "missing subcommand, one of: bgp, episodes, results"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := runSync(t, cliRun{args: tc.args, env: env})
			if res.code != tc.code || !strings.Contains(res.stderr, tc.msg) {
				t.Errorf("exit %d, stderr %q; want %d containing %q", res.code, res.stderr, tc.code, tc.msg)
			}
		})
	}
}

// TestSchemasRefuse: the published schemas are strict enough to fail a
// record that is not one (a camelCase key, a missing field, a wrong enum
// word, a time that is not RFC 3339), so the tests above can fail.
func TestSchemasRefuse(t *testing.T) {
	env, ev := exportServer(t)
	res := runSync(t, cliRun{args: exportArgs("episodes", ev), env: env})
	first := strings.SplitN(res.stdout, "\n", 2)[0]
	s := schema(t, "export-episode-v1.json")
	for _, tc := range []struct{ name, from, to string }{
		{"camelCase key", `"verdict_id":`, `"verdictId":`},
		{"enum word", `"state":"unreachable"`, `"state":"UNREACHABLE"`},
		{"time", `"start":"2026-03-01T12:00:20Z"`, `"start":"2026-03-01 12:00:20"`},
		{"version", `"schema_version":1`, `"schema_version":2`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bad := strings.Replace(first, tc.from, tc.to, 1)
			if bad == first {
				t.Fatalf("%q not in %s", tc.from, first)
			}
			inst, err := jsonschema.UnmarshalJSON(strings.NewReader(bad))
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Validate(inst); err == nil {
				t.Errorf("the schema accepts %s", bad)
			}
		})
	}
}

// Atlas's documented keys (measurement result format, version 4750 and
// 5000): ping's and traceroute's top level, and a hop reply's.
var (
	atlasPingKeys  = []string{"af", "avg", "dst_addr", "dst_name", "dup", "from", "fw", "lts", "max", "min", "msm_id", "msm_name", "prb_id", "proto", "rcvd", "result", "sent", "size", "src_addr", "timestamp", "ttl", "type"}
	atlasTraceKeys = []string{"af", "dst_addr", "dst_name", "endtime", "from", "fw", "lts", "msm_id", "msm_name", "paris_id", "prb_id", "proto", "result", "size", "src_addr", "timestamp", "type"}
	atlasReplyKeys = []string{"x", "error", "from", "rtt", "ttl", "err", "ittl", "icmpext", "size"}
)

// onlyKeys fails unless every key of m but "vantage" is one of allowed,
// and every one of need is there.
func onlyKeys(t *testing.T, what string, m map[string]any, allowed, need []string) {
	t.Helper()
	for k := range m {
		if k != "vantage" && !slices.Contains(allowed, k) {
			t.Fatalf("%s: key %q is not in Atlas's format", what, k)
		}
	}
	for _, k := range need {
		if _, ok := m[k]; !ok {
			t.Fatalf("%s: no %q", what, k)
		}
	}
}

// TestExportAtlas exports results in RIPE Atlas's format and checks the
// pings and traceroutes key for key against the documented lists, with
// the values the stored results give, TCP results left out (and said so),
// and a resume after a record in the middle.
func TestExportAtlas(t *testing.T) {
	env, ev := exportServer(t)
	res := runSync(t, cliRun{args: exportArgs("results", ev, "--format", "atlas"), env: env})
	if res.code != 0 {
		t.Fatalf("exit %d: %s", res.code, res.stderr)
	}
	if !strings.Contains(res.stderr, "20 tcp results left out of the atlas format") {
		t.Errorf("stderr = %q", res.stderr)
	}
	lines := strings.SplitAfter(strings.TrimSuffix(res.stdout, "\n"), "\n")
	var pings, traces, timeouts int
	for i, line := range lines {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("line %d: %v", i+1, err)
		}
		if m["fw"] != 5000.0 || m["lts"] != -1.0 {
			t.Fatalf("line %d: fw %v lts %v", i+1, m["fw"], m["lts"])
		}
		switch m["type"] {
		case "ping":
			pings++
			onlyKeys(t, "ping", m, atlasPingKeys, slices.DeleteFunc(slices.Clone(atlasPingKeys), func(k string) bool { return k == "ttl" }))
			rs := m["result"].([]any)
			if int(m["sent"].(float64)) != len(rs) {
				t.Fatalf("ping: sent %v, %d results", m["sent"], len(rs))
			}
			if m["rcvd"] == 0.0 {
				timeouts++
				if m["avg"] != -1.0 || rs[0].(map[string]any)["x"] != "*" {
					t.Fatalf("a ping with no reply: %s", line)
				}
			} else if rtt := rs[len(rs)-1].(map[string]any)["rtt"].(float64); rtt != m["avg"] || rtt < 20 || m["proto"] != "ICMP" {
				t.Fatalf("a ping with a reply: %s", line)
			}
		case "traceroute":
			traces++
			onlyKeys(t, "traceroute", m, atlasTraceKeys, atlasTraceKeys)
			if m["proto"] != "ICMP" || m["paris_id"] != 1.0 || m["endtime"].(float64) < m["timestamp"].(float64) {
				t.Fatalf("traceroute: %s", line)
			}
			hops := m["result"].([]any)
			if len(hops) != 3 {
				t.Fatalf("traceroute: %d hops", len(hops))
			}
			for j, h := range hops {
				hop := h.(map[string]any)
				if hop["hop"] != float64(j+1) {
					t.Fatalf("hop %d numbered %v", j+1, hop["hop"])
				}
				for _, r := range hop["result"].([]any) {
					onlyKeys(t, "hop reply", r.(map[string]any), atlasReplyKeys, nil)
				}
			}
			if hops[1].(map[string]any)["result"].([]any)[0].(map[string]any)["x"] != "*" {
				t.Fatalf("hop 2 answered nothing: %v", hops[1])
			}
			last := hops[2].(map[string]any)["result"].([]any)[0].(map[string]any)
			mpls := last["icmpext"].(map[string]any)["obj"].([]any)[0].(map[string]any)["mpls"].([]any)[0].(map[string]any)
			if last["from"] != "198.18.1.10" || last["rtt"] != 45.0 || mpls["label"] != 16004.0 || mpls["s"] != 1.0 {
				t.Fatalf("hop 3: %v", last)
			}
		default:
			t.Fatalf("line %d: type %v", i+1, m["type"])
		}
	}
	if pings != 20 || traces != 20 || timeouts != 6 {
		t.Errorf("%d pings (%d without reply), %d traceroutes; want 20 (6), 20", pings, timeouts, traces)
	}
	var mid map[string]any
	if err := json.Unmarshal([]byte(lines[len(lines)/2]), &mid); err != nil {
		t.Fatal(err)
	}
	rest := runSync(t, cliRun{args: exportArgs("results", ev, "--format", "atlas", "--after", mid["vantage"].(map[string]any)["cursor"].(string)), env: env})
	if want := strings.Join(lines[len(lines)/2+1:], "") + "\n"; rest.code != 0 || rest.stdout != want {
		t.Errorf("resumed: exit %d, %d bytes; want the %d after record %d", rest.code, len(rest.stdout), len(want), len(lines)/2+1)
	}
}

// failingWriter takes the first room bytes, then fails every write, as a
// full disk does.
type failingWriter struct {
	bytes.Buffer
	room int
}

func (f *failingWriter) Write(p []byte) (int, error) {
	n := min(len(p), f.room-f.Len())
	f.Buffer.Write(p[:n])
	if n < len(p) {
		return n, errors.New("no space left on device")
	}
	return n, nil
}

// TestExportStoppedResumes fails stdout partway through an export: the
// CLI names the cursor of the last record stdout wholly took, and the
// whole lines written, followed by what --after that cursor exports, are
// the full export, byte for byte.
func TestExportStoppedResumes(t *testing.T) {
	cliEnv, ev := exportServer(t)
	full := runSync(t, cliRun{args: exportArgs("results", ev), env: cliEnv})
	if full.code != 0 {
		t.Fatalf("exit %d: %s", full.code, full.stderr)
	}
	for _, room := range []int{1, 10000, len(full.stdout) / 2, len(full.stdout) - 1} {
		t.Run(fmt.Sprintf("room %d of %d", room, len(full.stdout)), func(t *testing.T) {
			out := &failingWriter{room: room}
			var errb syncbuf.Buffer
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			code := run(ctx, exportArgs("results", ev), env{stdin: strings.NewReader(""), stdout: out, stderr: &errb,
				getenv: func(k string) string { return cliEnv[k] }, now: func() time.Time { return testNow }, loc: time.UTC})
			msg := errb.String()
			if code != exitError || !strings.Contains(msg, "no space left on device") {
				t.Fatalf("exit %d, stderr %q", code, msg)
			}
			written := out.String()
			kept := written[:strings.LastIndex(written, "\n")+1] // the whole lines
			_, after, ok := strings.Cut(msg, "resume with --after ")
			if !ok {
				if kept != "" {
					t.Fatalf("%d whole lines written, and no cursor to resume from: %q", strings.Count(kept, "\n"), msg)
				}
				return // nothing out: run it again from the start
			}
			cursor, _, _ := strings.Cut(after, ":")
			if n := strings.Count(kept, "\n"); !strings.Contains(msg, fmt.Sprintf("stopped after %d records", n)) {
				t.Errorf("stderr %q; want it to count the %d whole lines", msg, n)
			}
			rest := runSync(t, cliRun{args: exportArgs("results", ev, "--after", cursor), env: cliEnv})
			if rest.code != 0 {
				t.Fatalf("resumed: exit %d: %s", rest.code, rest.stderr)
			}
			if kept+rest.stdout != full.stdout {
				t.Errorf("whole lines (%d bytes) + resumed (%d bytes) != the full export (%d bytes)", len(kept), len(rest.stdout), len(full.stdout))
			}
		})
	}
}
