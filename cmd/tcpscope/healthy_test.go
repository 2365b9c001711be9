package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tcpscope/tcpscope/output"
	"github.com/tcpscope/tcpscope/tracer"
	"github.com/tcpscope/tcpscope/tracer/netns"
	"github.com/tcpscope/tcpscope/tracer/nettest"
)

// requireTool returns the path of a program a test drives; it skips the
// test when the program is missing, and fails it under CI=true.
func requireTool(t *testing.T, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is not installed (apt-get install %s)", name, pkg)
		}
		t.Skipf("%s is not installed (apt-get install %s)", name, pkg)
	}
	return p
}

// nginxConf is a minimal nginx configuration whose files all live in dir.
// keepalive_requests is low so that wrk's keep-alive connections are
// closed by nginx and opened again: hundreds of connections in 2 s.
const nginxConf = `daemon off;
master_process on;
worker_processes 1;
user root root;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log;
events { worker_connections 256; }
http {
	access_log off;
	client_body_temp_path %[1]s/body;
	proxy_temp_path %[1]s/proxy;
	fastcgi_temp_path %[1]s/fastcgi;
	uwsgi_temp_path %[1]s/uwsgi;
	scgi_temp_path %[1]s/scgi;
	keepalive_requests 50;
	server {
		listen 127.0.0.1:%[2]d;
		location / { return 200 "hello\n"; }
	}
}
`

// startNginx runs nginx in ns on 127.0.0.1, with its configuration, pid
// file and logs in a temporary directory, and returns its address once it
// accepts connections. It is stopped at cleanup.
func startNginx(t *testing.T, ns *netns.NS, nginx string) string {
	t.Helper()
	// nginx takes no port 0: a port the namespace gives out is free there,
	// and nothing else runs in this private namespace to take it.
	ln := listenNS(t, ns, "tcp4", "127.0.0.1:0")
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	dir := t.TempDir()
	conf := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf(nginxConf, dir, port)), 0o644); err != nil {
		t.Fatal(err)
	}
	args, env := inNS(t, ns, nginx, "-p", dir, "-c", conf, "-e", filepath.Join(dir, "error.log"))
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = append(os.Environ(), env...)
	var stderr lockedBuffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGQUIT) // graceful stop
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
	})
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	for deadline := time.Now().Add(10 * time.Second); ; {
		select {
		case err := <-exited:
			log, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			t.Fatalf("nginx exited: %v\n%s\n%s", err, stderr.String(), log)
		default:
		}
		if c, err := dialNS(t, ns, "tcp4", addr, time.Second); err == nil {
			c.Close()
			return addr
		}
		if time.Now().After(deadline) {
			t.Fatalf("nginx does not accept on %s after 10s:\n%s", addr, stderr.String())
		}
		time.Sleep(20 * time.Millisecond) // polling a condition with a deadline
	}
}

// TestHealthyWrkNginx: wrk against a healthy nginx, both in a private
// namespace, recorded by tcpscope run: hundreds of connections, not one
// finding.
func TestHealthyWrkNginx(t *testing.T) {
	nettest.RequirePrivileges(t)
	wrk := requireTool(t, "wrk", "wrk")
	nginx := requireTool(t, "nginx", "nginx-light")
	ns := nettest.New(t)
	addr := startNginx(t, ns, nginx)
	path := filepath.Join(t.TempDir(), "wrk.jsonl")
	args, env := inNS(t, ns, wrk, "-d", "2s", "-c", "8", "-t", "2", "http://"+addr+"/")
	code, stdout, stderr := runTcpscope(t, env, append([]string{"run", "--netns", fmt.Sprint(ns.Inode), "-o", path, "--"}, args...)...)
	if code != 0 {
		t.Fatalf("tcpscope run -- wrk: exit %d\n%s\n%s", code, stdout, stderr)
	}
	m := regexp.MustCompile(`(\d+) requests in `).FindStringSubmatch(stdout)
	if m == nil {
		t.Fatalf("no wrk report in:\n%s", stdout)
	}
	if strings.Contains(stdout, "Non-2xx") || strings.Contains(stdout, "Socket errors") {
		t.Errorf("wrk saw errors:\n%s", stdout)
	}
	requests, _ := strconv.Atoi(m[1])
	rec, err := output.ReadExport(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := output.ValidateExport(path); err != nil {
		t.Fatal(err)
	}
	var clients int
	for _, c := range rec.Connections {
		if c.Role == tracer.RoleClient {
			clients++
		}
	}
	t.Logf("wrk: %d requests; tcpscope: %d connections, %d of them wrk's", requests, len(rec.Connections), clients)
	if clients < 200 {
		t.Errorf("%d client connections recorded for %d requests (keepalive_requests 50); want hundreds", clients, requests)
	}
	if fs := rec.Summary.Findings; len(fs) != 0 {
		t.Errorf("healthy wrk run against nginx, findings: %s", dumpJSON(fs))
	}
	if strings.Contains(stdout, "FINDINGS") {
		t.Errorf("the summary prints findings:\n%s", findingsSection(stdout))
	}
}
