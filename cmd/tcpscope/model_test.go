package main

import "github.com/tcpscope/tcpscope/tracer"

// reasonName is the reset reason of an item as an export shows it; "" when
// the item has none.
func reasonName(it tracer.Item) string {
	if !it.HasReason {
		return ""
	}
	return it.Reason.String()
}
