package cache

import (
	"sync"

	"github.com/hashicorp/golang-lru/v2/simplelru"
)

// shard is one lock's worth of the cache: an LRU bounded both in answers and in bytes. It holds
// the lock itself, around golang-lru's unlocked LRU, because the byte count must change in the
// same critical section as the list: the locked lru.Cache neither reports what a replacing Add
// displaced nor tells an eviction from a removal. A hit costs the same lock and list move as
// lru.Cache.Get.
type shard struct {
	mu        sync.Mutex
	lru       *simplelru.LRU[uint64, *Entry]
	maxLen    int
	maxBytes  int64
	bytes     int64  // sum of Entry.Size over stored entries
	evictions uint64 // entries pushed out to make room, not removals
	_         [64]byte
}

func newShard(maxLen int, maxBytes int64) (*shard, error) {
	l, err := simplelru.NewLRU[uint64, *Entry](maxLen, nil)
	if err != nil {
		return nil, err
	}
	return &shard{lru: l, maxLen: maxLen, maxBytes: maxBytes}, nil
}

func (s *shard) get(h uint64) (*Entry, bool) {
	s.mu.Lock()
	e, ok := s.lru.Get(h)
	s.mu.Unlock()
	return e, ok
}

func (s *shard) peek(h uint64) (*Entry, bool) {
	s.mu.Lock()
	e, ok := s.lru.Peek(h)
	s.mu.Unlock()
	return e, ok
}

// add stores e under h, replacing what h held, then evicts the least recently used entries
// until both bounds hold again. An entry larger than the whole byte bound is not stored, and
// the answer it would replace is dropped: it is older than what the upstream now says.
func (s *shard) add(h uint64, e *Entry) {
	size := int64(e.Size())
	s.mu.Lock()
	defer s.mu.Unlock()
	if old, ok := s.lru.Peek(h); ok {
		s.lru.Remove(h)
		s.bytes -= int64(old.Size())
	}
	if size > s.maxBytes {
		return
	}
	for s.lru.Len() > 0 && (s.lru.Len() >= s.maxLen || s.bytes+size > s.maxBytes) {
		_, old, _ := s.lru.RemoveOldest()
		s.bytes -= int64(old.Size())
		s.evictions++
	}
	s.lru.Add(h, e)
	s.bytes += size
}

// remove drops the entry under h if it is e, or whatever is there if e is nil: an expired
// entry found by one lookup is not confused with a fresh one stored meanwhile.
func (s *shard) remove(h uint64, e *Entry) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if old, ok := s.lru.Peek(h); ok && (e == nil || old == e) {
		s.lru.Remove(h)
		s.bytes -= int64(old.Size())
	}
}

func (s *shard) keys() []uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lru.Keys()
}

// stats returns the entries, bytes and evictions of the shard.
func (s *shard) stats() (n int, bytes int64, evictions uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lru.Len(), s.bytes, s.evictions
}
