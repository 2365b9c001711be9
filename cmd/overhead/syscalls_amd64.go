package main

import "golang.org/x/sys/unix"

func init() {
	pollSyscalls[unix.SYS_EPOLL_WAIT] = true
	pollSyscalls[unix.SYS_POLL] = true
}
