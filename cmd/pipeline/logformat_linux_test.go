package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"unsafe"
)

// openPTY opens a pseudo-terminal pair (Linux's /dev/ptmx): the terminal
// side is what a process's stderr is when a person runs it.
func openPTY(t *testing.T) (ptm, pts *os.File) {
	t.Helper()
	ptm, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminal: %v", err)
	}
	t.Cleanup(func() { ptm.Close() })
	var unlock int32
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, ptm.Fd(), syscall.TIOCSPTLCK, uintptr(unsafe.Pointer(&unlock))); e != 0 {
		t.Fatalf("unlockpt: %v", e)
	}
	var n uint32
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, ptm.Fd(), syscall.TIOCGPTN, uintptr(unsafe.Pointer(&n))); e != 0 {
		t.Fatalf("ptsname: %v", e)
	}
	pts, err = os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("open the terminal side: %v", err)
	}
	t.Cleanup(func() { pts.Close() })
	return ptm, pts
}

// TestLogFormatAutoFollowsTheTerminal: log.format auto writes text to a
// terminal and JSON to anything else (a pipe, a file, a buffer); text and
// json are taken as said whatever the output.
func TestLogFormatAutoFollowsTheTerminal(t *testing.T) {
	var buf bytes.Buffer
	newLogger(&buf, "info", "auto").Info("hello", "k", "v")
	var line map[string]any
	if err := json.Unmarshal(buf.Bytes(), &line); err != nil || line["msg"] != "hello" || line["k"] != "v" {
		t.Fatalf("auto to a buffer: %q is not a JSON line (%v)", buf.String(), err)
	}

	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	newLogger(w, "info", "auto").Info("piped")
	w.Close()
	got := make([]byte, 4096)
	n, _ := r.Read(got)
	r.Close()
	if !json.Valid(bytes.TrimSpace(got[:n])) {
		t.Fatalf("auto to a pipe: %q is not JSON", got[:n])
	}

	ptm, pts := openPTY(t)
	newLogger(pts, "info", "auto").Info("on a terminal", "k", "v")
	n, err = ptm.Read(got)
	if err != nil {
		t.Fatal(err)
	}
	if s := string(got[:n]); !strings.Contains(s, `msg="on a terminal" k=v`) || strings.HasPrefix(s, "{") {
		t.Fatalf("auto to a terminal: %q, want a text line", s)
	}

	buf.Reset()
	newLogger(&buf, "info", "text").Info("x")
	if strings.HasPrefix(buf.String(), "{") {
		t.Fatalf("text: %q", buf.String())
	}
	newLogger(pts, "info", "json").Info("forced json")
	n, _ = ptm.Read(got)
	if !strings.HasPrefix(string(got[:n]), "{") {
		t.Fatalf("json on a terminal: %q", got[:n])
	}
}
