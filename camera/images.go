package camera

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
)

// imageReader yields the encoded images of a folder or archive in order.
type imageReader interface {
	// read returns the next image's name and bytes, or io.EOF after the last.
	read() (name string, data []byte, err error)
	// rewind starts over at the first image.
	rewind() error
	close() error
}

// isImageName reports whether name looks like an image the source decodes.
// Hidden files are skipped: archives made on macOS carry "._name.jpg"
// resource forks that are not images.
func isImageName(name string) bool {
	base := path.Base(filepath.ToSlash(name))
	return !strings.HasPrefix(base, ".") && hasExt(imageExts, strings.ToLower(path.Ext(base)))
}

// openImageDir reads the images below dir, subfolders included (data sets
// keep one folder per class), in lexical order of their paths.
func openImageDir(dir string, o options) (Source, error) {
	paths, err := imagePaths(dir)
	if err != nil {
		return nil, fmt.Errorf("camera: open %q: %w", dir, err)
	}
	return openImageFiles(dir, paths, o)
}

// imagePaths lists the images below dir in lexical order, skipping hidden folders.
func imagePaths(dir string) ([]string, error) {
	var paths []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && p != dir && strings.HasPrefix(d.Name(), ".") {
			return filepath.SkipDir
		}
		if d.Type().IsRegular() && isImageName(d.Name()) {
			paths = append(paths, p)
		}
		return nil
	})
	return paths, err
}

// CountImages counts the images an image source opened on path (a folder,
// .tar, .tar.gz/.tgz or a single image) would deliver, without decoding
// them: progress bars need the total up front.
func CountImages(path string) (int, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return 0, fmt.Errorf("camera: count %q: %w", path, err)
	}
	lower := strings.ToLower(path)
	switch {
	case fi.IsDir():
		paths, err := imagePaths(path)
		return len(paths), err
	case strings.HasSuffix(lower, ".tar"), strings.HasSuffix(lower, ".tar.gz"), strings.HasSuffix(lower, ".tgz"):
		n := 0
		err := walkTar(path, !strings.HasSuffix(lower, ".tar"), func(*tar.Header, io.Reader) error { n++; return nil })
		return n, err
	case isImageName(path):
		return 1, nil
	}
	return 0, fmt.Errorf("camera: count %q: not an image folder, archive or image", path)
}

func openImageFiles(name string, paths []string, o options) (Source, error) {
	if len(paths) == 0 {
		return nil, fmt.Errorf("camera: open %q: no images (%s)", name, strings.Join(imageExts, " "))
	}
	return newImageSource(name, &fileList{root: name, paths: paths, max: maxEncodedBytes(o.maxPixels)}, o), nil
}

// fileList reads image files one by one.
type fileList struct {
	root  string // names are relative to it
	paths []string
	max   int64 // longest file read; longer ones are ErrTooLarge
	i     int
}

func (l *fileList) read() (string, []byte, error) {
	if l.i >= len(l.paths) {
		return "", nil, io.EOF
	}
	p := l.paths[l.i]
	l.i++
	name, rerr := filepath.Rel(l.root, p)
	if rerr != nil || name == "." {
		name = filepath.Base(p)
	}
	b, err := readFileMax(p, l.max)
	return filepath.ToSlash(name), b, err
}

// readFileMax reads the file at p unless it is longer than max bytes (then
// an error wrapping ErrTooLarge). The length is checked on the open file and
// again while reading, so a file that grows meanwhile is still bounded.
func readFileMax(p string, limit int64) ([]byte, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if fi.Size() > limit {
		return nil, fmt.Errorf("%w: file of %d bytes, more than the %d a picture within the pixel limit needs", ErrTooLarge, fi.Size(), limit)
	}
	return readMax(f, limit, fi.Size())
}

// readMax reads r to its end, failing with ErrTooLarge past max bytes.
// size is a hint for the buffer (0 when unknown).
func readMax(r io.Reader, limit, size int64) ([]byte, error) {
	buf := bytes.NewBuffer(make([]byte, 0, min(limit, size)+bytes.MinRead))
	if _, err := buf.ReadFrom(io.LimitReader(r, limit+1)); err != nil {
		return nil, err
	}
	if int64(buf.Len()) > limit {
		return nil, fmt.Errorf("%w: more than %d bytes", ErrTooLarge, limit)
	}
	return buf.Bytes(), nil
}

func (l *fileList) rewind() error { l.i = 0; return nil }
func (l *fileList) close() error  { return nil }

// openTar indexes the archive. Archives whose images are already in name
// order (tar --sort=name, or made from a sorted list) are streamed, one
// image in memory at a time; others are loaded into memory to be sorted.
func openTar(name string, gz bool, o options) (Source, error) {
	var names []string
	maxBytes := maxEncodedBytes(o.maxPixels)
	var total int64 // what sorting in memory would hold
	err := walkTar(name, gz, func(h *tar.Header, _ io.Reader) error {
		names = append(names, h.Name)
		if h.Size <= maxBytes {
			total += h.Size
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("camera: open %q: %w", name, err)
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("camera: open %q: no images (%s)", name, strings.Join(imageExts, " "))
	}
	if slices.IsSorted(names) {
		return newImageSource(name, &tarStream{path: name, gz: gz, max: maxBytes}, o), nil
	}
	if total > o.maxSortBytes {
		o.log.Warn("image archive not in name order and too large to sort in memory; reading it in archive order (make it with tar --sort=name)",
			"source", name, "images", len(names), "bytes", total, "max", o.maxSortBytes)
		return newImageSource(name, &tarStream{path: name, gz: gz, max: maxBytes}, o), nil
	}
	o.log.Info("image archive not in name order; loading it into memory to sort", "source", name, "images", len(names))
	m := &memList{}
	err = walkTar(name, gz, func(h *tar.Header, r io.Reader) error {
		b, err := readEntry(h, r, maxBytes)
		if errors.Is(err, ErrTooLarge) {
			// Kept as its error: Next counts it as corrupt in its turn.
			m.items = append(m.items, memImage{name: h.Name, err: err})
			return nil
		}
		m.items = append(m.items, memImage{name: h.Name, data: b})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("camera: open %q: %w", name, err)
	}
	slices.SortStableFunc(m.items, func(a, b memImage) int { return strings.Compare(a.name, b.name) })
	return newImageSource(name, m, o), nil
}

// walkTar calls fn for each image entry of the archive.
func walkTar(name string, gz bool, fn func(*tar.Header, io.Reader) error) error {
	f, tr, err := openTarReader(name, gz)
	if err != nil {
		return err
	}
	defer f.Close()
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read archive: %w", err)
		}
		if h.Typeflag == tar.TypeReg && isImageName(h.Name) {
			if err := fn(h, tr); err != nil {
				return fmt.Errorf("%s: %w", h.Name, err)
			}
		}
	}
}

func openTarReader(name string, gz bool) (*os.File, *tar.Reader, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, nil, err
	}
	var r io.Reader = f
	if gz {
		zr, err := gzip.NewReader(f)
		if err != nil {
			f.Close()
			return nil, nil, fmt.Errorf("gzip: %w", err)
		}
		r = zr
	}
	return f, tar.NewReader(r), nil
}

// tarStream reads the images of a name-ordered archive as it goes.
type tarStream struct {
	path string
	gz   bool
	max  int64 // longest entry read
	f    *os.File
	tr   *tar.Reader
}

func (t *tarStream) read() (string, []byte, error) {
	if t.tr == nil {
		f, tr, err := openTarReader(t.path, t.gz)
		if err != nil {
			return "", nil, err
		}
		t.f, t.tr = f, tr
	}
	for {
		h, err := t.tr.Next()
		if err == io.EOF {
			return "", nil, io.EOF
		}
		if err != nil {
			return "", nil, fmt.Errorf("read archive: %w", err)
		}
		if h.Typeflag != tar.TypeReg || !isImageName(h.Name) {
			continue
		}
		b, err := readEntry(h, t.tr, t.max)
		if err != nil && !errors.Is(err, ErrTooLarge) {
			err = fmt.Errorf("read archive: %s: %w", h.Name, err)
		}
		return h.Name, b, err
	}
}

// readEntry reads an archive entry of at most max bytes; a longer one is
// not read (the tar reader skips it) and gives an error wrapping ErrTooLarge.
func readEntry(h *tar.Header, r io.Reader, limit int64) ([]byte, error) {
	if h.Size > limit {
		return nil, fmt.Errorf("%w: entry of %d bytes, more than the %d a picture within the pixel limit needs", ErrTooLarge, h.Size, limit)
	}
	return readMax(r, limit, h.Size)
}

func (t *tarStream) rewind() error { return t.close() }

func (t *tarStream) close() error {
	if t.f == nil {
		return nil
	}
	err := t.f.Close()
	t.f, t.tr = nil, nil
	return err
}

type memImage struct {
	name string
	data []byte
	err  error // why data is missing (an entry too large to read)
}

// memList holds the images of an archive that had to be sorted.
type memList struct {
	items []memImage
	i     int
}

func (m *memList) read() (string, []byte, error) {
	if m.i >= len(m.items) {
		return "", nil, io.EOF
	}
	it := m.items[m.i]
	m.i++
	return it.name, it.data, it.err
}

func (m *memList) rewind() error { m.i = 0; return nil }
func (m *memList) close() error  { return nil }

// imageSource is a finite Source over an imageReader.
type imageSource struct {
	name  string
	loop  bool
	pace  pacer
	stats statsKeeper

	done      chan struct{} // closed by Close, ending a pacing wait
	closeOnce sync.Once
	mu        sync.Mutex // serialises Next and Close
	r         imageReader
	dec       decoder
	seq       uint64
	closed    bool
}

func newImageSource(name string, r imageReader, o options) *imageSource {
	s := &imageSource{name: name, r: r, loop: o.loop, pace: newPacer(o.fps), done: make(chan struct{}), dec: decoder{maxPixels: o.maxPixels}}
	s.stats.setUp(time.Now())
	return s
}

func (s *imageSource) Next(ctx context.Context) (*Frame, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, fmt.Errorf("camera: %s: %w", s.name, fs.ErrClosed)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	name, data, err := s.r.read()
	if err == io.EOF && s.loop {
		if err = s.r.rewind(); err == nil {
			name, data, err = s.r.read()
		}
	}
	if err == io.EOF {
		s.stats.ended()
		return nil, io.EOF
	}
	if err != nil && !errors.Is(err, ErrCorrupt) {
		return nil, fmt.Errorf("camera: %s: %w", s.name, err)
	}
	f := &Frame{}
	if err == nil {
		err = s.dec.encoded(data, f)
	}
	// A bad picture takes its turn in the pace like a good one, so that a
	// folder of broken files is not read in a busy loop.
	if werr := s.pace.wait(ctx, s.done); werr != nil {
		if errors.Is(werr, fs.ErrClosed) {
			return nil, fmt.Errorf("camera: %s: %w", s.name, werr)
		}
		return nil, werr
	}
	if err != nil {
		s.stats.corrupt()
		return nil, fmt.Errorf("camera: %s: %s: %w", s.name, name, err)
	}
	s.seq++
	f.Seq, f.Time, f.Name = s.seq, time.Now(), name
	s.stats.frame()
	return f, nil
}

func (s *imageSource) Stats() SourceStats { return s.stats.get(time.Now()) }

func (s *imageSource) Close() error {
	s.closeOnce.Do(func() { close(s.done) })
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	s.stats.close(time.Now())
	if err := s.r.close(); err != nil {
		return fmt.Errorf("camera: %s: close: %w", s.name, err)
	}
	return nil
}
