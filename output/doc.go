// Package output turns what the tracer package built (events,
// connections, listeners, statistics) into what a user reads, and keeps
// recordings in files.
//
// Pure (no I/O but writing to the io.Writer given, no state kept between
// calls; times in text are shown in the local time zone):
//   - events.go: the event stream, as aligned text lines and JSON lines;
//     TallyLine, RecursionLine.
//   - summary.go: the line printed for a flagged connection (FlaggedLine,
//     Details, Lifetime), SummaryTables and the timeline of one connection
//     (TimelineTable); listeners.go, timewait.go, counters.go, check.go and
//     legend.go: the tables of listeners, TIME_WAIT pressure, kernel
//     counters, `tcpscope check` and the demo's legend; table.go draws them.
//   - live.go: the live panel and status line; its Collapser is the one
//     renderer with state (repeats counted per time window), still no I/O.
//   - records.go: the export's records, each declared once; export.go,
//     listeners.go, timewait.go, counters.go and jsonw.go append them to a
//     byte slice without reflection (AppendConnectionJSON and friends).
//   - merged.go: the records of a merged file (tcpscope merge) and
//     MergedFrom, which puts merge.Join's result in their form;
//     mergedtables.go renders them (MergedTables).
//
// I/O:
//   - export.go's Export and exportfile.go write an export: open or create
//     the file without following links, check its owner, lock it (flock),
//     restrict it to 0600 and hand it to the sudo user, buffer and write
//     whole lines (a .jsonl.zst: each write one zstd frame), sync, and
//     rename a .json into place at Close; lockHolder reads /proc/locks,
//     SudoOwner the effective uid.
//   - read.go reads an export back (ReadExport opens the file;
//     ReadExportFrom reads any io.Reader once, front to back; with
//     ReadOptions.Connection it hands each connection on instead of
//     keeping them); compressed.go decompresses a .jsonl.zst, told by its
//     magic bytes, up to a cut; fastread.go, fastfields.go, scanner.go and
//     skip.go decode tcpscope's own connection lines without reflection
//     (pure).
//   - mergedio.go writes a merged file to an io.Writer (WriteMerged) and
//     reads one back (IsMerged, ReadMerged open the file).
//   - validate.go reads an export (or a merged file) and checks it against the JSON Schema
//     embedded by schema.go (schema/export.schema.json).
package output
