package cgroups

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// fileIDKernfs is FILEID_KERNFS (include/linux/exportfs.h), the handle
// type of a kernfs file: its 8-byte node id, which is the cgroup id
// (kernfs_encode_fh(), fs/kernfs/mount.c).
const fileIDKernfs = 0xfe

// handleOpener names cgroups by id with open_by_handle_at(2), as the
// kernel finds a kernfs node by id: no walk, and a cgroup made an instant
// ago is found. It needs CAP_DAC_READ_SEARCH; once refused (or where the
// file system has no such handles, as in a test's temporary tree) it is
// not tried again. The zero value is ready; r.mu guards it.
type handleOpener struct {
	mount  *os.File
	failed bool
}

// path returns the path of cgroup id below root, the mount; ok is false
// when it cannot be opened (removed, or handles refused).
func (h *handleOpener) path(root string, id uint64) (string, bool) {
	if h.failed {
		return "", false
	}
	if h.mount == nil {
		f, err := os.Open(root)
		if err != nil {
			h.failed = true
			return "", false
		}
		h.mount = f
	}
	p, err := openByID(h.mount, id)
	if err != nil {
		// A removed cgroup is ESTALE or ENOENT; the rest will not change.
		h.failed = !errors.Is(err, unix.ESTALE) && !errors.Is(err, unix.ENOENT)
		return "", false
	}
	rel, ok := strings.CutPrefix(p, strings.TrimSuffix(root, "/"))
	switch {
	case !ok:
		return "", false
	case rel == "":
		return "/", true
	case rel[0] != '/':
		return "", false
	}
	return rel, true
}

// openByID opens cgroup id by its handle and reads back its path.
func openByID(mount *os.File, id uint64) (string, error) {
	b := make([]byte, 8)
	binary.NativeEndian.PutUint64(b, id)
	fd, err := unix.OpenByHandleAt(int(mount.Fd()), unix.NewFileHandle(fileIDKernfs, b), unix.O_PATH|unix.O_CLOEXEC)
	if err != nil {
		return "", fmt.Errorf("opening cgroup %d by handle: %w", id, err)
	}
	defer unix.Close(fd)
	p, err := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", fd))
	if err != nil {
		return "", fmt.Errorf("reading the path of cgroup %d: %w", id, err)
	}
	return p, nil
}
