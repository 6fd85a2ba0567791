package mqtt

import (
	"encoding/json"
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
	lostFileName   = "lost"
	lockFileName   = "lock"
	queueExt       = ".json"
)

// queue is the delivery queue: one fsynced file per window, named by its
// zero-padded window id, removed after the broker acknowledged it. A window
// the state directory cannot store (disk full, read-only, out of file
// descriptors) is held in memory instead, up to maxMem windows, and still
// delivered; it goes to disk as soon as the directory takes writes again.
//
// The last assigned window id is always recoverable as the larger of the
// newest queued id and the counter file in stateDir: the counter is written
// (fsynced) only when the newest file is about to be removed, which keeps
// Publish at one durable write. When the counter cannot be written, the
// delivered window's file stays as the record of the id (never sent again)
// until a later counter write succeeds.
//
// Every window that will never be delivered is counted (lost) and carried
// by the next window's payload (Stats.WindowsLost); a payload that carried
// a count and is lost itself hands it on.
type queue struct {
	dir      string
	stateDir string
	maxLen   int
	maxMem   int
	maxAge   time.Duration
	log      *slog.Logger
	now      func() time.Time

	mu         sync.Mutex
	ents       []entry // ascending ids
	nMem       int     // entries held in memory
	nRecord    int     // entries kept only as the id record
	inflight   uint64  // id being delivered; never dropped by the bounds
	top        uint64  // highest id queued or recorded
	counter    uint64  // id stored in the counter file
	unreported uint64  // lost windows no queued payload reports yet
	storeErr   error   // last state directory error; nil once a write succeeds

	dropped       atomic.Uint64 // dropped by the length or age bound, or unreadable
	lost          atomic.Uint64 // never to be delivered, for any reason (includes dropped)
	storeFailures atomic.Uint64 // failed writes to the state directory
}

type entry struct {
	id        uint64
	mem       []byte    // the payload, while the state directory cannot store it
	at        time.Time // when a memory entry was queued (files have their mtime)
	lost      uint64    // the windows_lost its payload reports
	lostKnown bool      // false for files found at start until read
	record    bool      // delivered or dropped: kept only as the record of the last id
}

func openQueue(stateDir string, maxLen, maxMem int, maxAge time.Duration, log *slog.Logger) (*queue, error) {
	dir := filepath.Join(stateDir, queueDirName)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("mqtt: create queue directory: %w", err)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("mqtt: read queue directory: %w", err)
	}
	counter, err := readWindowCounter(stateDir)
	if err != nil {
		return nil, err
	}
	q := &queue{dir: dir, stateDir: stateDir, maxLen: maxLen, maxMem: max(maxMem, 1), maxAge: maxAge, log: log,
		now: time.Now, counter: counter, top: counter}
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
		q.ents = append(q.ents, entry{id: id})
	}
	slices.SortFunc(q.ents, func(a, b entry) int { return cmpUint(a.id, b.id) })
	if n := len(q.ents); n > 0 {
		q.top = max(q.top, q.ents[n-1].id)
	}
	q.unreported = q.readLostFile()
	q.mu.Lock()
	q.enforceLocked()
	q.mu.Unlock()
	return q, nil
}

func cmpUint(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
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

// find returns the index of id among the entries.
func (q *queue) find(id uint64) (int, bool) {
	return slices.BinarySearchFunc(q.ents, id, func(e entry, id uint64) int { return cmpUint(e.id, id) })
}

// takeLost returns the lost windows not yet reported by any queued payload
// and resets the count: the caller puts it into the next window's payload
// and passes it to put.
func (q *queue) takeLost() uint64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	n := q.unreported
	q.unreported = 0
	return n
}

// putBackLost returns a count taken by takeLost whose window was never queued.
func (q *queue) putBackLost(n uint64) {
	q.mu.Lock()
	q.unreported += n
	q.mu.Unlock()
}

// put queues a window whose payload reports lost lost windows: on disk when
// the state directory takes it, else in memory. It cannot fail; a window
// that fits nowhere is counted lost by the bounds.
func (q *queue) put(id uint64, data []byte, lost uint64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.spillLocked()
	e := entry{id: id, lost: lost, lostKnown: true}
	if err := writeFileSync(q.path(id), data); err != nil {
		q.storeFailedLocked(fmt.Errorf("queue window %d: %w", id, err))
		e.mem, e.at = data, q.now()
	} else {
		q.storeOKLocked()
	}
	i, found := q.find(id)
	if found { // ids only grow (Publish checks), but never keep two entries of one id
		q.removeAt(i)
	}
	q.ents = slices.Insert(q.ents, i, e)
	if e.mem != nil {
		q.nMem++
	}
	q.top = max(q.top, id)
	if e.mem != nil {
		// Without its file the id survives a restart only in the counter.
		q.syncCounterLocked()
	}
	q.enforceLocked()
	q.cleanRecordsLocked()
}

// spillLocked moves windows held in memory to disk, oldest first, stopping
// at the first failure.
func (q *queue) spillLocked() {
	if q.nMem == 0 {
		return
	}
	for i := range q.ents {
		e := &q.ents[i]
		if e.mem == nil {
			continue
		}
		if err := writeFileSync(q.path(e.id), e.mem); err != nil {
			q.storeFailedLocked(fmt.Errorf("queue window %d: %w", e.id, err))
			return
		}
		e.mem = nil
		q.nMem--
		q.storeOKLocked()
	}
}

func (q *queue) storeFailedLocked(err error) {
	q.storeFailures.Add(1)
	if q.storeErr == nil {
		q.log.Error("mqtt: state directory failing; windows are held in memory and still sent while the broker is connected",
			"dir", q.stateDir, "err", err, "in_memory", q.nMem, "memory_limit", q.maxMem)
	} else {
		q.log.Debug("mqtt: state directory still failing", "err", err, "in_memory", q.nMem)
	}
	q.storeErr = err
}

func (q *queue) storeOKLocked() {
	if q.storeErr != nil {
		q.log.Info("mqtt: state directory writable again", "dir", q.stateDir, "in_memory", q.nMem)
		q.storeErr = nil
	}
}

// enforceLocked drops the oldest windows beyond the memory, length and age
// bounds.
func (q *queue) enforceLocked() {
	for q.nMem > q.maxMem {
		i := q.oldestLocked(func(e *entry) bool { return e.mem != nil })
		if i < 0 {
			break
		}
		q.dropLocked(i, "state directory failing and memory queue full", false)
	}
	for q.lenLocked() > q.maxLen {
		i := q.oldestLocked(func(*entry) bool { return true })
		if i < 0 {
			break
		}
		q.dropLocked(i, "queue full", true)
	}
	if q.maxAge <= 0 {
		return
	}
	cutoff := q.now().Add(-q.maxAge)
	for {
		i := q.oldestLocked(func(*entry) bool { return true })
		if i < 0 {
			return
		}
		e := &q.ents[i]
		at, why := e.at, "too old"
		if e.mem == nil {
			fi, err := os.Stat(q.path(e.id))
			switch {
			case errors.Is(err, fs.ErrNotExist):
				why = "missing"
			case err != nil:
				return // cannot tell now (out of file descriptors?): judged again next time
			default:
				at = fi.ModTime()
			}
		}
		if why == "too old" && !at.Before(cutoff) {
			return
		}
		q.dropLocked(i, why, true)
	}
}

// oldestLocked returns the index of the oldest deliverable entry that is
// not in flight and satisfies ok, or -1.
func (q *queue) oldestLocked(ok func(*entry) bool) int {
	for i := range q.ents {
		e := &q.ents[i]
		if !e.record && e.id != q.inflight && ok(e) {
			return i
		}
	}
	return -1
}

// dropLocked gives up the i-th window: it is counted lost, and so are the
// lost windows its payload would have reported.
func (q *queue) dropLocked(i int, why string, bound bool) {
	e := q.ents[i]
	carried := e.lost
	if !e.lostKnown {
		carried = q.readCarried(e.id)
	}
	q.removeLocked(i)
	if bound {
		q.dropped.Add(1)
	}
	n := q.lost.Add(1)
	q.unreported += 1 + carried
	q.log.Warn("mqtt: window lost", "window", e.id, "reason", why, "lost_total", n)
}

// readCarried reads the windows_lost of a queued file (0 when unreadable).
func (q *queue) readCarried(id uint64) uint64 {
	b, err := os.ReadFile(q.path(id))
	if err != nil {
		return 0
	}
	var v struct {
		WindowsLost uint64 `json:"windows_lost"`
	}
	_ = json.Unmarshal(b, &v)
	return v.WindowsLost
}

// removeLocked takes the i-th window out of delivery. Before deleting the
// file that records the newest id it persists the window counter; when that
// fails the file is kept as a record (it is not sent again) until a later
// counter write succeeds.
func (q *queue) removeLocked(i int) {
	e := &q.ents[i]
	if e.mem != nil {
		q.removeAt(i)
		return
	}
	if q.recordsTopLocked(i) && !q.syncCounterLocked() {
		e.record = true
		q.nRecord++
		return
	}
	id := e.id
	q.removeAt(i)
	if err := os.Remove(q.path(id)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		q.log.Error("mqtt: remove window from queue", "window", id, "err", err)
	}
}

// removeAt deletes the i-th entry from the list.
func (q *queue) removeAt(i int) {
	if q.ents[i].mem != nil {
		q.nMem--
	}
	if q.ents[i].record {
		q.nRecord--
	}
	q.ents = slices.Delete(q.ents, i, i+1)
}

// recordsTopLocked reports whether the i-th entry's file is the durable
// record of an id the counter file does not hold yet: no other file has a
// larger id.
func (q *queue) recordsTopLocked(i int) bool {
	id := q.ents[i].id
	if q.counter >= id {
		return false
	}
	for j := len(q.ents) - 1; j > i; j-- {
		if q.ents[j].mem == nil {
			return false
		}
	}
	return true
}

// syncCounterLocked makes the counter file hold the highest id.
func (q *queue) syncCounterLocked() bool {
	if q.counter >= q.top {
		return true
	}
	if err := writeFileSync(filepath.Join(q.stateDir, windowFileName), []byte(strconv.FormatUint(q.top, 10)+"\n")); err != nil {
		q.storeFailedLocked(fmt.Errorf("persist window counter: %w", err))
		return false
	}
	q.counter = q.top
	// Not storeOKLocked: the windows' files may still fail where this one
	// small file fitted; only a window stored on disk clears the error.
	return true
}

// cleanRecordsLocked deletes the records the counter file has made
// redundant.
func (q *queue) cleanRecordsLocked() {
	if q.nRecord == 0 || !q.syncCounterLocked() {
		return
	}
	for i := len(q.ents) - 1; i >= 0; i-- {
		if q.ents[i].record {
			id := q.ents[i].id
			q.removeAt(i)
			if err := os.Remove(q.path(id)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				q.log.Error("mqtt: remove window from queue", "window", id, "err", err)
			}
		}
	}
}

// next returns the oldest window to deliver; ok is false when there is none.
// A file that is missing or corrupt is dropped (counted lost); one that
// cannot be read right now (out of file descriptors, I/O error) is an error
// and stays queued.
func (q *queue) next() (id uint64, data []byte, ok bool, err error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for {
		q.enforceLocked()
		// The sender calls next with nothing in flight, so this is the oldest.
		i := q.oldestLocked(func(*entry) bool { return true })
		if i < 0 {
			return 0, nil, false, nil
		}
		e := q.ents[i]
		if e.mem != nil {
			return e.id, e.mem, true, nil
		}
		b, rerr := os.ReadFile(q.path(e.id))
		if rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
			return 0, nil, false, fmt.Errorf("mqtt: read queued window %d: %w", e.id, rerr)
		}
		if rerr != nil || len(b) == 0 || !isJSONObject(b) {
			q.log.Error("mqtt: unreadable window in queue", "window", e.id, "err", rerr, "bytes", len(b))
			q.dropLocked(i, "unreadable", true)
			continue
		}
		return e.id, b, true, nil
	}
}

// pin marks id as being delivered so that the bounds never drop it while
// the broker may be acknowledging it. It reports false when id was dropped
// in the meantime.
func (q *queue) pin(id uint64) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if i, found := q.find(id); !found || q.ents[i].record {
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
	if i, found := q.find(id); found && !q.ents[i].record {
		q.removeLocked(i)
	}
	q.cleanRecordsLocked()
}

// len is the number of windows waiting for delivery (on disk or in memory).
func (q *queue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.lenLocked()
}

func (q *queue) lenLocked() int { return len(q.ents) - q.nRecord }

// maxID is the highest window id queued, delivered or found in the state
// directory.
func (q *queue) maxID() uint64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.top
}

// queueHealth is the queue's part of BrokerState.
type queueHealth struct {
	queued, inMemory int
	lostUnreported   uint64
	storeErr         string
}

func (q *queue) health() queueHealth {
	q.mu.Lock()
	defer q.mu.Unlock()
	h := queueHealth{queued: q.lenLocked(), inMemory: q.nMem, lostUnreported: q.unreported}
	for _, e := range q.ents {
		if !e.record {
			h.lostUnreported += e.lost
		}
	}
	if q.storeErr != nil {
		h.storeErr = q.storeErr.Error()
	}
	return h
}

// close tries once more to store the windows held in memory; those it
// cannot store are lost with the process and counted. The count of lost
// windows not yet reported is kept in the state directory for the next
// start to report.
func (q *queue) close() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.spillLocked()
	if q.nMem > 0 {
		n := 0
		for i := len(q.ents) - 1; i >= 0; i-- {
			if e := q.ents[i]; e.mem != nil {
				q.unreported += 1 + e.lost
				q.lost.Add(1)
				q.removeAt(i)
				n++
			}
		}
		q.log.Error("mqtt: windows held in memory are lost at exit: the state directory still fails",
			"lost", n, "err", q.storeErr)
	}
	q.syncCounterLocked()
	q.cleanRecordsLocked()
	path := filepath.Join(q.stateDir, lostFileName)
	if q.unreported == 0 {
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			q.log.Warn("mqtt: remove lost-window count", "err", err)
		}
		return
	}
	if err := writeFileSync(path, []byte(strconv.FormatUint(q.unreported, 10)+"\n")); err != nil {
		q.log.Error("mqtt: cannot keep the count of unreported lost windows for the next start", "lost", q.unreported, "err", err)
	}
}

// readLostFile reads (and removes) the unreported lost windows a previous
// run left.
func (q *queue) readLostFile() uint64 {
	path := filepath.Join(q.stateDir, lostFileName)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return 0
	}
	if err != nil {
		q.log.Warn("mqtt: read lost-window count", "err", err)
		return 0
	}
	_ = os.Remove(path)
	n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		q.log.Warn("mqtt: ignoring corrupt lost-window count", "file", path, "err", err)
		return 0
	}
	return n
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
