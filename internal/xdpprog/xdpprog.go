//go:build linux

// Package xdpprog builds small XDP programs from eBPF instructions (there
// is no C compiler for BPF on the build machines, and the programs are a
// few dozen instructions) and attaches them to an interface.
//
// Sink is the one the forwarding benchmark uses: a receiver that counts
// and drops at the driver, as cheap as a receiver can be, standing in for
// the machine at the other end of a real switch's cable.
package xdpprog

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
)

// Return codes of an XDP program (enum xdp_action).
const (
	XDPAborted  = 0
	XDPDrop     = 1
	XDPPass     = 2
	XDPTx       = 3
	XDPRedirect = 4
)

// Offsets of struct xdp_md's fields, as a program reads them from its
// context (R1).
const (
	MDData         = 0
	MDDataEnd      = 4
	MDDataMeta     = 8
	MDIngressIface = 12
	MDRxQueueIndex = 16
)

// Mode is how a program is attached.
type Mode int

const (
	// Native runs the program in the driver's receive path (veth has one).
	Native Mode = iota
	// Generic runs it on the socket buffer the stack built, on any
	// interface.
	Generic
)

func (m Mode) flags() link.XDPAttachFlags {
	if m == Generic {
		return link.XDPGenericMode
	}
	return link.XDPDriverMode
}

func (m Mode) String() string {
	if m == Generic {
		return "generic"
	}
	return "native"
}

// Attach loads insns as an XDP program and attaches it to the interface
// with index ifindex in the calling thread's network namespace. The
// program stays attached until the returned link is closed.
func Attach(name string, insns asm.Instructions, ifindex int, mode Mode) (*ebpf.Program, link.Link, error) {
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name:         name,
		Type:         ebpf.XDP,
		License:      "GPL",
		Instructions: insns,
	})
	if err != nil {
		return nil, nil, fmt.Errorf("xdpprog: load %s: %w", name, err)
	}
	l, err := link.AttachXDP(link.XDPOptions{Program: prog, Interface: ifindex, Flags: mode.flags()})
	if err != nil {
		prog.Close()
		return nil, nil, fmt.Errorf("xdpprog: attach %s to ifindex %d (%s): %w", name, ifindex, mode, err)
	}
	return prog, l, nil
}

// Sink counts and drops every frame an interface receives. It keeps two
// per-CPU counters: every frame, and the frames of the length last given
// to SetLength (0: none), so a benchmark can count its own frames apart
// from the stray neighbour discovery of a namespace that just came up.
// SetPass lets the frames on to the stack instead, so that another counter
// (a packet socket) can check this one.
type Sink struct {
	counts *ebpf.Map // per-CPU array: [0] frames of the length, [1] all frames
	config *ebpf.Map // array: [0] the length to count, [1] pass (not 0) or drop
	prog   *ebpf.Program
	link   link.Link
}

// Sink counter and configuration slots.
const (
	slotLength = 0
	slotAll    = 1

	cfgLength = 0
	cfgPass   = 1
)

// sinkInsns is the sink program: the frame's length is data_end - data;
// the all-frames counter always goes up, the length counter when the
// length matches; the frame is dropped unless pass is set.
func sinkInsns(counts, config *ebpf.Map) asm.Instructions {
	bump := func(slot int32, label string) asm.Instructions {
		return asm.Instructions{
			asm.StoreImm(asm.R10, -4, int64(slot), asm.Word),
			asm.LoadMapPtr(asm.R1, counts.FD()),
			asm.Mov.Reg(asm.R2, asm.R10),
			asm.Add.Imm(asm.R2, -4),
			asm.FnMapLookupElem.Call(),
			asm.JEq.Imm(asm.R0, 0, label),
			asm.LoadMem(asm.R1, asm.R0, 0, asm.DWord),
			asm.Add.Imm(asm.R1, 1),
			asm.StoreMem(asm.R0, 0, asm.R1, asm.DWord),
		}
	}
	var p asm.Instructions
	p = append(p,
		asm.LoadMem(asm.R2, asm.R1, MDData, asm.Word),
		asm.LoadMem(asm.R7, asm.R1, MDDataEnd, asm.Word),
		asm.Sub.Reg(asm.R7, asm.R2), // R7: the frame's length, kept across calls
	)
	p = append(p, bump(slotAll, "length")...)
	p = append(p,
		asm.StoreImm(asm.R10, -4, cfgLength, asm.Word).WithSymbol("length"),
		asm.LoadMapPtr(asm.R1, config.FD()),
		asm.Mov.Reg(asm.R2, asm.R10),
		asm.Add.Imm(asm.R2, -4),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, "verdict"),
		asm.LoadMem(asm.R1, asm.R0, 0, asm.Word),
		asm.JNE.Reg(asm.R1, asm.R7, "verdict"),
	)
	p = append(p, bump(slotLength, "verdict")...)
	p = append(p,
		asm.StoreImm(asm.R10, -4, cfgPass, asm.Word).WithSymbol("verdict"),
		asm.LoadMapPtr(asm.R1, config.FD()),
		asm.Mov.Reg(asm.R2, asm.R10),
		asm.Add.Imm(asm.R2, -4),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, "drop"),
		asm.LoadMem(asm.R1, asm.R0, 0, asm.Word),
		asm.JEq.Imm(asm.R1, 0, "drop"),
		asm.Mov.Imm(asm.R0, XDPPass),
		asm.Return(),
		asm.Mov.Imm(asm.R0, XDPDrop).WithSymbol("drop"),
		asm.Return(),
	)
	return p
}

// NewSink attaches a Sink to the interface with index ifindex of the
// calling thread's network namespace.
func NewSink(ifindex int, mode Mode) (*Sink, error) {
	s := &Sink{}
	var err error
	s.counts, err = ebpf.NewMap(&ebpf.MapSpec{Name: "sink_counts", Type: ebpf.PerCPUArray, KeySize: 4, ValueSize: 8, MaxEntries: 2})
	if err != nil {
		return nil, fmt.Errorf("xdpprog: sink counters: %w", err)
	}
	s.config, err = ebpf.NewMap(&ebpf.MapSpec{Name: "sink_config", Type: ebpf.Array, KeySize: 4, ValueSize: 4, MaxEntries: 2})
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("xdpprog: sink configuration: %w", err)
	}
	s.prog, s.link, err = Attach("p4mesh_sink", sinkInsns(s.counts, s.config), ifindex, mode)
	if err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// SetLength makes the sink count frames of n bytes (from the Ethernet
// header on, without FCS) in Frames.
func (s *Sink) SetLength(n int) error {
	if n < 0 || n > 1<<16 {
		return fmt.Errorf("xdpprog: sink length %d out of range", n)
	}
	return s.config.Put(uint32(cfgLength), uint32(n))
}

// SetPass makes the sink let frames on to the stack (true) or drop them
// (false, the default); either way it counts them.
func (s *Sink) SetPass(pass bool) error {
	v := uint32(0)
	if pass {
		v = 1
	}
	return s.config.Put(uint32(cfgPass), v)
}

func (s *Sink) sum(slot uint32) (uint64, error) {
	var per []uint64
	if err := s.counts.Lookup(slot, &per); err != nil {
		return 0, fmt.Errorf("xdpprog: read sink counters: %w", err)
	}
	var t uint64
	for _, v := range per {
		t += v
	}
	return t, nil
}

// Frames is the number of frames of the SetLength length the sink has
// seen so far (dropped or passed), summed over CPUs.
func (s *Sink) Frames() (uint64, error) { return s.sum(slotLength) }

// All is the number of frames the sink has seen so far, of any length.
func (s *Sink) All() (uint64, error) { return s.sum(slotAll) }

// Close detaches the program and frees the maps.
func (s *Sink) Close() error {
	var errs []error
	if s.link != nil {
		errs = append(errs, s.link.Close())
	}
	if s.prog != nil {
		errs = append(errs, s.prog.Close())
	}
	for _, m := range []*ebpf.Map{s.counts, s.config} {
		if m != nil {
			errs = append(errs, m.Close())
		}
	}
	return errors.Join(errs...)
}
