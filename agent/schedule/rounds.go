package schedule

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// RoundLog remembers, per task, the last round the agent started, so a
// restart in the middle of a round does not run it again, and the rounds
// the agent missed while it was down can be reported.
type RoundLog interface {
	// Last is the last round started for task id and the task's expiry
	// then (zero when it had none).
	Last(id string) (round int64, expires time.Time, ok bool)
	// Start records that round of task id is about to run. It must be
	// durable against a process crash before the probe is sent.
	Start(id string, round int64, expires time.Time) error
}

// FileRoundLog is a RoundLog kept in an append-only text file, one
// "<round> <expires unix ms> <task id>" line per started round, written with
// one write(2) each: a killed agent loses no line it has returned from (a
// power cut may lose the last ones; see docs/OPERATIONS.md). The file is
// compacted at open and when it grows past compactBytes.
type FileRoundLog struct {
	path string

	mu    sync.Mutex
	f     *os.File
	size  int64
	last  map[string]roundMark
	limit int64
}

type roundMark struct {
	round   int64
	expires time.Time
}

const compactBytes = 4 << 20

// OpenRoundLog opens (creating) the round log at path.
func OpenRoundLog(path string) (*FileRoundLog, error) {
	l := &FileRoundLog{path: path, last: map[string]roundMark{}, limit: compactBytes}
	f, err := os.Open(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("round log: %w", err)
	default:
		b, err := io.ReadAll(f)
		if err != nil {
			_ = f.Close()
			return nil, fmt.Errorf("round log: %w", err)
		}
		lines := strings.Split(string(b), "\n")
		// The last element follows the last newline: empty, or a line torn
		// by a crash, which is ignored (a torn id could name another task).
		for _, ln := range lines[:len(lines)-1] {
			fields := strings.SplitN(ln, " ", 3)
			if len(fields) != 3 || fields[2] == "" {
				continue
			}
			r, err1 := strconv.ParseInt(fields[0], 10, 64)
			ms, err2 := strconv.ParseInt(fields[1], 10, 64)
			if err1 != nil || err2 != nil {
				continue
			}
			var exp time.Time
			if ms > 0 {
				exp = time.UnixMilli(ms)
			}
			if m, ok := l.last[fields[2]]; !ok || r >= m.round {
				l.last[fields[2]] = roundMark{r, exp}
			}
		}
		_ = f.Close()
	}
	if err := l.compact(); err != nil {
		return nil, err
	}
	return l, nil
}

func line(id string, m roundMark) string {
	var ms int64
	if !m.expires.IsZero() {
		ms = m.expires.UnixMilli()
	}
	return strconv.FormatInt(m.round, 10) + " " + strconv.FormatInt(ms, 10) + " " + id + "\n"
}

// compact rewrites the file with one line per task, dropping tasks expired
// for more than a day.
func (l *FileRoundLog) compact() error {
	var b strings.Builder
	cutoff := time.Now().Add(-24 * time.Hour)
	for id, m := range l.last {
		if !m.expires.IsZero() && m.expires.Before(cutoff) {
			delete(l.last, id)
			continue
		}
		b.WriteString(line(id, m))
	}
	tmp := filepath.Join(filepath.Dir(l.path), "."+filepath.Base(l.path)+".tmp")
	if err := os.WriteFile(tmp, []byte(b.String()), 0o600); err != nil {
		return fmt.Errorf("round log: %w", err)
	}
	if l.f != nil {
		_ = l.f.Close()
		l.f = nil
	}
	if err := os.Rename(tmp, l.path); err != nil {
		return fmt.Errorf("round log: %w", err)
	}
	f, err := os.OpenFile(l.path, os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("round log: %w", err)
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		return fmt.Errorf("round log: %w", err)
	}
	l.f, l.size = f, int64(b.Len())
	return nil
}

// Last implements RoundLog.
func (l *FileRoundLog) Last(id string) (int64, time.Time, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	m, ok := l.last[id]
	return m.round, m.expires, ok
}

// Start implements RoundLog.
func (l *FileRoundLog) Start(id string, round int64, expires time.Time) error {
	if strings.ContainsAny(id, "\n") {
		return fmt.Errorf("round log: task id %q: contains a newline", id)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	m := roundMark{round, expires}
	l.last[id] = m
	s := line(id, m)
	if _, err := l.f.WriteString(s); err != nil {
		return fmt.Errorf("round log: %w", err)
	}
	l.size += int64(len(s))
	if l.size > l.limit {
		return l.compact()
	}
	return nil
}

// Close closes the file.
func (l *FileRoundLog) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return nil
	}
	err := l.f.Close()
	l.f = nil
	return err
}
