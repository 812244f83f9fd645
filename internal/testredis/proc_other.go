//go:build !unix

package testredis

import (
	"os"
	"os/exec"
)

func setProcAttr(*exec.Cmd) {}

// Without Unix signals a graceful stop is not available: kill.
func terminate(p *os.Process) { _ = p.Kill() }

func killTree(p *os.Process) { _ = p.Kill() }
