package output

import (
	"github.com/tcpscope/tcpscope/tracer"
)

// fastDecoder reads a connection record as AppendConnectionJSON lays it
// out, without reflection and without copying the timeline: a long
// recording is mostly connection records, and encoding/json reads them at
// a fifth of the speed. Anything it does not expect (an unknown or
// repeated key, an escape in a string, a null where the writer never puts
// one, a number out of range) it leaves to encoding/json, whose result and
// error messages therefore stay the reader's. It accepts only valid JSON:
// the timeline it does not decode is still checked.
type fastDecoder struct {
	j             ConnectionRecord
	local, remote string
	handshake     int64
	synRecv       int64
	names         map[string]string
}

// connection decodes raw; ok is false when encoding/json must.
func (d *fastDecoder) connection(raw []byte, opts ReadOptions) (c tracer.Connection, ok bool, err error) {
	timeline, ok := d.parse(raw)
	if !ok {
		return c, false, nil
	}
	in := connectionInput{ConnectionRecord: d.j, Timeline: timeline}
	c, err = in.connection(opts)
	return c, true, err
}

// intern returns b as a string, the same string for the same bytes: the
// names and addresses of a recording repeat, a copy of each is enough.
func (d *fastDecoder) intern(b []byte) string {
	if s, ok := d.names[string(b)]; ok {
		return s
	}
	if d.names == nil {
		d.names = map[string]string{}
	}
	s := string(b)
	if len(d.names) < 1<<14 {
		d.names[s] = s
	}
	return s
}

// parse fills d.j from raw and returns the timeline's JSON.
func (d *fastDecoder) parse(raw []byte) (timeline []byte, ok bool) {
	d.j = ConnectionRecord{Flags: d.j.Flags[:0]}
	s := scanner{b: raw}
	s.ws()
	if !s.expect('{') {
		return nil, false
	}
	var seen uint64
	for first := true; !s.bad; first = false {
		s.ws()
		if first && s.peek('}') {
			break
		}
		key := s.str()
		s.ws()
		s.expect(':')
		s.ws()
		bit, tl := d.field(&s, key)
		if bit == 0 || seen&bit != 0 {
			return nil, false
		}
		seen |= bit
		if tl != nil {
			timeline = tl
		}
		s.ws()
		if !s.peek(',') {
			s.expect('}')
			break
		}
	}
	s.ws()
	if s.bad || s.i != len(s.b) {
		return nil, false
	}
	if seen&(1<<fFlags) == 0 {
		d.j.Flags = nil
	}
	return timeline, true
}
