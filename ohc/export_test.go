package ohc

// IncrementalCompiles reports how many of cc's compiles took the
// incremental path, so tests can tell that it was exercised.
func IncrementalCompiles(cc *Compiler) uint64 { return cc.inc.incremental }
