package localhttp

import (
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

func TestAllowedHost(t *testing.T) {
	r := Rules{Hosts: []string{"dash.plant.example"}}
	tests := []struct {
		host string
		want bool
	}{
		{"127.0.0.1:8081", true},
		{"127.0.0.1", true},
		{"[::1]:8081", true},
		{"10.1.2.3:80", true}, // an IP literal cannot be rebound
		{"localhost:8081", true},
		{"LOCALHOST.", true},
		{"dash.plant.example:8081", true},
		{"DASH.plant.example", true},
		{"evil.example:8081", false}, // a rebinding name resolving to 127.0.0.1
		{"127.0.0.1.evil.example", false},
		{"localhost.evil.example", false},
		{"", false},
		{":8081", false},
	}
	for _, tt := range tests {
		if got := r.AllowedHost(tt.host); got != tt.want {
			t.Errorf("AllowedHost(%q) = %v, want %v", tt.host, got, tt.want)
		}
	}
}

func TestGuard(t *testing.T) {
	h := Rules{}.Guard(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("ok")) }))
	for host, want := range map[string]int{"127.0.0.1:1": http.StatusOK, "rebind.example:1": http.StatusMisdirectedRequest} {
		req := httptest.NewRequest(http.MethodGet, "/", nil)
		req.Host = host
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != want {
			t.Errorf("Host %s: status %d, want %d", host, rec.Code, want)
		}
	}
}

func TestValidate(t *testing.T) {
	for _, r := range []Rules{{MaxConns: -1}, {Hosts: []string{"a:80"}}, {Hosts: []string{""}}} {
		if r.Validate() == nil {
			t.Errorf("%+v: Validate accepted it", r)
		}
	}
	if err := (Rules{Hosts: []string{"dash"}, MaxConns: 4}).Validate(); err != nil {
		t.Error(err)
	}
}

// TestListenerCap: with a cap of 2, a third connection is not accepted until
// one of the first two closes.
func TestListenerCap(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := Rules{MaxConns: 2}.Listener(inner)
	defer ln.Close()
	accepted := make(chan net.Conn, 3)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	for range 3 {
		c, err := net.Dial("tcp", inner.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	first := <-accepted
	<-accepted
	select {
	case <-accepted:
		t.Fatal("a third connection was accepted over the cap of 2")
	case <-time.After(200 * time.Millisecond):
	}
	first.Close()
	select {
	case c := <-accepted:
		c.Close()
	case <-time.After(10 * time.Second):
		t.Fatal("the waiting connection was not accepted after one closed")
	}
}
