package main

import (
	"bytes"
	"net"
	"os/exec"
	"strings"
	"testing"
)

// TestMetricsAddrInUse: a --metrics-addr whose port another program holds
// is bad input, refused before anything is traced (no root needed).
func TestMetricsAddrInUse(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	for _, cmdline := range [][]string{{"record"}, {"run", "--", "true"}} {
		args := append([]string{cmdline[0], "--metrics-addr", ln.Addr().String()}, cmdline[1:]...)
		var stderr bytes.Buffer
		cmd := exec.Command(binary, args...)
		cmd.Stderr = &stderr
		err := cmd.Run()
		ee, ok := err.(*exec.ExitError)
		if !ok || ee.ExitCode() != 2 || !strings.Contains(stderr.String(), "address already in use") || strings.Contains(stderr.String(), "tracing (") {
			t.Errorf("tcpscope %s: %v, stderr %q; want exit status 2, address already in use, nothing traced", strings.Join(args, " "), err, stderr.String())
		}
	}
}
