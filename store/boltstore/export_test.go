package boltstore

// SetApplyHook makes every op applied in a write transaction call hook
// first; an error from it fails the op as a failing bbolt Put would.
func (s *Store) SetApplyHook(hook func(key string) error) { s.applyHook = hook }

// HistoryHeld is the number of batches and op bytes the watch history
// keeps, and the bytes its array still references past them.
func (s *Store) HistoryHeld() (batches, size, dead int) {
	s.feed.mu.Lock()
	defer s.feed.mu.Unlock()
	return len(s.feed.log), s.feed.size, s.feed.dead
}
