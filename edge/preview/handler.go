package preview

import (
	_ "embed"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// page is the live page: self-contained, no external resources, so it
// works offline and the CSP below can forbid everything else.
//
//go:embed page.html
var page []byte

const (
	boundary = "frame"
	// writeTimeout bounds each part's write, so a client that stopped
	// reading can't pin a handler goroutine; it also replaces any server-wide
	// WriteTimeout, which would otherwise cut every stream after a while.
	writeTimeout = 10 * time.Second
	// snapshotWait is how long /snapshot.jpg waits for a frame.
	snapshotWait = 3 * time.Second
)

// Handler returns the preview's HTTP handler:
//
//	/              the live page
//	/stream.mjpeg  multipart/x-mixed-replace JPEG stream of annotated frames
//	/stats.json    the latest stats given to SetStats
//	/snapshot.jpg  one annotated frame
//
// The page uses relative URLs, so the handler may be mounted under a prefix
// with http.StripPrefix (mount it at "/preview/", with the slash).
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", s.servePage)
	mux.HandleFunc("GET /stream.mjpeg", s.serveStream)
	mux.HandleFunc("GET /stats.json", s.serveStats)
	mux.HandleFunc("GET /snapshot.jpg", s.serveSnapshot)
	return mux
}

func noStore(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
}

func (s *Server) servePage(w http.ResponseWriter, r *http.Request) {
	noStore(w)
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	// Only this server's own stream and stats; inline style and script only.
	h.Set("Content-Security-Policy", "default-src 'none'; img-src 'self'; connect-src 'self'; "+
		"style-src 'unsafe-inline'; script-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
	h.Set("Content-Length", strconv.Itoa(len(page)))
	_, _ = w.Write(page)
}

func (s *Server) serveStats(w http.ResponseWriter, r *http.Request) {
	b := s.statsJSON()
	noStore(w)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	_, _ = w.Write(b)
}

// serveStream writes the latest frame whenever it changes until the client
// goes away or the Server is closed. A slow client skips the frames that
// arrived while it was busy: it always gets the newest one, never a backlog.
func (s *Server) serveStream(w http.ResponseWriter, r *http.Request) {
	defer s.watch()()
	log := s.cfg.log.With("remote", r.RemoteAddr)
	log.Debug("preview stream started")
	defer log.Debug("preview stream ended")

	rc := http.NewResponseController(w)
	noStore(w)
	w.Header().Set("Content-Type", "multipart/x-mixed-replace; boundary="+boundary)
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodHead {
		return // a stream has no end to wait for
	}
	if err := writePart(rc, w, []byte("--"+boundary+"\r\n")); err != nil {
		log.Debug("preview stream write", "err", err)
		return
	}

	ctx := r.Context()
	var sent uint64
	for {
		f, changed := s.current()
		if f != nil && f.seq != sent {
			b, err := s.encode(f)
			if err != nil {
				log.Warn("preview frame dropped", "err", err)
			} else if err := writeJPEGPart(rc, w, b); err != nil {
				log.Debug("preview stream write", "err", err)
				return
			}
			sent = f.seq
			continue // a newer frame may have come while writing
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return
		case <-s.done:
			return
		}
	}
}

// writeJPEGPart writes one part followed by the next boundary: browsers end a
// part (and show it) only on seeing the boundary after it.
func writeJPEGPart(rc *http.ResponseController, w http.ResponseWriter, b []byte) error {
	head := fmt.Sprintf("Content-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n", len(b))
	if err := setDeadline(rc); err != nil {
		return err
	}
	if _, err := w.Write([]byte(head)); err != nil {
		return fmt.Errorf("preview: write part header: %w", err)
	}
	if _, err := w.Write(b); err != nil {
		return fmt.Errorf("preview: write part: %w", err)
	}
	return writePart(rc, w, []byte("\r\n--"+boundary+"\r\n"))
}

// writePart writes b and flushes it to the client.
func writePart(rc *http.ResponseController, w http.ResponseWriter, b []byte) error {
	if err := setDeadline(rc); err != nil {
		return err
	}
	if _, err := w.Write(b); err != nil {
		return fmt.Errorf("preview: write: %w", err)
	}
	if err := rc.Flush(); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return fmt.Errorf("preview: flush: %w", err)
	}
	return nil
}

func setDeadline(rc *http.ResponseController) error {
	err := rc.SetWriteDeadline(time.Now().Add(writeTimeout))
	if err != nil && !errors.Is(err, http.ErrNotSupported) {
		return fmt.Errorf("preview: set write deadline: %w", err)
	}
	return nil
}

// serveSnapshot answers one annotated JPEG. It counts as a watcher while it
// waits, so Update starts keeping frames for it.
func (s *Server) serveSnapshot(w http.ResponseWriter, r *http.Request) {
	defer s.watch()()
	ctx := r.Context()
	timeout := time.NewTimer(snapshotWait)
	defer timeout.Stop()
	for {
		f, changed := s.current()
		if f != nil {
			b, err := s.encode(f)
			if err != nil {
				s.cfg.log.Warn("preview snapshot failed", "err", err)
				http.Error(w, "encoding failed", http.StatusInternalServerError)
				return
			}
			noStore(w)
			w.Header().Set("Content-Type", "image/jpeg")
			w.Header().Set("Content-Length", strconv.Itoa(len(b)))
			_, _ = w.Write(b)
			return
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return
		case <-s.done:
			http.Error(w, "preview closed", http.StatusServiceUnavailable)
			return
		case <-timeout.C:
			http.Error(w, "no frame yet", http.StatusServiceUnavailable)
			return
		}
	}
}
