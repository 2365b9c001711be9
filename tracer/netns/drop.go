package netns

import (
	"encoding/binary"
	"fmt"
	"sync/atomic"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// TCP header flag bits (byte 13 of the header).
const (
	FlagFIN uint8 = 0x01
	FlagSYN uint8 = 0x02
	FlagRST uint8 = 0x04
	FlagPSH uint8 = 0x08
	FlagACK uint8 = 0x10
)

// Drop describes TCP segments to drop inside a namespace with nftables.
// Zero fields match anything.
type Drop struct {
	SrcPort uint16
	DstPort uint16
	// Segments whose flags, masked with FlagMask, equal Flags.
	FlagMask uint8
	Flags    uint8
	// Input drops on the input hook instead of output. On loopback every
	// packet crosses both.
	Input bool
	// Every > 1 drops only one matching segment in Every: the first, then
	// every Every-th (an incrementing nftables numgen counter).
	Every uint32
}

var tableSeq atomic.Uint32

// rule is the nftables expression list that drops what d matches.
func (d Drop) rule() []expr.Any {
	exprs := []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_TCP}},
	}
	port := func(offset uint32, p uint16) {
		exprs = append(exprs,
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: offset, Len: 2},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binary.BigEndian.AppendUint16(nil, p)})
	}
	if d.SrcPort != 0 {
		port(0, d.SrcPort)
	}
	if d.DstPort != 0 {
		port(2, d.DstPort)
	}
	if d.FlagMask != 0 {
		exprs = append(exprs,
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 13, Len: 1},
			&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 1, Mask: []byte{d.FlagMask}, Xor: []byte{0}},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{d.Flags}})
	}
	if d.Every > 1 {
		exprs = append(exprs,
			&expr.Numgen{Register: 1, Modulus: d.Every, Type: unix.NFT_NG_INCREMENTAL},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binary.NativeEndian.AppendUint32(nil, 0)})
	}
	return append(exprs, &expr.Verdict{Kind: expr.VerdictDrop})
}

// AddDrop installs the rule in its own nftables table in the namespace and
// returns a function that removes it. The host's ruleset is never touched:
// the netlink socket is opened inside the namespace.
func (n *NS) AddDrop(d Drop) (remove func() error, err error) {
	conn, err := nftables.New(nftables.WithNetNSFd(n.fd))
	if err != nil {
		return nil, fmt.Errorf("opening nftables in namespace: %w", err)
	}
	name := fmt.Sprintf("tcpscope_drop_%d", tableSeq.Add(1))
	table := conn.AddTable(&nftables.Table{Family: nftables.TableFamilyINet, Name: name})
	hook := nftables.ChainHookOutput
	if d.Input {
		hook = nftables.ChainHookInput
	}
	accept := nftables.ChainPolicyAccept
	chain := conn.AddChain(&nftables.Chain{
		Name: "drop", Table: table, Type: nftables.ChainTypeFilter,
		Hooknum: hook, Priority: nftables.ChainPriorityFilter, Policy: &accept,
	})
	conn.AddRule(&nftables.Rule{Table: table, Chain: chain, Exprs: d.rule()})
	if err := conn.Flush(); err != nil {
		return nil, fmt.Errorf("installing nftables drop rule: %w", err)
	}
	removed := false
	return func() error {
		if removed {
			return nil
		}
		removed = true
		c, err := nftables.New(nftables.WithNetNSFd(n.fd))
		if err != nil {
			return fmt.Errorf("opening nftables in namespace: %w", err)
		}
		c.DelTable(table)
		if err := c.Flush(); err != nil {
			return fmt.Errorf("removing nftables drop rule: %w", err)
		}
		return nil
	}, nil
}
