package cgroups

import "testing"

const (
	id64  = "3f2a1b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708"
	id64b = "9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b9c8d"
	pod   = "0b6c2c6e-1f4d-4b63-9f0a-2d5e8c7b1a90"
	podU  = "0b6c2c6e_1f4d_4b63_9f0a_2d5e8c7b1a90"
)

// The layouts below are those the runtimes write, one per driver.
func TestParse(t *testing.T) {
	for _, tc := range []struct {
		path string
		want Info
	}{
		{"/system.slice/docker-" + id64 + ".scope", Info{ContainerID: id64, Runtime: RuntimeDocker}},
		{"/docker/" + id64, Info{ContainerID: id64, Runtime: RuntimeDocker}},
		{"/system.slice/cri-containerd-" + id64 + ".scope", Info{ContainerID: id64, Runtime: RuntimeContainerd}},
		{"/machine.slice/crio-" + id64 + ".scope", Info{ContainerID: id64, Runtime: RuntimeCRIO}},
		{"/machine.slice/crio-conmon-" + id64 + ".scope", Info{}},
		{"/machine.slice/libpod-" + id64 + ".scope", Info{ContainerID: id64, Runtime: RuntimePodman}},
		{"/machine.slice/libpod-conmon-" + id64 + ".scope", Info{}},
		{"/libpod_parent/" + id64, Info{ContainerID: id64, Runtime: RuntimePodman}},
		// Podman's cgroupfs manager (cgroup_manager = "cgroupfs").
		{"/libpod_parent/libpod-" + id64, Info{ContainerID: id64, Runtime: RuntimePodman}},
		{"/libpod_parent/libpod-conmon-" + id64, Info{}},
		{"/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-" + id64 + ".scope",
			Info{ContainerID: id64, Runtime: RuntimePodman, Unit: "user@1000.service"}},
		{"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + podU + ".slice/cri-containerd-" + id64 + ".scope",
			Info{ContainerID: id64, Runtime: RuntimeContainerd, PodUID: pod}},
		{"/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" + podU + ".slice/crio-" + id64 + ".scope",
			Info{ContainerID: id64, Runtime: RuntimeCRIO, PodUID: pod}},
		{"/kubepods.slice/kubepods-pod" + podU + ".slice/docker-" + id64 + ".scope",
			Info{ContainerID: id64, Runtime: RuntimeDocker, PodUID: pod}},
		// A pod's own cgroup (its pause container's parent): the pod, no container.
		{"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + podU + ".slice", Info{PodUID: pod}},
		{"/kubepods/burstable/pod" + pod + "/" + id64, Info{ContainerID: id64, Runtime: RuntimeCRI, PodUID: pod}},
		{"/kubepods/pod" + pod + "/" + id64b, Info{ContainerID: id64b, Runtime: RuntimeCRI, PodUID: pod}},
		{"/system.slice/nginx.service", Info{Unit: "nginx.service"}},
		{"/user.slice/user-1000.slice/user@1000.service/app.slice/app-gnome-firefox-1234.scope", Info{Unit: "user@1000.service"}},
		{"/user.slice/user-1000.slice/user@1000.service/app.slice/syncthing.service", Info{Unit: "syncthing.service"}},
		{"/user.slice/user-1000.slice/session-3.scope", Info{}},
		{"/", Info{}},
		{"/tcpscope-test/plain", Info{}},
		// Look-alikes: a short id, upper case, a docker-compose unit.
		{"/system.slice/docker-3f2a1b4c.scope", Info{}},
		{"/docker/" + "3F2A1B4C5D6E7F8091A2B3C4D5E6F708192A3B4C5D6E7F8091A2B3C4D5E6F708", Info{}},
		{"/system.slice/docker-compose@web.service", Info{Unit: "docker-compose@web.service"}},
		{"/podcast/" + id64, Info{}},
	} {
		tc.want.Path = tc.path
		if got := Parse(tc.path); got != tc.want {
			t.Errorf("Parse(%q)\n got %+v\nwant %+v", tc.path, got, tc.want)
		}
	}
}

func TestShort(t *testing.T) {
	if got := Parse("/docker/" + id64).Short(); got != "docker:3f2a1b4c5d6e" {
		t.Errorf("Short = %q, want docker:3f2a1b4c5d6e", got)
	}
	if got := Parse("/system.slice/nginx.service").Short(); got != "" {
		t.Errorf("Short of a unit = %q, want empty", got)
	}
}

func TestUnder(t *testing.T) {
	i := Parse("/kubepods.slice/kubepods-burstable.slice/x.scope")
	for dir, want := range map[string]bool{
		"/": true, "": true, "/kubepods.slice": true, "kubepods.slice/": true,
		"/kubepods.slice/kubepods-burstable.slice/x.scope": true,
		"/kubepods": false, "/kubepods.slice/kubepods-besteffort.slice": false, "/system.slice": false,
	} {
		if got := i.Under(dir); got != want {
			t.Errorf("Under(%q) = %v, want %v", dir, got, want)
		}
	}
	if (Info{}).Under("/") {
		t.Error("an unnamed cgroup is under /")
	}
}

func TestContainerQuery(t *testing.T) {
	docker := Parse("/docker/" + id64)
	crio := Parse("/machine.slice/crio-" + id64 + ".scope")
	for s, want := range map[string][2]bool{ // matches docker, matches crio
		"3f2a":        {true, true},
		"3F2A1B":      {true, true},
		"docker:3f2a": {true, false},
		"cri-o:3f2a":  {false, true},
		id64:          {true, true},
		"9c8d":        {false, false},
	} {
		q, err := ParseContainerQuery(s)
		if err != nil {
			t.Errorf("ParseContainerQuery(%q): %v", s, err)
			continue
		}
		if got := [2]bool{q.Match(docker), q.Match(crio)}; got != want {
			t.Errorf("%q matches docker, crio: %v, want %v", s, got, want)
		}
	}
	if q, _ := ParseContainerQuery("3f2a"); q.Match(Parse("/system.slice/nginx.service")) {
		t.Error("a query matched a cgroup without a container")
	}
	for _, bad := range []string{"", "3f2", "zzzz", "lxc:3f2a", "docker:", id64 + "0"} {
		if _, err := ParseContainerQuery(bad); err == nil {
			t.Errorf("ParseContainerQuery(%q) took it", bad)
		}
	}
}
