package state

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

type pos struct {
	Files map[string]int64 `json:"files"`
}

func TestSaveLoadRoundTrip(t *testing.T) {
	dir := t.TempDir()
	d, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if found, _, err := d.Load("app", "file", &pos{}); found || err != nil {
		t.Fatalf("empty dir: found=%v err=%v", found, err)
	}
	want := pos{Files: map[string]int64{"abc": 42}}
	if err := d.Save("app", "file", want); err != nil {
		t.Fatal(err)
	}
	want.Files["abc"] = 99 // a later save replaces the first
	if err := d.Save("app", "file", want); err != nil {
		t.Fatal(err)
	}
	var got pos
	found, saved, err := d.Load("app", "file", &got)
	if err != nil || !found || saved.IsZero() || got.Files["abc"] != 99 {
		t.Fatalf("load: found=%v saved=%v err=%v got=%+v", found, saved, err, got)
	}
	// Nothing but the checkpoint and the lock is left behind.
	ents, _ := os.ReadDir(dir)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if strings.Join(names, ",") != ".lock,app.json" {
		t.Fatalf("dir holds %v", names)
	}
}

func TestOneProcessHoldsTheDir(t *testing.T) {
	dir := t.TempDir()
	d, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	// flock locks belong to the open file: a second Open conflicts even in
	// one process, as it would from another.
	if _, err := Open(dir); !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), "pid") {
		t.Fatalf("second Open: %v", err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	d2, err := Open(dir)
	if err != nil {
		t.Fatalf("after Close: %v", err)
	}
	d2.Close()
}

func TestBadCheckpointsAreErrorsNotFreshStarts(t *testing.T) {
	dir := t.TempDir()
	d, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	cases := map[string]string{
		"torn":   `{"v":1,"source":"torn","kind":"file","positions":{"fi`,
		"newer":  `{"v":9,"source":"newer","kind":"file","positions":{}}`,
		"kind":   `{"v":1,"source":"kind","kind":"kafka","positions":{}}`,
		"other":  `{"v":1,"source":"someone","kind":"file","positions":{}}`,
		"fields": `{"v":1,"source":"fields","kind":"file","positions":{"nope":1}}`,
	}
	for name, body := range cases {
		if err := os.WriteFile(filepath.Join(dir, name+".json"), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		found, _, err := d.Load(name, "file", &pos{})
		if err == nil || found || !strings.Contains(err.Error(), name+".json") {
			t.Errorf("%s: found=%v err=%v", name, found, err)
		}
	}
	cps, errs := d.List()
	// List reads what each file says (kind and positions are the source's
	// business): the three unreadable ones are errors.
	if len(cps) != 2 || cps[0].Source != "fields" || cps[1].Source != "kind" || len(errs) != 3 {
		t.Fatalf("List: %d checkpoints %+v, errors %v", len(cps), cps, errs)
	}
}

func TestResetAndNames(t *testing.T) {
	dir := t.TempDir()
	d, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if err := d.Save("../escape", "file", pos{}); err == nil {
		t.Fatal("a name with a path separator was saved")
	}
	if err := d.Save("a", "file", pos{}); err != nil {
		t.Fatal(err)
	}
	if removed, err := d.Reset("a"); !removed || err != nil {
		t.Fatalf("reset: %v %v", removed, err)
	}
	if removed, err := d.Reset("a"); removed || err != nil {
		t.Fatalf("second reset: %v %v", removed, err)
	}
	if _, err := OpenReadOnly(dir).Reset("a"); err == nil {
		t.Fatal("read-only reset succeeded")
	}
	if cps, errs := OpenReadOnly(filepath.Join(dir, "missing")).List(); len(cps) != 0 || len(errs) != 0 {
		t.Fatalf("missing dir: %v %v", cps, errs)
	}
}

// The instance id is made once, kept across opens, differs between
// directories, and a file that does not hold one is an error naming it,
// never silently replaced (the rows written under the old name would be
// orphaned).
func TestInstanceID(t *testing.T) {
	dir := t.TempDir()
	d, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	id, err := d.InstanceID()
	if err != nil || len(id) != 8 {
		t.Fatalf("id %q, %v", id, err)
	}
	d.Close()
	d, err = Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if again, err := d.InstanceID(); err != nil || again != id {
		t.Fatalf("reopened: %q, %v; want %q", again, err, id)
	}
	if l, _ := d.List(); len(l) != 0 {
		t.Fatalf("the id file is listed as a checkpoint: %+v", l)
	}
	d.Close()

	other, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if oid, err := other.InstanceID(); err != nil || oid == id {
		t.Fatalf("another directory: %q, %v (first %q)", oid, err, id)
	}

	if err := os.WriteFile(filepath.Join(dir, "instance-id"), []byte("zz\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenReadOnly(dir).InstanceID(); err == nil || !strings.Contains(err.Error(), "instance-id") {
		t.Fatalf("garbage id: %v", err)
	}
	if err := os.Remove(filepath.Join(dir, "instance-id")); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenReadOnly(dir).InstanceID(); err == nil {
		t.Fatal("a read-only directory made an id")
	}
}
