// Package localhttp holds the rules every local HTTP page of edge follows
// (the device's preview, the collector's dashboard): a Host allow-list
// against DNS rebinding, timeouts, and a cap on open connections.
//
// A page bound to 127.0.0.1 is still reachable from a web page the operator
// visits: a hostile site can make its own name resolve to 127.0.0.1 (DNS
// rebinding) and then read the answers as same-origin. The browser sends the
// hostile name in the Host header, so answering only Hosts that are IP
// literals, "localhost" or names the operator listed closes that door.
package localhttp

import (
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
)

// Rules are a local HTTP server's limits.
type Rules struct {
	// Hosts are host names (without port) accepted in the Host header
	// besides IP literals and "localhost", e.g. the name of the machine
	// when the page is served on the network. Matching ignores case.
	Hosts []string
	// MaxConns caps the connections open at once; more wait in the
	// listener's backlog. 0 means 32.
	MaxConns int
	// ReadHeaderTimeout, ReadTimeout, WriteTimeout and IdleTimeout bound
	// each connection's phases; 0 means 5 s, 30 s, 60 s and 120 s. A
	// handler that streams (the preview's MJPEG) must set WriteTimeout
	// negative (no limit) and bound its streams itself.
	ReadHeaderTimeout, ReadTimeout, WriteTimeout, IdleTimeout time.Duration
}

func (r Rules) withDefaults() Rules {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	if r.MaxConns == 0 {
		r.MaxConns = 32
	}
	def(&r.ReadHeaderTimeout, 5*time.Second)
	def(&r.ReadTimeout, 30*time.Second)
	def(&r.WriteTimeout, 60*time.Second)
	def(&r.IdleTimeout, 120*time.Second)
	return r
}

// Validate reports a host name that cannot be one and a negative cap.
func (r Rules) Validate() error {
	if r.MaxConns < 0 {
		return fmt.Errorf("localhttp: MaxConns %d: want 0 (default) or more", r.MaxConns)
	}
	for _, h := range r.Hosts {
		if h == "" || strings.ContainsAny(h, ":/ \t") {
			return fmt.Errorf("localhttp: host %q: want a bare host name without port", h)
		}
	}
	return nil
}

// AllowedHost reports whether a Host header value (host or host:port) may
// be answered under these rules.
func (r Rules) AllowedHost(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if host == "" {
		return false
	}
	if net.ParseIP(host) != nil {
		return true
	}
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	if host == "localhost" {
		return true
	}
	return slices.ContainsFunc(r.Hosts, func(h string) bool { return strings.EqualFold(h, host) })
}

// Guard answers 421 Misdirected Request to requests whose Host is not
// allowed, and passes the others to h.
func (r Rules) Guard(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if !r.AllowedHost(req.Host) {
			http.Error(w, "host not allowed: open this page as http://127.0.0.1:port/ or a host name the operator allowed", http.StatusMisdirectedRequest)
			return
		}
		h.ServeHTTP(w, req)
	})
}

// Server returns an http.Server for h with the Host guard and timeouts.
// Serve it on Listener(ln) for the connection cap.
func (r Rules) Server(h http.Handler) *http.Server {
	r = r.withDefaults()
	neg := func(d time.Duration) time.Duration { return max(d, 0) } // negative: no limit
	return &http.Server{
		Handler:           r.Guard(h),
		ReadHeaderTimeout: neg(r.ReadHeaderTimeout),
		ReadTimeout:       neg(r.ReadTimeout),
		WriteTimeout:      neg(r.WriteTimeout),
		IdleTimeout:       neg(r.IdleTimeout),
		MaxHeaderBytes:    64 << 10,
	}
}

// Listener caps ln at MaxConns connections open at once: Accept waits for
// one to close before taking the next.
func (r Rules) Listener(ln net.Listener) net.Listener {
	r = r.withDefaults()
	return &limitListener{Listener: ln, sem: make(chan struct{}, r.MaxConns), done: make(chan struct{})}
}

type limitListener struct {
	net.Listener
	sem       chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

func (l *limitListener) Accept() (net.Conn, error) {
	select {
	case l.sem <- struct{}{}:
	case <-l.done:
		return nil, net.ErrClosed
	}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.sem
		return nil, err
	}
	return &limitConn{Conn: c, release: func() { <-l.sem }}, nil
}

func (l *limitListener) Close() error {
	l.closeOnce.Do(func() { close(l.done) })
	return l.Listener.Close()
}

type limitConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}
