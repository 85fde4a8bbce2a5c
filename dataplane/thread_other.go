//go:build !linux

package dataplane

// threadID is 0 where threads have no id of their own to read CPU time by.
func threadID() int { return 0 }
