package output

import (
	"bufio"
	"fmt"
	"io"
	"sync/atomic"

	"github.com/klauspost/compress/zstd"
)

// zstdMagic starts every zstd frame (RFC 8878, 3.1.1): a compressed
// export is told by it, whatever its name.
var zstdMagic = []byte{0x28, 0xb5, 0x2f, 0xfd}

// frameReader is the decompressed stream of a .jsonl.zst. The end of the
// input inside a frame (what a SIGKILL or a full disk leaves) ends the
// stream as if the file ended there, and is remembered: the reader has
// what the whole frames hold, and the warning or the strict refusal says
// the file was cut.
type frameReader struct {
	dec *zstd.Decoder
	in  *endReader
	cut bool
}

func (f *frameReader) Read(p []byte) (int, error) {
	n, err := f.dec.Read(p)
	switch {
	case err == nil || err == io.EOF:
		return n, err
	case err == io.ErrUnexpectedEOF && f.in.end.Load():
		// The decoder's own word for input that ends inside a frame;
		// damage inside a frame wraps it in other words.
		f.cut = true
		return n, io.EOF
	}
	return n, fmt.Errorf("decompressing: %w", err)
}

// endReader tells whether the compressed input was read to its end (by
// the decoder's goroutine).
type endReader struct {
	r   io.Reader
	end atomic.Bool
}

func (e *endReader) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err == io.EOF {
		e.end.Store(true)
	}
	return n, err
}

func (f *frameReader) cutError(name string) error {
	return fmt.Errorf("%s: the compressed file is cut short inside its last zstd frame (a kill or a full disk while writing)", name)
}

// readCompressed reads a zstd-compressed export from br. Decompression
// runs on a goroutine of the decoder's, beside the parsing.
func readCompressed(br *bufio.Reader, name string, opts ReadOptions) (*Recording, error) {
	in := &endReader{r: br}
	dec, err := zstd.NewReader(in, zstd.WithDecoderConcurrency(2))
	if err != nil {
		return nil, fmt.Errorf("%s: starting the zstd decompressor: %w", name, err)
	}
	defer dec.Close()
	src := &frameReader{dec: dec, in: in}
	return readPlain(bufio.NewReaderSize(src, 1<<20), name, opts, src)
}

// decompressAll decompresses a whole .jsonl.zst held in memory.
func decompressAll(data []byte) ([]byte, error) {
	dec, err := zstd.NewReader(nil)
	if err != nil {
		return nil, fmt.Errorf("starting the zstd decompressor: %w", err)
	}
	defer dec.Close()
	out, err := dec.DecodeAll(data, nil)
	if err != nil {
		return nil, fmt.Errorf("decompressing: %w", err)
	}
	return out, nil
}
