package output

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// traceEvent is one event of a Chrome trace-event file, as ValidateTrace
// reads it.
type traceEvent struct {
	Ph      string          `json:"ph"`
	Name    *string         `json:"name"`
	Cat     string          `json:"cat"`
	Ts      *float64        `json:"ts"`
	Pid     *uint64         `json:"pid"`
	Tid     *uint64         `json:"tid"`
	ID      string          `json:"id"`
	BindID  string          `json:"bind_id"`
	FlowIn  bool            `json:"flow_in"`
	FlowOut bool            `json:"flow_out"`
	Args    json.RawMessage `json:"args"`
}

// asyncKey is one async slice tree: Perfetto's track of a (pid, cat, id).
type asyncKey struct {
	pid     uint64
	cat, id string
}

// traceCheck is what ValidateTrace follows across events.
type traceCheck struct {
	stacks   map[asyncKey][]string  // open async slices by name
	lastTs   map[string]float64     // per async tree or counter track
	flows    map[string][2]*float64 // bind_id: the ts of its out and its in
	named    map[uint64]bool        // pids with a process_name
	used     map[uint64]bool        // pids with events
	problems []error
}

// ValidateTrace checks a trace as the Trace Event Format and Perfetto's
// importer read it: a JSON object with traceEvents; every event with ph,
// ts, pid and tid (or an id); async begins ("b") ended ("e") with the
// same cat, id and name, properly nested, instants ("n") inside one;
// times that do not go back within an async tree or a counter track;
// counters with numeric args; each flow (bind_id) begun once and ended
// once, not before it begins; every process named. The nesting is checked
// in file order and again sorted by ts, as Perfetto imports it.
func ValidateTrace(data []byte) error {
	var doc struct {
		TraceEvents     []traceEvent `json:"traceEvents"`
		DisplayTimeUnit string       `json:"displayTimeUnit"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return fmt.Errorf("reading the trace: %w", err)
	}
	if doc.TraceEvents == nil || (doc.DisplayTimeUnit != "ms" && doc.DisplayTimeUnit != "ns") {
		return errors.New("not a trace: traceEvents or displayTimeUnit missing")
	}
	c := &traceCheck{stacks: map[asyncKey][]string{}, lastTs: map[string]float64{}, flows: map[string][2]*float64{},
		named: map[uint64]bool{}, used: map[uint64]bool{}}
	for i := range doc.TraceEvents {
		if err := c.event(&doc.TraceEvents[i]); err != nil {
			c.problems = append(c.problems, fmt.Errorf("event %d: %w", i, err))
		}
	}
	c.end()
	c.problems = append(c.problems, sortedNesting(doc.TraceEvents)...)
	return errors.Join(c.problems...)
}

// sortedNesting checks the async slices' nesting again in the order
// Perfetto imports them: sorted by ts, stably. Events of one ts may then
// come in any order, so a begin and an end at the same ts on one track
// are a problem of their own: which comes first is not the file's to say.
func sortedNesting(events []traceEvent) []error {
	var async []int
	for i := range events {
		if e := &events[i]; (e.Ph == "b" || e.Ph == "e") && e.Ts != nil && e.Pid != nil && e.Name != nil && e.ID != "" {
			async = append(async, i)
		}
	}
	slices.SortStableFunc(async, func(a, b int) int { return cmp.Compare(*events[a].Ts, *events[b].Ts) })
	var problems []error
	stacks := map[asyncKey][]string{}
	type at struct {
		k  asyncKey
		ts float64
	}
	phases := map[at]string{} // the phases seen at a ts on a track
	for _, i := range async {
		e := &events[i]
		k := asyncKey{*e.Pid, e.Cat, e.ID}
		p := phases[at{k, *e.Ts}]
		if !strings.Contains(p, e.Ph) {
			phases[at{k, *e.Ts}] = p + e.Ph
			if p != "" {
				problems = append(problems, fmt.Errorf("event %d: id %s has a begin and an end at the same ts %v", i, e.ID, *e.Ts))
			}
		}
		st := stacks[k]
		if e.Ph == "b" {
			stacks[k] = append(st, *e.Name)
			continue
		}
		if len(st) == 0 || st[len(st)-1] != *e.Name {
			problems = append(problems, fmt.Errorf("event %d, sorted by ts: e %q of id %s does not end the innermost open slice %q", i, *e.Name, e.ID, st))
			continue
		}
		stacks[k] = st[:len(st)-1]
	}
	return problems
}

func (c *traceCheck) event(e *traceEvent) error {
	if e.Ph == "" || e.Ts == nil || e.Pid == nil || (e.Tid == nil && e.ID == "") || e.Name == nil {
		return fmt.Errorf("ph %q: ph, name, ts, pid and tid (or id) are required", e.Ph)
	}
	if *e.Ts < 0 {
		return fmt.Errorf("negative ts %v", *e.Ts)
	}
	switch e.Ph {
	case "b", "e", "n":
		if e.ID != "" {
			c.used[*e.Pid] = true
		}
		return c.async(e)
	case "C":
		c.used[*e.Pid] = true
		return c.counter(e)
	case "M":
		if *e.Name == "process_name" {
			var a struct{ Name string }
			if json.Unmarshal(e.Args, &a) != nil || a.Name == "" {
				return errors.New("process_name without args.name")
			}
			c.named[*e.Pid] = true
		}
		return nil
	}
	return fmt.Errorf("phase %q not written by tcpscope", e.Ph)
}

// async checks a b, e or n: its tree's times, nesting and flow.
func (c *traceCheck) async(e *traceEvent) error {
	if e.ID == "" || e.Cat == "" {
		return fmt.Errorf("%s %q without cat and id", e.Ph, *e.Name)
	}
	k := asyncKey{*e.Pid, e.Cat, e.ID}
	track := fmt.Sprintf("async %d %s %s", k.pid, k.cat, k.id)
	if err := c.forward(track, *e.Ts); err != nil {
		return err
	}
	st := c.stacks[k]
	switch e.Ph {
	case "b":
		c.stacks[k] = append(st, *e.Name)
	case "e":
		if len(st) == 0 || st[len(st)-1] != *e.Name {
			return fmt.Errorf("e %q of id %s does not end the innermost open slice %q", *e.Name, e.ID, st)
		}
		c.stacks[k] = st[:len(st)-1]
	case "n":
		if len(st) == 0 {
			return fmt.Errorf("instant %q of id %s outside its slice", *e.Name, e.ID)
		}
	}
	return c.flow(e)
}

func (c *traceCheck) forward(track string, ts float64) error {
	if last, ok := c.lastTs[track]; ok && ts < last {
		return fmt.Errorf("%s: ts %v before %v", track, ts, last)
	}
	c.lastTs[track] = ts
	return nil
}

// flow notes a v2 flow end: out once, in once.
func (c *traceCheck) flow(e *traceEvent) error {
	if e.BindID == "" {
		if e.FlowIn || e.FlowOut {
			return errors.New("flow_in or flow_out without bind_id")
		}
		return nil
	}
	if e.FlowIn == e.FlowOut || e.Ph == "e" {
		return fmt.Errorf("bind_id %s: one of flow_in and flow_out, on a b or n", e.BindID)
	}
	ends := c.flows[e.BindID]
	side := 0
	if e.FlowIn {
		side = 1
	}
	if ends[side] != nil {
		return fmt.Errorf("bind_id %s: a second flow_%s", e.BindID, map[int]string{0: "out", 1: "in"}[side])
	}
	ends[side] = e.Ts
	c.flows[e.BindID] = ends
	return nil
}

func (c *traceCheck) counter(e *traceEvent) error {
	var args map[string]any
	if err := json.Unmarshal(e.Args, &args); err != nil || len(args) == 0 {
		return fmt.Errorf("counter %q without args", *e.Name)
	}
	for k, v := range args {
		if _, ok := v.(float64); !ok {
			return fmt.Errorf("counter %q: %s is not a number", *e.Name, k)
		}
	}
	return c.forward(fmt.Sprintf("counter %d %s", *e.Pid, *e.Name), *e.Ts)
}

// end checks what only the whole trace tells.
func (c *traceCheck) end() {
	for k, st := range c.stacks {
		if len(st) > 0 {
			c.problems = append(c.problems, fmt.Errorf("id %s on pid %d: %q never ended", k.id, k.pid, st))
		}
	}
	for id, ends := range c.flows {
		switch {
		case ends[0] == nil || ends[1] == nil:
			c.problems = append(c.problems, fmt.Errorf("flow %s: begun %v, ended %v", id, ends[0] != nil, ends[1] != nil))
		case *ends[1] < *ends[0]:
			c.problems = append(c.problems, fmt.Errorf("flow %s ends (%v) before it begins (%v)", id, *ends[1], *ends[0]))
		}
	}
	for pid := range c.used {
		if !c.named[pid] {
			c.problems = append(c.problems, fmt.Errorf("pid %d has no process_name", pid))
		}
	}
}
