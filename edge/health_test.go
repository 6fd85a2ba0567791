package main

import (
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/edge-sensor/edge/mqtt"
)

func TestHealthAndStatus(t *testing.T) {
	for _, tc := range []struct {
		name      string
		st        mqtt.BrokerState
		code      int
		body      []string
		status    string
		connected float64
		lostTotal float64
	}{
		{
			name: "healthy", st: mqtt.BrokerState{Connected: true},
			code: 200, body: []string{"ok frames=7"}, status: "connected", connected: 1,
		},
		{
			name: "refused",
			st: mqtt.BrokerState{Cause: mqtt.CauseNotAuthorized, LastError: "not Authorized", Queue: 2,
				ConnectFailures: map[string]uint64{mqtt.CauseNotAuthorized: 4}},
			code: 503, body: []string{"degraded frames=7", "broker not connected (not_authorized: not Authorized)"},
			status: "disconnected (not_authorized)",
		},
		{
			name: "disk full, broker up",
			st:   mqtt.BrokerState{Connected: true, StateError: "no space left on device", QueueMemory: 1, Queue: 1},
			code: 503, body: []string{"state directory failing (1 windows held in memory): no space left on device"},
			status: "connected, state directory failing (1 windows held in memory): no space left on device", connected: 1,
		},
		{
			name: "windows lost",
			st:   mqtt.BrokerState{Cause: mqtt.CauseUnreachable, LastError: "refused", WindowsLost: 3, LostUnreported: 3},
			code: 503, body: []string{"3 windows lost, not yet reported to the broker"},
			status: "disconnected (unreachable), 3 windows lost, not yet reported to the broker", lostTotal: 3,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			writeHealth(rec, 7, tc.st)
			if rec.Code != tc.code {
				t.Errorf("status code %d, want %d", rec.Code, tc.code)
			}
			for _, b := range tc.body {
				if !strings.Contains(rec.Body.String(), b) {
					t.Errorf("body %q lacks %q", rec.Body.String(), b)
				}
			}
			if got := brokerStatus(tc.st); got != tc.status {
				t.Errorf("status %q, want %q", got, tc.status)
			}
			reg := prometheus.NewPedanticRegistry()
			reg.MustRegister(newBrokerCollector(func() mqtt.BrokerState { return tc.st }))
			mfs, err := reg.Gather()
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]float64{}
			for _, mf := range mfs {
				for _, m := range mf.GetMetric() {
					name := mf.GetName()
					for _, l := range m.GetLabel() {
						name += "{" + l.GetName() + "=" + l.GetValue() + "}"
					}
					got[name] = m.GetGauge().GetValue() + m.GetCounter().GetValue()
				}
			}
			want := map[string]float64{
				"edge_mqtt_connected": tc.connected, "edge_mqtt_windows_lost_total": tc.lostTotal,
				"edge_mqtt_queue_windows": float64(tc.st.Queue),
			}
			for _, r := range mqtt.Causes() { // every reason exists, 0 until it happens
				want["edge_mqtt_connect_failures_total{reason="+r+"}"] = float64(tc.st.ConnectFailures[r])
			}
			for name, w := range want {
				if v, ok := got[name]; !ok || v != w {
					t.Errorf("%s = %v (present %v), want %v", name, v, ok, w)
				}
			}
		})
	}
}
