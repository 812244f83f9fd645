package app

import (
	"bytes"
	"compress/gzip"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestReplayUnsupportedFormats: a tarball (gzipped, made by the tar tool),
// UTF-16 text and an lz4 file among the inputs are one `file` DLQ entry
// each, code unsupported_format, on disk, and not one malformed entry for
// their lines; the bzip2 and xz files beside them are delivered.
func TestReplayUnsupportedFormats(t *testing.T) {
	for _, tool := range []string{"tar", "lz4", "bzip2", "xz"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed", tool)
		}
	}
	in, out := t.TempDir(), t.TempDir()
	good := goodLines(10)
	write := func(name string, data []byte) string {
		t.Helper()
		p := filepath.Join(in, name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	run := func(stdin []byte, name string, args ...string) []byte {
		t.Helper()
		cmd := exec.CommandContext(t.Context(), name, args...)
		cmd.Dir, cmd.Stdin = in, bytes.NewReader(stdin)
		b, err := cmd.Output()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		return b
	}
	write("member.jsonl", good)
	var tgz bytes.Buffer
	zw := gzip.NewWriter(&tgz)
	zw.Write(run(nil, "tar", "-cf", "-", "member.jsonl"))
	zw.Close()
	if err := os.Remove(filepath.Join(in, "member.jsonl")); err != nil {
		t.Fatal(err)
	}
	u16 := []byte{0xff, 0xfe}
	for _, c := range good {
		u16 = append(u16, c, 0)
	}
	refused := map[string]bool{
		write("logs.tar.gz", tgz.Bytes()):                     true,
		write("utf16.jsonl", u16):                             true,
		write("logs.jsonl.lz4", run(good, "lz4", "-q", "-c")): true,
	}
	write("good.jsonl.bz2", run(good, "bzip2", "-c"))
	write("good.jsonl.xz", run(good, "xz", "-c"))

	rep, err := Run(context.Background(), testConfig(t, out, ""), Options{Paths: []string{in}, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Files != 5 || rep.FilesFailed != 3 || rep.RecordsOut != 20 || rep.DLQ["file"] != 3 || rep.DLQ["total"] != 3 || !rep.Reconciled {
		t.Fatalf("report %+v", rep)
	}
	entries := readDLQ(t, filepath.Join(out, "dlq"))
	if len(entries) != 3 {
		t.Fatalf("%d DLQ entries, want 3: %+v", len(entries), entries)
	}
	for _, e := range entries {
		if e.Error.Class != "file" || e.Error.Code != "unsupported_format" || !refused[e.Source.Path] {
			t.Errorf("DLQ entry %+v %+v", e.Error, e.Source)
		}
		delete(refused, e.Source.Path)
	}
}
