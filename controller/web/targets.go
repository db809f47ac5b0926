package web

import (
	"cmp"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// TargetsPage is how many targets one page of a network's targets holds.
const TargetsPage = 50

// targetsTimelineLimit is the most transitions one page reads: the API's
// most (api.MaxTimelineLimit), 200 per target of a full page.
const targetsTimelineLimit = 10000

// targetsJSON is one page of a network's targets, in address order, each
// with its state bands over the window. Total counts the targets the
// network's verdict names (up or down this round), on every page.
type targetsJSON struct {
	Campaign string       `json:"campaign"`
	Network  string       `json:"network"`
	From     time.Time    `json:"from"`
	To       time.Time    `json:"to"`
	Total    int          `json:"total"`
	Targets  []targetJSON `json:"targets"`
	Next     string       `json:"next_page_token,omitempty"`
}

// targetJSON is one target: its address, whether the network's verdict
// counts it up or down this round, and its bands (none when it had no
// transition in the window).
type targetJSON struct {
	Address string     `json:"address"`
	Now     string     `json:"now"` // "up" or "down"
	Bands   []bandJSON `json:"bands"`
}

// targets is GET /api/campaigns/NAME/targets?network=N&from=&to=&page_token=:
// a page of network N's targets with their bands. A country's campaign has
// tens of thousands of targets; the page opens one network's at a time,
// TargetsPage at a time, and the API reads only those targets' transitions.
// The list is the network verdict's up and down children: a target it
// counts neither this round (UNKNOWN: uncertain beliefs, too few vantages;
// or no round evaluated yet) is not listed, since the verdict does not
// name it.
func (s *Server) targets(w http.ResponseWriter, r *http.Request) {
	from, to, ok := s.windowOf(w, r)
	if !ok {
		return
	}
	name, network := r.PathValue("name"), r.URL.Query().Get("network")
	ctx, cancel := s.call(r, sessionOf(r))
	defer cancel()
	nets, ok := s.networkOf(ctx, w, r, name, network)
	if !ok {
		return
	}
	if len(nets) == 0 {
		writeError(w, http.StatusNotFound, fmt.Sprintf("network: campaign %q has no network verdicts (it is not active)", name))
		return
	}
	i := slices.IndexFunc(nets, func(v *vantagev1.Verdict) bool { return v.GetSubject() == network })
	if i < 0 {
		writeError(w, http.StatusNotFound, fmt.Sprintf("network: %q is not a network of campaign %q", network, name))
		return
	}
	v := nets[i]
	all := make([]targetJSON, 0, len(v.GetUpChildren())+len(v.GetDownChildren()))
	for _, a := range v.GetUpChildren() {
		all = append(all, targetJSON{Address: a, Now: "up"})
	}
	for _, a := range v.GetDownChildren() {
		all = append(all, targetJSON{Address: a, Now: "down"})
	}
	slices.SortFunc(all, func(a, b targetJSON) int { return compareAddrs(a.Address, b.Address) })
	off, err := pageOffset(r.URL.Query().Get("page_token"), len(all))
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	page := all[off:min(off+TargetsPage, len(all))]
	out := targetsJSON{Campaign: name, Network: network, From: from, To: to, Total: len(all), Targets: page}
	if end := off + len(page); end < len(all) {
		out.Next = pageToken(end)
	}
	if len(page) > 0 {
		subjects := make([]string, len(page))
		for i, t := range page {
			subjects[i] = t.Address
		}
		tl, err := s.cfg.Operator.GetTimeline(ctx, &vantagev1.GetTimelineRequest{Campaign: name, Level: vantagev1.Level_LEVEL_TARGET,
			Subjects: subjects, From: timestamppb.New(from), To: timestamppb.New(to), Limit: targetsTimelineLimit})
		if err != nil {
			s.fail(w, r, err)
			return
		}
		byTarget := bySubject(tl.GetTransitions())
		for i := range page {
			page[i].Bands = bands(byTarget[page[i].Address], from)
		}
	}
	writeJSON(w, out)
}

// compareAddrs orders addresses as addresses (198.18.0.9 before
// 198.18.0.10), anything else after them as text.
func compareAddrs(a, b string) int {
	x, errA := netip.ParseAddr(a)
	y, errB := netip.ParseAddr(b)
	switch {
	case errA == nil && errB == nil:
		return x.Compare(y)
	case errA == nil:
		return -1
	case errB == nil:
		return 1
	}
	return cmp.Compare(a, b)
}

// pageTokenPrefix marks the dashboard's page tokens; what follows is the
// offset of the page's first entry. The page treats tokens as opaque.
const pageTokenPrefix = "offset:"

func pageToken(off int) string {
	return base64.RawURLEncoding.EncodeToString([]byte(pageTokenPrefix + strconv.Itoa(off)))
}

// pageOffset reads a page token ("" is the first page) against a list of
// total entries.
func pageOffset(token string, total int) (int, error) {
	if token == "" {
		return 0, nil
	}
	b, err := base64.RawURLEncoding.DecodeString(token)
	rest, ok := strings.CutPrefix(string(b), pageTokenPrefix)
	off, errN := strconv.Atoi(rest)
	if err != nil || !ok || errN != nil || off <= 0 || rest != strconv.Itoa(off) {
		return 0, fmt.Errorf("page_token: %q is not a page token of this list (take next_page_token from the previous page)", token)
	}
	if off >= total {
		return 0, fmt.Errorf("page_token: the page starts at entry %d, and the list has %d now; start again from the first page", off+1, total)
	}
	return off, nil
}
