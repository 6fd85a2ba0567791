package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/edge-sensor/edge/mqtt"
	"github.com/edge-sensor/edge/mqtt/mqtttest"
)

// edge simulate publishes each device's windows with consecutive ids.
func TestSimulateCmd(t *testing.T) {
	broker := mqtttest.StartMosquitto(t)
	var mu sync.Mutex
	got := map[string][]uint64{}
	c := paho.NewClient(paho.NewClientOptions().AddBroker(broker.URL()).SetClientID("sim-test"))
	if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("connect: %v", tok.Error())
	}
	defer c.Disconnect(0)
	tok := c.Subscribe("fleet/+/+/stats", 1, func(_ paho.Client, m paho.Message) {
		var s mqtt.Stats
		if err := json.Unmarshal(m.Payload(), &s); err != nil || s.Validate() != nil {
			t.Errorf("not valid stats: %v %v: %s", err, s.Validate(), m.Payload())
			return
		}
		mu.Lock()
		got[s.Device] = append(got[s.Device], s.Window)
		mu.Unlock()
	})
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	var out bytes.Buffer
	err := simulateCmd(context.Background(), []string{"--url", broker.URL(), "--prefix", "fleet", "--devices", "3",
		"--interval", "1s", "--long-window", "-1s", "--backfill", "5s", "--duration", "-1s",
		"--outage-rate", "0", "--replay-rate", "0", "--source-down-rate", "0"}, &out, &out)
	if err != nil {
		t.Fatalf("simulate: %v\n%s", err, out.String())
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		summary := fmt.Sprint(got)
		n := 0
		for _, ids := range got {
			n += len(ids)
		}
		mu.Unlock()
		if n == 15 {
			want := "map[cam-0001:[1 2 3 4 5] cam-0002:[1 2 3 4 5] cam-0003:[1 2 3 4 5]]"
			if summary != want {
				t.Fatalf("windows %s, want %s", summary, want)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of 15 windows received: %s", n, summary)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !strings.Contains(out.String(), "backfill: 15 messages") {
		t.Errorf("output %q", out.String())
	}
}

func TestSimulateCmdBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"--devices", "0"},
		{"--interval", "7m", "--long-window", "1h"},
		{"--replay-rate", "2"},
		{"extra"},
	} {
		var out bytes.Buffer
		if err := simulateCmd(context.Background(), args, &out, &out); exitCode(err) != 2 {
			t.Errorf("%v: err %v, want a usage error", args, err)
		}
	}
}
