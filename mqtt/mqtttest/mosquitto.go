// Package mqtttest runs a real Debian mosquitto broker on a loopback port for
// tests, the way net/http/httptest runs HTTP servers.
package mqtttest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/edge-sensor/edge/internal/proctest"
)

// MosquittoPath finds Debian's mosquitto. It skips the test when the broker
// is not installed, except in CI (env CI set), where that is a failure.
func MosquittoPath(t testing.TB) string {
	t.Helper()
	for _, p := range []string{"mosquitto", "/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto"} {
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("mosquitto is not installed but CI is set: install it (apt-get install -y mosquitto)")
	}
	t.Skip("mosquitto is not installed; skipping real-broker test (apt-get install -y mosquitto to run it)")
	return ""
}

// Mosquitto is a mosquitto process on a loopback port. It is killed when the
// test ends; its output is logged if the test failed.
type Mosquitto struct {
	t      testing.TB
	bin    string
	conf   string
	Port   int
	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
	out    proctest.SyncBuffer
}

// StartMosquitto starts a broker with persistence off and anonymous access;
// extraConf lines are appended to its configuration.
func StartMosquitto(t testing.TB, extraConf ...string) *Mosquitto {
	t.Helper()
	m := &Mosquitto{t: t, bin: MosquittoPath(t), Port: proctest.FreePort(t)}
	dir := t.TempDir()
	m.conf = filepath.Join(dir, "mosquitto.conf")
	conf := fmt.Sprintf("log_dest stderr\nlog_type error\nlog_type warning\nallow_anonymous true\nlistener %d 127.0.0.1\n", m.Port)
	if os.Geteuid() == 0 {
		conf = "user root\n" + conf // keep access to the test's temporary files
	}
	persistence := "persistence false\n"
	for _, c := range extraConf {
		if len(c) >= 11 && c[:11] == "persistence" {
			persistence = ""
		}
		conf += c + "\n"
	}
	if err := os.WriteFile(m.conf, []byte(persistence+conf), 0o644); err != nil {
		t.Fatal(err)
	}
	m.Start()
	t.Cleanup(func() {
		m.Kill()
		if t.Failed() {
			t.Logf("mosquitto output:\n%s", m.out.String())
		}
	})
	return m
}

// Addr is host:port of the broker.
func (m *Mosquitto) Addr() string { return "127.0.0.1:" + strconv.Itoa(m.Port) }

// URL is the broker's tcp:// URL.
func (m *Mosquitto) URL() string { return "tcp://" + m.Addr() }

// Start (re)starts the broker on its port and waits until it listens.
func (m *Mosquitto) Start() {
	m.t.Helper()
	m.mu.Lock()
	cmd := exec.Command(m.bin, "-c", m.conf)
	cmd.Stdout, cmd.Stderr = &m.out, &m.out
	if err := cmd.Start(); err != nil {
		m.mu.Unlock()
		m.t.Fatalf("start mosquitto: %v", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	m.cmd, m.exited = cmd, exited
	m.mu.Unlock()
	proctest.WaitListening(m.t, m.Addr(), 5*time.Second)
}

// Kill stops the broker abruptly (SIGKILL) and waits for it to exit.
func (m *Mosquitto) Kill() { m.stop(syscall.SIGKILL) }

// Stop stops the broker cleanly (SIGTERM: a persistent broker saves its
// sessions) and waits for it to exit.
func (m *Mosquitto) Stop() { m.stop(syscall.SIGTERM) }

func (m *Mosquitto) stop(sig syscall.Signal) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cmd == nil {
		return
	}
	_ = m.cmd.Process.Signal(sig)
	<-m.exited
	m.cmd = nil
}

// StartMosquittoConfig starts a broker with exactly conf (plus "user root"
// when the test runs as root, to keep access to its temporary files) and
// waits until it listens on port, for tests of complete broker
// configurations such as a bridge.
func StartMosquittoConfig(t testing.TB, conf string, port int) *Mosquitto {
	t.Helper()
	m := &Mosquitto{t: t, bin: MosquittoPath(t), Port: port}
	m.conf = filepath.Join(t.TempDir(), "mosquitto.conf")
	if os.Geteuid() == 0 {
		conf = "user root\n" + conf
	}
	if err := os.WriteFile(m.conf, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	m.Start()
	t.Cleanup(func() {
		m.Kill()
		if t.Failed() {
			t.Logf("mosquitto (port %d) output:\n%s", port, m.out.String())
		}
	})
	return m
}

// PID is the broker's process id (0 when stopped), for tests that measure
// its CPU time.
func (m *Mosquitto) PID() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cmd == nil {
		return 0
	}
	return m.cmd.Process.Pid
}
