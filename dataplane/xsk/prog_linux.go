//go:build linux

package xsk

import (
	"fmt"

	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/btf"
)

// xdpPass is XDP_PASS: bpf_redirect_map returns the low bits of its flags
// when the key has no socket.
const xdpPass = 2

// redirectProgram is the XDP program: redirect the frame to the socket in
// the XSKMAP (fd xmap) at the frame's receive queue, or pass it to the host
// stack when there is none. Built from instructions: there is no C compiler
// for BPF where the switch is built.
//
// With vlanKfunc (the BTF id of the kernel's bpf_xdp_metadata_rx_vlan_tag,
// 0 for none) it first puts back a VLAN tag the driver holds in metadata
// (a NIC's VLAN receive offload; on veth, a sender's tx-vlan-offload), as
// the afpacket ports do from PACKET_AUXDATA: 4 bytes of headroom, the MAC
// addresses moved down, the tag after them. The program must then be bound
// to the interface (the kernel resolves the kfunc to the driver's).
func redirectProgram(xmap int, vlanKfunc btf.TypeID) asm.Instructions {
	const ctx = asm.R6
	insns := asm.Instructions{asm.Mov.Reg(ctx, asm.R1)}
	if vlanKfunc != 0 {
		insns = append(insns,
			// fp-8: __be16 vlan_proto; fp-4: u16 vlan_tci; zeroed, as
			// the verifier wants the stack the kfunc writes initialised.
			asm.StoreImm(asm.RFP, -8, 0, asm.Word),
			asm.StoreImm(asm.RFP, -4, 0, asm.Word),
			asm.Mov.Reg(asm.R2, asm.RFP),
			asm.Add.Imm(asm.R2, -8),
			asm.Mov.Reg(asm.R3, asm.RFP),
			asm.Add.Imm(asm.R3, -4),
			asm.Instruction{OpCode: asm.OpCode(asm.JumpClass).SetJumpOp(asm.Call), Src: asm.PseudoKfuncCall, Constant: int64(vlanKfunc)},
			asm.JNE.Imm(asm.R0, 0, "redirect"), // no tag (or no support)
			asm.Mov.Reg(asm.R1, ctx),
			asm.Mov.Imm(asm.R2, -4),
			asm.FnXdpAdjustHead.Call(),
			asm.JNE.Imm(asm.R0, 0, "redirect"),    // no headroom: as it is
			asm.LoadMem(asm.R2, ctx, 0, asm.Word), // data
			asm.LoadMem(asm.R3, ctx, 4, asm.Word), // data_end
			asm.Mov.Reg(asm.R4, asm.R2),
			asm.Add.Imm(asm.R4, 18),
			asm.JGT.Reg(asm.R4, asm.R3, "redirect"),
			asm.LoadMem(asm.R5, asm.R2, 4, asm.DWord),
			asm.StoreMem(asm.R2, 0, asm.R5, asm.DWord),
			asm.LoadMem(asm.R5, asm.R2, 12, asm.Word),
			asm.StoreMem(asm.R2, 8, asm.R5, asm.Word),
			asm.LoadMem(asm.R5, asm.RFP, -8, asm.Half), // network order already
			asm.StoreMem(asm.R2, 12, asm.R5, asm.Half),
			asm.LoadMem(asm.R5, asm.RFP, -4, asm.Half),
			asm.HostTo(asm.BE, asm.R5, asm.Half),
			asm.StoreMem(asm.R2, 14, asm.R5, asm.Half),
		)
	}
	return append(insns,
		// r2 = ctx->rx_queue_index (struct xdp_md: data, data_end,
		// data_meta, ingress_ifindex, rx_queue_index).
		asm.LoadMem(asm.R2, ctx, 16, asm.Word).WithSymbol("redirect"),
		asm.LoadMapPtr(asm.R1, xmap),
		asm.Mov.Imm(asm.R3, xdpPass),
		asm.FnRedirectMap.Call(),
		asm.Return(),
	)
}

// vlanTagKfunc is the BTF id of bpf_xdp_metadata_rx_vlan_tag in the
// running kernel (Linux 6.8 and later).
func vlanTagKfunc() (btf.TypeID, error) {
	spec, err := btf.LoadKernelSpec()
	if err != nil {
		return 0, fmt.Errorf("kernel BTF: %w", err)
	}
	var fn *btf.Func
	if err := spec.TypeByName("bpf_xdp_metadata_rx_vlan_tag", &fn); err != nil {
		return 0, err
	}
	return spec.TypeID(fn)
}
