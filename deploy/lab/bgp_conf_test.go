package lab

import (
	"encoding/binary"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestLoadTopologyBGPErrors(t *testing.T) {
	for _, tc := range []struct{ file, want string }{
		{"bad_bgp_unknown_field.yaml", "invalid topology: yaml: unmarshal errors:\n  line 17: field passive not found in type lab.BGPCollectorConfig"},
		{"bad_bgp_no_as.yaml", "invalid topology: bgp.as: at least one router needs an AS"},
		{"bad_bgp_as_unknown.yaml", `invalid topology: bgp.as.x: unknown node "x"`},
		{"bad_bgp_as_not_router.yaml", `invalid topology: bgp.as.v: "v" has role vantage, want router`},
		{"bad_bgp_as_twice.yaml", "invalid topology: bgp.as.s: AS 64500 is also r's"},
		{"bad_bgp_as_reserved.yaml", "invalid topology: bgp.as.r: AS 23456 is reserved"},
		{"bad_bgp_collector_as.yaml", "invalid topology: bgp.collector.as: AS 64511 is also r's"},
		{"bad_bgp_collector_port.yaml", "invalid topology: bgp.collector.port: 70000 is not a TCP port"},
		{"bad_bgp_collector_peer.yaml", `invalid topology: bgp.collector.peers[0]: "c" has no AS in bgp.as`},
		{"bad_bgp_origin_no_as.yaml", `invalid topology: bgp.origin.router: "s" has no AS in bgp.as`},
		{"bad_bgp_no_announce.yaml", "invalid topology: bgp.origin.announce: at least one neighbour must get a network"},
		{"bad_bgp_announce_not_neighbour.yaml", `invalid topology: bgp.origin.announce.v: "v" is not a BGP neighbour of s (have r)`},
		{"bad_bgp_announce_not_network.yaml", `invalid topology: bgp.origin.announce.r[0]: "v" is not a network linked to s`},
	} {
		t.Run(tc.file, func(t *testing.T) {
			path := filepath.Join("testdata", tc.file)
			_, err := LoadTopology(path)
			if !errors.Is(err, ErrTopology) {
				t.Fatalf("error %v does not wrap ErrTopology", err)
			}
			if got, want := err.Error(), path+": "+tc.want; got != want {
				t.Errorf("error\n got: %s\nwant: %s", got, want)
			}
		})
	}
}

// TestDefaultTopologyBGP pins the AS plan and the sessions it gives.
func TestDefaultTopologyBGP(t *testing.T) {
	topo, err := DefaultTopology()
	if err != nil {
		t.Fatal(err)
	}
	b := topo.BGP
	want := map[string]uint32{"border": 64500, "upstream": 64501, "upstream-b": 64502, "transit": 64510, "ix": 64511}
	if len(b.AS) != len(want) {
		t.Errorf("AS plan %v, want %v", b.AS, want)
	}
	for r, as := range want {
		if b.AS[r] != as {
			t.Errorf("AS of %s = %d, want %d", r, b.AS[r], as)
		}
	}
	if b.Collector.AS != 64496 || b.Collector.Port != 1179 || !slices.Equal(b.Collector.Peers, []string{"ix", "transit", "upstream", "upstream-b"}) {
		t.Errorf("collector = %+v", b.Collector)
	}
	var sessions []string
	for _, r := range topo.bgpRouters() {
		for _, s := range topo.bgpSessions(r) {
			if r < s.peer {
				sessions = append(sessions, r+"-"+s.peer+"/"+family(s.local))
			}
		}
	}
	slices.Sort(sessions)
	wantS := []string{"border-upstream-b/4", "border-upstream-b/6", "border-upstream/4", "border-upstream/6",
		"ix-transit/4", "ix-transit/6", "transit-upstream-b/4", "transit-upstream-b/6", "transit-upstream/4", "transit-upstream/6"}
	if !slices.Equal(sessions, wantS) {
		t.Errorf("sessions %v\nwant %v", sessions, wantS)
	}
	c := topo.collector(BGPCollector{})
	if c.addr.String() != "198.51.100.34" || c.port != 1179 || c.as != 64496 {
		t.Errorf("default collector %+v", c)
	}
	if c := topo.collector(BGPCollector{Port: 2000, AS: 65000}); c.port != 2000 || c.as != 65000 || c.addr.String() != "198.51.100.34" {
		t.Errorf("overridden collector %+v", c)
	}
}

// TestBirdConfig checks what matters in the generated configs and, where
// bird is installed, that BIRD parses every one (bird -p, no root needed).
func TestBirdConfig(t *testing.T) {
	topo, err := DefaultTopology()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	confs := map[string]string{}
	for _, n := range topo.bgpRouters() {
		s, err := topo.birdConfig(dir, "bg", n, topo.collector(BGPCollector{}))
		if err != nil {
			t.Fatal(err)
		}
		confs[n] = s
	}
	for _, tc := range []struct{ node, want string }{
		{"border", "route 198.18.3.0/24 blackhole;"},
		{"border", "function vl_announce4_upstream() { return net ~ [ 198.18.0.0/24, 198.18.1.0/24 ]; }"},
		{"border", "export where vl_announce6_upstream_b() && !vl_withdrawn6();"},
		{"upstream", "neighbor 198.51.100.41 as 64510;\n\tipv4 { import all; export where !vl_withdrawn4(); };"},
		{"upstream", "neighbor 198.51.100.50 as 64500;\n\tipv4 { import all; export all; };"},
		{"ix", "neighbor 198.51.100.34 port 1179 as 64496;\n\tipv4 { import none; export all; };\n\tipv6 { import none; export all; next hop address 2001:db8:5::33; };"},
		{"transit", "local 198.51.100.26 as 64510;\n\tneighbor 198.51.100.34 port 1179 as 64496;\n\tmultihop;"},
		{"transit", "hold time 9;\n\tkeepalive time 3;"},
	} {
		if !strings.Contains(confs[tc.node], tc.want) {
			t.Errorf("config of %s lacks %q:\n%s", tc.node, tc.want, confs[tc.node])
		}
	}
	// The upstreams' monitor sessions export everything, what BGPWithdraw
	// keeps from transit included.
	if want := "local 198.51.100.42 as 64501;\n\tneighbor 198.51.100.34 port 1179 as 64496;\n\tmultihop;\n\tipv4 { import none; export all; };"; !strings.Contains(confs["upstream"], want) {
		t.Errorf("upstream's collector session lacks %q:\n%s", want, confs["upstream"])
	}
	if strings.Contains(confs["border"], "collector") {
		t.Error("the border is not a collector peer but has a collector session")
	}
	if _, err := exec.LookPath(birdBin); err != nil {
		t.Skip("bird not installed (bird2): configs not parsed")
	}
	for n, s := range confs {
		for _, f := range [][2]string{{birdConfSuffix, s}, {birdPolicySuffix, topo.birdPolicy([]string{"net0", "net3"})}} {
			if err := os.WriteFile(birdFileIn(dir, "bg", n, f[0]), []byte(f[1]), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if out, err := exec.Command(birdBin, "-p", "-c", birdFileIn(dir, "bg", n, birdConfSuffix)).CombinedOutput(); err != nil {
			t.Errorf("bird -p of %s: %v: %s", n, err, out)
		}
	}
}

func TestBirdPolicy(t *testing.T) {
	topo, err := DefaultTopology()
	if err != nil {
		t.Fatal(err)
	}
	for _, nets := range [][]string{nil, {"net1"}, {"net0", "net2"}} {
		p := topo.birdPolicy(nets)
		if got := parsePolicy([]byte(p)); !slices.Equal(got, nets) {
			t.Errorf("parsePolicy(birdPolicy(%v)) = %v\n%s", nets, got, p)
		}
	}
	if got := topo.birdPolicy(nil); !strings.Contains(got, "function vl_withdrawn4() { return false; }") {
		t.Errorf("empty policy:\n%s", got)
	}
}

func TestParseBirdc(t *testing.T) {
	out := "0001 BIRD 2.0.12 ready.\n2002-Name       Proto      Table      State  Since         Info\n" +
		"1002-device1    Device     ---        up     16:21:34.112  \n" +
		"     bgp_transit4 BGP        ---        up     16:21:34.902  Established   \n" +
		"     collector  BGP        ---        start  16:21:34.112  Active        Socket: Connection refused\n0000 \n"
	text, code := parseBirdc([]byte(out))
	if code != "" || strings.Contains(text, "ready") || !strings.HasPrefix(text, "Name") {
		t.Errorf("parseBirdc = %q, %q", text, code)
	}
	ps := parseProtocols(text)
	want := []bgpProtocol{
		{name: "bgp_transit4", state: "up 16:21:34.902 Established", established: true},
		{name: "collector", state: "start 16:21:34.112 Active Socket: Connection refused"},
	}
	if !slices.Equal(ps, want) {
		t.Errorf("parseProtocols = %+v\nwant %+v", ps, want)
	}
	if _, code := parseBirdc([]byte("0001 BIRD 2.0.12 ready.\n8002 /x.conf:3:1 syntax error\n")); code != "8002" {
		t.Errorf("error code = %q, want 8002", code)
	}
}

func mrtRecord(subtype uint16, body []byte) []byte {
	h := make([]byte, mrtHeaderLen)
	binary.BigEndian.PutUint16(h[4:], mrtTableDumpV2)
	binary.BigEndian.PutUint16(h[6:], subtype)
	binary.BigEndian.PutUint32(h[8:], uint32(len(body)))
	return append(h, body...)
}

func TestCheckMRT(t *testing.T) {
	good := slices.Concat(mrtRecord(1, make([]byte, 10)), mrtRecord(2, make([]byte, 5)), mrtRecord(4, nil))
	sum, err := CheckMRT(good)
	if err != nil || sum != (MRTSummary{Records: 3, PeerTables: 1, RIB4: 1, RIB6: 1}) {
		t.Errorf("CheckMRT(good) = %+v, %v", sum, err)
	}
	for _, tc := range []struct {
		name string
		b    []byte
		want string
	}{
		{"empty", nil, "mrt: empty file"},
		{"short", good[:7], "mrt: record 0 at byte 0: short header: unexpected EOF"},
		{"rib first", mrtRecord(2, nil), "mrt: first record has subtype 2, want 1 (PEER_INDEX_TABLE)"},
		{"truncated", good[:len(good)-14], "mrt: record 1 at byte 22: length 5, only 3 bytes left"},
		{"not table dump", append(good[:4:4], 0, 12, 0, 1, 0, 0, 0, 0), "mrt: record 0 at byte 0: type 12, want 13 (TABLE_DUMP_V2)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := CheckMRT(tc.b); err == nil || err.Error() != tc.want {
				t.Errorf("CheckMRT = %v, want %s", err, tc.want)
			}
		})
	}
}

func TestBGPNeedsMode(t *testing.T) {
	topo, err := DefaultTopology()
	if err != nil {
		t.Fatal(err)
	}
	l := offlineLab(t, topo, "x")
	for name, err := range map[string]error{
		"BGPWithdraw":    l.BGPWithdraw("upstream"),
		"OriginWithdraw": l.OriginWithdraw(),
		"DataPlaneDown":  l.DataPlaneDown("border"),
		"DumpMRT":        l.DumpMRT("ix", "/tmp/x.mrt"),
	} {
		if !errors.Is(err, ErrRoutingMode) {
			t.Errorf("%s on a static lab: %v, want ErrRoutingMode", name, err)
		}
	}
	if _, err := l.BirdShow("ix", "route"); !errors.Is(err, ErrRoutingMode) {
		t.Errorf("BirdShow on a static lab: %v, want ErrRoutingMode", err)
	}
}
