// Package cgroups names the owner of a socket from its cgroup v2 id: the
// cgroup's path below the cgroup2 mount, and what the path says about who
// runs there (a container of a known runtime, a Kubernetes pod, a systemd
// service).
package cgroups

import (
	"fmt"
	"strings"
)

// Info is what a cgroup path tells. Path is relative to the cgroup2 mount
// and starts with "/" ("/" is the root); the rest is empty when the path
// has no known shape.
type Info struct {
	Path        string
	ContainerID string
	Runtime     string // Runtime* below
	PodUID      string // Kubernetes pod UID, with dashes
	Unit        string // innermost systemd service: "nginx.service"
}

// Container runtimes as Parse names them.
const (
	RuntimeDocker     = "docker"
	RuntimeContainerd = "containerd"
	RuntimeCRIO       = "cri-o"
	RuntimePodman     = "podman"
	// RuntimeCRI: a container of a Kubernetes pod whose cgroup name (the
	// cgroupfs driver: pod<uid>/<id>) does not say which runtime made it.
	RuntimeCRI = "cri"
)

// scopePrefixes are the systemd scope names runtimes give a container's
// cgroup: "<prefix><id>.scope".
var scopePrefixes = []struct{ prefix, runtime string }{
	{"docker-", RuntimeDocker},
	{"cri-containerd-", RuntimeContainerd},
	{"crio-", RuntimeCRIO},
	{"libpod-", RuntimePodman},
}

// Parse reads what a cgroup path tells: the innermost container id, the
// pod UID of an enclosing Kubernetes pod, the innermost systemd service.
// A runtime's monitor process (crio-conmon-, libpod-conmon-) is not a
// container.
func Parse(path string) Info {
	info := Info{Path: path}
	parts := strings.Split(strings.Trim(path, "/"), "/")
	for i, p := range parts {
		if uid, ok := podUID(p); ok {
			info.PodUID = uid
			if i+1 < len(parts) && isContainerID(parts[i+1]) {
				info.ContainerID, info.Runtime = parts[i+1], RuntimeCRI
			}
			continue
		}
		if id, rt, ok := scopeContainer(p); ok {
			info.ContainerID, info.Runtime = id, rt
			continue
		}
		// Podman's cgroupfs manager: <parent>/libpod-<id>, no .scope
		// (its monitor, libpod-conmon-<id>, is no id).
		if id, ok := strings.CutPrefix(p, "libpod-"); ok && isContainerID(id) {
			info.ContainerID, info.Runtime = id, RuntimePodman
			continue
		}
		if i > 0 && isContainerID(p) && (parts[i-1] == "docker" || parts[i-1] == "libpod_parent") {
			info.ContainerID, info.Runtime = p, RuntimeDocker
			if parts[i-1] == "libpod_parent" {
				info.Runtime = RuntimePodman
			}
			continue
		}
		if strings.HasSuffix(p, ".service") {
			info.Unit = p
		}
	}
	return info
}

// scopeContainer reads "docker-<id>.scope" and the like.
func scopeContainer(p string) (id, runtime string, ok bool) {
	name, ok := strings.CutSuffix(p, ".scope")
	if !ok {
		return "", "", false
	}
	for _, s := range scopePrefixes {
		if id, ok := strings.CutPrefix(name, s.prefix); ok && isContainerID(id) {
			return id, s.runtime, true
		}
	}
	return "", "", false
}

// podUID reads a pod's cgroup: "kubepods-burstable-pod<uid>.slice" (the
// systemd driver, dashes of the UID turned to underscores) or
// "pod<uid>" (cgroupfs).
func podUID(p string) (string, bool) {
	if name, ok := strings.CutSuffix(p, ".slice"); ok && strings.HasPrefix(name, "kubepods-") {
		_, uid, ok := strings.Cut(name[len("kubepods-"):], "pod")
		uid = strings.ReplaceAll(uid, "_", "-")
		return uid, ok && isUID(uid)
	}
	uid, ok := strings.CutPrefix(p, "pod")
	return uid, ok && isUID(uid)
}

// isUID reports whether s is a UUID: 8-4-4-4-12 hex digits.
func isUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		switch i {
		case 8, 13, 18, 23:
			if s[i] != '-' {
				return false
			}
		default:
			if !isHex(s[i]) {
				return false
			}
		}
	}
	return true
}

// isContainerID reports whether s is a container id as every runtime here
// writes it: 64 lowercase hex digits.
func isContainerID(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isHex(s[i]) {
			return false
		}
	}
	return true
}

func isHex(c byte) bool { return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' }

// Short is the container as tables show it: "docker:3f2a1b4c5d6e" (the
// first 12 digits, as docker ps shows them); "" when there is none.
func (i Info) Short() string {
	if i.ContainerID == "" {
		return ""
	}
	id := i.ContainerID
	if len(id) > 12 {
		id = id[:12]
	}
	return i.Runtime + ":" + id
}

// Under reports whether the cgroup is dir or below it ("/" holds every
// named cgroup). dir is a path below the cgroup2 mount; a trailing "/" is
// ignored.
func (i Info) Under(dir string) bool {
	if i.Path == "" {
		return false
	}
	dir = "/" + strings.Trim(dir, "/")
	if dir == "/" {
		return true
	}
	return i.Path == dir || strings.HasPrefix(i.Path, dir+"/")
}

// ContainerQuery selects containers by the start of their id, and by
// runtime when one is given ("docker:3f2a").
type ContainerQuery struct {
	Runtime string
	Prefix  string
}

// MinContainerPrefix is the fewest digits of a container id a query
// takes: fewer would match containers by chance.
const MinContainerPrefix = 4

// ParseContainerQuery reads "ID" or "RUNTIME:ID", ID being at least
// MinContainerPrefix hex digits of a container id.
func ParseContainerQuery(s string) (ContainerQuery, error) {
	var q ContainerQuery
	q.Prefix = strings.ToLower(s)
	if rt, id, ok := strings.Cut(q.Prefix, ":"); ok {
		q.Runtime, q.Prefix = rt, id
		known := false
		for _, r := range []string{RuntimeDocker, RuntimeContainerd, RuntimeCRIO, RuntimePodman, RuntimeCRI} {
			known = known || r == rt
		}
		if !known {
			return q, fmt.Errorf("unknown runtime %q (docker, containerd, cri-o, podman or cri)", rt)
		}
	}
	if len(q.Prefix) < MinContainerPrefix || len(q.Prefix) > 64 {
		return q, fmt.Errorf("%q: a container id takes %d to 64 hex digits", s, MinContainerPrefix)
	}
	for i := 0; i < len(q.Prefix); i++ {
		if !isHex(q.Prefix[i]) {
			return q, fmt.Errorf("%q: a container id is hex digits", s)
		}
	}
	return q, nil
}

// Match reports whether the cgroup is a container the query selects.
func (q ContainerQuery) Match(i Info) bool {
	return i.ContainerID != "" && strings.HasPrefix(i.ContainerID, q.Prefix) && (q.Runtime == "" || q.Runtime == i.Runtime)
}
