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

// writePerfettoFile writes the Perfetto trace of an export to path (0600,
// as exports: it names addresses and processes); a trace that could not
// be written whole is removed.
func writePerfettoFile(path string, read func(output.ReadOptions) (*output.Recording, error), keep func(*tracer.Connection) bool) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("creating the Perfetto trace: %w", err)
	}
	err = output.PerfettoFromExport(f, read, keep)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return fmt.Errorf("writing the Perfetto trace %s: %w", path, err)
	}
	return nil
}
