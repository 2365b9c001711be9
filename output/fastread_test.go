package output

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"
)

// checkFastDecoder: whatever the fast decoder accepts, encoding/json reads
// the same way, to the same connection or the same error.
func checkFastDecoder(t *testing.T, raw []byte, opts ReadOptions) (accepted bool) {
	t.Helper()
	var d fastDecoder
	got, ok, gotErr := d.connection(raw, opts)
	if !ok {
		return false
	}
	if !json.Valid(raw) {
		t.Fatalf("accepted invalid JSON %q", raw)
	}
	var j connectionInput
	if err := json.Unmarshal(raw, &j); err != nil {
		t.Fatalf("accepted %q, which encoding/json refuses: %v", raw, err)
	}
	want, wantErr := j.connection(opts)
	if (gotErr == nil) != (wantErr == nil) || gotErr != nil && gotErr.Error() != wantErr.Error() {
		t.Fatalf("%q: error %v, encoding/json's %v", raw, gotErr, wantErr)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%q:\n got %+v\nwant %+v", raw, got, want)
	}
	return true
}

func fastSeeds() [][]byte {
	var out [][]byte
	for _, c := range sampleConnections() {
		out = append(out, AppendConnectionJSON(nil, &c))
	}
	// Every key, the owner's cgroup included.
	full := fullRecords().conns[0]
	out = append(out, AppendConnectionJSON(nil, &full))
	t0 := time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)
	for i := 0; i < 50; i++ {
		c := largeConnection(i, t0)
		out = append(out, AppendConnectionJSON(nil, &c))
	}
	return out
}

func TestFastDecoderAgreesWithEncodingJSON(t *testing.T) {
	accepted := 0
	for _, raw := range fastSeeds() {
		for _, opts := range []ReadOptions{{}, {FlaggedTimelinesOnly: true}} {
			if checkFastDecoder(t, raw, opts) {
				accepted++
			}
		}
	}
	// The writer's own records must take the fast way (but the one whose
	// comm needs escapes).
	if want := 2 * (len(fastSeeds()) - 1); accepted != want {
		t.Errorf("the fast decoder read %d of the writer's records, want %d", accepted, want)
	}
}

func FuzzFastDecoder(f *testing.F) {
	for _, raw := range fastSeeds()[:6] {
		f.Add(raw)
	}
	f.Add([]byte(`{"type":"connection","id":01}`))
	f.Add([]byte(`{"id":18446744073709551615,"local_port":65535,"duration_us":-9223372036854775808,"timeline":[1e5,-0.5,"\u00e9\n",{"a":[true,false,null]}]}`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		checkFastDecoder(t, raw, ReadOptions{FlaggedTimelinesOnly: true})
	})
}
