package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/edge-sensor/edge/collect"
	"github.com/edge-sensor/edge/mqtt"
)

// simulateCmd is `edge simulate`: publishes the windows of a simulated
// fleet, for trying out and load-testing the collector.
func simulateCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("edge simulate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	url := fs.String("url", "tcp://127.0.0.1:1883", "broker URL (tcp://, ssl://)")
	prefix := fs.String("prefix", "edge", "topic prefix")
	user := fs.String("username", "", "broker user name")
	password := fs.String("password", "", "broker password")
	ca := fs.String("ca", "", "PEM CA file for TLS")
	cert := fs.String("cert", "", "PEM client certificate")
	key := fs.String("key", "", "PEM client key")
	devices := fs.Int("devices", 100, "number of simulated devices")
	departments := fs.Int("departments", 0, "number of departments (0: one per ten devices)")
	interval := fs.Duration("interval", time.Minute, "window length")
	hour := fs.Duration("long-window", time.Hour, "long window (kind hour) length, a multiple of --interval (negative: off)")
	peak := fs.Float64("peak", 120, "people a device sees per hour at the busiest time of day")
	k := fs.Int("min-group", 5, "the devices' EDGE_MIN_GROUP")
	outage := fs.Float64("outage-rate", 0.001, "chance per device and window of a broker outage (its windows arrive late, in a burst)")
	down := fs.Float64("source-down-rate", 0.002, "chance per device and window that its camera is down")
	replay := fs.Float64("replay-rate", 0.001, "chance per device and window of sending an old window again")
	backfill := fs.Duration("backfill", 0, "first publish the windows of this much past time as fast as the broker takes them")
	duration := fs.Duration("duration", 0, "then publish live for this long (0: until interrupted; negative: stop after the backfill)")
	conns := fs.Int("connections", 10, "MQTT connections the devices share")
	seed := fs.Uint64("seed", 1, "random seed")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return usageError{err.Error()}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("edge simulate: unexpected argument %q", fs.Arg(0))}
	}
	sim, err := collect.NewSimulator(collect.SimConfig{Devices: *devices, Departments: *departments, Interval: *interval,
		HourWindow: *hour, PeakPerHour: *peak, MinGroup: *k, OutageRate: *outage, SourceDownRate: *down,
		ReplayRate: *replay, Prefix: *prefix, Seed: *seed})
	if err != nil {
		return usageError{err.Error()}
	}
	pub, err := collect.NewSimPublisher(ctx, *url, *user, *password, mqtt.TLSConfig{CAFile: *ca, CertFile: *cert, KeyFile: *key}, *conns, 1000)
	if err != nil {
		return err
	}
	defer pub.Close()
	sent := 0
	publish := func(msgs []collect.SimMessage) error {
		sent += len(msgs)
		return pub.Publish(ctx, msgs)
	}
	now := time.Now().Truncate(*interval)
	if *backfill > 0 {
		start := time.Now()
		for end := now.Add(-*backfill + *interval); !end.After(now); end = end.Add(*interval) {
			if err := publish(sim.Step(end)); err != nil {
				return err
			}
		}
		fmt.Fprintf(stdout, "backfill: %d messages in %.1fs (%.0f/s)\n", sent, time.Since(start).Seconds(), float64(sent)/time.Since(start).Seconds())
	}
	if *duration < 0 {
		return publish(sim.Flush())
	}
	var stop <-chan time.Time
	if *duration > 0 {
		stop = time.After(*duration)
	}
	// Live: each window's messages go out spread over the next interval,
	// as devices that started at different times would send them.
	next := now.Add(*interval)
	for {
		select {
		case <-ctx.Done():
			fmt.Fprintf(stdout, "sent %d messages\n", sent)
			return nil
		case <-stop:
			err := publish(sim.Flush())
			fmt.Fprintf(stdout, "sent %d messages\n", sent)
			return err
		case <-time.After(time.Until(next)):
		}
		msgs := sim.Step(next)
		next = next.Add(*interval)
		step := *interval / time.Duration(max(1, len(msgs)/50+1))
		for i := 0; i < len(msgs); i += 50 {
			if err := publish(msgs[i:min(i+50, len(msgs))]); err != nil {
				return err
			}
			select {
			case <-ctx.Done():
			case <-time.After(step):
			}
		}
	}
}
