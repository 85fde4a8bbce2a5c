package controller

import (
	"fmt"

	"time"
)

// Gateway pools (issue 13): the configuration side. A pool is a set of
// this controller's hosts that run the pipeline in gateway role for some
// VPCs owned here: the hosts of the VPCs peered with them reach, through
// the pool, destinations they hold no direct entry for. gatewayserve.go
// serves pools (duties, authorisation, the pool in peerings and peer
// sides), gatewayhealth.go decides which members are live and which
// peerings go direct under load.

// Defaults of a pool's timers, applied where the configuration leaves
// them 0.
const (
	DefaultGatewayHealthTimeout = 2 * time.Second
	DefaultGatewayHeartbeat     = 500 * time.Millisecond
)

// GatewayPool is a pool of gateway hosts serving VPCs owned here.
type GatewayPool struct {
	Name string
	// Members are the ids of the hosts (of this controller) that run in
	// gateway role for the pool.
	Members []string
	// VPCs are the VPCs (owned here) the pool serves; a VPC is served by
	// at most one pool.
	VPCs []string
	// HealthTimeout is how long a member may go without reporting before
	// it is taken out of the pool; 0 means DefaultGatewayHealthTimeout.
	HealthTimeout time.Duration
	// Heartbeat is how often a member reports while it has a duty; 0
	// means DefaultGatewayHeartbeat. It must be below HealthTimeout.
	Heartbeat time.Duration
	// PromotePackets, PromoteWindow and IdleTimeout tune on-demand
	// promotion on the sending hosts; 0 means the OHC's default.
	PromotePackets uint32
	PromoteWindow  time.Duration
	IdleTimeout    time.Duration
	// DirectAbovePPS and PoolBelowPPS are the load trigger: a VPC pair
	// sending more than DirectAbovePPS packets per second through the
	// pool goes direct, and back to the pool at PoolBelowPPS or less.
	// DirectAbovePPS 0 turns the trigger off (always through the pool).
	DirectAbovePPS uint64
	PoolBelowPPS   uint64
}

// Timeouts returns the pool's health timeout and heartbeat with the
// defaults applied.
func (p GatewayPool) Timeouts() (health, heartbeat time.Duration) {
	health, heartbeat = p.HealthTimeout, p.Heartbeat
	if health == 0 {
		health = DefaultGatewayHealthTimeout
	}
	if heartbeat == 0 {
		heartbeat = DefaultGatewayHeartbeat
	}
	return health, heartbeat
}

// GatewayPool returns the pool named name.
func (c *Config) GatewayPool(name string) (GatewayPool, bool) {
	for _, p := range c.GatewayPools {
		if p.Name == name {
			return p, true
		}
	}
	return GatewayPool{}, false
}

func clonePool(p GatewayPool) GatewayPool {
	p.Members = cloneSlice(p.Members)
	p.VPCs = cloneSlice(p.VPCs)
	return p
}

// gatewayPoolDoc is the YAML form of a GatewayPool. Durations are Go
// duration strings ("2s", "500ms"), parsed by the converter so that a bad
// one is reported with its path.
type gatewayPoolDoc struct {
	Name           string   `yaml:"name"`
	Members        []string `yaml:"members,omitempty"`
	VPCs           []string `yaml:"vpcs,omitempty"`
	HealthTimeout  string   `yaml:"health_timeout,omitempty"`
	Heartbeat      string   `yaml:"heartbeat,omitempty"`
	PromotePackets uint32   `yaml:"promote_packets,omitempty"`
	PromoteWindow  string   `yaml:"promote_window,omitempty"`
	IdleTimeout    string   `yaml:"idle_timeout,omitempty"`
	DirectAbovePPS uint64   `yaml:"direct_above_pps,omitempty"`
	PoolBelowPPS   uint64   `yaml:"pool_below_pps,omitempty"`
}

func (cv *converter) duration(path, s string) time.Duration {
	if s == "" {
		return 0
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		cv.errs = append(cv.errs, fmt.Errorf("%s: %q is not a duration (such as 2s or 500ms)", path, s))
	}
	return d
}

func durationText(d time.Duration) string {
	if d == 0 {
		return ""
	}
	return d.String()
}

func (cv *converter) gatewayPools(ds []gatewayPoolDoc) []GatewayPool {
	var out []GatewayPool
	for i, d := range ds {
		p := item("gateway_pools", i, d.Name)
		out = append(out, GatewayPool{
			Name: d.Name, Members: cloneSlice(d.Members), VPCs: cloneSlice(d.VPCs),
			HealthTimeout:  cv.duration(p+".health_timeout", d.HealthTimeout),
			Heartbeat:      cv.duration(p+".heartbeat", d.Heartbeat),
			PromotePackets: d.PromotePackets,
			PromoteWindow:  cv.duration(p+".promote_window", d.PromoteWindow),
			IdleTimeout:    cv.duration(p+".idle_timeout", d.IdleTimeout),
			DirectAbovePPS: d.DirectAbovePPS, PoolBelowPPS: d.PoolBelowPPS,
		})
	}
	return out
}

func gatewayPoolDocOf(p GatewayPool) gatewayPoolDoc {
	return gatewayPoolDoc{
		Name: p.Name, Members: cloneSlice(p.Members), VPCs: cloneSlice(p.VPCs),
		HealthTimeout: durationText(p.HealthTimeout), Heartbeat: durationText(p.Heartbeat),
		PromotePackets: p.PromotePackets, PromoteWindow: durationText(p.PromoteWindow), IdleTimeout: durationText(p.IdleTimeout),
		DirectAbovePPS: p.DirectAbovePPS, PoolBelowPPS: p.PoolBelowPPS,
	}
}

// The largest durations a pool's millisecond fields (GatewayPool in the
// host programming protocol, uint32) can carry.
const maxPoolDuration = time.Duration(1<<32-1) * time.Millisecond

// checkGatewayPools checks the pools: names, members that are hosts of
// this controller, VPCs owned here and served by one pool each, and
// timers that make sense together.
func (v *validator) checkGatewayPools() {
	seen := map[string]bool{}
	servedBy := map[string]string{} // VPC → pool
	for i := range v.c.GatewayPools {
		gp := &v.c.GatewayPools[i]
		p := item("gateway_pools", i, gp.Name)
		v.name(p, "name", gp.Name)
		if seen[gp.Name] && gp.Name != "" {
			v.addf(p, "gateway pool defined twice")
			continue
		}
		seen[gp.Name] = true
		if len(gp.Members) == 0 {
			v.addf(p+".members", "a pool needs at least one member host")
		}
		members := map[string]bool{}
		for k, h := range gp.Members {
			mp := fmt.Sprintf("%s.members[%d]", p, k)
			switch {
			case h == "":
				v.addf(mp, "host id is required")
			case v.hosts[h] == nil:
				v.addf(mp, "host %q is not a host of this controller", h)
			case members[h]:
				v.addf(mp, "host %q listed twice", h)
			}
			members[h] = true
		}
		if len(gp.VPCs) == 0 {
			v.addf(p+".vpcs", "a pool serves at least one VPC")
		}
		for k, name := range gp.VPCs {
			vp := fmt.Sprintf("%s.vpcs[%d]", p, k)
			if v.ownedVPC(vp, name) == nil {
				continue
			}
			if other, dup := servedBy[name]; dup {
				if other == gp.Name {
					v.addf(vp, "VPC %q listed twice", name)
				} else {
					v.addf(vp, "VPC %q is already served by gateway pool %s: a VPC is served by at most one pool", name, other)
				}
				continue
			}
			servedBy[name] = gp.Name
		}
		durations := []struct {
			field string
			d     time.Duration
		}{
			{"health_timeout", gp.HealthTimeout}, {"heartbeat", gp.Heartbeat},
			{"promote_window", gp.PromoteWindow}, {"idle_timeout", gp.IdleTimeout},
		}
		for _, d := range durations {
			switch {
			case d.d < 0:
				v.addf(p+"."+d.field, "%s is negative", d.d)
			case d.d > maxPoolDuration:
				v.addf(p+"."+d.field, "%s is longer than %s", d.d, maxPoolDuration)
			case d.d%time.Millisecond != 0:
				v.addf(p+"."+d.field, "%s is not a whole number of milliseconds", d.d)
			}
		}
		if health, beat := gp.Timeouts(); gp.HealthTimeout >= 0 && gp.Heartbeat >= 0 && beat >= health {
			v.addf(p+".heartbeat", "heartbeat %s must be shorter than health_timeout %s, or every member would time out between reports", beat, health)
		}
		if gp.PoolBelowPPS > gp.DirectAbovePPS {
			v.addf(p+".pool_below_pps", "%d is above direct_above_pps %d: a pair would switch back and forth (pool_below_pps <= direct_above_pps)", gp.PoolBelowPPS, gp.DirectAbovePPS)
		}
	}
}
