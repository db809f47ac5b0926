package api

import (
	"errors"
	"strings"
	"testing"

	"github.com/vantage-net/vantage/controller/api/rpcerr"
)

func TestTokenGate(t *testing.T) {
	g := &tokenGate{running: map[string]int{}, most: 2}
	var leaves []func()
	for range 2 {
		leave, err := g.enter("ro", "QueryResults")
		if err != nil {
			t.Fatal(err)
		}
		leaves = append(leaves, leave)
	}
	_, err := g.enter("ro", "Explain")
	if !errors.Is(err, rpcerr.ErrResourceExhausted) || !strings.Contains(err.Error(), "--max-queries-per-token") || !strings.Contains(err.Error(), `token "ro"`) {
		t.Fatalf("third call = %v; want ErrResourceExhausted naming the token and --max-queries-per-token", err)
	}
	if _, err := g.enter("other", "QueryResults"); err != nil {
		t.Fatalf("another token: %v", err)
	}
	leaves[0]()
	if _, err := g.enter("ro", "Replay"); err != nil {
		t.Fatalf("after one ended: %v", err)
	}
	leaves[1]()
	if g.running["ro"] != 1 || g.running["other"] != 1 {
		t.Fatalf("running = %v; want ro 1, other 1", g.running)
	}
}
