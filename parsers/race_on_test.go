//go:build race

package parsers

// slowdown scales the time limits of tests under the race detector.
const slowdown = 10
