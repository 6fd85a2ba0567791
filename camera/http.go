package camera

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/edge-sensor/edge/internal/redact"
)

// httpStall is how long an MJPEG stream may go without a complete frame
// before it counts as lost (a camera can hang with the TCP connection open).
const httpStall = 10 * time.Second

func openHTTP(ctx context.Context, rawURL string, o options) (Source, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // url.Error repeats the URL, password included
		}
		return nil, fmt.Errorf("camera: open %q: %w", redact.URL(rawURL), err)
	}
	// Log the URL without credentials.
	name := u.Redacted()
	client := &http.Client{Transport: &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSHandshakeTimeout:   5 * time.Second,
		ResponseHeaderTimeout: 10 * time.Second,
		MaxIdleConnsPerHost:   1,
	}}
	stall := httpStall
	if o.fps > 0 {
		stall = max(stall, 10*time.Second/time.Duration(o.fps))
	}
	dial := func(call, life context.Context) (session, error) {
		return dialHTTP(call, life, client, rawURL, name, o, stall)
	}
	s, err := newLiveSource(ctx, name, dial, o)
	if err != nil {
		return nil, fmt.Errorf("camera: %w", err)
	}
	return s, nil
}

// get requests u. The response body lives as long as ctx.
func get(ctx context.Context, client *http.Client, u string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		err := fmt.Errorf("HTTP %s", resp.Status)
		if resp.StatusCode >= 400 && resp.StatusCode < 500 {
			// A wrong path or credentials: waiting will not help.
			return nil, permanentError{err}
		}
		return nil, err
	}
	return resp, nil
}

// dialHTTP connects and, by the response's content type, starts an MJPEG
// stream session or a snapshot-polling session.
func dialHTTP(call, life context.Context, client *http.Client, rawURL, name string, o options, stall time.Duration) (session, error) {
	sctx, cancel := context.WithCancel(life)
	// The request must outlive this call (it carries the stream), but the
	// caller may still give up on connecting.
	stopAfter := context.AfterFunc(call, cancel)
	resp, err := get(sctx, client, rawURL)
	interrupted := !stopAfter()
	if err != nil || interrupted {
		cancel()
		if err == nil {
			resp.Body.Close()
			err = call.Err()
		}
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	ct := resp.Header.Get("Content-Type")
	mt, params, err := mime.ParseMediaType(ct)
	switch {
	case err != nil:
	case strings.HasPrefix(mt, "multipart/"):
		if params["boundary"] == "" {
			err = errors.New("multipart response without boundary")
			break
		}
		o.log.Info("camera opened", "source", name, "kind", "mjpeg stream")
		return newMJPEGSession(sctx, cancel, resp.Body, params["boundary"], stall, o.maxPixels), nil
	case mt == "image/jpeg" || mt == "image/jpg" || mt == "image/png":
		o.log.Info("camera opened", "source", name, "kind", "snapshot", "fps", o.fps)
		s := &snapshotSession{client: client, url: rawURL, ctx: sctx, cancel: cancel, pace: newPacer(o.fps),
			max: maxEncodedBytes(o.maxPixels), dec: decoder{maxPixels: o.maxPixels}}
		s.first, err = readBody(resp, s.max)
		if errors.Is(err, ErrTooLarge) {
			// The camera answers; its picture is what is wrong.
			s.firstErr, err = err, nil
		}
		if err != nil {
			cancel()
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		return s, nil
	default:
		err = errors.New("want multipart/x-mixed-replace (MJPEG) or image/jpeg")
	}
	resp.Body.Close()
	cancel()
	return nil, permanentError{fmt.Errorf("%s: content type %q: %w", name, ct, err)}
}

// readBody reads a snapshot of at most max bytes. A longer one is a
// corrupt frame (ErrTooLarge), not a lost camera: the server works, the
// picture is just not one we decode.
func readBody(resp *http.Response, limit int64) ([]byte, error) {
	defer resp.Body.Close()
	if resp.ContentLength > limit {
		return nil, fmt.Errorf("%w: snapshot of %d bytes, more than %d", ErrTooLarge, resp.ContentLength, limit)
	}
	return readMax(resp.Body, limit, max(resp.ContentLength, 0))
}

// mjpegSession reads the parts of a multipart/x-mixed-replace stream in its
// own goroutine, so that Next can give up (ctx) without breaking the stream,
// and so that a stalled stream is noticed.
type mjpegSession struct {
	cancel context.CancelFunc
	parts  chan part
	done   chan struct{} // closed when the reader goroutine exits
	err    error         // why the reader stopped; read after done
	dec    decoder
}

// part is one multipart part: its bytes, or why they were not read.
type part struct {
	data []byte
	err  error // wraps ErrTooLarge
}

func newMJPEGSession(ctx context.Context, cancel context.CancelFunc, body io.ReadCloser, boundary string, stall time.Duration, maxPixels int) *mjpegSession {
	s := &mjpegSession{cancel: cancel, parts: make(chan part, 1), done: make(chan struct{}), dec: decoder{maxPixels: maxPixels}}
	go s.read(ctx, body, boundary, stall, maxEncodedBytes(maxPixels))
	return s
}

func (s *mjpegSession) read(ctx context.Context, body io.ReadCloser, boundary string, stall time.Duration, maxBytes int64) {
	defer close(s.done)
	defer body.Close()
	// Closing the body is what interrupts a blocked read: on Close (ctx)
	// and when no part arrives in time.
	var stalled atomic.Bool
	watchdog := time.AfterFunc(stall, func() { stalled.Store(true); body.Close() })
	defer watchdog.Stop()
	stop := context.AfterFunc(ctx, func() { body.Close() })
	defer stop()

	br := bufio.NewReaderSize(body, 64<<10)
	mr := multipart.NewReader(br, fixBoundary(br, boundary))
	for {
		p, err := mr.NextRawPart()
		if err == nil {
			var buf []byte
			buf, err = readPart(p, maxBytes)
			if err == nil || errors.Is(err, ErrTooLarge) {
				// An oversized part is skipped (NextRawPart reads past it
				// without keeping it) and reported as a corrupt frame.
				watchdog.Reset(stall)
				select {
				case s.parts <- part{buf, err}:
					continue
				case <-ctx.Done():
					err = ctx.Err()
				}
			}
		}
		switch {
		case stalled.Load():
			s.err = fmt.Errorf("%w for %v", errStalled, stall)
		case err == io.EOF:
			s.err = errors.New("stream ended")
		default:
			s.err = err
		}
		return
	}
}

// fixBoundary copes with cameras whose Content-Type boundary already starts
// with "--" but whose body delimiter does not repeat it ("--myboundary" in
// the header, "--myboundary" in the body, where RFC 2046 wants "----myboundary").
func fixBoundary(br *bufio.Reader, boundary string) string {
	if !strings.HasPrefix(boundary, "--") {
		return boundary
	}
	head, _ := br.Peek(len(boundary) + 4) // may be short; that is fine
	if bytes.Contains(head, []byte("--"+boundary)) {
		return boundary
	}
	return strings.TrimPrefix(boundary, "--")
}

// readPart reads one part. With a Content-Length (most cameras send one) it
// returns as soon as the JPEG is in; without, only the next delimiter ends
// the part, so frames come one frame late. The part is not closed here:
// closing waits for the next delimiter, and NextRawPart skips to it anyway.
func readPart(p *multipart.Part, limit int64) ([]byte, error) {
	n, err := strconv.ParseInt(p.Header.Get("Content-Length"), 10, 64)
	if err == nil && n > limit {
		return nil, fmt.Errorf("%w: part of %d bytes, more than %d", ErrTooLarge, n, limit)
	}
	if err == nil && n > 0 {
		buf := make([]byte, n)
		if _, err := io.ReadFull(p, buf); err != nil {
			return nil, fmt.Errorf("part: %w", err)
		}
		return buf, nil
	}
	b, err := readMax(p, limit, 0)
	if err != nil && !errors.Is(err, ErrTooLarge) {
		err = fmt.Errorf("part: %w", err)
	}
	return b, err
}

func (s *mjpegSession) next(ctx context.Context, f *Frame) error {
	select {
	case p := <-s.parts:
		return s.decode(p, f)
	case <-s.done:
		// Parts sent before the reader stopped are still worth decoding.
		select {
		case p := <-s.parts:
			return s.decode(p, f)
		default:
		}
		return s.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *mjpegSession) decode(p part, f *Frame) error {
	if p.err != nil {
		return p.err
	}
	f.Time = time.Now()
	return s.dec.encoded(p.data, f)
}

func (s *mjpegSession) close() error {
	s.cancel()
	<-s.done
	return nil
}

// snapshotSession fetches one picture per frame from a snapshot URL.
type snapshotSession struct {
	client   *http.Client
	url      string
	ctx      context.Context // the session's life
	cancel   context.CancelFunc
	pace     pacer
	first    []byte // the picture fetched while dialing
	firstErr error  // or why it was not kept
	max      int64  // longest snapshot read
	dec      decoder
}

func (s *snapshotSession) next(ctx context.Context, f *Frame) error {
	if err := s.pace.wait(ctx, s.ctx.Done()); err != nil {
		return err
	}
	buf, ferr := s.first, s.firstErr
	s.first, s.firstErr = nil, nil
	if ferr != nil {
		return ferr
	}
	if buf == nil {
		rctx, cancel := context.WithTimeout(s.ctx, httpStall)
		defer cancel()
		stop := context.AfterFunc(ctx, cancel)
		defer stop()
		resp, err := get(rctx, s.client, s.url)
		if err != nil {
			return err
		}
		if buf, err = readBody(resp, s.max); err != nil {
			return err
		}
	}
	f.Time = time.Now()
	return s.dec.encoded(buf, f)
}

func (s *snapshotSession) close() error {
	s.cancel()
	s.client.CloseIdleConnections()
	return nil
}
