//go:build !unix

package file

import "os"

// openInput opens path for reading.
func openInput(path string) (*os.File, error) { return os.Open(path) }
