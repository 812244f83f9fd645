// Package app is the composition root: it builds from a config the one
// job every command runs (parse, filter and windows stages, the sinks with
// their retry policies and dedupe, the DLQ, the runner over them) and the
// stores the DLQ tooling reads, and feeds the job from a source: a replay
// over files (Run), a DLQ replay (ReplayDLQ), or the long-running sources
// of `pipeline run`. Every report reconciles in = out + dlq + filtered.
//
// The core (package pipeline and its stages) imports no sink, parser or
// source; this package is where they meet.
package app
