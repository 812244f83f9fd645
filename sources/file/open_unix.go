//go:build unix

package file

import (
	"os"
	"syscall"
)

// openInput opens path for reading without blocking: opening a FIFO that has
// no writer would otherwise wait for one. The caller checks what it opened.
func openInput(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
}
