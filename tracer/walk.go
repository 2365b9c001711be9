package tracer

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/tcpscope/tcpscope/tracer/netns"
)

// The end of a recording in the aggregated mode. A connection still open
// has sent at most its early records; the rest of its timeline is in its
// socket storage. Stop detaches every program but the state-change pair
// and flushes the ring buffer; once Read has drained it, the walk
// (walk_conns, an iter/tcp program) reads the storage of every socket
// still open, in every namespace the recording saw (those of the NetNS
// filter, and every one an event or record came from), while a connection that
// closes meanwhile still sends its record (the two race for conn.sent in
// the kernel and one of them sends). Then the state-change pair is
// detached and the ring buffer drained once more: nothing open is lost and
// nothing is counted twice.

const walkProgram = "walk_conns"

type stopPhase uint8

const (
	phaseTracing stopPhase = iota // before the walk
	phaseWalked                   // the walk started: the last drain
)

// nextStopPhase runs each time Read meets the flush that Stop, or the end
// of the walk, asked for.
func (t *Tracer) nextStopPhase() error {
	if t.walk == nil || t.stopping == phaseWalked {
		t.drained = true
		return nil
	}
	t.stopping = phaseWalked
	namespaces, nsErr := t.walkNamespaces()
	w, err := openWalk(t.walk, namespaces)
	if err != nil {
		t.endWalk()
		return fmt.Errorf("walking open connections: %w", errors.Join(nsErr, err))
	}
	t.walkMu.Lock()
	t.walked = w
	t.walkMu.Unlock()
	t.walking = true
	return nsErr
}

// readWalk decodes the walk's next record into the pending events, or
// ends the walk. Close may close the walk meanwhile (walkMu): reading
// then fails and the walk ends.
func (t *Tracer) readWalk() error {
	t.walkMu.Lock()
	var raw []byte
	err := ErrClosed
	if t.walked != nil {
		raw, err = t.walked.next()
	}
	if err == nil {
		err = t.expand(raw)
		t.walkMu.Unlock()
		return err
	}
	t.walkMu.Unlock()
	t.endWalk()
	if errors.Is(err, io.EOF) || errors.Is(err, ErrClosed) {
		return nil
	}
	return fmt.Errorf("reading open connections: %w", err)
}

// endWalk closes the walk, detaches the state-change pair and asks for
// the last drain.
func (t *Tracer) endWalk() {
	t.walking = false
	t.closeWalk()
	t.detachLate()
	if err := t.reader.Flush(); err != nil {
		t.drained = true
	}
}

// closeWalk closes the walk if it is open; Close calls it too.
func (t *Tracer) closeWalk() {
	t.walkMu.Lock()
	defer t.walkMu.Unlock()
	if t.walked != nil {
		t.walked.close()
		t.walked = nil
	}
}

// detachLate closes the links Stop left for the walk.
func (t *Tracer) detachLate() error {
	var err error
	t.lateOnce.Do(func() {
		var errs []error
		for i, l := range t.links {
			if !t.detachedLate(i) {
				continue
			}
			if e := l.Close(); e != nil {
				errs = append(errs, fmt.Errorf("detaching: %w", e))
			}
		}
		err = errors.Join(errs...)
	})
	return err
}

// detachedLate tells the links Stop leaves for the walk: the state-change
// pair, in the aggregated mode.
func (t *Tracer) detachedLate(i int) bool {
	return t.walk != nil && t.attached[i].hook == bpfHookHOOK_SET_STATE
}

// walkReader reads the records the walk writes, one namespace after the
// other: an iter/tcp iterator walks the namespace of the thread that
// opens it (bpf_iter_init_seq_net()), so each is opened inside its own.
type walkReader struct {
	iter *link.Iter
	self uint32   // this thread's namespace
	todo []uint32 // namespaces not read yet
	errs []error  // namespaces that could not be read
	rc   io.ReadCloser
	r    *bufio.Reader
	// buf is 8-byte aligned for DecodeRecord.
	buf [(RecordSize + 7) / 8]uint64
}

func openWalk(prog *ebpf.Program, namespaces []uint32) (*walkReader, error) {
	it, err := link.AttachIter(link.IterOptions{Program: prog})
	if err != nil {
		return nil, fmt.Errorf("attaching %s: %w", walkProgram, err)
	}
	w := &walkReader{iter: it, todo: namespaces}
	if self, err := netns.Self(); err == nil {
		w.self = self.Inode
		self.Close()
	}
	return w, nil
}

// next returns the next record, valid until the next call; io.EOF at the end.
func (w *walkReader) next() ([]byte, error) {
	b := unsafe.Slice((*byte)(unsafe.Pointer(&w.buf[0])), RecordSize)
	for {
		if w.r == nil {
			if len(w.todo) == 0 {
				if len(w.errs) > 0 {
					err := errors.Join(w.errs...)
					w.errs = nil
					return nil, err
				}
				return nil, io.EOF
			}
			inode := w.todo[0]
			w.todo = w.todo[1:]
			if err := w.open(inode); err != nil {
				// The other namespaces are still read; the error is
				// returned once, at the end.
				w.errs = append(w.errs, err)
			}
			continue
		}
		_, err := io.ReadFull(w.r, b)
		if err == nil {
			return b, nil
		}
		w.closeNamespace()
		switch {
		case errors.Is(err, io.EOF):
		case errors.Is(err, io.ErrUnexpectedEOF):
			return nil, fmt.Errorf("walk output ends inside a record: %w", err)
		default:
			return nil, err
		}
	}
}

// open starts reading one namespace. A namespace nothing holds any more
// is skipped: its sockets are gone with it.
func (w *walkReader) open(inode uint32) error {
	var rc io.ReadCloser
	var err error
	if inode == w.self {
		rc, err = w.iter.Open()
	} else {
		ns, ferr := netns.Find(inode)
		if ferr != nil {
			return nil
		}
		err = ns.Do(func() error {
			var oerr error
			rc, oerr = w.iter.Open()
			return oerr
		})
		ns.Close()
	}
	if err != nil {
		return fmt.Errorf("opening %s in network namespace %d: %w", walkProgram, inode, err)
	}
	w.rc, w.r = rc, bufio.NewReaderSize(rc, 64<<10)
	return nil
}

func (w *walkReader) closeNamespace() {
	if w.rc != nil {
		w.rc.Close()
	}
	w.rc, w.r = nil, nil
}

func (w *walkReader) close() {
	w.closeNamespace()
	w.iter.Close()
}

// walkNamespaces lists the namespaces to walk: the filter's, or every one
// the kernel side made socket storage in (storage_netns), whether or not
// anything from it reached user space.
func (t *Tracer) walkNamespaces() ([]uint32, error) {
	if len(t.cfg.NetNS) > 0 {
		return t.cfg.NetNS, nil
	}
	var out []uint32
	var ns uint32
	var one uint8
	it := t.maps.StorageNetns.Iterate()
	for it.Next(&ns, &one) {
		out = append(out, ns)
	}
	if err := it.Err(); err != nil {
		return out, fmt.Errorf("listing namespaces with socket storage: %w", err)
	}
	return out, nil
}
