package otlp

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	sdklog "go.opentelemetry.io/otel/sdk/log"
)

// queue is an sdklog.Processor that never blocks the emitter: records go
// into a bounded channel, one goroutine sends them in batches, and what
// does not fit or cannot be sent is counted as dropped. The SDK's own
// batch processor drops too, but does not tell how many.
type queue struct {
	// in holds Records themselves (584 bytes each, the buffer allocated
	// at once): a pointer each would cost a heap object per record, and
	// measured 60% more time per record (BenchmarkShip).
	in       chan sdklog.Record
	exporter sdklog.Exporter
	batch    int
	interval time.Duration
	timeout  time.Duration // one export, retries included

	dropped atomic.Uint64
	sent    atomic.Uint64
	stop    chan struct{}
	done    chan struct{}
	once    sync.Once
	// abort ends the export in flight and fails the rest at once, when
	// Shutdown's deadline passed.
	ctx   context.Context
	abort context.CancelFunc
}

func newQueue(exp sdklog.Exporter, size, batch int, interval, timeout time.Duration) *queue {
	q := &queue{in: make(chan sdklog.Record, size), exporter: exp, batch: batch, interval: interval, timeout: timeout,
		stop: make(chan struct{}), done: make(chan struct{})}
	q.ctx, q.abort = context.WithCancel(context.Background())
	go q.run()
	return q
}

func (q *queue) Enabled(context.Context, sdklog.EnabledParameters) bool { return true }

// OnEmit queues a copy of r (the SDK reuses r once this returns), or drops
// it when the queue is full.
func (q *queue) OnEmit(_ context.Context, r *sdklog.Record) error {
	select {
	case <-q.stop:
		q.dropped.Add(1)
		return nil
	default:
	}
	select {
	case q.in <- r.Clone():
	default:
		q.dropped.Add(1)
	}
	return nil
}

// run sends a batch when it is full or every interval, until stop; then
// it sends what is still queued until Shutdown's deadline cancels it.
func (q *queue) run() {
	defer close(q.done)
	tick := time.NewTicker(q.interval)
	defer tick.Stop()
	buf := make([]sdklog.Record, 0, q.batch)
	for {
		select {
		case r := <-q.in:
			if buf = append(buf, r); len(buf) == q.batch {
				buf = q.send(buf)
			}
		case <-tick.C:
			buf = q.send(buf)
		case <-q.stop:
			q.drain(buf)
			return
		}
	}
}

// drain sends buf and everything queued; Shutdown counts what it could
// not.
func (q *queue) drain(buf []sdklog.Record) {
	for {
		select {
		case r := <-q.in:
			if buf = append(buf, r); len(buf) == q.batch {
				buf = q.send(buf)
			}
		default:
			q.send(buf)
			return
		}
	}
}

// send exports buf and gives it back empty. The exporter retries
// transient failures itself; a batch that still fails is dropped.
func (q *queue) send(buf []sdklog.Record) []sdklog.Record {
	if len(buf) == 0 {
		return buf
	}
	ctx, cancel := context.WithTimeout(q.ctx, q.timeout)
	err := q.exporter.Export(ctx, buf)
	cancel()
	if err != nil {
		q.dropped.Add(uint64(len(buf)))
	} else {
		q.sent.Add(uint64(len(buf)))
	}
	clear(buf)
	return buf[:0]
}

// Shutdown sends what is queued and stops the exporter. When ctx ends
// first, the records not yet sent are dropped: the recording's end is not
// held up by a collector that does not answer.
func (q *queue) Shutdown(ctx context.Context) error {
	q.once.Do(func() { close(q.stop) })
	select {
	case <-q.done:
	case <-ctx.Done():
		// Every export now fails at once, so the rest is counted as
		// dropped without waiting.
		q.abort()
		<-q.done
	}
	q.abort()
	// Closing the client does not wait on the collector: no deadline.
	return q.exporter.Shutdown(context.WithoutCancel(ctx))
}

// ForceFlush is a no-op: the recording's end is the only flush, through
// Shutdown.
func (q *queue) ForceFlush(context.Context) error { return nil }
