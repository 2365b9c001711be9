package output

import "time"

// scanner reads the JSON of one record for fastDecoder. It accepts a
// subset of JSON; bad is set at the first byte outside it, and every
// method does nothing once it is.
type scanner struct {
	b   []byte
	i   int
	bad bool
}

func (s *scanner) fail() { s.bad = true }

// ws skips JSON white space.
func (s *scanner) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// peek consumes c if it comes next.
func (s *scanner) peek(c byte) bool {
	if !s.bad && s.i < len(s.b) && s.b[s.i] == c {
		s.i++
		return true
	}
	return false
}

func (s *scanner) expect(c byte) bool {
	if !s.peek(c) {
		s.fail()
		return false
	}
	return true
}

// null consumes a null if one comes next.
func (s *scanner) null() bool {
	if !s.bad && len(s.b)-s.i >= 4 && string(s.b[s.i:s.i+4]) == "null" {
		s.i += 4
		return true
	}
	return false
}

// str reads a string of printable ASCII without escapes, the only kind
// the writer's names hold, and returns its bytes (no copy).
func (s *scanner) str() []byte {
	if !s.expect('"') {
		return nil
	}
	start := s.i
	for ; s.i < len(s.b); s.i++ {
		switch c := s.b[s.i]; {
		case c == '"':
			s.i++
			return s.b[start : s.i-1]
		case c < 0x20 || c >= 0x80 || c == '\\':
			s.fail()
			return nil
		}
	}
	s.fail()
	return nil
}

// time reads an RFC 3339 time as encoding/json does (time.Time's
// UnmarshalJSON of the quoted string).
func (s *scanner) time(t *time.Time) {
	start := s.i
	s.str()
	if s.bad {
		return
	}
	if t.UnmarshalJSON(s.b[start:s.i]) != nil {
		s.fail()
	}
}

// uint reads a non-negative integer that fits in bits.
func (s *scanner) uint(bits int) uint64 {
	if s.bad || s.i >= len(s.b) {
		s.fail()
		return 0
	}
	if s.b[s.i] == '0' {
		s.i++
		return 0
	}
	var v uint64
	limit := uint64(1)<<bits - 1 // a shift by 64 is 0: the limit is then all ones
	start := s.i
	for ; s.i < len(s.b) && s.b[s.i] >= '0' && s.b[s.i] <= '9'; s.i++ {
		d := uint64(s.b[s.i] - '0')
		if v > (limit-d)/10 {
			s.fail()
			return 0
		}
		v = v*10 + d
	}
	if s.i == start {
		s.fail()
	}
	return v
}

// int reads an integer that fits in an int64.
func (s *scanner) int() int64 {
	neg := s.peek('-')
	v := s.uint(64)
	switch {
	case s.bad:
		return 0
	case neg && v <= 1<<63:
		return int64(-v)
	case !neg && v < 1<<63:
		return int64(v)
	}
	s.fail()
	return 0
}

// optInt reads an integer into *to, or null.
func (s *scanner) optInt(to *int64) *int64 {
	if s.null() {
		return nil
	}
	*to = s.int()
	return to
}
