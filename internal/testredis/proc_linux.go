//go:build linux

package testredis

import "syscall"

// setDeathSignal asks the kernel to kill the server if the test process
// dies without running its cleanups (a crash, a timeout panic).
func setDeathSignal(a *syscall.SysProcAttr) { a.Pdeathsig = syscall.SIGKILL }
