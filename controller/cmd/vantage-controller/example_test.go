package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vantage-net/vantage/controller/campaign"
	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// TestOutsideExampleOnDefaultController: deploy/examples/outside.yaml, the
// example to adapt outside the lab, is accepted by a controller with the
// default limits (no --allow-special-ranges, the default rate caps), as
// vantagectl sends it: targets.rir expanded on the client from a
// delegated-stats file. The file here is a stand-in with public ranges; the
// real one is downloaded by the user.
func TestOutsideExampleOnDefaultController(t *testing.T) {
	c := startController(t, func(cfg *Config) {
		cfg.AllowSpecialRanges = false
		cfg.MaxPerTargetPPS, cfg.MaxAgentPPS = 10, 10000 // the flags' defaults
	})
	ops := c.ops(t)
	spec, err := os.ReadFile(filepath.Join("..", "..", "..", "deploy", "examples", "outside.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	delegated := "2|ripencc|20261203|3|19830705|20261202|+0100\n" +
		"ripencc|LI|ipv4|80.0.0.0|512|20010101|allocated\n" +
		"ripencc|LI|ipv4|81.0.0.0|256|20020101|assigned\n" +
		"ripencc|CH|ipv4|82.0.0.0|256|20020101|allocated\n"
	expanded, _, err := campaign.ExpandRIR(spec, func(p string) ([]byte, error) {
		if p != "delegated-ripencc-extended-latest" {
			t.Errorf("targets.rir.file %q", p)
		}
		return []byte(delegated), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	p, err := ops.ApplyCampaign(bearer(c.admin), &vantagev1.ApplyCampaignRequest{SpecYaml: string(expanded), DryRun: true, AllowFewerVantages: true})
	if err != nil {
		t.Fatalf("a default controller refuses the example: %v", err)
	}
	if p.GetName() != "outside" || len(p.GetNetworks()) != 2 {
		t.Errorf("dry run: campaign %q, networks %v; want outside with LI's 2 blocks", p.GetName(), p.GetNetworks())
	}
	// The same file with a lab range is refused by the same controller:
	// the test can tell a default controller from a lab one.
	lab := strings.Replace(string(expanded), "80.0.0.0/23", "198.18.0.0/23", 1)
	if lab == string(expanded) {
		t.Fatalf("expanded spec has no 80.0.0.0/23:\n%s", expanded)
	}
	if _, err := ops.ApplyCampaign(bearer(c.admin), &vantagev1.ApplyCampaignRequest{SpecYaml: lab, DryRun: true, AllowFewerVantages: true}); err == nil ||
		!strings.Contains(err.Error(), "--allow-special-ranges") {
		t.Errorf("a lab range: %v, want refused naming --allow-special-ranges", err)
	}
}
