package mqtt

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

const (
	queueDirName   = "queue"
	windowFileName = "window"
	lockFileName   = "lock"
	queueExt       = ".json"
)

// queue is the on-disk delivery queue: one fsynced file per window, named by
// its zero-padded window id, removed after the broker acknowledged it.
//
// The last assigned window id is always recoverable as the larger of the
// newest queued id and the counter file in stateDir: the counter is written
// (fsynced) only when the newest queued window is about to be removed, which
// keeps Publish at one durable write.
type queue struct {
	dir      string
	stateDir string
	maxLen   int
	maxAge   time.Duration
	log      *slog.Logger
	now      func() time.Time

	mu       sync.Mutex
	ids      []uint64 // ascending
	inflight uint64   // id being delivered; never dropped for the length bound
	dropped  atomic.Uint64
}

func openQueue(stateDir string, maxLen int, maxAge time.Duration, log *slog.Logger) (*queue, error) {
	dir := filepath.Join(stateDir, queueDirName)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("mqtt: create queue directory: %w", err)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("mqtt: read queue directory: %w", err)
	}
	q := &queue{dir: dir, stateDir: stateDir, maxLen: maxLen, maxAge: maxAge, log: log, now: time.Now}
	for _, e := range ents {
		name := e.Name()
		if strings.HasSuffix(name, ".tmp") { // interrupted write: never acknowledged to the caller
			_ = os.Remove(filepath.Join(dir, name))
			continue
		}
		id, ok := parseQueueName(name)
		if !ok {
			log.Warn("mqtt: ignoring unexpected file in queue directory", "file", filepath.Join(dir, name))
			continue
		}
		q.ids = append(q.ids, id)
	}
	slices.Sort(q.ids)
	q.mu.Lock()
	q.enforceLocked()
	q.mu.Unlock()
	return q, nil
}

func queueName(id uint64) string { return fmt.Sprintf("%020d%s", id, queueExt) }

func parseQueueName(name string) (uint64, bool) {
	base, ok := strings.CutSuffix(name, queueExt)
	if !ok || len(base) != 20 {
		return 0, false
	}
	id, err := strconv.ParseUint(base, 10, 64)
	return id, err == nil && id > 0
}

func (q *queue) path(id uint64) string { return filepath.Join(q.dir, queueName(id)) }

// put durably stores a window and applies the bounds.
func (q *queue) put(id uint64, data []byte) error {
	if err := writeFileSync(q.path(id), data); err != nil {
		return fmt.Errorf("mqtt: queue window %d: %w", id, err)
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	i, found := slices.BinarySearch(q.ids, id)
	if !found {
		q.ids = slices.Insert(q.ids, i, id)
	}
	q.enforceLocked()
	return nil
}

// enforceLocked drops the oldest windows beyond the length and age bounds.
func (q *queue) enforceLocked() {
	for len(q.ids) > q.maxLen {
		victim := 0
		if q.ids[0] == q.inflight && len(q.ids) > 1 {
			victim = 1
		}
		if !q.dropLocked(victim, "queue full") {
			return
		}
	}
	if q.maxAge <= 0 {
		return
	}
	cutoff := q.now().Add(-q.maxAge)
	for len(q.ids) > 0 && q.ids[0] != q.inflight {
		fi, err := os.Stat(q.path(q.ids[0]))
		if err == nil && !fi.ModTime().Before(cutoff) {
			return
		}
		if !q.dropLocked(0, "too old") {
			return
		}
	}
}

func (q *queue) dropLocked(i int, why string) bool {
	id := q.ids[i]
	if !q.removeLocked(i) {
		return false
	}
	n := q.dropped.Add(1)
	q.log.Warn("mqtt: dropped undelivered window", "window", id, "reason", why, "dropped_total", n)
	return true
}

// removeLocked deletes the i-th queued window. Before deleting the newest
// one it persists the window counter; if that fails the file is kept (it
// will be delivered again, which subscribers deduplicate) and removeLocked
// reports false.
func (q *queue) removeLocked(i int) bool {
	id := q.ids[i]
	if i == len(q.ids)-1 {
		if err := writeWindowCounter(q.stateDir, id); err != nil {
			q.log.Error("mqtt: keeping window in queue", "window", id, "err", err)
			return false
		}
	}
	q.ids = slices.Delete(q.ids, i, i+1)
	if err := os.Remove(q.path(id)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		q.log.Error("mqtt: remove window from queue", "window", id, "err", err)
	}
	return true
}

// next returns the oldest window; ok is false when the queue is empty.
func (q *queue) next() (id uint64, data []byte, ok bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for {
		q.enforceLocked()
		if len(q.ids) == 0 {
			return 0, nil, false
		}
		id = q.ids[0]
		b, err := os.ReadFile(q.path(id))
		if err != nil || len(b) == 0 || !isJSONObject(b) {
			q.log.Error("mqtt: unreadable window in queue", "window", id, "err", err)
			if !q.dropLocked(0, "unreadable") {
				return 0, nil, false
			}
			continue
		}
		return id, b, true
	}
}

// pin marks id as being delivered so that the bounds never drop it while
// the broker may be acknowledging it. It reports false when id was dropped
// in the meantime.
func (q *queue) pin(id uint64) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if _, found := slices.BinarySearch(q.ids, id); !found {
		return false
	}
	q.inflight = id
	return true
}

// unpin ends a failed delivery attempt.
func (q *queue) unpin() {
	q.mu.Lock()
	q.inflight = 0
	q.mu.Unlock()
}

// done removes a delivered window.
func (q *queue) done(id uint64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.inflight == id {
		q.inflight = 0
	}
	i, found := slices.BinarySearch(q.ids, id)
	if found {
		q.removeLocked(i)
	}
}

func (q *queue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.ids)
}

func (q *queue) maxID() uint64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.ids) == 0 {
		return 0
	}
	return q.ids[len(q.ids)-1]
}

func isJSONObject(b []byte) bool {
	s := strings.TrimSpace(string(b))
	return strings.HasPrefix(s, "{") && strings.HasSuffix(s, "}")
}

// writeFileSync atomically replaces path with data: write a temporary file,
// fsync it, rename it over path and fsync the directory.
func writeFileSync(path string, data []byte) (err error) {
	dir := filepath.Dir(path)
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = os.Remove(tmp)
		}
	}()
	if _, err = f.Write(data); err != nil {
		_ = f.Close()
		return err
	}
	if err = f.Sync(); err != nil {
		_ = f.Close()
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	if err = os.Rename(tmp, path); err != nil {
		return err
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// readWindowCounter returns the last assigned window id stored in dir (0 when absent).
func readWindowCounter(dir string) (uint64, error) {
	b, err := os.ReadFile(filepath.Join(dir, windowFileName))
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("mqtt: read window counter: %w", err)
	}
	id, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("mqtt: corrupt window counter %s: %w", filepath.Join(dir, windowFileName), err)
	}
	return id, nil
}

func writeWindowCounter(dir string, id uint64) error {
	if err := writeFileSync(filepath.Join(dir, windowFileName), []byte(strconv.FormatUint(id, 10)+"\n")); err != nil {
		return fmt.Errorf("mqtt: persist window counter: %w", err)
	}
	return nil
}
