package output

// skip passes over one JSON value of any kind, checking it as
// encoding/json's json.Valid would: a timeline fastDecoder does not decode
// must still be valid JSON. Deep nesting, which no export has, is left to
// encoding/json.
func (s *scanner) skip(depth int) {
	s.ws()
	if s.bad || s.i >= len(s.b) || depth > 32 {
		s.fail()
		return
	}
	switch c := s.b[s.i]; {
	case c == '{':
		s.i++
		s.skipMembers(depth)
	case c == '[':
		s.i++
		s.skipElements(depth)
	case c == '"':
		s.skipString()
	case c == '-' || c >= '0' && c <= '9':
		s.skipNumber()
	default:
		s.skipLiteral()
	}
}

func (s *scanner) skipMembers(depth int) {
	s.ws()
	if s.peek('}') {
		return
	}
	for !s.bad {
		s.ws()
		s.skipString()
		s.ws()
		s.expect(':')
		s.skip(depth + 1)
		s.ws()
		if !s.peek(',') {
			s.expect('}')
			return
		}
	}
}

func (s *scanner) skipElements(depth int) {
	s.ws()
	if s.peek(']') {
		return
	}
	for !s.bad {
		s.skip(depth + 1)
		s.ws()
		if !s.peek(',') {
			s.expect(']')
			return
		}
	}
}

func (s *scanner) skipLiteral() {
	for _, lit := range []string{"true", "false", "null"} {
		if len(s.b)-s.i >= len(lit) && string(s.b[s.i:s.i+len(lit)]) == lit {
			s.i += len(lit)
			return
		}
	}
	s.fail()
}

// skipString passes over a string, escapes included; any byte from 0x20
// on may stand in one, as encoding/json accepts.
func (s *scanner) skipString() {
	if !s.expect('"') {
		return
	}
	for s.i < len(s.b) {
		c := s.b[s.i]
		s.i++
		switch {
		case c == '"':
			return
		case c < 0x20:
			s.fail()
			return
		case c == '\\':
			s.skipEscape()
			if s.bad {
				return
			}
		}
	}
	s.fail()
}

// skipEscape passes over what follows a backslash.
func (s *scanner) skipEscape() {
	if s.i >= len(s.b) {
		s.fail()
		return
	}
	c := s.b[s.i]
	s.i++
	switch c {
	case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
		return
	case 'u':
		if len(s.b)-s.i < 4 {
			s.fail()
			return
		}
		for _, h := range s.b[s.i : s.i+4] {
			if !(h >= '0' && h <= '9' || h >= 'a' && h <= 'f' || h >= 'A' && h <= 'F') {
				s.fail()
				return
			}
		}
		s.i += 4
		return
	}
	s.fail()
}

// skipNumber passes over a number: -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?
func (s *scanner) skipNumber() {
	s.peek('-')
	if !s.peek('0') && s.digits() == 0 {
		s.fail()
		return
	}
	if s.peek('.') && s.digits() == 0 {
		s.fail()
		return
	}
	if s.peek('e') || s.peek('E') {
		if !s.peek('+') {
			s.peek('-')
		}
		if s.digits() == 0 {
			s.fail()
		}
	}
}

func (s *scanner) digits() int {
	start := s.i
	for s.i < len(s.b) && s.b[s.i] >= '0' && s.b[s.i] <= '9' {
		s.i++
	}
	return s.i - start
}
