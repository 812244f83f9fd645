package windows

import (
	"fmt"

	"github.com/axiomhq/hyperloglog"
	metro "github.com/dgryski/go-metro"
)

// hashSeed is the seed axiomhq/hyperloglog's Insert uses, so that a sketch
// built here from HashValue equals one built with Sketch.Insert(value): any
// tool using the library can merge with our rows.
const hashSeed = 1337

// HashValue is the 64-bit hash of a counted value.
func HashValue(v []byte) uint64 { return metro.Hash64(v, hashSeed) }

// NewSketch returns an empty sparse sketch of precision p.
func NewSketch(p int) (*hyperloglog.Sketch, error) {
	return hyperloglog.NewSketch(uint8(p), true)
}

// Encode returns the sketch's estimate and its canonical encoding: Estimate
// first compacts the sparse form (sorted, deduplicated) and makes the dense
// switch final, so equal sets of values encode to equal bytes whatever the
// order they were inserted or merged in.
func Encode(sk *hyperloglog.Sketch) (uint64, []byte, error) {
	est := sk.Estimate()
	b, err := sk.MarshalBinary()
	if err != nil {
		return 0, nil, fmt.Errorf("sketch: %w", err)
	}
	return est, b, nil
}

// Decode returns the sketch a row holds.
func Decode(b []byte) (*hyperloglog.Sketch, error) {
	sk := &hyperloglog.Sketch{}
	if err := sk.UnmarshalBinary(b); err != nil {
		return nil, fmt.Errorf("sketch: %w", err)
	}
	return sk, nil
}
