package file

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
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

// TestReadBzip2AndXz reads files made by the bzip2 and xz tools, found by
// their magic bytes whatever their names, single and concatenated streams,
// and a pretty-printed document in each; a file cut in half sends the
// units before the cut and fails with the decompressor's code.
func TestReadBzip2AndXz(t *testing.T) {
	lines, want := ndjson(3000)
	pretty := []byte("{\n  \"resourceSpans\": [\n    {}\n  ]\n}\n")
	wantPretty := []string{"1@0 {\n  \"resourceSpans\": [\n    {}\n  ]\n}"}
	for _, tc := range []struct {
		tool string
		args []string
		code string
	}{
		{"bzip2", []string{"-c"}, CodeBzip2},
		{"xz", []string{"-c"}, CodeXz},
		{"xz", []string{"-c", "-9e"}, CodeXz}, // a 64 MiB dictionary
	} {
		t.Run(tc.tool+strings.Join(tc.args, ""), func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			half := bytes.IndexByte(lines[len(lines)/2:], '\n') + len(lines)/2 + 1
			whole := cliCompress(t, lines, tc.tool, tc.args...)
			concat := append(cliCompress(t, lines[:half], tc.tool, tc.args...), cliCompress(t, lines[half:], tc.tool, tc.args...)...)
			for _, f := range []struct {
				name string
				data []byte
				want []string
			}{
				{"no-extension", whole, want},
				{"concatenated.jsonl", concat, want},
				{"pretty.json", cliCompress(t, pretty, tc.tool, tc.args...), wantPretty},
			} {
				p := writeFile(t, dir, f.name, f.data)
				res := collect(t, testOptions(), []File{fileOf(t, p)})
				if len(res.errs) != 0 {
					t.Fatalf("%s: errors %v", f.name, res.errs)
				}
				if got := res.units[p]; strings.Join(got, "\n") != strings.Join(f.want, "\n") {
					t.Fatalf("%s: got %d units, want %d; first %q", f.name, len(got), len(f.want), got[:min(1, len(got))])
				}
			}

			// Cut short: bzip2 checks its blocks as they end, xz its
			// stream as it ends, so only some units may come first; all
			// that come are right, and the file fails once, with its code.
			p := writeFile(t, dir, "truncated", whole[:len(whole)*3/4])
			res := collect(t, testOptions(), []File{fileOf(t, p)})
			got := res.units[p]
			if len(got) >= len(want) || strings.Join(got, "\n") != strings.Join(want[:len(got)], "\n") {
				t.Fatalf("truncated: %d units, not a strict prefix of the file's %d", len(got), len(want))
			}
			if len(res.errs) != 1 || res.errs[0].Code != tc.code || res.errs[0].Err == nil {
				t.Fatalf("truncated: errors %+v, want one with code %s", res.errs, tc.code)
			}
		})
	}
}

// utf16 encodes s as UTF-16 with a byte order mark (ASCII only).
func utf16(s string, bigEndian bool) []byte {
	out := []byte{0xff, 0xfe}
	if bigEndian {
		out = []byte{0xfe, 0xff}
	}
	for _, c := range []byte(s) {
		if bigEndian {
			out = append(out, 0, c)
		} else {
			out = append(out, c, 0)
		}
	}
	return out
}

// TestReadUnsupportedFormats checks that each container or encoding that
// is recognised but not read fails the file once, with
// CodeUnsupportedFormat and a message naming it, and sends no unit at all
// (so no line of it becomes a malformed DLQ entry), also when it sits
// inside a compression the reader decodes. The archives are made by the
// real tools (tar, zip, lz4) at test time; 7z and the UTF-16/32 files are
// built by hand from their documented first bytes, since p7zip is not
// always installed.
func TestReadUnsupportedFormats(t *testing.T) {
	dir := t.TempDir()
	lines, _ := ndjson(2000)
	writeFile(t, dir, "member/spans.jsonl", lines)
	tool := func(name string, args ...string) []byte {
		t.Helper()
		if _, err := exec.LookPath(name); err != nil {
			t.Skipf("%s not installed: %v", name, err)
		}
		cmd := exec.CommandContext(t.Context(), name, args...)
		cmd.Dir = dir
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("%s %v: %v", name, args, err)
		}
		return out
	}
	tarball := tool("tar", "-cf", "-", "member")
	gnuTar := tool("tar", "--format=gnu", "-cf", "-", "member")
	tool("zip", "-q", "-r", "archive.zip", "member")
	zipped, err := os.ReadFile(filepath.Join(dir, "archive.zip"))
	if err != nil {
		t.Fatal(err)
	}
	text := string(lines[:2000])
	for _, tc := range []struct {
		name, file string
		data       []byte
	}{
		{"tar archive", "a.tar", tarball},
		{"tar archive", "gnu.jsonl", gnuTar}, // the content decides, not the name
		{"tar archive, gzip-compressed", "a.tar.gz", gzipBytes(tarball)},
		{"tar archive, zstd-compressed", "a.tar.zst", zstdBytes(tarball)},
		{"tar archive, xz-compressed", "a.tar.xz", cliCompress(t, tarball, "xz", "-c")},
		{"tar archive, bzip2-compressed", "a.tar.bz2", cliCompress(t, tarball, "bzip2", "-c")},
		{"lz4", "spans.jsonl.lz4", cliCompress(t, lines, "lz4", "-q", "-c")},
		{"zip archive", "archive.zip", zipped},
		{"7z archive", "a.7z", append([]byte{'7', 'z', 0xbc, 0xaf, 0x27, 0x1c, 0, 4}, lines[:100]...)},
		{"UTF-16 text", "le.jsonl", utf16(text, false)},
		{"UTF-16 text", "be.jsonl", utf16(text, true)},
		{"UTF-16 text, gzip-compressed", "le.jsonl.gz", gzipBytes(utf16(text, false))},
		{"UTF-32 text", "32.jsonl", append([]byte{0xff, 0xfe, 0, 0}, lines[:100]...)},
	} {
		p := writeFile(t, dir, tc.file, tc.data)
		res := collect(t, testOptions(), []File{fileOf(t, p)})
		if n := len(res.units[p]); n != 0 {
			t.Errorf("%s: %d units sent, want none", tc.file, n)
		}
		if len(res.errs) != 1 {
			t.Fatalf("%s: errors %v, want one", tc.file, res.errs)
		}
		fe := res.errs[0]
		if fe.Code != CodeUnsupportedFormat || fe.Path != p || fe.Offset != 0 || !strings.HasPrefix(fe.Err.Error(), tc.name+": ") {
			t.Errorf("%s: error %+v (%v), want %s naming %q", tc.file, fe, fe.Err, CodeUnsupportedFormat, tc.name)
		}
	}

	// What merely looks like those formats further in is read: a line
	// holding "ustar" at offset 257, and a short file.
	line := []byte(`{"pad":"` + strings.Repeat("x", 249) + `ustar"}` + "\n")
	for name, data := range map[string][]byte{"ustar-inside.jsonl": line, "short.jsonl": []byte("{}\n"), "short.gz": gzipBytes([]byte("{}\n"))} {
		p := writeFile(t, dir, name, data)
		res := collect(t, testOptions(), []File{fileOf(t, p)})
		if len(res.errs) != 0 || len(res.units[p]) != 1 {
			t.Errorf("%s: errors %v, %d units, want 1 unit", name, res.errs, len(res.units[p]))
		}
	}
}
