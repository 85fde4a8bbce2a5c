package ohc

import (
	"fmt"

	p4v1 "github.com/p4lang/p4runtime/go/p4/v1"

	"github.com/p4mesh/p4mesh/p4rt"
)

// What the compiler takes from the target (docs/targets.md). The three
// programs (p4/v1model, p4/tna, p4/pna) have one control-plane contract, so
// the compiler's entries differ between targets only where the P4Info says
// so, and it reads that from the P4Info, never from a target's name:
//
//   - Ports: an endpoint's or uplink's port must fit the pipeline's port
//     width and not be its CPU port (p4rt.Capabilities.CheckPort). A
//     translated port type (TNA's tna/PortId_t) has the controller write
//     the server's port ids; the CPU port the program annotates is then the
//     chip's, and the server's own CPU port id (Stratum's 0xFFFFFFFD) is
//     above any port a View carries, so none is refused for it.
//   - Selectors: the compiler always programs action selectors with members
//     and groups, which every target takes; it never writes one-shot action
//     sets, so Capabilities.OneShotSelectors has nothing to switch.
//   - Budgets: CheckBudget counts a compile's entries against the P4Info's
//     sizes.

// portCapabilities are the capabilities the compiler checks ports against:
// the pipeline's own, from its P4Info. A P4Info without controller headers
// (a test's) says the width by to_local_vm's port parameter, and has no CPU
// port.
func portCapabilities(s *p4rt.Schema) (*p4rt.Capabilities, error) {
	caps, err := p4rt.FromP4Info(s.P4Info())
	if err == nil {
		if caps.PortTranslation != "" {
			caps.HasCPUPort = false
		}
		return caps, nil
	}
	a, aerr := s.Action(aToLocalVM)
	if aerr != nil {
		return nil, fmt.Errorf("%w (and %v)", err, aerr)
	}
	for _, p := range a.GetParams() {
		if p.GetName() == "port" {
			return &p4rt.Capabilities{PortBits: p.GetBitwidth()}, nil
		}
	}
	return nil, fmt.Errorf("%w (and %s has no port parameter)", err, aToLocalVM)
}

// checkPorts checks every port of the view against the pipeline's
// capabilities: what no switch running it could be programmed with.
func (c *compiler) checkPorts() error {
	caps, err := portCapabilities(c.s)
	if err != nil {
		return err
	}
	for _, r := range c.v.Host.UnderlayRoutes {
		if err := caps.CheckPort(uint64(r.Port)); err != nil {
			return fmt.Errorf("%w: host %q: underlay route %v: %w", ErrBadView, c.v.Host.ID, r.Prefix, err)
		}
	}
	for _, e := range c.v.Local {
		if err := caps.CheckPort(uint64(e.Port)); err != nil {
			return fmt.Errorf("%w: local endpoint %q: %w", ErrBadView, e.ID, err)
		}
	}
	return nil
}

// CheckBudget checks the entities of a compile against the pipeline's table
// and action profile sizes (caps.CheckBudget): the entries of each table
// (a default entry is not one) and the members of each profile. It returns
// the *p4rt.BudgetError naming every table over its size, for a writer to
// refuse the compile with, or later to spill.
func CheckBudget(caps *p4rt.Capabilities, s *p4rt.Schema, es []*p4v1.Entity) error {
	entries, members := map[string]int{}, map[string]int{}
	for _, e := range es {
		switch x := e.GetEntity().(type) {
		case *p4v1.Entity_TableEntry:
			if x.TableEntry.GetIsDefaultAction() {
				continue
			}
			t, err := s.TableByID(x.TableEntry.GetTableId())
			if err != nil {
				return err
			}
			entries[t.GetPreamble().GetName()]++
		case *p4v1.Entity_ActionProfileMember:
			p, err := s.ActionProfileByID(x.ActionProfileMember.GetActionProfileId())
			if err != nil {
				return err
			}
			members[p.GetPreamble().GetName()]++
		}
	}
	return caps.CheckBudget(entries, members)
}
