package file

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

func TestExpand(t *testing.T) {
	dir := t.TempDir()
	for _, p := range []string{"a/1.log", "a/b/2.log.gz", "a/b/c/3.json", "a/.hidden", "d/4.log", "d/e/5.json"} {
		writeFile(t, dir, p, []byte(p))
	}
	if runtime.GOOS != "windows" {
		// A link loop, a link to a folder already walked, a link to a file
		// already listed, a dangling link.
		mustSymlink(t, filepath.Join(dir, "a"), filepath.Join(dir, "a/b/loop"))
		mustSymlink(t, filepath.Join(dir, "d"), filepath.Join(dir, "a/b/c/d-again"))
		mustSymlink(t, filepath.Join(dir, "d/4.log"), filepath.Join(dir, "a/4-link.log"))
	}
	// f expands args (relative to dir) and compares the files (relative,
	// with sizes) and the errors' "path:code".
	f := func(args []string, wantFiles []string, wantErrs ...string) {
		t.Helper()
		var abs []string
		for _, a := range args {
			abs = append(abs, filepath.Join(dir, a))
		}
		files, errs := Expand(abs)
		var got []string
		for _, f := range files {
			rel, _ := filepath.Rel(dir, f.Path)
			rel = filepath.ToSlash(rel)
			if f.Size != int64(len(rel)) && !strings.Contains(rel, "link") && !strings.Contains(rel, "again") {
				t.Fatalf("%s: size %d", rel, f.Size)
			}
			got = append(got, rel)
		}
		var gotErrs []string
		for _, e := range errs {
			rel, _ := filepath.Rel(dir, e.Path)
			gotErrs = append(gotErrs, filepath.ToSlash(rel)+":"+e.Code)
			if e.Err == nil || !strings.Contains(e.Error(), e.Path) {
				t.Fatalf("error %v does not name its path", e)
			}
		}
		if strings.Join(got, " ") != strings.Join(wantFiles, " ") || strings.Join(gotErrs, " ") != strings.Join(wantErrs, " ") {
			t.Fatalf("Expand(%q):\nfiles %q\nwant  %q\nerrs %q\nwant %q", args, got, wantFiles, gotErrs, wantErrs)
		}
	}
	// Folders, recursive; links followed once, loops ended, one file reached
	// by two paths listed once (under the first path in sort order).
	f([]string{"a"}, []string{"a/.hidden", "a/1.log", "a/4-link.log", "a/b/2.log.gz", "a/b/c/3.json", "a/b/c/d-again/e/5.json"})
	f([]string{"d", "a/b/c"}, []string{"a/b/c/3.json", "a/b/c/d-again/4.log", "a/b/c/d-again/e/5.json"})
	// Files, deduplicated however they are spelt.
	f([]string{"d/4.log", "d/./4.log", "d/e/../4.log"}, []string{"d/4.log"})
	// Globs: one level, and "**" for any depth.
	f([]string{"a/*.log"}, []string{"a/1.log", "a/4-link.log"})
	f([]string{"*/*.log"}, []string{"a/1.log", "a/4-link.log"})
	f([]string{"d/*"}, []string{"d/4.log", "d/e/5.json"}) // a matched folder is read whole
	f([]string{"**/*.json"}, []string{"a/b/c/3.json", "a/b/c/d-again/e/5.json"})
	f([]string{"d/**"}, []string{"d/4.log", "d/e/5.json"})
	f([]string{"a/**/2.log.gz", "d/**/*.json"}, []string{"a/b/2.log.gz", "d/e/5.json"})
	// Errors, one per argument; the other arguments go on.
	f([]string{"missing", "d/4.log", "nothing*.here", "a/[x"}, []string{"d/4.log"},
		"missing:not_found", "nothing*.here:not_found", "a/[x:pattern")
	f([]string{"**/*.none"}, nil, "**/*.none:not_found")
}

func TestExpandDanglingAndUnreadable(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("symbolic links")
	}
	dir := t.TempDir()
	writeFile(t, dir, "ok.log", []byte("{}"))
	mustSymlink(t, filepath.Join(dir, "gone"), filepath.Join(dir, "dangling.log"))
	files, errs := Expand([]string{dir})
	if len(files) != 1 || len(errs) != 1 || errs[0].Code != CodeNotFound || errs[0].Path != filepath.Join(dir, "dangling.log") {
		t.Fatalf("files %v, errs %v", files, errs)
	}
	sub := filepath.Join(dir, "locked")
	writeFile(t, sub, "x.log", []byte("{}"))
	if err := os.Chmod(sub, 0); err != nil {
		t.Fatal(err)
	}
	defer os.Chmod(sub, 0o755)
	if _, err := os.ReadDir(sub); err == nil {
		t.Skip("chmod 000 does not deny listing here (running as root?)")
	}
	_, errs = Expand([]string{dir})
	if len(errs) != 2 || errs[1].Code != CodePermission {
		t.Fatalf("errs %v", errs)
	}
}

func mustSymlink(t *testing.T, target, link string) {
	t.Helper()
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
}

func TestMatchElems(t *testing.T) {
	f := func(pat, name string, want bool) {
		t.Helper()
		if got := matchElems(strings.Split(pat, "/"), strings.Split(name, "/")); got != want {
			t.Fatalf("matchElems(%q, %q) = %v", pat, name, got)
		}
	}
	f("**", "a", true)
	f("**", "a/b/c", true)
	f("**/*.gz", "x.gz", true)
	f("**/*.gz", "a/b/x.gz", true)
	f("**/*.gz", "a/b/x.log", false)
	f("a/**/b", "a/b", true)
	f("a/**/b", "a/x/y/b", true)
	f("a/**/b", "a/x/y/c", false)
	f("**/a/**/b/**", "x/a/y/b/z", true)
	f("**/a/**/b/**", "x/a/y/c/z", false)
	f("*/x", "a/b/x", false)
	// Many stars on a long path stay cheap.
	f(strings.Repeat("**/", 50)+"z", strings.Repeat("a/", 200)+"y", false)
}
