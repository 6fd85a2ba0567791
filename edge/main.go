// Command edge turns a Linux camera into a privacy-preserving people-analytics
// sensor: faces are detected, tracked and classified on the device, and only
// aggregate statistics are published over MQTT.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"syscall"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

const usage = `edge: a privacy-preserving people-analytics sensor

Usage:
  edge run                 capture, detect, track, classify and publish aggregates (config: EDGE_* variables; see edge run --help)
  edge eval [flags]        measure a model's accuracy on a labelled data set through the TFLite runtime
  edge cameras             list the V4L2 cameras with their formats, sizes and frame rates
  edge models info FILE    print a model's signature, quantization, operators, size and framing
  edge models framing      measure where the detector's box falls on a data set's face crops
  edge bench [flags]       per-stage latency and end-to-end frames per second on sample input
  edge subscribe [flags]   show live statistics per department from a broker
  edge collect             store every device's windows in PostgreSQL (config: EDGE_* variables; see edge collect --help)
  edge simulate [flags]    publish the windows of a simulated fleet (load tests, trying out the collector)
  edge version             print the version

Run 'edge <command> --help' for a command's flags.
`

// exitCode maps an error to the process exit status: 2 for usage and
// configuration errors, 1 for everything else.
func exitCode(err error) int {
	var ce configError
	var ue usageError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ce), errors.As(err, &ue):
		return 2
	default:
		return 1
	}
}

// usageError is a bad command line: edge exits with code 2.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := dispatch(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "edge:", err)
	}
	os.Exit(exitCode(err))
}

func dispatch(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return usageError{"no command given"}
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "run":
		return runCmd(ctx, rest, stdout, stderr)
	case "eval":
		return evalCmd(ctx, rest, stdout, stderr)
	case "models":
		return modelsCmd(ctx, rest, stdout, stderr)
	case "bench":
		return benchCmd(ctx, rest, stdout, stderr)
	case "cameras":
		return camerasCmd(ctx, rest, stdout, stderr)
	case "subscribe":
		return subscribeCmd(ctx, rest, stdout, stderr)
	case "collect":
		return collectCmd(ctx, rest, stdout, stderr)
	case "simulate":
		return simulateCmd(ctx, rest, stdout, stderr)
	case "version", "--version", "-v":
		fmt.Fprintf(stdout, "edge %s %s/%s %s\n", version, runtime.GOOS, runtime.GOARCH, runtime.Version())
		return nil
	case "help", "--help", "-h":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		fmt.Fprint(stderr, usage)
		return usageError{fmt.Sprintf("unknown command %q", cmd)}
	}
}
