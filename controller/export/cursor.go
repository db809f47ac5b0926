package export

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/vantage-net/vantage/controller/store"
)

// ErrCursor: a cursor that is not one of this kind's (a typo, or another
// method's cursor).
var ErrCursor = errors.New("not a cursor of this export")

// A cursor is a kind prefix ("r1.", "e1.", "b1.": results, episodes, BGP
// updates; the digit is the cursor's version) and the base64url of a JSON
// array: the place after which the export resumes, in that export's order.
// Opaque to clients, and stable: a cursor keeps working across controller
// restarts, since it names stored keys, not a server-side session.
const (
	resultPrefix  = "r1."
	episodePrefix = "e1."
	bgpPrefix     = "b1."
)

func encode(prefix string, fields ...any) string {
	b, _ := json.Marshal(fields) // numbers and strings only
	return prefix + base64.RawURLEncoding.EncodeToString(b)
}

func decode(prefix, cursor string, fields ...any) error {
	rest, ok := strings.CutPrefix(cursor, prefix)
	if !ok {
		return fmt.Errorf("%w: want one beginning %q", ErrCursor, prefix)
	}
	b, err := base64.RawURLEncoding.DecodeString(rest)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrCursor, err)
	}
	raw := make([]json.RawMessage, 0, len(fields))
	if err := json.Unmarshal(b, &raw); err != nil || len(raw) != len(fields) {
		return fmt.Errorf("%w: want %d fields", ErrCursor, len(fields))
	}
	for i, f := range fields {
		if err := json.Unmarshal(raw[i], f); err != nil {
			return fmt.Errorf("%w: field %d: %w", ErrCursor, i, err)
		}
	}
	return nil
}

// ResultCursor is the cursor after a result of key k.
func ResultCursor(k store.ResultKey) string {
	return encode(resultPrefix, k.SentAt.UnixNano(), k.AgentID, k.Epoch, k.Seq)
}

// ParseResultCursor is ResultCursor's inverse.
func ParseResultCursor(c string) (store.ResultKey, error) {
	var k store.ResultKey
	var ns int64
	if err := decode(resultPrefix, c, &ns, &k.AgentID, &k.Epoch, &k.Seq); err != nil {
		return k, err
	}
	k.SentAt = time.Unix(0, ns).UTC()
	return k, nil
}

// TransitionPlace is a transition's place in verdict order.
type TransitionPlace struct {
	VerdictID  string
	DetectedAt time.Time
	ID         int64
}

// EpisodeCursor is the cursor after an episode whose last transition
// (the one that ended it, or the verdict's last in the window) is at p.
func EpisodeCursor(p TransitionPlace) string {
	return encode(episodePrefix, p.VerdictID, p.DetectedAt.UnixNano(), p.ID)
}

// ParseEpisodeCursor is EpisodeCursor's inverse.
func ParseEpisodeCursor(c string) (TransitionPlace, error) {
	var p TransitionPlace
	var ns int64
	if err := decode(episodePrefix, c, &p.VerdictID, &ns, &p.ID); err != nil {
		return p, err
	}
	if p.VerdictID == "" {
		return p, fmt.Errorf("%w: no verdict id", ErrCursor)
	}
	p.DetectedAt = time.Unix(0, ns).UTC()
	return p, nil
}

// BGPCursor is the cursor after the BGP update (at, id).
func BGPCursor(at time.Time, id int64) string { return encode(bgpPrefix, at.UnixNano(), id) }

// ParseBGPCursor is BGPCursor's inverse.
func ParseBGPCursor(c string) (at time.Time, id int64, err error) {
	var ns int64
	if err := decode(bgpPrefix, c, &ns, &id); err != nil {
		return at, 0, err
	}
	if id <= 0 {
		return at, 0, fmt.Errorf("%w: update id %d", ErrCursor, id)
	}
	return time.Unix(0, ns).UTC(), id, nil
}
