package findings

// Sysctl is one setting's value in one network namespace, read at the end
// of a recording.
type Sysctl struct {
	NetNS uint32
	Name  string
	Value string // as /proc/sys shows it, fields joined by one space
}

// SysctlNames are the per-namespace settings a recording reads in each
// namespace that holds a traced listener, a TIME_WAIT destination, a
// connect that found no local port or one that timed out: the values
// findings quote.
var SysctlNames = []string{
	SomaxConn,
	MaxSynBacklog,
	Syncookies,
	AbortOnOverflow,
	LocalPortRange,
	TwReuse,
	SynRetries,
	SynAckRetries,
}

// The settings findings quote.
const (
	SomaxConn       = "net.core.somaxconn"
	MaxSynBacklog   = "net.ipv4.tcp_max_syn_backlog"
	Syncookies      = "net.ipv4.tcp_syncookies"
	AbortOnOverflow = "net.ipv4.tcp_abort_on_overflow"
	LocalPortRange  = "net.ipv4.ip_local_port_range"
	TwReuse         = "net.ipv4.tcp_tw_reuse"
	SynRetries      = "net.ipv4.tcp_syn_retries"
	SynAckRetries   = "net.ipv4.tcp_synack_retries"
)
