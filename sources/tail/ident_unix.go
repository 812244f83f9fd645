//go:build unix

package tail

import (
	"io/fs"
	"os"
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

// fstat returns the size and link count of the open file fd, allocating
// nothing (poll calls it for every open file, every poll_interval).
type statBuf = syscall.Stat_t

func fstat(fh *os.File, st *statBuf) (size int64, nlink uint64, err error) {
	rc, err := fh.SyscallConn()
	if err != nil {
		return 0, 0, err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = syscall.Fstat(int(fd), st) }); err != nil {
		return 0, 0, err
	}
	if serr != nil {
		return 0, 0, serr
	}
	return st.Size, uint64(st.Nlink), nil
}
