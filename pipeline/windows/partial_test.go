package windows

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"testing"

	"github.com/axiomhq/hyperloglog"
)

// TestKeysRoundTripThroughTheLibrary holds encodeKey, synth, posVal and
// rankHash to the library's own encoding: a sketch fed synthetic hashes
// must be byte-identical to one fed the original hashes, sparse and dense.
// A library upgrade that changes its encoding fails here.
func TestKeysRoundTripThroughTheLibrary(t *testing.T) {
	for _, p := range []uint8{4, 10, 14, 16, 18} {
		for _, n := range []int{1, 100, 3000, 40000} {
			rng := rand.New(rand.NewPCG(uint64(p), uint64(n)))
			orig, _ := hyperloglog.NewSketch(p, true)
			viaKey, _ := hyperloglog.NewSketch(p, true)
			dense, _ := hyperloglog.NewSketch(p, false)
			viaRank, _ := hyperloglog.NewSketch(p, false)
			regs := make([]uint8, 1<<p)
			for range n {
				x := rng.Uint64()
				if rng.IntN(8) == 0 { // long runs of zeros, the rare encodings
					x >>= rng.IntN(64)
				}
				orig.InsertHash(x)
				dense.InsertHash(x)
				k := encodeKey(x, p)
				viaKey.InsertHash(synth(k))
				i, r := posVal(x, p)
				if i2, r2 := posVal(synth(k), p); i2 != i || r2 != r {
					t.Fatalf("p=%d x=%#x: posVal %d/%d, via key %d/%d", p, x, i, r, i2, r2)
				}
				regs[i] = max(regs[i], r)
			}
			for i, r := range regs {
				if r > 0 {
					viaRank.InsertHash(rankHash(uint32(i), r, p))
				}
			}
			for _, c := range []struct {
				name string
				a, b *hyperloglog.Sketch
			}{{"sparse via keys", orig, viaKey}, {"dense via ranks", dense, viaRank}} {
				_, ea, _ := Encode(c.a)
				_, eb, _ := Encode(c.b)
				if !bytes.Equal(ea, eb) {
					t.Errorf("p=%d n=%d %s: encodings differ", p, n, c.name)
				}
			}
		}
	}
}

// TestPartialPromotes checks the exact set holds up to 2^p keys, then
// turns dense with the same registers the library would have.
func TestPartialPromotes(t *testing.T) {
	const p = 10
	a := newArena(p)
	var pt partial
	want, _ := hyperloglog.NewSketch(p, false)
	var b [8]byte
	for i := range 5000 {
		binary.LittleEndian.PutUint64(b[:], uint64(i))
		x := HashValue(b[:])
		pt.insert(x, a)
		pt.insert(x, a) // duplicates change nothing
		want.InsertHash(x)
		if pt.regs == nil && pt.n != i+1 && i < 500 {
			t.Fatalf("after %d distinct values the set holds %d", i+1, pt.n)
		}
	}
	if pt.regs == nil {
		t.Fatalf("5000 distinct values at p=%d: still sparse with %d keys", p, pt.n)
	}
	got, _ := hyperloglog.NewSketch(p, false)
	for i, r := range pt.regs {
		if r > 0 {
			got.InsertHash(rankHash(uint32(i), r, p))
		}
	}
	_, eg, _ := Encode(got)
	_, ew, _ := Encode(want)
	if !bytes.Equal(eg, ew) {
		t.Fatal("promoted registers differ from the library's dense sketch")
	}
	pt.release(a)
	if pt.regs != nil || pt.keys != nil || pt.n != 0 {
		t.Fatal("release left state behind")
	}
}
