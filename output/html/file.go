package html

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"

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

// WriteFile writes the page to path whole or not at all: into a
// temporary file of the same directory, renamed into place once synced.
// Like an export it is readable by its owner only (it names hosts, ports
// and processes), and handed to owner when set (the user behind sudo).
func WriteFile(path string, owner output.Owner, render func(io.Writer) error) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return fmt.Errorf("creating the HTML report: %w", err)
	}
	done := false
	defer func() {
		if !done {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	w := bufio.NewWriterSize(f, 1<<20)
	if err := render(w); err != nil {
		return err
	}
	if err := w.Flush(); err != nil {
		return fmt.Errorf("writing the HTML report: %w", err)
	}
	if owner.Set {
		if err := f.Chown(owner.UID, owner.GID); err != nil {
			return fmt.Errorf("handing the HTML report to uid %d: %w", owner.UID, err)
		}
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("syncing the HTML report: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("closing the HTML report: %w", err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		os.Remove(f.Name())
		done = true
		return fmt.Errorf("renaming the HTML report into place: %w", err)
	}
	done = true
	return nil
}
