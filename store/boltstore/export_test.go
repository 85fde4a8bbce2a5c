package boltstore

// SetApplyHook makes every op applied in a write transaction call hook
// first; an error from it fails the op as a failing bbolt Put would.
func (s *Store) SetApplyHook(hook func(key string) error) { s.applyHook = hook }
