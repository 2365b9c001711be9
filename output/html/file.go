package html

import (
	"io"

	"github.com/tcpscope/tcpscope/output"
)

// Read reads an export (name "-": in) a connection at a time into a new
// report, and returns it with the recording's other records. Timelines are
// decoded for every connection: any connection kept can show its own.
// strict is output.ReadOptions.Strict.
func Read(name string, in io.Reader, strict bool, opts Options) (*Report, *output.Recording, error) {
	r := New(opts)
	ro := output.ReadOptions{Connection: r.Connection, Strict: strict}
	var rec *output.Recording
	var err error
	if name == "-" {
		rec, err = output.ReadExportFrom(in, "standard input", ro)
	} else {
		rec, err = output.ReadExportWith(name, ro)
	}
	if err != nil {
		return nil, nil, err
	}
	return r, rec, nil
}

// WriteFile writes the page to path whole or not at all
// (output.WriteWhole): like an export it is readable by its owner only (it
// names hosts, ports and processes), and handed to owner when set (the
// user behind sudo).
func WriteFile(path string, owner output.Owner, render func(io.Writer) error) error {
	return output.WriteWhole(path, "the HTML report", owner, render)
}
