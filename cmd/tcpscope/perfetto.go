package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/tcpscope/tcpscope/output"
	"github.com/tcpscope/tcpscope/tracer"
)

// reportFormatValue is report's --format: text, json (or an alias of
// one) or perfetto.
type reportFormatValue struct{ f *string }

func (v reportFormatValue) String() string { return *v.f }

func (v reportFormatValue) Set(s string) error {
	if strings.TrimSpace(s) == "perfetto" {
		*v.f = "perfetto"
		return nil
	}
	if err := (formatValue{v.f}).Set(s); err != nil {
		return errors.New("use text, json or perfetto")
	}
	return nil
}

func (reportFormatValue) Type() string { return "format" }

// exportReader reads the export named name (standard input for "-", held
// in memory: the trace reads it twice) with the options given.
func exportReader(name string, stdin io.Reader) (func(output.ReadOptions) (*output.Recording, error), error) {
	if name != "-" {
		return func(o output.ReadOptions) (*output.Recording, error) { return output.ReadExportWith(name, o) }, nil
	}
	data, err := io.ReadAll(stdin)
	if err != nil {
		return nil, fmt.Errorf("reading standard input: %w", err)
	}
	return func(o output.ReadOptions) (*output.Recording, error) {
		return output.ReadExportFrom(bytes.NewReader(data), "standard input", o)
	}, nil
}

// writePerfettoFile writes the Perfetto trace of an export to path whole
// or not at all, as the HTML report is: mode 0600 (it names addresses and
// processes), handed to the user behind sudo.
func writePerfettoFile(path string, read func(output.ReadOptions) (*output.Recording, error), keep func(*tracer.Connection) bool) error {
	err := output.WriteWhole(path, "the Perfetto trace", output.SudoOwner(os.Getenv), func(w io.Writer) error {
		return output.PerfettoFromExport(w, read, keep)
	})
	if err != nil {
		return fmt.Errorf("writing the Perfetto trace %s: %w", path, err)
	}
	return nil
}

// stickyWriter keeps the first error of its writes: it tells a failed
// write from a failed read when both come back as one error.
type stickyWriter struct {
	w   io.Writer
	err error
}

func (s *stickyWriter) Write(p []byte) (int, error) {
	if s.err != nil {
		return 0, s.err
	}
	n, err := s.w.Write(p)
	s.err = err
	return n, err
}
