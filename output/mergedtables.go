package output

import (
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/tcpscope/tcpscope/tracer"
)

// MergedTables renders a merged file: per host pair, the joined
// connections, the halves without partner and the clock offset; then each
// diagnosed pair and each diagnosed half alone.
func MergedTables(w io.Writer, m *Merged) error {
	fmt.Fprintf(w, "%d connections joined across %d exports; %d halves without partner\n", len(m.Pairs), len(m.Meta.Inputs), len(m.Unmatched))
	for _, table := range []func() error{
		func() error { return hostPairTable(w, m.HostPairs) },
		func() error { return diagnosedPairTable(w, m.Pairs) },
		func() error { return diagnosedHalfTable(w, m.Unmatched) },
	} {
		if err := table(); err != nil {
			return err
		}
	}
	return nil
}

func hostPairTable(w io.Writer, hps []HostPairRecord) error {
	var rows [][]string
	for _, h := range hps {
		rows = append(rows, []string{orNone(h.ClientHost), orNone(h.ServerHost), strconv.Itoa(h.Joined),
			strconv.Itoa(h.ClientsUnmatched), strconv.Itoa(h.ServersUnmatched), offsetText(h.OffsetUs, h.UncertaintyUs, h.Handshakes)})
	}
	return tableIfAny(w, []string{"CLIENT HOST", "SERVER HOST", "JOINED", "CLIENTS ALONE", "SERVERS ALONE", "CLOCK OFFSET (SERVER - CLIENT)"}, rows)
}

// orNone names the peer no export holds.
func orNone(host string) string {
	if host == "" {
		return "(not recorded)"
	}
	return host
}

// offsetText renders an offset ± its uncertainty.
func offsetText(off, unc *int64, handshakes int) string {
	if off == nil || unc == nil {
		return "unknown (no handshake seen by both ends)"
	}
	return fmt.Sprintf("%s ± %s (%d handshakes)", signedDuration(*off), Duration(*unc), handshakes)
}

func signedDuration(us int64) string {
	if us < 0 {
		return "-" + Duration(-us)
	}
	return "+" + Duration(us)
}

func diagnosedPairTable(w io.Writer, ps []MergedPair) error {
	var rows [][]string
	for i := range ps {
		p := &ps[i]
		if len(p.Diagnosis) == 0 {
			continue
		}
		rows = append(rows, []string{p.ClientHost + " -> " + p.ServerHost, tupleText(&p.Client),
			outcomeText(&p.Client) + " / " + outcomeText(&p.Server), strings.Join(p.Diagnosis, "; ")})
	}
	return tableIfAny(w, []string{"HOSTS", "CONNECTION (CLIENT -> SERVER)", "OUTCOME CLIENT / SERVER", "DIAGNOSIS"}, rows)
}

func diagnosedHalfTable(w io.Writer, hs []MergedHalf) error {
	var rows [][]string
	for i := range hs {
		h := &hs[i]
		if len(h.Diagnosis) == 0 {
			continue
		}
		rows = append(rows, []string{h.Host, h.Conn.Role.String(), tupleText(&h.Conn), outcomeText(&h.Conn), strings.Join(h.Diagnosis, "; ")})
	}
	return tableIfAny(w, []string{"HOST", "ROLE", "CONNECTION", "OUTCOME", "DIAGNOSIS (NO PARTNER)"}, rows)
}

// tupleText is a connection's tuple from the client's side.
func tupleText(c *tracer.Connection) string {
	if c.Role == tracer.RoleServer {
		return c.Remote.String() + " -> " + c.Local.String()
	}
	return c.Local.String() + " -> " + c.Remote.String()
}

func outcomeText(c *tracer.Connection) string {
	if c.Errno != 0 {
		return c.Outcome.String() + " (" + c.Errno.String() + ")"
	}
	return c.Outcome.String()
}
