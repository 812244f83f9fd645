package windows

import (
	"math/bits"
	"sync"
)

// A partial is one worker's share of one (metric, group, window): what the
// worker has counted since the window opened, without locks. It starts as
// an exact set of HLL++ sparse keys and becomes dense registers once it
// holds more distinct keys than the sketch has registers. Its memory comes
// from pools and goes back to them when the window closes, so counting
// allocates nothing once the pools are warm.
//
// Keys use the sparse encoding of axiomhq/hyperloglog (HLL++ with a 25-bit
// index): a key decodes back to a hash (synth) that the library encodes to
// the same key, so the merged sketch built at close is, byte for byte, the
// one the library builds when given every value itself. Keeping keys exact
// until the library itself would have gone dense is what makes the result
// independent of how records were spread over workers (tested).
type partial struct {
	keys    []uint32 // open addressing, linear probing; 0 marks a free slot
	n       int      // distinct keys held, zero included
	zero    bool     // key 0 is held (it cannot be stored in a slot)
	regs    []uint8  // dense registers, once promoted
	records int64
}

// sparseIndexBits is the library's sparse precision (pp).
const sparseIndexBits = 25

// encodeKey is the HLL++ sparse key of hash x at precision p: the top 25
// bits, plus the run of zeros below them when the bits between p and 25
// do not already say it.
func encodeKey(x uint64, p uint8) uint32 {
	idx := uint32(x >> (64 - sparseIndexBits))
	if idx&(1<<(sparseIndexBits-p)-1) == 0 {
		zeros := uint32(bits.LeadingZeros64(x<<sparseIndexBits|(1<<sparseIndexBits-1))) + 1
		return idx<<7 | zeros<<1 | 1
	}
	return idx << 1
}

// synth returns a hash whose sparse key is k and whose dense register and
// rank at any precision <= 25 are the ones of every hash with key k.
func synth(k uint32) uint64 {
	if k&1 == 0 {
		return uint64(k>>1) << (64 - sparseIndexBits)
	}
	x := uint64(k>>7) << (64 - sparseIndexBits)
	if zeros := (k >> 1) & 63; zeros <= 64-sparseIndexBits {
		x |= 1 << (64 - sparseIndexBits - zeros)
	}
	return x
}

// posVal is the dense register index and rank of hash x at precision p.
func posVal(x uint64, p uint8) (uint32, uint8) {
	return uint32(x >> (64 - p)), uint8(bits.LeadingZeros64(x<<p|1<<(p-1))) + 1
}

// rankHash returns a hash that lands in register i with rank r.
func rankHash(i uint32, r uint8, p uint8) uint64 {
	x := uint64(i) << (64 - p)
	if int(r) <= 64-int(p) {
		x |= 1 << (64 - int(p) - int(r))
	}
	return x
}

// arena hands out key tables and register arrays from pools, one pool per
// power-of-two table size.
type arena struct {
	p      uint8
	tables []sync.Pool // index: log2 of the slot count
	regs   sync.Pool
}

const minTableBits = 3 // 8 slots

func newArena(p uint8) *arena {
	a := &arena{p: p, tables: make([]sync.Pool, int(p)+2)}
	for i := range a.tables {
		size := 1 << i
		a.tables[i].New = func() any { s := make([]uint32, size); return &s }
	}
	m := 1 << p
	a.regs.New = func() any { s := make([]uint8, m); return &s }
	return a
}

func (a *arena) table(log2 int) []uint32 {
	return *a.tables[log2].Get().(*[]uint32)
}

func (a *arena) putTable(t []uint32) {
	clear(t)
	log2 := bits.TrailingZeros(uint(len(t)))
	a.tables[log2].Put(&t)
}

func (a *arena) registers() []uint8 { return *a.regs.Get().(*[]uint8) }

func (a *arena) putRegisters(r []uint8) {
	clear(r)
	a.regs.Put(&r)
}

// insert counts hash x. It returns by how many bytes the partial's memory
// (size) grew: 0 but when a table was taken, grown or turned into
// registers.
func (pt *partial) insert(x uint64, a *arena) int {
	if pt.regs != nil {
		i, r := posVal(x, a.p)
		if r > pt.regs[i] {
			pt.regs[i] = r
		}
		return 0
	}
	return pt.add(encodeKey(x, a.p), a)
}

func (pt *partial) add(k uint32, a *arena) int {
	if k == 0 {
		if !pt.zero {
			pt.zero = true
			pt.n++
		}
		return 0
	}
	grown := 0
	if pt.keys == nil {
		pt.keys = a.table(minTableBits)
		grown = 4 << minTableBits
	}
	if !pt.put(k) {
		return grown
	}
	pt.n++
	before := len(pt.keys)
	switch {
	case pt.n > 1<<a.p:
		pt.promote(a)
		grown += 1<<a.p - 4*before
	case pt.n*4 > len(pt.keys)*3:
		pt.grow(a)
		grown += 4 * (len(pt.keys) - before)
	}
	return grown
}

// size is the memory the partial holds: its key table or its registers.
func (pt *partial) size() int64 { return int64(4*len(pt.keys) + len(pt.regs)) }

// put adds k to the table and reports whether it was new.
func (pt *partial) put(k uint32) bool {
	mask := uint32(len(pt.keys) - 1)
	shift := 32 - uint(bits.TrailingZeros(uint(len(pt.keys))))
	for i := (k * 0x9E3779B1) >> shift & mask; ; i = (i + 1) & mask {
		switch pt.keys[i] {
		case k:
			return false
		case 0:
			pt.keys[i] = k
			return true
		}
	}
}

func (pt *partial) grow(a *arena) {
	old := pt.keys
	pt.keys = a.table(bits.TrailingZeros(uint(len(old))) + 1)
	for _, k := range old {
		if k != 0 {
			pt.put(k)
		}
	}
	a.putTable(old)
}

// promote turns the key set into dense registers: the partial now holds
// more distinct keys than the sketch has registers, so the merged sketch
// is dense whatever the other workers hold.
func (pt *partial) promote(a *arena) {
	pt.regs = a.registers()
	pt.eachKey(func(k uint32) {
		i, r := posVal(synth(k), a.p)
		if r > pt.regs[i] {
			pt.regs[i] = r
		}
	})
	if pt.keys != nil {
		a.putTable(pt.keys)
	}
	pt.keys, pt.zero = nil, false
}

func (pt *partial) eachKey(fn func(uint32)) {
	if pt.zero {
		fn(0)
	}
	for _, k := range pt.keys {
		if k != 0 {
			fn(k)
		}
	}
}

// release gives the partial's memory back and empties it.
func (pt *partial) release(a *arena) {
	if pt.keys != nil {
		a.putTable(pt.keys)
	}
	if pt.regs != nil {
		a.putRegisters(pt.regs)
	}
	*pt = partial{}
}
