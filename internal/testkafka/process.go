package testkafka

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"
)

// Process is a kfake broker running as a process of its own (the
// kfakebroker command), for benchmarks that must state the broker's CPU
// apart from their own: one broker, plain TCP on 127.0.0.1, no SASL or
// TLS, topics seeded.
type Process struct {
	cmd   *exec.Cmd
	stdin interface{ Close() error }
	addr  string
	once  sync.Once
}

// buildBroker builds kfakebroker once per test binary, into a directory
// of its own (the go build cache makes later builds quick).
var buildBroker = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "testkafka-bin-")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "kfakebroker")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/tracepipe/tracepipe/internal/testkafka/cmd/kfakebroker").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build kfakebroker: %v\n%s", err, out)
	}
	return bin, nil
})

// StartProcess builds and starts a broker process with o.Topics seeded
// (o.Partitions each; other options are not supported and must be zero).
// It is stopped when the test ends; should the test process die first,
// the broker sees its stdin close and exits.
func StartProcess(tb testing.TB, o Options) *Process {
	tb.Helper()
	if o.BrokerConfigs != nil || o.Users != nil || o.TLS != nil || o.ClientTLS != nil || o.Persist {
		tb.Fatal("testkafka: StartProcess supports Topics and Partitions only")
	}
	if o.Partitions <= 0 {
		o.Partitions = DefaultPartitions
	}
	bin, err := buildBroker()
	if err != nil {
		tb.Fatal(err)
	}
	cmd := exec.Command(bin, "-topics", strings.Join(o.Topics, ","), "-partitions", strconv.Itoa(int(o.Partitions)))
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		tb.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		tb.Fatalf("testkafka: start broker: %v", err)
	}
	p := &Process{cmd: cmd, stdin: stdin}
	tb.Cleanup(p.Stop)
	got := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(stdout).ReadString('\n')
		got <- line
	}()
	select {
	case line := <-got:
		addr, ok := strings.CutPrefix(strings.TrimSpace(line), "addr ")
		if !ok {
			tb.Fatalf("testkafka: broker process said %q, not its address", line)
		}
		p.addr = addr
	case <-time.After(20 * time.Second):
		tb.Fatal("testkafka: broker process did not say its address within 20s")
	}
	return p
}

// Addrs returns the broker's address, as Cluster.Addrs does.
func (p *Process) Addrs() []string { return []string{p.addr} }

// Transport returns a kafka-go transport for the broker.
func (p *Process) Transport() *kafkago.Transport {
	return &kafkago.Transport{ClientID: "testkafka", DialTimeout: 5 * time.Second}
}

// PID is the broker's process id.
func (p *Process) PID() int { return p.cmd.Process.Pid }

// CPU returns the user and system CPU time the broker process has used so
// far, read from /proc (Linux only; an error elsewhere).
func (p *Process) CPU() (time.Duration, error) { return ProcCPU(p.PID()) }

// ProcCPU returns the user plus system CPU time process pid has used, from
// /proc/PID/stat (fields 14 and 15, in clock ticks of 1/100 s, the value
// of USER_HZ on every Linux architecture Go supports).
func ProcCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) is in parentheses and may hold spaces:
	// count the fields after its closing one.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0, errors.New("testkafka: unexpected /proc stat format")
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, errors.New("testkafka: unexpected /proc stat format")
	}
	// f[0] is field 3 (state), so utime (14) and stime (15) are f[11], f[12].
	u, err1 := strconv.ParseInt(f[11], 10, 64)
	s, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, errors.New("testkafka: unexpected /proc stat format")
	}
	return time.Duration(u+s) * 10 * time.Millisecond, nil
}

// Stop ends the broker (SIGTERM, then SIGKILL after 5s) and waits for it.
// It is idempotent and also runs at the end of the test.
func (p *Process) Stop() {
	p.once.Do(func() {
		_ = p.stdin.Close()
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() {
			_ = p.cmd.Wait()
			close(done)
		}()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = p.cmd.Process.Kill()
			<-done
		}
	})
}
