//go:build race

package app

// raceEnabled: the race detector slows a run ~10x and changes its memory;
// the memory test runs without it (make test runs it first, without -race).
const raceEnabled = true
