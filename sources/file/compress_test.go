package file

import (
	"bytes"
	"os/exec"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
)

// cliCompress pipes data through the command-line tool name with args and
// returns its output. The files are made at test time by the real tools,
// not committed, so that what is tested is what those tools write today;
// the test is skipped when the tool is not installed (Debian packages
// zstd, bzip2, xz-utils, lz4, zip).
func cliCompress(t *testing.T, data []byte, name string, args ...string) []byte {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		t.Skipf("%s not installed: %v", name, err)
	}
	cmd := exec.CommandContext(t.Context(), name, args...)
	cmd.Stdin = bytes.NewReader(data)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %v: %v: %s", name, args, err, stderr.String())
	}
	return out
}

// TestReadZstdLongWindow reads a file made by `zstd --long=27` from standard
// input: the tool does not know the input's size then, so the frame keeps
// the whole 128 MiB window in its header, more than the decoder's former
// 64 MiB limit, and such a file used to fail whole as CodeZstd.
func TestReadZstdLongWindow(t *testing.T) {
	lines, want := ndjson(3000)
	data := cliCompress(t, lines, "zstd", "-q", "--long=27", "-c")
	var h zstd.Header
	if err := h.Decode(data); err != nil {
		t.Fatal(err)
	}
	if h.WindowSize <= 64<<20 {
		t.Fatalf("zstd --long=27 wrote a window of %d bytes, not over 64 MiB: the test proves nothing", h.WindowSize)
	}
	p := writeFile(t, t.TempDir(), "long.zst", data)
	res := collect(t, testOptions(), []File{fileOf(t, p)})
	if len(res.errs) != 0 {
		t.Fatalf("errors %v", res.errs)
	}
	if got := res.units[p]; strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("got %d units, want %d", len(got), len(want))
	}
}
