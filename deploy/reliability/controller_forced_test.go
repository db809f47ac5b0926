package reliability

import (
	"context"
	"database/sql"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vantage-net/vantage/deploy/demo"
)

// forcedCampaign aims at loopback and RFC 1918: what a compromised (here:
// --allow-special-ranges) controller could push to an agent.
const forcedCampaign = `name: forced
scope: {country: KP}
targets:
  networks:
    - {name: rfc1918, prefix: 10.0.0.0/24, hosts: [10.0.0.1]}
    - {name: loopback, prefix: 127.0.0.0/24, hosts: [127.0.0.1]}
probes:
  - icmp: {timeout: 500ms}
  - tcp: {ports: [80], mode: connect, timeout: 500ms}
schedule: {round: 2s, jitter: 200ms}
vantages: {quorum: 1}
budget: {per_target_pps: 2}
`

var nftCounterRE = regexp.MustCompile(`counter packets (\d+) bytes \d+ comment "(vk-[a-z0-9-]+)"`)

// outputCounters reads the packet counters of the vk table in a node's
// namespace, by rule comment.
func outputCounters(t *testing.T, h *demo.Harness, node string) map[string]uint64 {
	t.Helper()
	out, err := h.Lab.Command(context.Background(), node, "nft", "list", "table", "inet", "vkforced").CombinedOutput()
	if err != nil {
		t.Fatalf("nft list: %v: %s", err, out)
	}
	m := map[string]uint64{}
	for _, line := range strings.Split(string(out), "\n") {
		if sm := nftCounterRE.FindStringSubmatch(line); sm != nil {
			n, _ := strconv.ParseUint(sm[1], 10, 64)
			m[sm[2]] = n
		}
	}
	return m
}

// TestControllerForcedAssignment: the controller refuses a campaign aimed
// at 10.0.0.0/8 or 127.0.0.0/8 unless it runs with --allow-special-ranges
// (TestControllerRefuses). Here the lab controller does run with it,
// standing in for a compromised controller, and pushes such a campaign to
// an agent started WITHOUT --allow-special-ranges: the agent refuses it
// (a refused TaskStatus reaches the controller) and nft counters on the
// output hook of the agent's namespace count 0 packets to those targets.
func TestControllerForcedAssignment(t *testing.T) {
	const v = "vantage-a"
	ctx, cancel := labTest(t, 4*time.Minute)
	defer cancel()
	h := startVKLab(t, ctx, "g", demo.Config{Agents: []string{}})
	// Count, in the agent's namespace, every packet leaving for the forced
	// targets (ICMP and TCP port 80; the agent's own session to the
	// controller is neither).
	rules := `table inet vkforced {
	chain out {
		type filter hook output priority 0; policy accept;
		ip daddr 10.0.0.0/8 meta l4proto icmp counter comment "vk-rfc1918-icmp"
		ip daddr 10.0.0.0/8 tcp dport 80 counter comment "vk-rfc1918-tcp"
		ip daddr 127.0.0.0/8 meta l4proto icmp counter comment "vk-loopback-icmp"
		ip daddr 127.0.0.0/8 tcp dport 80 counter comment "vk-loopback-tcp"
	}
}
`
	nft := h.Lab.Command(ctx, v, "nft", "-f", "-")
	nft.Stdin = strings.NewReader(rules)
	if out, err := nft.CombinedOutput(); err != nil {
		t.Fatalf("nft: %v: %s", err, out)
	}
	// The counters work: one ping to loopback in the namespace is seen.
	if out, err := h.Lab.Command(ctx, v, "ping", "-c", "1", "-W", "1", "127.0.0.1").CombinedOutput(); err != nil {
		t.Fatalf("control ping: %v: %s", err, out)
	}
	control := outputCounters(t, h, v)
	if control["vk-loopback-icmp"] == 0 {
		t.Fatalf("the control ping was not counted: %v", control)
	}
	t.Logf("control: a ping to 127.0.0.1 in %s counted %d packet(s)", v, control["vk-loopback-icmp"])

	if err := h.StartAgent(ctx, v, "--allow-special-ranges=false"); err != nil {
		t.Fatal(err)
	}
	id := waitConnected(t, ctx, h, v)
	base := outputCounters(t, h, v)
	applyCampaign(t, ctx, h, forcedCampaign)
	// Wait for the agent's refusal to reach the controller.
	var refused int
	var reason string
	waitFor(t, ctx, time.Minute, "the agent's refusal", func() (bool, error) {
		db, err := sql.Open("sqlite", "file:"+filepath.Join(h.DataDir(), "vantage.db")+"?mode=ro&_pragma=busy_timeout(10000)")
		if err != nil {
			return false, err
		}
		defer db.Close()
		if err := db.QueryRow(`SELECT count(*), coalesce(max(reason), '') FROM task_status WHERE agent_id = ? AND refused = 1`, id).Scan(&refused, &reason); err != nil {
			return false, err
		}
		return refused > 0, nil
	})
	// Several 2 s rounds in which probes would have gone out.
	sleepCtx(t, ctx, 10*time.Second)
	after := outputCounters(t, h, v)
	var sent uint64
	for k, n := range after {
		sent += n - base[k]
	}
	st := mustStored(t, ctx, h, id)
	t.Logf("forced assignment to %s (agent without --allow-special-ranges): refused task statuses=%d (%q); packets to 10.0.0.0/8 and 127.0.0.0/8 in its namespace: %d (%v); results stored=%d",
		v, refused, reason, sent, after, st.distinct())
	if sent != 0 {
		t.Errorf("%d packets left for forced targets", sent)
	}
	if st.kinds["icmp"]+st.kinds["tcp"] != 0 {
		t.Errorf("results stored for forced targets: %v", st.kinds)
	}
}
