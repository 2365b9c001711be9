package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/tcpscope/tcpscope/output"
	"github.com/tcpscope/tcpscope/tracer"
	"github.com/tcpscope/tcpscope/tracer/netns"
	"github.com/tcpscope/tcpscope/tracer/nettest"
)

// TestHTMLReportInBrowser records resets, refusals and clean connections
// with record --html, and checks the page in headless chromium as a user
// would: every flagged connection drawn, a click shows its timeline, each
// filter (flag, port, outcome, peer, process) shows the connections of the
// export that match, no console error, nothing fetched. The screenshot is
// kept as the test's artifact (make test: test-artifacts/).
func TestHTMLReportInBrowser(t *testing.T) {
	chromium := requireTool(t, "chromium", "chromium")
	ns := nettest.New(t)
	page := filepath.Join(t.TempDir(), "report.html")
	r := startRecord(t, ns, "run.jsonl", "--html", page)
	resetsAndRefusals(t, ns)
	r.waitConnections(t, 14, 30*time.Second)
	rec := r.stop(t)
	if !strings.Contains(r.stderr.String(), "wrote the HTML report to "+page) {
		t.Errorf("record --html did not say where the page is: %s", r.stderr.String())
	}
	// report --html renders the same page from the export.
	again := filepath.Join(t.TempDir(), "again.html")
	if _, stderr, code := report(t, nil, r.path, "--html", again); code != 0 {
		t.Fatalf("report --html: exit %d: %s", code, stderr)
	}
	a, errA := os.ReadFile(page)
	b, errB := os.ReadFile(again)
	if errA != nil || errB != nil || !bytes.Equal(a, b) {
		t.Errorf("record --html and report --html wrote different pages (%v, %v)", errA, errB)
	}
	checkInBrowser(t, chromium, page, rec)
}

// TestRunHTML: run --html writes the page at the end with the command line
// and its exit status, and exits with the command's status.
func TestRunHTML(t *testing.T) {
	nettest.RequirePrivileges(t)
	page := filepath.Join(t.TempDir(), "run.html")
	code, _, stderr := runTcpscope(t, nil, "run", "--linger", "0s", "--port", "9", "--html", page, "--", "sh", "-c", "exit 3")
	if code != 3 {
		t.Fatalf("exit status %d, want the command's 3: %s", code, stderr)
	}
	b, err := os.ReadFile(page)
	if err != nil {
		t.Fatalf("run --html: %v (%s)", err, stderr)
	}
	if !strings.Contains(string(b), `<code id="command">sh -c exit 3</code>, exit status <b id="exit-status">3</b>`) {
		t.Errorf("the page lacks the command line and its exit status")
	}
	if strings.Contains(stderr, "wrote 0 connections") {
		t.Errorf("the temporary export was announced: %s", stderr)
	}
}

// resetsAndRefusals makes flagged connections of three kinds, and clean
// ones: a server that aborts with SO_LINGER 0, connects to a port nothing
// listens on, and a server whose clients close first.
func resetsAndRefusals(t *testing.T, ns *netns.NS) {
	t.Helper()
	addr, _ := startServer(t, ns, "tcp4", "127.0.0.1:0", "linger0", 3)
	for range 3 {
		c, err := dialNS(t, ns, "tcp4", addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		c.Write([]byte("GET / HTTP/1.0\r\n\r\n"))
		io.Copy(io.Discard, c) // until the server's reset
		c.Close()
	}
	for range 2 {
		if _, err := dialNS(t, ns, "tcp4", "127.0.0.1:9", 5*time.Second); err == nil {
			t.Fatal("connect to port 9 succeeded")
		}
	}
	clean, _ := startServer(t, ns, "tcp4", "127.0.0.1:0", "client-closes", 2)
	dialClose(t, ns, clean, 2)
}

// pageEvents is what the page did that the test must see: console
// messages of level error, exceptions and every URL requested.
type pageEvents struct {
	mu       sync.Mutex
	errors   []string
	requests []string
}

func (p *pageEvents) listen(ev any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch e := ev.(type) {
	case *runtime.EventConsoleAPICalled:
		if e.Type == runtime.ConsoleAPICalledTypeError || e.Type == runtime.ConsoleAPICalledTypeAssert {
			p.errors = append(p.errors, fmt.Sprintf("console.%s: %d args", e.Type, len(e.Args)))
		}
	case *runtime.EventExceptionThrown:
		p.errors = append(p.errors, "exception: "+e.ExceptionDetails.Text+" "+exceptionText(e.ExceptionDetails))
	case *log.EventEntryAdded:
		if e.Entry.Level == log.EntryLevelError {
			p.errors = append(p.errors, "log: "+e.Entry.Text)
		}
	case *network.EventRequestWillBeSent:
		p.requests = append(p.requests, e.Request.URL)
	}
}

func exceptionText(d *runtime.ExceptionDetails) string {
	if d.Exception != nil {
		return d.Exception.Description
	}
	return ""
}

// browser starts headless chromium for the test; every step must finish
// within its context's deadline (a loaded 2-CPU machine is slow to start
// a browser, so it is generous).
func browser(t *testing.T, chromium string, events *pageEvents) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(chromium), chromedp.NoSandbox,
		chromedp.DisableGPU, chromedp.WindowSize(1280, 1000), chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.Flag("no-first-run", true))
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	actx, acancel := chromedp.NewExecAllocator(ctx, opts...)
	t.Cleanup(acancel)
	bctx, bcancel := chromedp.NewContext(actx)
	t.Cleanup(bcancel)
	if err := chromedp.Listen(bctx, events.listen); err != nil {
		t.Fatalf("starting chromium: %v", err)
	}
	for _, enable := range []func() error{
		func() error { _, err := chromedp.Call(bctx, network.Enable, network.EnableParams{}); return err },
		func() error { _, err := chromedp.Call(bctx, log.Enable, cdp.Empty{}); return err },
		func() error { _, err := chromedp.Call(bctx, runtime.Enable, cdp.Empty{}); return err },
	} {
		if err := enable(); err != nil {
			t.Fatalf("enabling chromium's events: %v", err)
		}
	}
	return bctx
}

func evalInt(t *testing.T, ctx context.Context, js string) int {
	t.Helper()
	n, err := chromedp.Run(ctx, chromedp.Evaluate[int](js))
	if err != nil {
		t.Fatalf("evaluating %s: %v", js, err)
	}
	return n
}

// visible counts the flagged rows a user sees.
const visible = `Array.from(document.querySelectorAll("#rows .conn.flagged")).filter(e => e.offsetParent !== null).length`

func checkInBrowser(t *testing.T, chromium, page string, rec *output.Recording) {
	events := &pageEvents{}
	ctx := browser(t, chromium, events)
	pageURL := (&url.URL{Scheme: "file", Path: page}).String()
	if err := chromedp.Do(ctx, chromedp.Navigate(pageURL), chromedp.WaitVisible(chromedp.CSS("#rows"))); err != nil {
		t.Fatalf("loading the page: %v", err)
	}
	flagged, byFlag := 0, map[tracer.Flag]int{}
	for i := range rec.Connections {
		if c := &rec.Connections[i]; c.Flagged() {
			flagged++
			for f := range c.Flags.All() {
				byFlag[f]++
			}
		}
	}
	if byFlag[tracer.FlagRefused] == 0 || byFlag[tracer.FlagResetSent] == 0 {
		t.Fatalf("the recording lacks refusals or resets: %v", byFlag)
	}
	if got := evalInt(t, ctx, visible); got != flagged {
		t.Errorf("%d flagged connections drawn, the export has %d", got, flagged)
	}
	checkTimelineClick(t, ctx, rec)
	checkFilter(t, ctx, byFlag[tracer.FlagRefused], flagged)
	checkPortFilter(t, ctx, rec, flagged)
	checkOtherFilters(t, ctx, rec, flagged)
	shot, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	dir := t.ArtifactDir()
	if err := os.WriteFile(filepath.Join(dir, "report.png"), shot, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s (%d bytes)", filepath.Join(dir, "report.png"), len(shot))
	events.mu.Lock()
	defer events.mu.Unlock()
	if len(events.errors) > 0 {
		t.Errorf("console errors: %q", events.errors)
	}
	if len(events.requests) != 1 || events.requests[0] != pageURL {
		t.Errorf("requests %q, want only the page %s", events.requests, pageURL)
	}
}

// checkTimelineClick clicks the first flagged connection: its timeline
// table appears with a row per timeline item of the export's record.
func checkTimelineClick(t *testing.T, ctx context.Context, rec *output.Recording) {
	t.Helper()
	first := chromedp.CSS("#rows .conn.flagged")
	id, err := chromedp.Run(ctx, chromedp.AttributeValue(first, "data-id"))
	if err != nil || !id.Exists {
		t.Fatalf("reading the first row's id: %v", err)
	}
	if err := chromedp.Do(ctx, chromedp.Click(first), chromedp.WaitVisible(chromedp.CSS("#detail"))); err != nil {
		t.Fatalf("clicking a connection: %v", err)
	}
	n, _ := strconv.ParseUint(id.Value, 10, 64)
	i := slices.IndexFunc(rec.Connections, func(c tracer.Connection) bool { return c.ID == n })
	if i < 0 {
		t.Fatalf("row %s is no connection of the export", id.Value)
	}
	if got, want := evalInt(t, ctx, `document.querySelectorAll("#detail-table tbody tr").length`), len(rec.Connections[i].Timeline); got != want || want == 0 {
		t.Errorf("connection %d: the timeline shows %d rows, the export has %d items", n, got, want)
	}
	head, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("#detail-head")))
	if err != nil || !strings.Contains(head, "connection "+id.Value+":") {
		t.Errorf("timeline heading %q (%v), want connection %s", head, err, id.Value)
	}
}

// checkFilter picks the flag refused as a user does: only the refused
// connections stay, and picking "any" again brings all back.
func checkFilter(t *testing.T, ctx context.Context, refused, flagged int) {
	t.Helper()
	pick := func(v string) {
		t.Helper()
		js := fmt.Sprintf(`(() => { const s = document.getElementById("f-flag"); s.value = %q; s.dispatchEvent(new Event("change")); return s.selectedIndex; })()`, v)
		if idx := evalInt(t, ctx, js); v != "" && idx <= 0 {
			t.Fatalf("the flag filter has no option %q", v)
		}
	}
	pick("refused")
	if got := evalInt(t, ctx, visible); got != refused {
		t.Errorf("filtered on refused: %d connections shown, the export has %d", got, refused)
	}
	shown, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("#shown")))
	if err != nil || !strings.HasPrefix(shown, fmt.Sprintf("%d of %d", refused, flagged)) {
		t.Errorf("count line %q (%v), want %d of %d", shown, err, refused, flagged)
	}
	pick("")
	if got := evalInt(t, ctx, visible); got != flagged {
		t.Errorf("filter cleared: %d connections shown, want %d", got, flagged)
	}
}

// checkPortFilter types the refused port into the port box, key by key as
// a user does: only the connections to or from that port stay.
func checkPortFilter(t *testing.T, ctx context.Context, rec *output.Recording, flagged int) {
	t.Helper()
	want := 0
	for i := range rec.Connections {
		if c := &rec.Connections[i]; c.Flagged() && (c.Local.Port() == 9 || c.Remote.Port() == 9) {
			want++
		}
	}
	if err := chromedp.Do(ctx, chromedp.SendKeys(chromedp.CSS("#f-port"), "9")); err != nil {
		t.Fatalf("typing a port: %v", err)
	}
	if got := evalInt(t, ctx, visible); got != want || want == 0 {
		t.Errorf("port 9 typed: %d connections shown, the export has %d", got, want)
	}
	if err := chromedp.Do(ctx, chromedp.SendKeys(chromedp.CSS("#f-port"), "\b")); err != nil {
		t.Fatalf("clearing the port: %v", err)
	}
	if got := evalInt(t, ctx, visible); got != flagged {
		t.Errorf("port cleared: %d connections shown, want %d", got, flagged)
	}
}

// checkOtherFilters sets the outcome, peer and process filters one at a
// time as a user does: the rows shown are the flagged connections of the
// export that match, and clearing the filter brings all back.
func checkOtherFilters(t *testing.T, ctx context.Context, rec *output.Recording, flagged int) {
	t.Helper()
	var server *tracer.Connection // a reset server, owned by the test's server process
	for i := range rec.Connections {
		if c := &rec.Connections[i]; c.Flagged() && c.Role == tracer.RoleServer && c.PID != 0 {
			server = c
			break
		}
	}
	if server == nil {
		t.Fatal("no flagged server connection with an owner in the export")
	}
	proc := server.Comm + "/" + strconv.FormatUint(uint64(server.PID), 10)
	count := func(match func(c *tracer.Connection) bool) int {
		n := 0
		for i := range rec.Connections {
			if c := &rec.Connections[i]; c.Flagged() && match(c) {
				n++
			}
		}
		return n
	}
	for _, tc := range []struct {
		id, value string
		want      int
	}{
		{"f-outcome", "refused", count(func(c *tracer.Connection) bool { return c.Outcome == tracer.OutcomeRefused })},
		{"f-outcome", "reset", count(func(c *tracer.Connection) bool { return c.Outcome == tracer.OutcomeReset })},
		{"f-peer", "127.0.0.1", count(func(c *tracer.Connection) bool { return strings.Contains(c.Remote.Addr().String(), "127.0.0.1") })},
		{"f-peer", "10.99.", 0},
		{"f-process", proc, count(func(c *tracer.Connection) bool {
			return (c.Comm != "" || c.PID != 0) && strings.Contains(c.Comm+"/"+strconv.FormatUint(uint64(c.PID), 10), proc)
		})},
	} {
		setFilter(t, ctx, tc.id, tc.value)
		if got := evalInt(t, ctx, visible); got != tc.want || (tc.want == 0) != strings.HasPrefix(tc.value, "10.99.") {
			t.Errorf("%s = %q: %d connections shown, the export has %d", tc.id, tc.value, got, tc.want)
		}
		if tc.want == flagged && tc.id != "f-peer" {
			t.Errorf("%s = %q matches every flagged connection: the check shows nothing", tc.id, tc.value)
		}
		setFilter(t, ctx, tc.id, "")
		if got := evalInt(t, ctx, visible); got != flagged {
			t.Errorf("%s cleared: %d connections shown, want %d", tc.id, got, flagged)
		}
	}
}

// setFilter sets a filter's value and says so as the browser would on a
// change.
func setFilter(t *testing.T, ctx context.Context, id, value string) {
	t.Helper()
	js := fmt.Sprintf(`(() => { const e = document.getElementById(%q); e.value = %q; e.dispatchEvent(new Event("change")); return e.value === %q ? 1 : 0; })()`, id, value, value)
	if evalInt(t, ctx, js) != 1 {
		t.Fatalf("filter %s cannot take %q (no such option?)", id, value)
	}
}

// TestReportHTML: report --html writes the page of a saved recording, no
// root needed, with a row for every flagged connection, and says nothing
// on stdout.
func TestReportHTML(t *testing.T) {
	path, page := filepath.Join(t.TempDir(), "run.jsonl"), filepath.Join(t.TempDir(), "run.html")
	writeTestExport(t, path, 30) // every third connection refused
	stdout, stderr, code := report(t, nil, path, "--html", page)
	if code != 0 || stdout != "" {
		t.Fatalf("report --html: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	b, err := os.ReadFile(page)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Count(string(b), `<div class="conn flagged"`); got != 10 {
		t.Errorf("%d flagged rows, the export has 10", got)
	}
	st, err := os.Stat(page)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("page mode %v, want 0600 like an export", st.Mode().Perm())
	}
}
