//go:build unix

package tail

import (
	"io/fs"
	"syscall"
)

// supported: files have device and inode numbers here.
const supported = true

// openFlags opens without blocking on a FIFO put where a file was.
const openFlags = syscall.O_RDONLY | syscall.O_NONBLOCK

// identOf returns the device and inode of the file fi describes, and its
// link count (0: deleted while open).
func identOf(fi fs.FileInfo) (devIno, uint64) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return devIno{}, 1
	}
	return devIno{dev: uint64(st.Dev), ino: uint64(st.Ino)}, uint64(st.Nlink) // not uint64 everywhere
}
