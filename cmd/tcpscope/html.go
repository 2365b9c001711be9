package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/tcpscope/tcpscope/output"
	"github.com/tcpscope/tcpscope/output/html"
)

// htmlUsage is the help of --html on record, run and demo.
const htmlUsage = "at the end (Ctrl-C included), also write an offline HTML report of the recording to `FILE` (as tcpscope report FILE.jsonl --html FILE would)"

// htmlExport readies --html on a recording: the page is rendered from the
// export once it is complete, so a recording without -o writes one to a
// temporary file, removed by the returned function.
func htmlExport(opts *sessionOptions, page string) (func(), error) {
	if page == "" {
		return func() {}, nil
	}
	if err := checkHTMLPath(page); err != nil {
		return nil, err
	}
	if opts.output == "-" {
		return nil, usagef("--html reads the export back at the end: give -o a file, not -")
	}
	if opts.output != "" {
		return func() {}, nil
	}
	dir, err := os.MkdirTemp("", "tcpscope-html-")
	if err != nil {
		return nil, fmt.Errorf("creating a directory for the export --html reads: %w", err)
	}
	opts.output, opts.quietExport = filepath.Join(dir, "recording.jsonl"), true
	return func() { os.RemoveAll(dir) }, nil
}

// checkHTMLPath refuses, before anything is traced, a page that could not
// be written at the end.
func checkHTMLPath(page string) error {
	st, err := os.Stat(filepath.Dir(page))
	if err != nil || !st.IsDir() {
		return usagef("--html %s: its directory does not exist", page)
	}
	if st, err := os.Stat(page); err == nil && st.IsDir() {
		return usagef("--html %s is a directory", page)
	}
	return nil
}

// writeHTML renders the export at path into page and says so on stderr.
func writeHTML(stderr io.Writer, path, page string, opts html.Options) error {
	r, rec, err := html.Read(path, nil, false, opts)
	if err != nil {
		return fmt.Errorf("reading the export for --html: %w", err)
	}
	for _, w := range rec.Warnings(path) {
		fmt.Fprintf(stderr, "tcpscope: warning: %s\n", w)
	}
	if err := html.WriteFile(page, output.SudoOwner(os.Getenv), func(w io.Writer) error { return r.Write(w, rec) }); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "tcpscope: wrote the HTML report to %s\n", page)
	return nil
}

// commandStatus is the traced command's exit status as run returns it;
// ok is false when run failed otherwise.
func commandStatus(err error) (int, bool) {
	var ee exitError
	var ce exitCodeError
	switch {
	case err == nil:
		return 0, true
	case errors.As(err, &ee):
		return ee.code, true
	case errors.As(err, &ce):
		return ce.code, true
	}
	return 0, false
}
