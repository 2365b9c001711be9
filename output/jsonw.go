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
	o.b = appendRFC3339Nano(o.b, t)
	o.b = append(o.b, '"')
}

// appendRFC3339Nano appends t in UTC as time.RFC3339Nano does (trailing
// zeros of the fraction trimmed), from arithmetic on the Unix time: about
// five times faster than AppendFormat, and a timeline has many times.
func appendRFC3339Nano(b []byte, t time.Time) []byte {
	t = t.UTC()
	if y := t.Year(); y < 1 || y > 9999 {
		return t.AppendFormat(b, time.RFC3339Nano)
	}
	sec := t.Unix()
	days, clock := sec/86400, sec%86400
	if clock < 0 {
		days, clock = days-1, clock+86400
	}
	y, m, d := civilDate(days)
	var txt [20]byte
	put := func(i, v, width int) {
		for j := i + width - 1; j >= i; j-- {
			txt[j] = byte('0' + v%10)
			v /= 10
		}
	}
	put(0, y, 4)
	txt[4] = '-'
	put(5, m, 2)
	txt[7] = '-'
	put(8, d, 2)
	txt[10] = 'T'
	put(11, int(clock/3600), 2)
	txt[13] = ':'
	put(14, int(clock/60%60), 2)
	txt[16] = ':'
	put(17, int(clock%60), 2)
	b = append(b, txt[:19]...)
	if ns := t.Nanosecond(); ns != 0 {
		var frac [10]byte
		frac[0] = '.'
		for i := 9; i >= 1; i-- {
			frac[i] = byte('0' + ns%10)
			ns /= 10
		}
		n := 10
		for frac[n-1] == '0' {
			n--
		}
		b = append(b, frac[:n]...)
	}
	return append(b, 'Z')
}

// civilDate turns days since 1970-01-01 into a proleptic Gregorian date
// (the era arithmetic of 400-year cycles).
func civilDate(days int64) (year, month, day int) {
	z := days + 719468
	era := z / 146097
	if z < 0 && z%146097 != 0 {
		era--
	}
	doe := z - era*146097
	yoe := (doe - doe/1460 + doe/36524 - doe/146096) / 365
	doy := doe - (365*yoe + yoe/4 - yoe/100)
	mp := (5*doy + 2) / 153
	d := doy - (153*mp+2)/5 + 1
	m := mp + 3
	if m > 12 {
		m -= 12
	}
	y := yoe + era*400
	if m <= 2 {
		y++
	}
	return int(y), int(m), int(d)
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
