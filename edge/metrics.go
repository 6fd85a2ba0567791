package main

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/edge-sensor/edge/mqtt"
)

// brokerCollector exports the publisher's broker and queue state, read at
// each scrape, so that a refusing broker or a failing state directory shows
// in /metrics and not only in the logs.
type brokerCollector struct {
	state func() mqtt.BrokerState

	connected, queue, queueMemory, lostUnreported   *prometheus.Desc
	lost, stateFailures, connsLost, connectFailures *prometheus.Desc
}

func newBrokerCollector(state func() mqtt.BrokerState) *brokerCollector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName("edge", "mqtt", name), help, labels, nil)
	}
	return &brokerCollector{
		state:           state,
		connected:       d("connected", "1 while the connection to the MQTT broker is up."),
		queue:           d("queue_windows", "Stats windows waiting for delivery."),
		queueMemory:     d("queue_memory_windows", "Stats windows held in memory only because the state directory cannot store them."),
		lostUnreported:  d("windows_lost_unreported", "Lost stats windows no delivered window has reported yet."),
		lost:            d("windows_lost_total", "Stats windows that will never be delivered (queue bounds, unreadable, state directory failing with the memory queue full)."),
		stateFailures:   d("state_write_failures_total", "Failed writes to the state directory."),
		connsLost:       d("connections_lost_total", "Broker connections lost."),
		connectFailures: d("connect_failures_total", "Failed connection attempts to the broker by reason.", "reason"),
	}
}

func (c *brokerCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.connected, c.queue, c.queueMemory, c.lostUnreported, c.lost, c.stateFailures, c.connsLost, c.connectFailures} {
		ch <- d
	}
}

func (c *brokerCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.state()
	connected := 0.0
	if st.Connected {
		connected = 1
	}
	ch <- prometheus.MustNewConstMetric(c.connected, prometheus.GaugeValue, connected)
	ch <- prometheus.MustNewConstMetric(c.queue, prometheus.GaugeValue, float64(st.Queue))
	ch <- prometheus.MustNewConstMetric(c.queueMemory, prometheus.GaugeValue, float64(st.QueueMemory))
	ch <- prometheus.MustNewConstMetric(c.lostUnreported, prometheus.GaugeValue, float64(st.LostUnreported))
	ch <- prometheus.MustNewConstMetric(c.lost, prometheus.CounterValue, float64(st.WindowsLost))
	ch <- prometheus.MustNewConstMetric(c.stateFailures, prometheus.CounterValue, float64(st.StateWriteFailures))
	ch <- prometheus.MustNewConstMetric(c.connsLost, prometheus.CounterValue, float64(st.ConnectionsLost))
	// Every reason is exported, 0 until it happens, so that alerts can
	// compare against a series that exists.
	for _, reason := range mqtt.Causes() {
		ch <- prometheus.MustNewConstMetric(c.connectFailures, prometheus.CounterValue, float64(st.ConnectFailures[reason]), reason)
	}
}
