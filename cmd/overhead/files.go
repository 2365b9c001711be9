package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
)

var zstdMagic = []byte{0x28, 0xb5, 0x2f, 0xfd}

// exportSize is the size of tcpscope's export. A .zst name that a binary
// accepted but did not compress is not a figure for .zst.
func exportSize(p *proc, l *leg) error {
	f, err := os.Open(p.export)
	if err != nil {
		return fmt.Errorf("opening tcpscope's export: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("reading tcpscope's export: %w", err)
	}
	l.export = st.Size()
	if l.t.optional {
		head := make([]byte, 4)
		if _, err := io.ReadFull(f, head); err != nil || !bytes.Equal(head, zstdMagic) {
			l.export, l.exportNA = -1, "n/a: not zstd"
		}
	}
	return nil
}

// countLines counts a libbpf tool's output lines, less its header.
func countLines(path string) (uint64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, fmt.Errorf("opening tool output: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	var n uint64
	for first := true; sc.Scan(); first = false {
		if first && bytes.Contains(sc.Bytes(), []byte("COMM")) {
			continue // the header
		}
		n++
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("reading tool output: %w", err)
	}
	return n, nil
}
