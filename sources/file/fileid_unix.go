//go:build unix

package file

import (
	"io/fs"
	"syscall"
)

// fileKey identifies a file on this system, whatever path reaches it.
type fileKey struct {
	dev, ino uint64
	ok       bool
}

// keyOf returns the identity of the file fi describes (fi from os.Stat).
func keyOf(_ string, fi fs.FileInfo) fileKey {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fileKey{}
	}
	return fileKey{dev: uint64(st.Dev), ino: uint64(st.Ino), ok: true} // Dev and Ino are not uint64 everywhere
}
