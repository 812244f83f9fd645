package parsers

import (
	"unsafe"

	"github.com/valyala/fastjson"
)

// fastjson's public API unescapes every string and object key it hands out
// (Value.Type, Object.Visit), which costs an IndexByte per string even when
// the unit holds no backslash at all, the common case, and its Visit
// iterates through a closure. Most of the decode time after Parse went
// there. So the decoder reads the parsed tree through a mirror of fastjson's
// value layout (v1.6.10) when, and only when:
//
//   - fastView is set: the layout probe below found the mirror matches the
//     fastjson in the build (sizes, and the fields of a parsed probe
//     document); otherwise every read goes through the public API;
//   - for raw strings and keys, the unit has no backslash (d.escapes is
//     false), so a raw string is its own unescaped text. d.raw caches
//     fastView && !d.escapes for the current unit. Units with escapes
//     are unescaped by fastjson's public calls before the mirror reads them.
//
// The mirror is only ever read, never written. Tests run the decoders with
// fastView on and off and compare.

// fjKV mirrors fastjson's kv.
type fjKV struct {
	k string
	v *fastjson.Value
}

// fjObject mirrors fastjson.Object.
type fjObject struct {
	kvs           []fjKV
	keysUnescaped bool
}

// fjValue mirrors fastjson.Value.
type fjValue struct {
	o fjObject
	a []*fastjson.Value
	s string
	t fastjson.Type
}

// fjParser mirrors fastjson.Parser: b is its copy of the text parsed last
// (after leading whitespace), which every string and number value points
// into.
type fjParser struct {
	b []byte
	c struct{ vs []fastjson.Value }
}

// fjRawString is fastjson's type of a string not unescaped yet.
const fjRawString fastjson.Type = 7

func view(v *fastjson.Value) *fjValue { return (*fjValue)(unsafe.Pointer(v)) }

// fastView reports whether the mirror matches the fastjson in the build.
var fastView = probeLayout()

func probeLayout() (ok bool) {
	defer func() {
		if recover() != nil {
			ok = false
		}
	}()
	if unsafe.Sizeof(fjValue{}) != unsafe.Sizeof(fastjson.Value{}) ||
		unsafe.Sizeof(fjObject{}) != unsafe.Sizeof(fastjson.Object{}) ||
		unsafe.Sizeof(fjParser{}) != unsafe.Sizeof(fastjson.Parser{}) {
		return false
	}
	var p fastjson.Parser
	const doc = `{"k\n":[12.5,"s\t"],"b":true}`
	root, err := p.Parse(" \n" + doc)
	if err != nil {
		return false
	}
	r := view(root)
	if r.t != fastjson.TypeObject || len(r.o.kvs) != 2 || r.o.keysUnescaped ||
		r.o.kvs[0].k != `k\n` || r.o.kvs[1].k != "b" || r.o.kvs[1].v != root.Get("b") {
		return false
	}
	arr := r.o.kvs[0].v
	a := view(arr)
	if a.t != fastjson.TypeArray || len(a.a) != 2 || &a.a[0] != &arr.GetArray()[0] {
		return false
	}
	n, s := view(a.a[0]), view(a.a[1])
	if n.t != fastjson.TypeNumber || n.s != "12.5" || s.t != fjRawString || s.s != `s\t` {
		return false
	}
	// Strings and numbers are slices of the parser's copy of the text, at
	// the offsets they have in it (unitView relies on this).
	pb := (*fjParser)(unsafe.Pointer(&p)).b
	if string(pb) != doc ||
		unsafe.StringData(r.o.kvs[0].k) != &pb[2] || unsafe.StringData(r.o.kvs[1].k) != &pb[21] ||
		unsafe.StringData(n.s) != &pb[8] || unsafe.StringData(s.s) != &pb[14] {
		return false
	}
	// After the public calls unescape, the mirror sees the results.
	if sb, _ := a.a[1].StringBytes(); string(sb) != "s\t" || s.t != fastjson.TypeString || s.s != "s\t" {
		return false
	}
	root.GetObject().Visit(func([]byte, *fastjson.Value) {})
	return r.o.keysUnescaped && r.o.kvs[0].k == "k\n"
}

// typ returns v's type, unescaping a string only when the unit has escapes.
func (d *Decoder) typ(v *fastjson.Value) fastjson.Type {
	if d.raw {
		t := view(v).t
		if t == fjRawString {
			t = fastjson.TypeString
		}
		return t
	}
	return typeOf(v)
}

// typeOf is v.Type() kept out of line, so typ stays small enough to inline.
//
//go:noinline
func typeOf(v *fastjson.Value) fastjson.Type { return v.Type() }

// strBytes returns the text of string v, valid until the next Parse.
func (d *Decoder) strBytes(v *fastjson.Value) []byte {
	if d.raw {
		s := view(v).s
		return unsafe.Slice(unsafe.StringData(s), len(s))
	}
	s, _ := v.StringBytes()
	return s
}

// literal returns the literal text of number v, valid until the next Parse
// (or, without the fast view, the next literal call).
func (d *Decoder) literal(v *fastjson.Value) []byte {
	if fastView {
		s := view(v).s
		return unsafe.Slice(unsafe.StringData(s), len(s))
	}
	d.num = v.MarshalTo(d.num[:0])
	return d.num
}

// members returns the members of object v with unescaped keys. Without the
// fast view they are collected into d.kvStack: the caller passes the
// returned mark to d.release once done iterating.
func (d *Decoder) members(v *fastjson.Value) ([]fjKV, int) {
	if fastView {
		m := view(v)
		if d.escapes && !m.o.keysUnescaped {
			v.GetObject().Visit(visitNothing)
		}
		return m.o.kvs, -1
	}
	mark := len(d.kvStack)
	v.GetObject().Visit(func(k []byte, c *fastjson.Value) {
		d.kvStack = append(d.kvStack, fjKV{k: unsafe.String(unsafe.SliceData(k), len(k)), v: c})
	})
	return d.kvStack[mark:len(d.kvStack):len(d.kvStack)], mark
}

// release drops what members collected since mark.
func (d *Decoder) release(mark int) {
	if mark >= 0 {
		clear(d.kvStack[mark:])
		d.kvStack = d.kvStack[:mark]
	}
}

func visitNothing([]byte, *fastjson.Value) {}

// b2s views b as a string; b must not change while the string is used.
func b2s(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }
