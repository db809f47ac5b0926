package bgp

import (
	"sync"
	"sync/atomic"

	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// watchers fan the kept updates out to subscribers (WatchBgp). A
// subscriber that falls behind loses updates rather than holding up the
// RIB: the stream is a live view, the store has the record.
type watchers struct {
	mu      sync.Mutex
	next    int
	subs    map[int]chan *vantagev1.BgpUpdate
	dropped atomic.Uint64
}

func (w *watchers) send(u Update) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.subs) == 0 {
		return
	}
	p := u.Proto()
	for _, ch := range w.subs {
		select {
		case ch <- p:
		default:
			w.dropped.Add(1)
		}
	}
}

// Subscribe returns a channel of the updates the RIB keeps from now on,
// buffered buf deep, and a cancel that closes it. The caller owns both.
func (r *RIB) Subscribe(buf int) (<-chan *vantagev1.BgpUpdate, func()) {
	w := &r.watch
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.subs == nil {
		w.subs = map[int]chan *vantagev1.BgpUpdate{}
	}
	id := w.next
	w.next++
	ch := make(chan *vantagev1.BgpUpdate, max(buf, 1))
	w.subs[id] = ch
	var once sync.Once
	return ch, func() {
		once.Do(func() {
			w.mu.Lock()
			defer w.mu.Unlock()
			delete(w.subs, id)
			close(ch)
		})
	}
}

// Dropped counts updates subscribers lost by falling behind.
func (r *RIB) Dropped() uint64 { return r.watch.dropped.Load() }
