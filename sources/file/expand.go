package file

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
)

// StdinPath is the path that names standard input: read as a file is
// (compression and format detected from its first bytes), though it is a
// pipe or a terminal, not a regular file.
const StdinPath = "-"

// File is one file to read.
type File struct {
	Path string
	// Size is the on-disk size when Expand saw it (0 for a pipe).
	Size int64
}

// FileError codes.
const (
	CodeNotFound   = "not_found"  // the path does not exist, or a glob matched nothing
	CodePermission = "permission" // permission denied
	CodeOpen       = "open"       // the file could not be opened for another reason
	CodeStat       = "stat"       // the path could not be stat'ed for another reason
	CodeIsDir      = "is_dir"     // a directory where a file was expected
	CodePattern    = "pattern"    // a malformed glob pattern
	CodeRead       = "read"       // reading the file failed
	CodeGzip       = "gzip"       // the gzip stream is corrupt or truncated
	CodeZstd       = "zstd"       // the zstd stream is corrupt or truncated
	CodeBzip2      = "bzip2"      // the bzip2 stream is corrupt or truncated
	CodeXz         = "xz"         // the xz stream is corrupt or truncated
)

// FileError says why a whole file, or a PATH argument, could not be read. It
// becomes one DLQ entry of class "file".
type FileError struct {
	Path string
	// Offset is the number of decompressed bytes read before the error.
	Offset int64
	// Line is the 1-based line the error was met on (0 when nothing was read).
	Line int64
	// Code is one of the Code constants.
	Code string
	Err  error
}

// Error names the file, the code and where reading stopped.
func (e FileError) Error() string {
	if e.Line == 0 {
		return fmt.Sprintf("%s: %s: %v", e.Path, e.Code, e.Err)
	}
	return fmt.Sprintf("%s: %s at offset %d, line %d: %v", e.Path, e.Code, e.Offset, e.Line, e.Err)
}

// Unwrap returns the underlying error.
func (e FileError) Unwrap() error { return e.Err }

// openCode classifies an error from opening or stat'ing a path.
func openCode(err error) string {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return CodeNotFound
	case errors.Is(err, fs.ErrPermission):
		return CodePermission
	case errors.Is(err, syscall.EISDIR):
		return CodeIsDir
	}
	return CodeOpen
}

// Expand resolves PATH arguments to the files to read. An argument is a file,
// a folder (read recursively; symbolic links are followed, each directory is
// entered once, so link loops end), or a glob in filepath.Match syntax where a
// path element "**" also matches any number of directories. A glob's matches
// that are folders are read recursively too. Inside folders only regular
// files are taken; a file named explicitly is returned whatever it is, and
// the reader refuses a non-regular one (a FIFO, a device) as one `file`
// failure (code not_regular) instead of blocking on it.
//
// The files come back sorted by path and deduplicated, by cleaned path and,
// where the system tells, by identity (one file reached by two paths is read
// once, under the first path). errs holds one FileError per argument that
// matches nothing or cannot be stat'ed, and per directory that cannot be
// listed.
//
// The argument "-" is standard input (File{Path: StdinPath}), listed once.
func Expand(args []string) (files []File, errs []FileError) {
	var e expander
	for _, arg := range args {
		if arg == StdinPath {
			e.files = append(e.files, File{Path: StdinPath})
			e.ids = append(e.ids, fileKey{})
			continue
		}
		e.arg(arg)
	}
	sort.Slice(e.files, func(i, j int) bool { return e.files[i].Path < e.files[j].Path })
	seenPath := map[string]bool{}
	seenID := map[fileKey]bool{}
	for i, f := range e.files {
		if seenPath[f.Path] {
			continue
		}
		seenPath[f.Path] = true
		if id := e.ids[i]; id.ok {
			if seenID[id] {
				continue
			}
			seenID[id] = true
		}
		files = append(files, File{Path: f.Path, Size: f.Size})
	}
	return files, e.errs
}

// expander gathers files and errors for Expand.
type expander struct {
	files    []File
	ids      []fileKey // ids[i] is the identity of files[i]
	errs     []FileError
	seenDirs map[fileKey]bool // directories entered by the current walk
}

func (e *expander) fail(path, code string, err error) {
	e.errs = append(e.errs, FileError{Path: path, Code: code, Err: err})
}

func (e *expander) add(path string, fi fs.FileInfo) {
	e.files = append(e.files, File{Path: filepath.Clean(path), Size: fi.Size()})
	e.ids = append(e.ids, keyOf(path, fi))
}

func (e *expander) arg(arg string) {
	fi, err := os.Stat(arg)
	if err == nil {
		e.path(arg, fi)
		return
	}
	if !errors.Is(err, fs.ErrNotExist) || !hasMeta(arg) {
		e.fail(arg, openCode(err), err)
		return
	}
	if _, perr := filepath.Match(arg, ""); perr != nil {
		e.fail(arg, CodePattern, perr)
		return
	}
	var matches []string
	if hasDoubleStar(arg) {
		matches = e.globStar(arg)
	} else {
		matches, _ = filepath.Glob(arg) // the pattern was checked above
	}
	if len(matches) == 0 {
		e.fail(arg, CodeNotFound, errors.New("no file matches the pattern"))
		return
	}
	for _, m := range matches {
		fi, err := os.Stat(m)
		if err != nil {
			e.fail(m, openCode(err), err)
			continue
		}
		e.path(m, fi)
	}
}

// path adds a file, or the files under a directory.
func (e *expander) path(path string, fi fs.FileInfo) {
	if fi.IsDir() {
		e.seenDirs = map[fileKey]bool{}
		e.walk(path, fi, func(p string, fi fs.FileInfo) { e.add(p, fi) })
		return
	}
	e.add(path, fi)
}

// walk calls fn for every regular file under dir, following symbolic links
// and entering each directory once per walk (the caller starts a walk with an
// empty e.seenDirs), so that link loops end.
func (e *expander) walk(dir string, dirInfo fs.FileInfo, fn func(string, fs.FileInfo)) {
	if k := keyOf(dir, dirInfo); k.ok {
		if e.seenDirs[k] {
			return
		}
		e.seenDirs[k] = true
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		e.fail(dir, openCode(err), err)
		return
	}
	for _, ent := range entries {
		p := filepath.Join(dir, ent.Name())
		typ := ent.Type()
		if typ&(fs.ModeDir|fs.ModeSymlink) == 0 && !typ.IsRegular() {
			continue // sockets, devices, pipes
		}
		fi, err := os.Stat(p) // follows links
		if err != nil {
			e.fail(p, openCode(err), err)
			continue
		}
		switch {
		case fi.IsDir():
			e.walk(p, fi, fn)
		case fi.Mode().IsRegular():
			fn(p, fi)
		}
	}
}

// globStar expands a pattern holding a "**" element: it walks the longest
// leading part without metacharacters and matches every file's path there.
func (e *expander) globStar(pattern string) []string {
	pattern = filepath.Clean(pattern)
	sep := string(filepath.Separator)
	elems := strings.Split(pattern, sep)
	n := 0
	for n < len(elems)-1 && !hasMeta(elems[n]) {
		n++
	}
	root := strings.Join(elems[:n], sep)
	switch {
	case n == 0:
		root = "."
	case root == "":
		root = sep // an absolute pattern
	}
	fi, err := os.Stat(root)
	if err != nil || !fi.IsDir() {
		return nil
	}
	rest := elems[n:]
	var out []string
	e.seenDirs = map[fileKey]bool{}
	e.walk(root, fi, func(p string, _ fs.FileInfo) {
		rel, err := filepath.Rel(root, p)
		if err == nil && matchElems(rest, strings.Split(rel, sep)) {
			out = append(out, p)
		}
	})
	return out
}

// matchElems matches path elements against pattern elements, where "**"
// matches any number (zero or more) of elements and the others follow
// filepath.Match. It backtracks only to the last "**", so it is O(len(pat) *
// len(name)).
func matchElems(pat, name []string) bool {
	p, n := 0, 0
	starP, starN := -1, 0
	for n < len(name) {
		switch {
		case p < len(pat) && pat[p] == "**":
			starP, starN = p, n
			p++
		case p < len(pat) && matchElem(pat[p], name[n]):
			p++
			n++
		case starP >= 0:
			starN++
			p, n = starP+1, starN
		default:
			return false
		}
	}
	for p < len(pat) && pat[p] == "**" {
		p++
	}
	return p == len(pat)
}

func matchElem(pat, name string) bool {
	ok, _ := filepath.Match(pat, name)
	return ok
}

// hasMeta reports whether path holds glob metacharacters.
func hasMeta(path string) bool { return strings.ContainsAny(path, "*?[") }

// hasDoubleStar reports whether a path element of pattern is "**".
func hasDoubleStar(pattern string) bool {
	for _, el := range strings.Split(filepath.ToSlash(pattern), "/") {
		if el == "**" {
			return true
		}
	}
	return false
}
