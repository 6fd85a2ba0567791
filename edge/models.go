package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/edge-sensor/edge/tflite"
)

const modelsUsage = `Usage:
  edge models info [--json] FILE...      a model's signature, quantization, operators, size, multiply-adds, labels and framing
  edge models framing --data PATH [--crop F]  measure how the detector's boxes map onto a data set's own face crops`

// modelsCmd is `edge models info|framing`.
func modelsCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "framing" {
		return framingCmd(ctx, args[1:], stdout, stderr)
	}
	if len(args) == 0 || args[0] != "info" {
		fmt.Fprintln(stderr, modelsUsage)
		return usageError{"want: edge models info FILE or edge models framing"}
	}
	fs := flag.NewFlagSet("edge models info", flag.ContinueOnError)
	fs.SetOutput(stderr)
	asJSON := fs.Bool("json", false, "print JSON")
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return usageError{err.Error()}
	}
	if fs.NArg() == 0 {
		return usageError{"edge models info: no model file given"}
	}
	for i, path := range fs.Args() {
		info, err := tflite.Inspect(path)
		if err != nil {
			return err
		}
		if *asJSON {
			if err := json.NewEncoder(stdout).Encode(info); err != nil {
				return err
			}
			continue
		}
		if i > 0 {
			fmt.Fprintln(stdout)
		}
		if err := info.WriteText(stdout); err != nil {
			return err
		}
	}
	return nil
}
