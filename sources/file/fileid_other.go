//go:build !unix

package file

import (
	"io/fs"
	"path/filepath"
)

// fileKey identifies a file on this system, here by its path with every
// symbolic link resolved.
type fileKey struct {
	real string
	ok   bool
}

// keyOf returns the identity of the file at path.
func keyOf(path string, _ fs.FileInfo) fileKey {
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		return fileKey{}
	}
	abs, err := filepath.Abs(real)
	if err != nil {
		return fileKey{}
	}
	return fileKey{real: abs, ok: true}
}
