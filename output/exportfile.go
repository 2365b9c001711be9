package output

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/klauspost/compress/zstd"
	"golang.org/x/sys/unix"
)

// Owner is who an export is handed to; the zero value keeps the file with
// the process that writes it.
type Owner struct {
	UID, GID int
	Set      bool
}

// SudoOwner is the user who ran tcpscope through sudo, read from SUDO_UID
// and SUDO_GID; the zero Owner when not running as root through sudo.
func SudoOwner(getenv func(string) string) Owner {
	if os.Geteuid() != 0 {
		return Owner{}
	}
	uid, err1 := strconv.Atoi(getenv("SUDO_UID"))
	gid, err2 := strconv.Atoi(getenv("SUDO_GID"))
	if err1 != nil || err2 != nil || uid < 0 || gid < 0 {
		return Owner{}
	}
	return Owner{UID: uid, GID: gid, Set: true}
}

// TempPath is where a .json export is written before being renamed into
// place. The name is fixed so that the next recording to the same path
// finds a temporary left by a crash (SIGKILL, SIGHUP), takes it over and
// leaves nothing behind.
func TempPath(path string) string {
	return filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
}

// ZstdSuffix names a zstd-compressed .jsonl export.
const ZstdSuffix = ".jsonl.zst"

// checkExportName accepts "-" and names ending in .jsonl, .jsonl.zst or
// .json.
func checkExportName(path string) error {
	if path == "-" {
		return nil
	}
	for _, ext := range []string{".jsonl", ZstdSuffix, ".json"} {
		if strings.HasSuffix(path, ext) {
			return nil
		}
	}
	return fmt.Errorf("output %s: name it .jsonl (a line per connection, written as they end), .jsonl.zst (the same, zstd-compressed) or .json (one document, written at the end)", path)
}

// newFrameEncoder is the compressor of a .jsonl.zst. Each flush is one
// frame, compressed at once by the recording's goroutine (EncodeAll), so
// no goroutine of the encoder's own is needed; the fastest level keeps
// the recorder's CPU low and still compresses a load test's records about
// 20 times.
func newFrameEncoder() (*zstd.Encoder, error) {
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1))
	if err != nil {
		return nil, fmt.Errorf("starting the zstd compressor: %w", err)
	}
	return enc, nil
}

// OpenExport opens the export file and locks it, before anything is
// traced, and writes nothing yet: Start writes the header. The file the
// data goes to (the .jsonl itself, a .json's temporary) is opened without
// following a symbolic link, must be a regular file with one link that
// belongs to this process's user or to owner, and is locked with flock for
// the whole recording. A file that existed is only truncated at Start, so a
// recording that fails to start leaves it as it was. Every error is one
// line meant for the user.
func OpenExport(path string, stdout io.Writer, owner Owner) (*Export, error) {
	if err := checkExportName(path); err != nil {
		return nil, err
	}
	e := &Export{jsonl: true, owner: owner}
	if path == "-" {
		e.w = stdout
		return e, nil
	}
	e.path = path
	target := path
	if strings.HasSuffix(path, ZstdSuffix) {
		var err error
		if e.zst, err = newFrameEncoder(); err != nil {
			return nil, err
		}
	}
	if strings.HasSuffix(path, ".json") {
		e.jsonl = false
		// The rename at Close replaces the final file: check now that it
		// is one that may be replaced, and that it can be (an immutable
		// file cannot).
		if err := checkReplaceable(path, owner); err != nil {
			return nil, err
		}
		target = TempPath(path)
		e.tmp = target
	}
	f, created, err := openLocked(path, target, owner)
	if err != nil {
		return nil, err
	}
	e.f, e.w, e.created = f, f, created
	return e, nil
}

// checkReplaceable accepts a .json path that does not exist yet or is a
// regular file this process may write.
func checkReplaceable(path string, owner Owner) error {
	st, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("checking output %s: %w", path, err)
	}
	if err := checkKind(path, st.Mode()); err != nil {
		return err
	}
	if err := checkOwner(path, st.Sys().(*syscall.Stat_t).Uid, owner); err != nil {
		return err
	}
	fd, err := unix.Open(path, unix.O_WRONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return openError(path, path, err)
	}
	unix.Close(fd)
	return nil
}

func checkKind(path string, m os.FileMode) error {
	switch {
	case m&os.ModeSymlink != 0:
		return linkError(path)
	case m.IsDir():
		return fmt.Errorf("output %s is a directory", path)
	case !m.IsRegular():
		return fmt.Errorf("output %s is not a regular file", path)
	}
	return nil
}

// checkOwner refuses a file of another user: in a shared directory it may
// have been planted there to receive the recording.
func checkOwner(path string, uid uint32, owner Owner) error {
	if int(uid) == os.Geteuid() || owner.Set && int(uid) == owner.UID {
		return nil
	}
	return fmt.Errorf("output %s belongs to uid %d: tcpscope does not overwrite another user's file; remove it or choose another name", path, uid)
}

// linkError refuses a symbolic link where the output (or a .json's
// temporary) goes: whoever planted it chose what would be overwritten.
func linkError(path string) error {
	return fmt.Errorf("output %s is a symbolic link: tcpscope does not follow links; remove the link, or give the path of a file that is not one", path)
}

// openError words a failed open of target, the file for the output name.
func openError(name, target string, err error) error {
	switch {
	case errors.Is(err, unix.ELOOP):
		return linkError(target)
	case errors.Is(err, unix.EPERM):
		return fmt.Errorf("opening output %s: %w (immutable or append-only? see lsattr)", name, err)
	case errors.Is(err, unix.ENOENT):
		return fmt.Errorf("opening output %s: %w (its directory must exist)", name, err)
	}
	return fmt.Errorf("opening output %s: %w", name, err)
}

// openLocked opens (or creates, 0600) target for writing without following
// a symbolic link and takes an exclusive flock on it. name is what the user
// gave, for messages.
// Mode and owner are set by Start.
func openLocked(name, target string, owner Owner) (*os.File, bool, error) {
	for attempt := 0; attempt < 5; attempt++ {
		created := true
		fd, err := unix.Open(target, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		if errors.Is(err, unix.EEXIST) {
			// Only a regular file is opened: opening a FIFO for writing
			// blocks until a reader comes (fifo_open() in fs/pipe.c) and
			// opening a device can act on it. O_NONBLOCK covers one
			// swapped in between, which the fstat below then refuses.
			created = false
			if st, err := os.Lstat(target); err == nil {
				if err := checkKind(target, st.Mode()); err != nil {
					return nil, false, err
				}
			}
			fd, err = unix.Open(target, unix.O_WRONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
			if errors.Is(err, unix.ENOENT) {
				continue // removed in between: try again
			}
		}
		if err != nil {
			return nil, false, openError(name, target, err)
		}
		if err := unix.SetNonblock(fd, false); err != nil {
			unix.Close(fd)
			return nil, false, fmt.Errorf("opening output %s: %w", target, err)
		}
		f := os.NewFile(uintptr(fd), target)
		fail := func(err error) (*os.File, bool, error) {
			if created {
				os.Remove(target)
			}
			f.Close()
			return nil, false, err
		}
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			return fail(fmt.Errorf("checking output %s: %w", target, err))
		}
		if err := checkKind(target, os.FileMode(fileType(st.Mode))); err != nil {
			return fail(err)
		}
		if st.Nlink > 1 {
			return fail(fmt.Errorf("output %s has %d hard links: writing it would change the other names too; remove it or choose another name", target, st.Nlink))
		}
		if err := checkOwner(target, st.Uid, owner); err != nil {
			return fail(err)
		}
		if err := unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB); err != nil {
			f.Close() // never remove a file another recorder holds
			if errors.Is(err, unix.EWOULDBLOCK) {
				if pid := lockHolder(st.Dev, st.Ino); pid > 0 {
					return nil, false, fmt.Errorf("output %s is locked by another tcpscope (pid %d)", name, pid)
				}
				return nil, false, fmt.Errorf("output %s is locked by another tcpscope", name)
			}
			return nil, false, fmt.Errorf("locking output %s: %w", name, err)
		}
		// The lock holds an inode: if the name now points elsewhere (a
		// .json's temporary renamed into place by the recorder that held
		// it until now), this lock guards nothing.
		var now unix.Stat_t
		if err := unix.Lstat(target, &now); err != nil || now.Dev != st.Dev || now.Ino != st.Ino {
			f.Close()
			continue
		}
		return f, created, nil
	}
	return nil, false, fmt.Errorf("opening output %s: it keeps being replaced", name)
}

// fileType maps a stat mode's type bits to an os.FileMode.
func fileType(m uint32) os.FileMode {
	switch m & unix.S_IFMT {
	case unix.S_IFREG:
		return 0
	case unix.S_IFDIR:
		return os.ModeDir
	case unix.S_IFLNK:
		return os.ModeSymlink
	case unix.S_IFIFO:
		return os.ModeNamedPipe
	case unix.S_IFSOCK:
		return os.ModeSocket
	case unix.S_IFCHR:
		return os.ModeDevice | os.ModeCharDevice
	}
	return os.ModeDevice
}

// lockHolder finds the PID holding a flock on the file dev:ino in
// /proc/locks, whose lines lock_get_status() in fs/locks.c prints as
// "1: FLOCK  ADVISORY  WRITE 3969 fe:00:9978033 0 EOF" (device as hex
// major:minor, "->" lines are waiters; the PID is as seen from this PID
// namespace, -1 or 0 when not visible); 0 when unknown.
func lockHolder(dev, ino uint64) int {
	f, err := os.Open("/proc/locks")
	if err != nil {
		return 0
	}
	defer f.Close()
	want := fmt.Sprintf("%02x:%02x:%d", unix.Major(dev), unix.Minor(dev), ino)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 6 || fields[1] != "FLOCK" {
			continue
		}
		if fields[5] == want {
			pid, _ := strconv.Atoi(fields[4])
			return pid
		}
	}
	return 0
}
