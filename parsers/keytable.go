package parsers

import "math/bits"

// keyTable maps the top-level keys that start a candidate path to their
// entries: open addressing on a cheap hash, for a lookup per key of every
// jsonl line (a Go map's string hashing cost several times more here).
type keyTable struct {
	slots []keySlot
	shift uint8
	// filter rejects most absent keys before hashing: bit keyBit(k) of
	// filter[min(len(k), 31)] is set for every key in the table.
	filter [32]uint64
}

type keySlot struct {
	key     string
	entries []fieldEntry // the candidate paths starting with key
	ctr     uint8        // ctrNone, or the container key is (see container)
	used    bool
}

// keyHash mixes the length and three bytes of k.
func keyHash(k string) uint32 {
	n := len(k)
	h := uint32(n) << 24
	if n > 0 {
		h ^= uint32(k[0])<<16 ^ uint32(k[n-1])<<8 ^ uint32(k[n/2])
	}
	return h * 0x9E3779B1
}

// keyBit picks a filter bit from the first and last bytes of k (not empty).
func keyBit(k string) uint64 {
	return 1 << ((uint(k[0])*7 + uint(k[len(k)-1])) & 63)
}

// newKeyTable builds the table of the candidate paths' first keys (m) and
// the container keys (ctr) with a load factor of at most 1/4.
func newKeyTable(m map[string][]fieldEntry, ctr map[string]uint8) keyTable {
	keys := map[string]bool{}
	for k := range m {
		keys[k] = true
	}
	for k := range ctr {
		keys[k] = true
	}
	size := 16
	for size < 4*len(keys) {
		size <<= 1
	}
	t := keyTable{slots: make([]keySlot, size), shift: uint8(32 - bits.TrailingZeros(uint(size)))}
	mask := uint32(size - 1)
	for k := range keys {
		i := keyHash(k) >> t.shift
		for t.slots[i].used {
			i = (i + 1) & mask
		}
		t.slots[i] = keySlot{key: k, entries: m[k], ctr: ctr[k], used: true}
		if k != "" {
			t.filter[min(len(k), 31)] |= keyBit(k)
		}
	}
	return t
}

// lookup returns the slot of key k, or nil.
func (t *keyTable) lookup(k string) *keySlot {
	if k != "" && t.filter[min(len(k), 31)]&keyBit(k) == 0 {
		return nil
	}
	mask := uint32(len(t.slots) - 1)
	for i := keyHash(k) >> t.shift; ; i = (i + 1) & mask {
		s := &t.slots[i]
		if !s.used {
			return nil
		}
		if s.key == k {
			return s
		}
	}
}
