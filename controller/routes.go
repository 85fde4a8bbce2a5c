package controller

import (
	"fmt"
	"net/netip"
)

// RouteStatus is one configured route and whether it won its prefix.
type RouteStatus struct {
	Route  Route
	Chosen bool
	// Reason says why it won or lost.
	Reason string
}

// ChooseRoutes is the route manager for this controller's static routes:
// for each (VPC, prefix), the route with the lowest priority value wins,
// and among equals the first configured (so a reordering is an explicit
// operator decision). It is the static routes' view; what a VPC forwards
// by, against its subnets, BGP-learned and peer routes too, is the RIB
// (rib.go, Server.RIB), which applies these rules among static routes.
func (c *Config) ChooseRoutes() []RouteStatus {
	type key struct {
		vpc    string
		prefix netip.Prefix
	}
	best := map[key]int{}
	count := map[key]int{}
	for i, r := range c.Routes {
		k := key{r.VPC, r.Prefix}
		count[k]++
		if j, ok := best[k]; !ok || r.Priority < c.Routes[j].Priority {
			best[k] = i
		}
	}
	out := make([]RouteStatus, len(c.Routes))
	for i, r := range c.Routes {
		k := key{r.VPC, r.Prefix}
		w := c.Routes[best[k]]
		st := RouteStatus{Route: r, Chosen: best[k] == i}
		switch {
		case st.Chosen:
			st.Reason = chosenReason(r, count[k])
		case w.Priority == r.Priority:
			st.Reason = fmt.Sprintf("same priority as the route via %s, configured first", nextHopName(w))
		default:
			st.Reason = fmt.Sprintf("priority %d loses to %d (via %s)", r.Priority, w.Priority, nextHopName(w))
		}
		out[i] = st
	}
	return out
}

func nextHopName(r Route) string {
	if r.NextHop == "" {
		return "drop"
	}
	return r.NextHop
}

// chosenReason says why r won its prefix over n-1 other routes.
func chosenReason(r Route, n int) string {
	if n == 1 {
		return "the only route for its prefix"
	}
	return fmt.Sprintf("lowest priority value (%d) of %d static routes for its prefix", r.Priority, n)
}
