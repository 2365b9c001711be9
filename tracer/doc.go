// Package tracer owns the kernel side of tcpscope and the timeline model:
// it loads and attaches the BPF programs, reads their events, and rebuilds
// from them the story of every TCP connection, listener and TIME_WAIT
// destination. It renders nothing: names become text in package output.
//
// How an event travels, file by file:
//
//  1. bpf/tcpscope.bpf.c: a tracepoint handler fills a struct source and
//     calls begin_event() (namespace filter, tuple, port filter, ring
//     reservation, common fields), then fill_* helpers; the record is
//     struct event of bpf/event.h, generated for Go as bpfEvent by bpf2go
//     (gen.go, bpf_bpfel.go).
//  2. tracer.go: Open probes the kernel (features.go: which tracepoints and
//     variants exist, hookTable), sets the load-time filters, loads,
//     attaches; Tracer.Read takes one record off the ring buffer.
//  3. event.go: Decode turns it into an Event (boot-clock time to wall
//     time, addresses, Kind).
//  4. recorder.go: Recorder.Run reads events in a loop, hands each to the
//     builder, and does the periodic work (expiry, kernel samples, ticks).
//  5. builder.go: Builder.Add dispatches by Kind to state.go (state changes,
//     errors, retransmits), handshake.go (request sockets, SYN-ACKs, the
//     SYN_RECV measurement), resets.go (resets with or without a socket),
//     listeners.go (listeners, accept-queue samples, overflow drops);
//     peers.go links the two ends seen in different namespaces and
//     timewait_builder.go the TIME_WAIT each end infers.
//  6. lifecycle.go: a connection ends (or is evicted, or outlives the
//     recording: Finish); outcome.go concludes its outcome, flags and who
//     closed it, as pure functions of the record; emit hands it to
//     BuilderConfig.Emit.
//  7. capture/ composes all of the above into one recording
//     (capture.Run) and passes connections, listeners and events to its
//     Sinks; cmd/tcpscope/session.go is those sinks, and package output
//     writes the export (output/export.go) and draws the tables.
//
// The model's names (outcomes, flags, roles, item kinds, details) each
// have one table in model.go; kernel enums (states, reset and drop
// reasons) are named from the running kernel's BTF in names.go.
package tracer
