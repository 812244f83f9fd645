package jsonstr

import "unsafe"

// unsafeBytes views s as bytes; Append only reads them.
func unsafeBytes(s string) []byte { return unsafe.Slice(unsafe.StringData(s), len(s)) }
