package output

import (
	"net/netip"
	"strconv"
	"time"
	"unicode/utf8"
)

// obj appends one JSON object field by field without reflection.
type obj struct {
	b     []byte
	first bool
}

func newObj(b []byte) obj { return obj{b: append(b, '{'), first: true} }

func (o *obj) key(k string) {
	b := o.b // a local: the compiler keeps it in registers
	if !o.first {
		b = append(b, ',')
	}
	o.first = false
	b = append(b, '"')
	b = append(b, k...)
	o.b = append(b, '"', ':')
}

func (o *obj) str(k, v string) { o.key(k); o.b = appendString(o.b, v) }

func (o *obj) strOmit(k, v string) {
	if v != "" {
		o.str(k, v)
	}
}

func (o *obj) uint(k string, v uint64) { o.key(k); o.b = strconv.AppendUint(o.b, v, 10) }
func (o *obj) int(k string, v int64)   { o.key(k); o.b = strconv.AppendInt(o.b, v, 10) }
func (o *obj) boolean(k string, v bool) {
	o.key(k)
	o.b = strconv.AppendBool(o.b, v)
}
func (o *obj) time(k string, t time.Time) {
	o.key(k)
	o.b = append(o.b, '"')
	o.b = t.UTC().AppendFormat(o.b, time.RFC3339Nano)
	o.b = append(o.b, '"')
}

// addr appends an IP address without allocating (netip's AppendTo).
func (o *obj) addr(k string, a netip.Addr) {
	o.key(k)
	o.b = append(o.b, '"')
	o.b = a.AppendTo(o.b)
	o.b = append(o.b, '"')
}

// addrOrNull writes an address the kernel did not know as null.
func (o *obj) addrOrNull(k string, a netip.Addr) {
	if a.IsValid() {
		o.addr(k, a)
	} else {
		o.null(k)
	}
}

func (o *obj) raw(k string, v []byte) { o.key(k); o.b = append(o.b, v...) }
func (o *obj) null(k string)          { o.key(k); o.b = append(o.b, "null"...) }
func (o *obj) end() []byte            { return append(o.b, '}') }

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string, escaping what JSON requires and
// replacing invalid UTF-8 (task names are arbitrary bytes).
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	// Most strings (states, kinds, names) need no escaping: copy the plain
	// ASCII prefix at once.
	i := 0
	for i < len(s) && s[i] >= 0x20 && s[i] < utf8.RuneSelf && s[i] != '"' && s[i] != '\\' {
		i++
	}
	b = append(b, s[:i]...)
	for i < len(s) {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c < 0x20:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			default:
				b = append(b, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, `\ufffd`...)
		} else {
			b = append(b, s[i:i+size]...)
		}
		i += size
	}
	return append(b, '"')
}
