package output

import (
	"strconv"
	"strings"
	"sync"

	"github.com/tcpscope/tcpscope/tracer"
)

// detailTexts spell the details of timeline items (tracer.Detail): the
// text before and after the number or TCP flags the item carries. Exports
// hold these texts: never change one.
var detailTexts = [tracer.DetailCount][2]string{
	tracer.DetailOwnAbort:        {"set by this end's own abort (tcp_disconnect()); no process sees it"},
	tracer.DetailFirstSynAck:     {"first SYN-ACK sent (request socket)"},
	tracer.DetailSynAckNo:        {"SYN-ACK #"},
	tracer.DetailResentSyn:       {tracer.ResentSyn},
	tracer.DetailResentSynAck:    {tracer.ResentSynAck},
	tracer.DetailResentFin:       {tracer.ResentFin},
	tracer.DetailResentData:      {tracer.ResentData},
	tracer.DetailResentDataFin:   {"data, with FIN"},
	tracer.DetailNoSocket:        {"no socket"},
	tracer.DetailNoSocketSegment: {"no socket for this ", " segment"},
	tracer.DetailByListener:      {"sent by the listener"},
	tracer.DetailTimeWaitHolds:   {"holds its local port for 60s (TCP_TIMEWAIT_LEN)"},
	tracer.DetailTimeWaitHanded:  {"handed its local port to a timewait sock"},
	tracer.DetailTimeWaitKill:    {"a reset destroyed the timewait sock before its 60s: the port is free"},
	tracer.DetailOverflow:        {"final ACK dropped: accept queue full"},
	tracer.DetailOverflowCookie:  {"final ACK (SYN cookie) dropped: accept queue full"},
}

// effectTexts follow the detail of a reset sent by no connection socket.
var effectTexts = [tracer.ResetEffectCount]string{
	tracer.ResetDroppedRequest: ", which dropped the request",
	tracer.ResetAfterClose:     ": answered a segment that came after the close",
}

// notSent follows the detail of a retransmit that failed (its errno).
const notSent = " not sent"

// DetailText spells an item's detail; "" for none.
func DetailText(it *tracer.Item) string { return string(appendDetail(nil, it)) }

// appendDetail appends an item's detail text, unquoted. The texts of this
// build need no JSON escaping; one read from an export may.
func appendDetail(b []byte, it *tracer.Item) []byte {
	if it.Detail >= tracer.DetailCount {
		text, _ := unknownDetails.text(it.Detail)
		return append(b, text...)
	}
	t := &detailTexts[it.Detail]
	b = append(b, t[0]...)
	switch it.Detail {
	case tracer.DetailSynAckNo:
		b = strconv.AppendUint(b, uint64(it.SynAckNo), 10)
	case tracer.DetailNoSocketSegment:
		b = append(b, it.Segment.String()...)
	}
	b = append(b, t[1]...)
	if int(it.Effect) < len(effectTexts) {
		b = append(b, effectTexts[it.Effect]...)
	}
	if it.Kind == tracer.ItemRetransmit && it.Errno != 0 {
		b = append(b, notSent...)
	}
	return b
}

// parseDetail reads a detail text back into it (whose Kind and Errno are
// set). A text this build would not write the same way is kept whole
// under a process-local Detail value, so that rendering gives it back.
func parseDetail(it *tracer.Item, text string) {
	if text == "" {
		return
	}
	if parseKnownDetail(it, text) && DetailText(it) == text {
		return
	}
	it.Detail, it.SynAckNo, it.Segment, it.Effect = unknownDetails.value(text), 0, 0, 0
}

func parseKnownDetail(it *tracer.Item, text string) bool {
	rest := text
	if it.Kind == tracer.ItemRetransmit && it.Errno != 0 {
		rest = strings.TrimSuffix(rest, notSent)
	}
	for e, suffix := range effectTexts {
		if suffix != "" && strings.HasSuffix(rest, suffix) {
			it.Effect, rest = tracer.ResetEffect(e), strings.TrimSuffix(rest, suffix)
			break
		}
	}
	for d, t := range detailTexts {
		if tracer.Detail(d) == tracer.DetailNone || !strings.HasPrefix(rest, t[0]) || !strings.HasSuffix(rest, t[1]) ||
			len(rest) < len(t[0])+len(t[1]) {
			continue
		}
		mid := rest[len(t[0]) : len(rest)-len(t[1])]
		switch tracer.Detail(d) {
		case tracer.DetailSynAckNo:
			n, err := strconv.ParseUint(mid, 10, 8)
			if err != nil {
				continue
			}
			it.SynAckNo = uint8(n)
		case tracer.DetailNoSocketSegment:
			f, ok := tracer.ParseTCPFlags(mid)
			if !ok {
				continue
			}
			it.Segment = f
		default:
			if mid != "" {
				continue
			}
		}
		it.Detail = tracer.Detail(d)
		return true
	}
	return false
}

// unknownDetails holds detail texts read from exports that this build
// does not write, under values from tracer.DetailCount up.
var unknownDetails = detailRegistry{byText: map[string]tracer.Detail{}}

type detailRegistry struct {
	mu     sync.Mutex
	byText map[string]tracer.Detail
	texts  []string
}

// value returns the text's Detail, adding it; past the last value the
// text is lost (DetailNone).
func (r *detailRegistry) value(text string) tracer.Detail {
	r.mu.Lock()
	defer r.mu.Unlock()
	if d, ok := r.byText[text]; ok {
		return d
	}
	v := int(tracer.DetailCount) + len(r.texts)
	if v > 255 {
		return tracer.DetailNone
	}
	r.byText[text] = tracer.Detail(v)
	r.texts = append(r.texts, text)
	return tracer.Detail(v)
}

func (r *detailRegistry) text(d tracer.Detail) (string, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	i := int(d) - int(tracer.DetailCount)
	if i < 0 || i >= len(r.texts) {
		return "", false
	}
	return r.texts[i], true
}
