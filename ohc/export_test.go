package ohc

// IncrementalCompiles reports how many of cc's compiles took the
// incremental path, so tests can tell that it was exercised.
func IncrementalCompiles(cc *Compiler) uint64 { return cc.inc.incremental }

// SetCompactAfter sets how many emptied slots an incremental compile keeps
// before compacting, and returns the old value, so tests reach compaction.
func SetCompactAfter(n int) int {
	old := compactAfter
	compactAfter = n
	return old
}

// SetDuties tells a's reporting the host's gateway duties, as Run does
// with each view it hands over.
func SetDuties(a *Agent, duties []GatewayDuty) { a.setHeartbeat(duties) }
