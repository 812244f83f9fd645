package redisstream

import (
	"bytes"
	"testing"
	"unsafe"
)

// FuzzParseRead: any reply, however hostile (huge declared lengths,
// truncation, wrong types, nesting), parses to an error or to entries that
// are slices of the reply itself, in time linear in its size, never a
// panic; and a reply built from entries parses back to them.
func FuzzParseRead(f *testing.F) {
	for _, s := range []string{
		"*1\r\n*2\r\n$1\r\ns\r\n*1\r\n*2\r\n$3\r\n1-0\r\n*2\r\n$6\r\nrecord\r\n$7\r\n{\"a\":1}\r\n",
		"%1\r\n$1\r\ns\r\n*1\r\n*2\r\n$3\r\n1-0\r\n*2\r\n$6\r\nrecord\r\n$1\r\nx\r\n",
		"*-1\r\n", "_\r\n", "-NOGROUP no such group\r\n",
		"*1\r\n*2\r\n$1\r\ns\r\n*1\r\n*2\r\n$3\r\n1-0\r\n*-1\r\n",
		"*1\r\n*2\r\n$1\r\ns\r\n*999999999\r\n",
		"*1\r\n*2\r\n$1\r\ns\r\n*1\r\n*2\r\n$3\r\n1-0\r\n*3\r\n$1\r\na\r\n$1\r\nb\r\n$1\r\nc\r\n",
		"*1\r\n*2\r\n$1\r\ns\r\n*1\r\n*2\r\n$99999999999\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, reply []byte) {
		es, err := parseRead(reply, "s", nil)
		if err != nil {
			return
		}
		lo := uintptr(unsafe.Pointer(unsafe.SliceData(reply)))
		within := func(b []byte) bool {
			if len(b) == 0 {
				return true
			}
			p := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
			return p >= lo && p+uintptr(len(b)) <= lo+uintptr(len(reply))
		}
		for _, e := range es {
			if len(e.id) == 0 || !within(e.id) || !within(e.payload) {
				t.Fatalf("entry %q/%q is not a slice of the reply", e.id, e.payload)
			}
		}
		// Built back as a RESP2 reply, the entries parse to themselves.
		var b bytes.Buffer
		bulk := func(s []byte) {
			b.WriteString("$")
			b.WriteString(itoa(len(s)))
			b.WriteString("\r\n")
			b.Write(s)
			b.WriteString("\r\n")
		}
		b.WriteString("*1\r\n*2\r\n")
		bulk([]byte("s"))
		b.WriteString("*" + itoa(len(es)) + "\r\n")
		for _, e := range es {
			b.WriteString("*2\r\n")
			bulk(e.id)
			if e.payload == nil {
				b.WriteString("*0\r\n")
				continue
			}
			b.WriteString("*2\r\n")
			bulk([]byte(RecordField))
			bulk(e.payload)
		}
		again, err := parseRead(b.Bytes(), "s", nil)
		if err != nil || len(again) != len(es) {
			t.Fatalf("rebuilt reply: %d entries, %v; want %d", len(again), err, len(es))
		}
		for i := range es {
			if !bytes.Equal(again[i].id, es[i].id) || !bytes.Equal(again[i].payload, es[i].payload) {
				t.Fatalf("entry %d: %q/%q, want %q/%q", i, again[i].id, again[i].payload, es[i].id, es[i].payload)
			}
		}
	})
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var d []byte
	for ; n > 0; n /= 10 {
		d = append([]byte{byte('0' + n%10)}, d...)
	}
	return string(d)
}
