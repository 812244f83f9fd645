// Package deploy_test checks the deployment artefacts in deploy/ against the
// code they run: the Kubernetes manifests (their shape, their security
// settings, and the config each ConfigMap holds, loaded by the project's own
// config package as pipeline validate loads it), the systemd unit (with
// systemd-analyze verify where it is installed) and the Dockerfile.
//
// The rule tying them together is the drain: pipeline run stops on SIGTERM
// and takes up to run.shutdown_grace to flush and commit, so whatever sends
// SIGKILL afterwards (the kubelet, systemd) must wait longer.
package deploy_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/tracepipe/tracepipe/app"
	"github.com/tracepipe/tracepipe/config"
)

// requireToolsEnv turns a missing systemd-analyze into a failure instead of
// a skip; make test sets it after scripts/ensure-systemd-analyze.
const requireToolsEnv = "TRACEPIPE_REQUIRE_TOOLS"

// configPath is where every artefact puts the config: the image's CMD, the
// unit's ExecStart and the manifests' args all name it.
const configPath = "/etc/tracepipe/config.yaml"

// secretName matches names that must never hold a literal value in an
// image or a manifest.
var secretName = regexp.MustCompile(`(?i)PASSWORD|SECRET|TOKEN|CREDENTIAL|PRIVATE_KEY|API_KEY`)

// ---- Kubernetes -----------------------------------------------------------

// doc is one YAML document of a manifest file.
type doc struct {
	file string
	m    map[string]any
}

func (d doc) String() string {
	return fmt.Sprintf("%s: %s %s", d.file, str(d.m, "kind"), str(d.m, "metadata", "name"))
}

// loadManifests reads every document of every .yaml file in
// deploy/kubernetes (multi-document files included).
func loadManifests(t *testing.T) []doc {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("kubernetes", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests in deploy/kubernetes (%v)", err)
	}
	var docs []doc
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(data))
		for {
			var m map[string]any
			err := dec.Decode(&m)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			if m != nil { // an empty document between two "---"
				docs = append(docs, doc{file: filepath.Base(f), m: m})
			}
		}
	}
	return docs
}

// get walks m by keys (strings for maps, ints for lists); nil when absent.
func get(m any, keys ...any) any {
	for _, k := range keys {
		switch k := k.(type) {
		case string:
			mm, ok := m.(map[string]any)
			if !ok {
				return nil
			}
			m = mm[k]
		case int:
			l, ok := m.([]any)
			if !ok || k >= len(l) {
				return nil
			}
			m = l[k]
		}
	}
	return m
}

func str(m any, keys ...any) string {
	s, _ := get(m, keys...).(string)
	return s
}

func list(m any, keys ...any) []any {
	l, _ := get(m, keys...).([]any)
	return l
}

// apiVersions is the apiVersion each kind we ship must have.
var apiVersions = map[string]string{
	"Namespace":     "v1",
	"ConfigMap":     "v1",
	"Deployment":    "apps/v1",
	"DaemonSet":     "apps/v1",
	"Kustomization": "kustomize.config.k8s.io/v1beta1",
}

func TestManifestsShape(t *testing.T) {
	t.Parallel()
	docs := loadManifests(t)
	kinds := map[string]int{}
	for _, d := range docs {
		kind := str(d.m, "kind")
		want, ok := apiVersions[kind]
		if !ok {
			t.Errorf("%v: kind %q is not one this test knows (add it, with its checks)", d, kind)
			continue
		}
		kinds[kind]++
		if got := str(d.m, "apiVersion"); got != want {
			t.Errorf("%v: apiVersion %q, want %q", d, got, want)
		}
		if kind != "Kustomization" && str(d.m, "metadata", "name") == "" {
			t.Errorf("%v: metadata.name is missing", d)
		}
	}
	for _, k := range []string{"ConfigMap", "Deployment", "DaemonSet", "Kustomization"} {
		if kinds[k] == 0 {
			t.Errorf("no %s in deploy/kubernetes", k)
		}
	}
}

// TestKustomization checks that kubectl apply -k applies every manifest:
// each resource listed exists, and each manifest file is listed.
func TestKustomization(t *testing.T) {
	t.Parallel()
	docs := loadManifests(t)
	listed := map[string]bool{}
	for _, d := range docs {
		if str(d.m, "kind") != "Kustomization" {
			continue
		}
		for _, r := range list(d.m, "resources") {
			name, _ := r.(string)
			if _, err := os.Stat(filepath.Join("kubernetes", name)); err != nil {
				t.Errorf("%v: resource %q: %v", d, name, err)
			}
			listed[name] = true
		}
	}
	for _, d := range docs {
		if str(d.m, "kind") != "Kustomization" && !listed[d.file] {
			t.Errorf("%s is not in kustomization.yaml's resources: kubectl apply -k would leave it out", d.file)
		}
	}
}

func TestWorkloads(t *testing.T) {
	t.Parallel()
	docs := loadManifests(t)
	configMaps := map[string]doc{}
	for _, d := range docs {
		if str(d.m, "kind") == "ConfigMap" {
			configMaps[str(d.m, "metadata", "name")] = d
		}
	}
	workDir := imageWorkDir(t)
	n := 0
	for _, d := range docs {
		kind := str(d.m, "kind")
		if kind != "Deployment" && kind != "DaemonSet" {
			continue
		}
		n++
		t.Run(str(d.m, "metadata", "name"), func(t *testing.T) {
			checkWorkload(t, d, configMaps, workDir)
		})
	}
	if n == 0 {
		t.Fatal("no Deployment or DaemonSet found")
	}
}

// checkWorkload checks one Deployment or DaemonSet: its selector, its
// security settings, its volumes, and the config its container is given.
func checkWorkload(t *testing.T, d doc, configMaps map[string]doc, workDir string) {
	spec := get(d.m, "spec", "template", "spec")
	if spec == nil {
		t.Fatalf("%v: spec.template.spec is missing", d)
	}
	for k, v := range asMap(get(d.m, "spec", "selector", "matchLabels")) {
		if get(d.m, "spec", "template", "metadata", "labels", k) != v {
			t.Errorf("%v: selector label %s=%v is not on the pod template", d, k, v)
		}
	}
	if len(asMap(get(d.m, "spec", "selector", "matchLabels"))) == 0 {
		t.Errorf("%v: spec.selector.matchLabels is empty", d)
	}
	if str(d.m, "kind") == "Deployment" {
		if r, ok := get(d.m, "spec", "replicas").(int); !ok || r < 2 {
			t.Errorf("%v: replicas %v: a fleet needs at least 2", d, get(d.m, "spec", "replicas"))
		}
	}

	volumes := map[string]any{}
	hostPaths := false
	for _, v := range list(spec, "volumes") {
		volumes[str(v, "name")] = v
		if get(v, "hostPath") != nil {
			hostPaths = true
		}
	}
	containers := list(spec, "containers")
	if len(containers) != 1 {
		t.Fatalf("%v: %d containers, want 1", d, len(containers))
	}
	c := containers[0]

	// Security: a read-only root, no escalation, no capabilities; non-root
	// unless the pod needs root-owned host paths (then without
	// capabilities root has no power over files it does not own).
	sc := get(c, "securityContext")
	if get(sc, "readOnlyRootFilesystem") != true {
		t.Errorf("%v: securityContext.readOnlyRootFilesystem must be true", d)
	}
	if get(sc, "allowPrivilegeEscalation") != false {
		t.Errorf("%v: securityContext.allowPrivilegeEscalation must be false", d)
	}
	if !slices.Contains(list(sc, "capabilities", "drop"), any("ALL")) || len(list(sc, "capabilities", "add")) > 0 {
		t.Errorf("%v: capabilities must drop ALL and add none", d)
	}
	if get(sc, "privileged") == true {
		t.Errorf("%v: privileged", d)
	}
	nonRoot := firstOf(get(sc, "runAsNonRoot"), get(spec, "securityContext", "runAsNonRoot"))
	uid := firstOf(get(sc, "runAsUser"), get(spec, "securityContext", "runAsUser"))
	switch {
	case nonRoot == true:
		if uid == 0 {
			t.Errorf("%v: runAsNonRoot with runAsUser 0", d)
		}
	case hostPaths:
		// Root is allowed here only as set out above.
	default:
		t.Errorf("%v: no hostPath volume, so it must run with runAsNonRoot: true", d)
	}

	// Mounts: the config's folder from a ConfigMap (read-only), the image's
	// working directory writable (the root is read-only, and out/ is
	// relative to it), host paths read-only except that working directory.
	mounts := map[string]any{} // mountPath -> volume
	for _, m := range list(c, "volumeMounts") {
		v, ok := volumes[str(m, "name")]
		if !ok {
			t.Errorf("%v: mount %q names no volume", d, str(m, "name"))
			continue
		}
		mp := str(m, "mountPath")
		mounts[mp] = v
		ro := get(m, "readOnly") == true
		if get(v, "hostPath") != nil && mp != workDir && !ro {
			t.Errorf("%v: hostPath %s mounted writable at %s", d, str(v, "hostPath", "path"), mp)
		}
		if mp == workDir && ro {
			t.Errorf("%v: the working directory %s is read-only: out/ cannot be written", d, workDir)
		}
	}
	if _, ok := mounts[workDir]; !ok {
		t.Errorf("%v: nothing is mounted at the image's WORKDIR %s, and the root filesystem is read-only", d, workDir)
	}

	args := stringsOf(list(c, "args"))
	cfgFile := flagValue(args, "-c")
	if len(args) == 0 || args[0] != "run" || cfgFile == "" {
		t.Fatalf("%v: args %q: want run -c FILE", d, args)
	}
	if cfgFile != configPath {
		t.Errorf("%v: -c %s, want %s (the image's default)", d, cfgFile, configPath)
	}
	vol, ok := mounts[path.Dir(cfgFile)]
	if !ok || str(vol, "configMap", "name") == "" {
		t.Fatalf("%v: -c %s: no ConfigMap is mounted at %s", d, cfgFile, path.Dir(cfgFile))
	}
	cm, ok := configMaps[str(vol, "configMap", "name")]
	if !ok {
		t.Fatalf("%v: ConfigMap %q is not in deploy/kubernetes", d, str(vol, "configMap", "name"))
	}
	text := str(cm.m, "data", path.Base(cfgFile))
	if text == "" {
		t.Fatalf("%v: ConfigMap %q has no key %q", d, str(cm.m, "metadata", "name"), path.Base(cfgFile))
	}

	// The env: secrets only by reference; each ${VAR} of the config must be
	// one the container sets (a dummy value stands for it here).
	env := map[string]any{}
	for _, e := range list(c, "env") {
		name := str(e, "name")
		env[name] = e
		if secretName.MatchString(name) && (get(e, "value") != nil || get(e, "valueFrom", "secretKeyRef") == nil) {
			t.Errorf("%v: env %s must come from a Secret (valueFrom.secretKeyRef)", d, name)
		}
	}
	lookup := func(name string) (string, bool) {
		if _, ok := env[name]; ok {
			return "dummy-" + name, true
		}
		return "", false
	}
	cfg, err := config.Decode([]byte(text), cm.file+": "+path.Base(cfgFile), lookup)
	if err == nil {
		_, err = app.ParserOptions(cfg) // pipeline validate checks the parser paths there
	}
	if err != nil {
		t.Fatalf("%v: the config does not validate:\n%v", d, err)
	}
	if len(cfg.Sources) == 0 {
		t.Errorf("%v: the config has no sources: pipeline run would exit 2", d)
	}

	grace, ok := get(spec, "terminationGracePeriodSeconds").(int)
	if !ok {
		t.Errorf("%v: terminationGracePeriodSeconds is not set (the default, 30s, is not above shutdown_grace)", d)
	} else if time.Duration(grace)*time.Second <= cfg.Run.ShutdownGrace {
		t.Errorf("%v: terminationGracePeriodSeconds %d is not above run.shutdown_grace %s: the kubelet would kill the drain", d, grace, cfg.Run.ShutdownGrace)
	}

	// Processes sharing a windows store need distinct instances: the
	// instance must come from the pod's or the node's name.
	if cfg.Windows.Sink.Type == "redis" {
		name, ok := strings.CutPrefix(cfg.Windows.Instance, "dummy-")
		field := str(env[name], "valueFrom", "fieldRef", "fieldPath")
		if !ok || (field != "metadata.name" && field != "spec.nodeName") {
			t.Errorf("%v: windows.instance %q does not come from the pod's or the node's name", d, cfg.Windows.Instance)
		}
	}
}

func asMap(v any) map[string]any {
	m, _ := v.(map[string]any)
	return m
}

func firstOf(vs ...any) any {
	for _, v := range vs {
		if v != nil {
			return v
		}
	}
	return nil
}

func stringsOf(l []any) []string {
	out := make([]string, 0, len(l))
	for _, v := range l {
		s, _ := v.(string)
		out = append(out, s)
	}
	return out
}

// flagValue is the value after flag in args ("-c FILE" or "-c=FILE").
func flagValue(args []string, flag string) string {
	for i, a := range args {
		if a == flag && i+1 < len(args) {
			return args[i+1]
		}
		if v, ok := strings.CutPrefix(a, flag+"="); ok {
			return v
		}
	}
	return ""
}

// TestKustomizeBuild renders the kustomization with kubectl when it is
// installed (it is not required: the checks above do not need it).
func TestKustomizeBuild(t *testing.T) {
	t.Parallel()
	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		t.Skip("kubectl is not installed")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, kubectl, "kustomize", "kubernetes").Output()
	if err != nil {
		t.Fatalf("kubectl kustomize: %v", err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(out))
	kinds := map[string]bool{}
	for {
		var m map[string]any
		if err := dec.Decode(&m); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		kinds[str(m, "kind")] = true
		if str(m, "kind") != "Namespace" && str(m, "metadata", "namespace") != "tracepipe" {
			t.Errorf("%s %s: namespace %q after kustomize", str(m, "kind"), str(m, "metadata", "name"), str(m, "metadata", "namespace"))
		}
	}
	for _, k := range []string{"Namespace", "ConfigMap", "Deployment", "DaemonSet"} {
		if !kinds[k] {
			t.Errorf("kubectl kustomize rendered no %s", k)
		}
	}
}

// ---- systemd --------------------------------------------------------------

// unit is a parsed unit file: section -> key -> values (a key may repeat).
type unit map[string]map[string][]string

func parseUnit(t *testing.T, data []byte) unit {
	t.Helper()
	u := unit{}
	section := ""
	lines := strings.Split(string(data), "\n")
	for i := 0; i < len(lines); i++ {
		l := strings.TrimSpace(lines[i])
		for strings.HasSuffix(l, `\`) && i+1 < len(lines) { // continuation
			i++
			l = strings.TrimSuffix(l, `\`) + " " + strings.TrimSpace(lines[i])
		}
		switch {
		case l == "" || l[0] == '#' || l[0] == ';':
		case l[0] == '[' && l[len(l)-1] == ']':
			section = l[1 : len(l)-1]
			if u[section] == nil {
				u[section] = map[string][]string{}
			}
		default:
			k, v, ok := strings.Cut(l, "=")
			if !ok || section == "" {
				t.Fatalf("tracepipe.service:%d: %q is not key=value in a section", i+1, l)
			}
			k = strings.TrimSpace(k)
			u[section][k] = append(u[section][k], strings.TrimSpace(v))
		}
	}
	return u
}

// last is the value in effect for a key set once (the last one wins).
func (u unit) last(section, key string) string {
	v := u[section][key]
	if len(v) == 0 {
		return ""
	}
	return v[len(v)-1]
}

// systemdDuration parses the time spans this unit uses ("45s", "1min
// 30s", "90": seconds).
func systemdDuration(s string) (time.Duration, error) {
	if n, err := strconv.Atoi(s); err == nil {
		return time.Duration(n) * time.Second, nil
	}
	var total time.Duration
	for _, f := range strings.Fields(s) {
		f = strings.Replace(f, "min", "m", 1)
		d, err := time.ParseDuration(f)
		if err != nil {
			return 0, fmt.Errorf("time span %q: %w", s, err)
		}
		total += d
	}
	return total, nil
}

// shippedConfig is the repository's config.yaml, loaded as the binary loads
// its embedded default.
func shippedConfig(t *testing.T) *config.Config {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "config.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Decode(data, "config.yaml", func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func TestSystemdUnit(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile(filepath.Join("systemd", "tracepipe.service"))
	if err != nil {
		t.Fatal(err)
	}
	u := parseUnit(t, data)
	cfg := shippedConfig(t)

	if got := u.last("Service", "KillSignal"); got != "SIGTERM" {
		t.Errorf("KillSignal=%q, want SIGTERM (pipeline run drains on it)", got)
	}
	stop, err := systemdDuration(u.last("Service", "TimeoutStopSec"))
	if err != nil || stop <= cfg.Run.ShutdownGrace {
		t.Errorf("TimeoutStopSec=%q (%v) must be above the shipped run.shutdown_grace %s: systemd's SIGKILL would cut the drain", u.last("Service", "TimeoutStopSec"), err, cfg.Run.ShutdownGrace)
	}
	start := strings.Fields(u.last("Service", "ExecStart"))
	if len(start) < 2 || start[1] != "run" || flagValue(start[2:], "-c") != configPath {
		t.Errorf("ExecStart=%q: want BINARY run -c %s", u.last("Service", "ExecStart"), configPath)
	}
	if got := u.last("Service", "ExecReload"); !strings.Contains(got, "-HUP") || !strings.Contains(got, "$MAINPID") {
		t.Errorf("ExecReload=%q: want a SIGHUP to $MAINPID (it reopens the file sinks)", got)
	}
	if sd := u.last("Service", "StateDirectory"); sd == "" || u.last("Service", "WorkingDirectory") != "/var/lib/"+sd {
		t.Errorf("WorkingDirectory=%q must be the state directory /var/lib/%s: the config's out/ paths are relative", u.last("Service", "WorkingDirectory"), sd)
	}
	for k, want := range map[string]string{
		"Restart":                 "on-failure",
		"NoNewPrivileges":         "yes",
		"ProtectSystem":           "strict",
		"ProtectHome":             "yes",
		"PrivateTmp":              "yes",
		"PrivateDevices":          "yes",
		"MemoryDenyWriteExecute":  "yes",
		"LockPersonality":         "yes",
		"CapabilityBoundingSet":   "",
		"RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
	} {
		if _, set := u["Service"][k]; !set || u.last("Service", k) != want {
			t.Errorf("%s=%q, want %q", k, u.last("Service", k), want)
		}
	}
	if u.last("Service", "User") == "" && u.last("Service", "DynamicUser") != "yes" {
		t.Error("neither User= nor DynamicUser=yes: the service would run as root")
	}
	for _, k := range []string{"Environment"} {
		for _, v := range u["Service"][k] {
			if secretName.MatchString(v) {
				t.Errorf("%s=%s: secrets belong in the EnvironmentFile", k, v)
			}
		}
	}
}

// TestSystemdVerify runs systemd-analyze verify on the unit, with ExecStart
// pointing at this test's own executable (verify checks only that the
// command exists and is executable). verify exits 0 on an unknown key or a
// bad value and only prints a warning, so any line naming the unit fails
// the test; a copy with a misspelt key shows that such lines are seen.
func TestSystemdVerify(t *testing.T) {
	t.Parallel()
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		if os.Getenv(requireToolsEnv) == "1" {
			t.Fatalf("systemd-analyze is not installed and %s=1 (scripts/ensure-systemd-analyze installs it)", requireToolsEnv)
		}
		t.Skipf("systemd-analyze is not installed (set %s=1 to fail instead)", requireToolsEnv)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join("systemd", "tracepipe.service"))
	if err != nil {
		t.Fatal(err)
	}
	const bin = "/usr/local/bin/pipeline"
	if !bytes.Contains(data, []byte("ExecStart="+bin+" ")) {
		t.Fatalf("ExecStart does not start with %s", bin)
	}
	data = bytes.ReplaceAll(data, []byte("ExecStart="+bin), []byte("ExecStart="+self))

	verify := func(data []byte) (string, error) {
		dir := t.TempDir()
		p := filepath.Join(dir, "tracepipe.service")
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		out, err := exec.CommandContext(ctx, analyze, "verify", "--man=no", p).CombinedOutput()
		var found []string
		for _, l := range strings.Split(string(out), "\n") {
			if strings.Contains(l, "tracepipe.service") {
				found = append(found, l)
			}
		}
		return strings.Join(found, "\n"), err
	}

	if out, err := verify(data); err != nil || out != "" {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
	bad := bytes.Replace(data, []byte("TimeoutStopSec="), []byte("TimeoutStopSecs="), 1)
	if out, _ := verify(bad); !strings.Contains(out, "TimeoutStopSecs") {
		t.Errorf("systemd-analyze verify did not report a misspelt key, so its silence above proves nothing; it said:\n%s", out)
	}
}

// ---- Dockerfile -----------------------------------------------------------

// instruction is one Dockerfile instruction: its keyword (upper case), its
// flags (--from=build) and the rest of its text.
type instruction struct {
	line  int
	cmd   string
	flags map[string]string
	args  string
}

// stage is a FROM and the instructions after it.
type stage struct {
	image, name string
	ins         []instruction
}

// parseDockerfile splits a Dockerfile into stages of instructions: it
// joins continuation lines and drops comments, which is all this
// Dockerfile's syntax needs (no heredocs, the default escape character).
func parseDockerfile(t *testing.T, data []byte) []stage {
	t.Helper()
	var stages []stage
	lines := strings.Split(string(data), "\n")
	for i := 0; i < len(lines); i++ {
		start := i + 1
		l := strings.TrimSpace(lines[i])
		if l == "" || l[0] == '#' {
			continue
		}
		for strings.HasSuffix(l, `\`) && i+1 < len(lines) {
			i++
			next := strings.TrimSpace(lines[i])
			if next != "" && next[0] == '#' { // comments inside a continuation are dropped
				l += `\`
				continue
			}
			l = strings.TrimSuffix(l, `\`) + " " + next
		}
		cmd, rest, _ := strings.Cut(l, " ")
		in := instruction{line: start, cmd: strings.ToUpper(cmd), flags: map[string]string{}}
		rest = strings.TrimSpace(rest)
		for strings.HasPrefix(rest, "--") {
			f, r, _ := strings.Cut(rest, " ")
			k, v, _ := strings.Cut(strings.TrimPrefix(f, "--"), "=")
			in.flags[k] = v
			rest = strings.TrimSpace(r)
		}
		in.args = rest
		if in.cmd == "FROM" {
			f := strings.Fields(rest)
			s := stage{image: f[0]}
			if len(f) == 3 && strings.EqualFold(f[1], "AS") {
				s.name = f[2]
			}
			stages = append(stages, s)
			continue
		}
		if len(stages) == 0 {
			if in.cmd != "ARG" {
				t.Fatalf("Dockerfile:%d: %s before the first FROM", start, in.cmd)
			}
			continue
		}
		s := &stages[len(stages)-1]
		s.ins = append(s.ins, in)
	}
	return stages
}

func (s stage) all(cmd string) []instruction {
	var out []instruction
	for _, in := range s.ins {
		if in.cmd == cmd {
			out = append(out, in)
		}
	}
	return out
}

// lastArgs is the text of the last cmd in the stage (the one in effect).
func (s stage) lastArgs(cmd string) string {
	all := s.all(cmd)
	if len(all) == 0 {
		return ""
	}
	return all[len(all)-1].args
}

func readDockerfile(t *testing.T) []stage {
	t.Helper()
	data, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	return parseDockerfile(t, data)
}

// imageWorkDir is the final stage's WORKDIR: where the config's relative
// paths resolve, so what the manifests must mount writable.
func imageWorkDir(t *testing.T) string {
	t.Helper()
	stages := readDockerfile(t)
	wd := stages[len(stages)-1].lastArgs("WORKDIR")
	if wd == "" {
		t.Fatal("Dockerfile: the final stage has no WORKDIR")
	}
	return wd
}

func TestDockerfile(t *testing.T) {
	t.Parallel()
	stages := readDockerfile(t)
	if len(stages) < 2 {
		t.Fatalf("Dockerfile: %d stage(s), want a builder and a runtime", len(stages))
	}
	build, final := stages[0], stages[len(stages)-1]

	// The builder's Go is the go.mod's.
	gomod, err := os.ReadFile(filepath.Join("..", "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindSubmatch(gomod)
	if m == nil {
		t.Fatal("go.mod has no go directive")
	}
	if want := "golang:" + string(m[1]); !strings.HasPrefix(build.image, want) {
		t.Errorf("Dockerfile: builder FROM %s, want %s (go.mod's go %s)", build.image, want, m[1])
	}
	if build.name == "" {
		t.Error("Dockerfile: the builder stage has no name (FROM ... AS build)")
	}
	goBuild := false
	for _, in := range build.all("RUN") {
		if strings.Contains(in.args, "go build") {
			goBuild = true
			for _, want := range []string{"CGO_ENABLED=0", "-trimpath", "./cmd/pipeline"} {
				if !strings.Contains(in.args, want) {
					t.Errorf("Dockerfile:%d: go build without %s", in.line, want)
				}
			}
		}
	}
	if !goBuild {
		t.Error("Dockerfile: the builder stage runs no go build")
	}

	// The runtime: only the binary from the builder, as a numeric non-root
	// user (Kubernetes' runAsNonRoot can check only a numeric one).
	if final.image == build.image {
		t.Errorf("Dockerfile: the final stage is the builder (%s)", final.image)
	}
	fromBuild := false
	for _, in := range final.all("COPY") {
		if in.flags["from"] == build.name {
			fromBuild = true
		}
		if _, ok := in.flags["from"]; !ok {
			for _, src := range strings.Fields(in.args)[:len(strings.Fields(in.args))-1] {
				if _, err := os.Stat(filepath.Join("..", src)); err != nil {
					t.Errorf("Dockerfile:%d: COPY %s: %v", in.line, src, err)
				}
			}
		}
	}
	if !fromBuild {
		t.Errorf("Dockerfile: the final stage copies nothing from %q", build.name)
	}
	user := final.lastArgs("USER")
	uid, gid, _ := strings.Cut(user, ":")
	if n, err := strconv.Atoi(uid); err != nil || n == 0 {
		t.Errorf("Dockerfile: final USER %q, want a numeric non-zero uid", user)
	}
	if gid != "" {
		if _, err := strconv.Atoi(gid); err != nil {
			t.Errorf("Dockerfile: final USER %q: the group must be numeric too", user)
		}
	}
	if got := final.lastArgs("STOPSIGNAL"); got != "SIGTERM" {
		t.Errorf("Dockerfile: STOPSIGNAL %q, want SIGTERM", got)
	}
	var entry, cmd []string
	if err := yaml.Unmarshal([]byte(final.lastArgs("ENTRYPOINT")), &entry); err != nil || len(entry) != 1 {
		t.Errorf("Dockerfile: ENTRYPOINT %q: want the exec form with the binary alone (%v)", final.lastArgs("ENTRYPOINT"), err)
	}
	if err := yaml.Unmarshal([]byte(final.lastArgs("CMD")), &cmd); err != nil ||
		!slices.Equal(cmd, []string{"run", "-c", configPath}) {
		t.Errorf("Dockerfile: CMD %q, want [\"run\", \"-c\", %q]", final.lastArgs("CMD"), configPath)
	}
	if final.lastArgs("VOLUME") == "" || !strings.Contains(final.lastArgs("VOLUME"), final.lastArgs("WORKDIR")) {
		t.Errorf("Dockerfile: the WORKDIR %s (out/ lives there) is not a VOLUME", final.lastArgs("WORKDIR"))
	}

	// No secret is baked into any stage.
	for _, s := range stages {
		for _, in := range append(s.all("ENV"), s.all("ARG")...) {
			if secretName.MatchString(in.args) {
				t.Errorf("Dockerfile:%d: %s %s: secrets must come from the environment at run time", in.line, in.cmd, in.args)
			}
		}
	}
}

// TestDockerignore checks that .dockerignore keeps out nothing the
// Dockerfile copies from the context.
func TestDockerignore(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile(filepath.Join("..", ".dockerignore"))
	if err != nil {
		t.Skip("no .dockerignore")
	}
	needed := []string{"go.mod", "go.sum", "config.yaml", "cmd/pipeline/main.go", "config/config.go"}
	for _, l := range strings.Split(string(data), "\n") {
		p := strings.TrimSpace(l)
		if p == "" || p[0] == '#' || p[0] == '!' {
			continue
		}
		for _, n := range needed {
			for d := n; d != "."; d = path.Dir(d) { // the file or a folder holding it
				if ok, _ := path.Match(p, d); ok {
					t.Errorf(".dockerignore: %q excludes %s, which the image build needs", p, n)
				}
			}
		}
	}
}
