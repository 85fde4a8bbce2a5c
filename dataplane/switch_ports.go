package dataplane

import (
	"maps"
	"slices"
)

// Ports lists the switch's P4 port numbers in ascending order, for metrics
// and logs. The set is fixed when the switch is made.
func (sw *Switch) Ports() []uint16 {
	return slices.Sorted(maps.Keys(sw.ports))
}
