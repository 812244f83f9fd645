//go:build unix

package testredis

import (
	"os"
	"os/exec"
	"syscall"
)

// setProcAttr puts the server in its own process group, so that it and
// any child it forks (an AOF rewrite) are signalled together.
func setProcAttr(cmd *exec.Cmd) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	setDeathSignal(cmd.SysProcAttr)
}

func terminate(p *os.Process) { _ = p.Signal(syscall.SIGTERM) }

// killTree sends SIGKILL to the process group the server leads (it and
// any child it forked), then to the server itself in case the group was not
// set. Callers only call it while the server has not been waited for, so
// the group id is still the server's own.
func killTree(p *os.Process) {
	_ = syscall.Kill(-p.Pid, syscall.SIGKILL)
	_ = p.Kill()
}
