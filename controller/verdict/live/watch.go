package live

import (
	"errors"
	"log/slog"
	"sync"

	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// Watcher receives transitions as they are stored. When its buffer is full
// it is dropped: C stays open but Done is closed, and the watcher must
// resynchronise (e.g. the client re-opens WatchVerdicts).
type Watcher struct {
	C        <-chan *vantagev1.Transition
	c        chan *vantagev1.Transition
	done     chan struct{}
	once     sync.Once
	err      error // why it was dropped; set before done is closed
	campaign string
	level    vantagev1.Level
	w        *Worker
}

// Errors a dropped watcher reports.
var (
	ErrWatcherTooSlow = errors.New("verdict watcher fell behind; re-open the watch")
	ErrWorkerClosed   = errors.New("verdict worker shutting down")
)

// Done is closed when the watcher was dropped (too slow, worker closed)
// or closed.
func (wa *Watcher) Done() <-chan struct{} { return wa.done }

// Err says why the watcher was dropped: ErrWatcherTooSlow or
// ErrWorkerClosed (nil while Done is open or after Close).
func (wa *Watcher) Err() error {
	select {
	case <-wa.done:
		return wa.err
	default:
		return nil
	}
}

func (wa *Watcher) drop(err error) {
	wa.once.Do(func() {
		wa.err = err
		close(wa.done)
	})
}

// Close unregisters the watcher.
func (wa *Watcher) Close() {
	wa.w.mu.Lock()
	delete(wa.w.watchers, wa)
	wa.w.mu.Unlock()
	wa.drop(nil)
}

// Watch registers a watcher for one campaign ("" all) and level
// (UNSPECIFIED all). Register before reading current verdicts so nothing
// is missed in between.
func (w *Worker) Watch(campaignName string, level vantagev1.Level) *Watcher {
	c := make(chan *vantagev1.Transition, w.opts.WatcherBuffer)
	wa := &Watcher{C: c, c: c, done: make(chan struct{}), campaign: campaignName, level: level, w: w}
	w.mu.Lock()
	w.watchers[wa] = struct{}{}
	w.mu.Unlock()
	return wa
}

// broadcast never blocks: a watcher whose buffer is full is dropped.
func (w *Worker) broadcast(ts []*vantagev1.Transition) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for wa := range w.watchers {
		for _, t := range ts {
			if wa.campaign != "" && wa.campaign != t.GetCampaign() || !levelMatches(wa.level, t.GetLevel()) {
				continue
			}
			select {
			case wa.c <- t:
			default:
				w.log.Warn("verdict watcher dropped", slog.String("reason", "buffer full"),
					slog.String("campaign", wa.campaign))
				delete(w.watchers, wa)
				wa.drop(ErrWatcherTooSlow)
			}
			if _, ok := w.watchers[wa]; !ok {
				break
			}
		}
	}
}
