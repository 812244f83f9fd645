//go:build unix && !linux

package testredis

import "syscall"

func setDeathSignal(*syscall.SysProcAttr) {}
