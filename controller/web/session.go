package web

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"sync"
	"time"
)

// session is one logged-in browser.
type session struct {
	id      string
	secret  string // the operator token: the gRPC calls' bearer
	name    string // shown on the pages; "" until known
	csrf    string
	expires time.Time
}

// sessions is the in-memory table of logged-in browsers. It is bounded:
// when full, the session closest to expiring goes first, so a flood of
// logins cannot grow it.
type sessions struct {
	ttl time.Duration
	max int
	now func() time.Time

	mu   sync.Mutex
	byID map[string]*session
}

func newSessions(ttl time.Duration, max int, now func() time.Time) *sessions {
	return &sessions{ttl: ttl, max: max, now: now, byID: map[string]*session{}}
}

// randomToken is 32 random bytes, URL-safe.
func randomToken() string {
	b := make([]byte, 32)
	rand.Read(b) // never fails (crypto/rand, Go 1.24+)
	return base64.RawURLEncoding.EncodeToString(b)
}

// create starts a session for the token secret.
func (s *sessions) create(secret, name string) *session {
	now := s.now()
	ses := &session{id: randomToken(), secret: secret, name: name, csrf: randomToken(), expires: now.Add(s.ttl)}
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, o := range s.byID {
		if !now.Before(o.expires) {
			delete(s.byID, id)
		}
	}
	for len(s.byID) >= s.max {
		var oldest *session
		for _, o := range s.byID {
			if oldest == nil || o.expires.Before(oldest.expires) {
				oldest = o
			}
		}
		delete(s.byID, oldest.id)
	}
	s.byID[ses.id] = ses
	return ses
}

// get is the live session with id, nil if there is none.
func (s *sessions) get(id string) *session {
	s.mu.Lock()
	defer s.mu.Unlock()
	ses := s.byID[id]
	if ses == nil {
		return nil
	}
	if !s.now().Before(ses.expires) {
		delete(s.byID, id)
		return nil
	}
	return ses
}

// drop ends a session.
func (s *sessions) drop(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.byID, id)
}

// csrfOK compares in constant time.
func (ses *session) csrfOK(got string) bool {
	return got != "" && subtle.ConstantTimeCompare([]byte(got), []byte(ses.csrf)) == 1
}
