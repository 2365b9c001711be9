module github.com/tcpscope/tcpscope

go 1.26.8

require (
	github.com/cilium/ebpf v0.22.0
	golang.org/x/sys v0.49.0
)

require github.com/mdlayher/netlink v1.7.3-0.20250113171957-fbb4dce95f42 // indirect

tool github.com/cilium/ebpf/cmd/bpf2go
