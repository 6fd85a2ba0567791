// Package pgtest runs a throwaway PostgreSQL server from Debian's packages for tests, the way mqtttest runs mosquitto.
//
// The server lives in a temporary directory, listens on a free loopback port
// with trust authentication and is stopped when the test ends. PostgreSQL
// refuses to run as root, so under uid 0 it runs as the "postgres" user that
// Debian's package creates.
package pgtest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/edge-sensor/edge/internal/proctest"
)

// BinDir finds the directory of Debian's PostgreSQL server binaries (initdb,
// postgres), newest version first. It skips the test when none is installed,
// except in CI (CI=true), where that is a failure.
func BinDir(t testing.TB) string {
	t.Helper()
	if d := os.Getenv("PGTEST_BINDIR"); d != "" {
		return d
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return version(dirs[i]) > version(dirs[j]) })
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d
		}
	}
	if path, err := exec.LookPath("initdb"); err == nil {
		return filepath.Dir(path)
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("PostgreSQL server binaries (initdb) not found but CI=true: install them (apt-get install -y postgresql)")
	}
	t.Skip("PostgreSQL server binaries (initdb) not found; skipping real-database test (apt-get install -y postgresql to run it)")
	return ""
}

func version(binDir string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return v
}

// Options tune the server.
type Options struct {
	// Durable keeps fsync and synchronous commit on, as in production; tests
	// that do not measure anything leave it off for speed.
	Durable bool
	// Settings are extra "name=value" server settings (postgres -c).
	Settings []string
}

// Server is a running PostgreSQL server.
type Server struct {
	t    testing.TB
	Dir  string // data directory and unix socket directory
	Port int
	cmd  *exec.Cmd
	done chan struct{}
	out  proctest.SyncBuffer
	dbs  atomic.Int64
}

// Start initialises and starts a server for the test; it is stopped and its
// files removed when the test ends.
func Start(t testing.TB, opt Options) *Server {
	t.Helper()
	bin := BinDir(t)
	dir, err := os.MkdirTemp("", "pgtest-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	cred, err := credential(dir)
	if err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(dir, "data")
	initdb := exec.Command(filepath.Join(bin, "initdb"), "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-locale", "--no-sync")
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	initdb.Dir = dir
	if out, err := initdb.CombinedOutput(); err != nil {
		t.Fatalf("initdb: %v\n%s", err, out)
	}
	s := &Server{t: t, Dir: dir, Port: proctest.FreePort(t), done: make(chan struct{})}
	args := []string{"-D", data, "-p", strconv.Itoa(s.Port), "-c", "listen_addresses=127.0.0.1",
		"-c", "unix_socket_directories=" + dir, "-c", "max_connections=200", "-c", "log_min_messages=warning"}
	if !opt.Durable {
		args = append(args, "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off")
	}
	for _, st := range opt.Settings {
		args = append(args, "-c", st)
	}
	s.cmd = exec.Command(filepath.Join(bin, "postgres"), args...)
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Setpgid: true}
	s.cmd.Dir = dir
	s.cmd.Stdout, s.cmd.Stderr = &s.out, &s.out
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("start postgres: %v", err)
	}
	go func() { _ = s.cmd.Wait(); close(s.done) }()
	t.Cleanup(s.stop)
	s.waitReady()
	return s
}

// credential returns the user to run the server as (nil: the current user)
// and hands dir to it.
func credential(dir string) (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("running as root and no postgres user to run PostgreSQL as: %w", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if err := os.Chown(dir, uid, gid); err != nil {
		return nil, fmt.Errorf("hand %s to postgres: %w", dir, err)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

func (s *Server) waitReady() {
	s.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		c, err := pgx.Connect(ctx, s.URL("postgres"))
		if err == nil {
			err = c.Ping(ctx)
			c.Close(ctx)
		}
		cancel()
		if err == nil {
			return
		}
		select {
		case <-s.done:
			s.t.Fatalf("postgres exited before accepting connections:\n%s", s.out.String())
		default:
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("postgres not ready after 60s: %v\n%s", err, s.out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (s *Server) stop() {
	if s.cmd.Process != nil {
		// SIGQUIT is PostgreSQL's immediate shutdown: nothing to keep.
		_ = s.cmd.Process.Signal(syscall.SIGQUIT)
		select {
		case <-s.done:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
			<-s.done
		}
	}
	if s.t.Failed() {
		s.t.Logf("postgres output:\n%s", s.out.String())
	}
}

// PID is the postmaster's process id (its backends are its children), for
// tests that measure the server's CPU time.
func (s *Server) PID() int { return s.cmd.Process.Pid }

// URL is the connection URL of database db on the server (user postgres, no password).
func (s *Server) URL(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", s.Port, db)
}

// NewDatabase creates an empty database and returns its URL, so tests
// sharing one server do not see each other's rows.
func (s *Server) NewDatabase(t testing.TB) string {
	t.Helper()
	name := fmt.Sprintf("test_%d", s.dbs.Add(1))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, s.URL("postgres"))
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer c.Close(ctx)
	if _, err := c.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		t.Fatalf("create database %s: %v", name, err)
	}
	return s.URL(name)
}
