//go:build race

package pipeline_test

// raceEnabled: under -race, sync.Pool drops objects at random, so
// allocation counts mean nothing there.
const raceEnabled = true
