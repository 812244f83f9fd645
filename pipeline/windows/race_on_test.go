//go:build race

package windows

// raceEnabled: under -race, sync.Pool drops objects at random, so
// allocation counts mean nothing there. `make test` runs the allocation
// tests a second time without -race.
const raceEnabled = true
