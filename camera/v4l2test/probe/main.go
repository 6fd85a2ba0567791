// Command probe drives the V4L2 VM test (camera/v4l2test): it captures from
// a device through the camera package and prints one stats line per window,
// in the shape of edge's MQTT stats payload; it prepares sample frames on
// the build machine and feeds them into a v4l2loopback device; it sets driver controls; and it checks a run's stats
// and logs against a scenario's expectations, printing an EDGE-RESULT line.
//
//	probe capture -dev /dev/video0 -size 640x480 -fps 15 -format yuyv
//	probe prep -src people.tar -out DIR   (on the build machine: people.yuyv, people.crc, blank.jpg)
//	probe write -dev /dev/video10 -src people.tar -blank blank.jpg -fps 10 -go /run/go
//	probe write -dev /dev/video11 -src people.yuyv -size 640x480 -fps 10 -go /run/go
//	probe ctrl -dev /dev/video0 -name "Percentage of Dropped Buffers" -value 100
//	probe check -scenario vivid-yuyv -stats s.jsonl -log s.log -min-frames 20
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

const usage = `usage: probe capture|write|prep|ctrl|check [flags]  (probe CMD -h for flags)`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, usage)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	var err error
	switch cmd, args := os.Args[1], os.Args[2:]; cmd {
	case "capture":
		err = captureCmd(ctx, args, os.Stdout)
	case "write":
		err = writeCmd(ctx, args)
	case "prep":
		err = prepCmd(args)
	case "ctrl":
		err = ctrlCmd(args)
	case "check":
		var ok bool
		ok, err = checkCmd(args, os.Stdout)
		if err == nil && !ok {
			stop()
			os.Exit(1)
		}
	default:
		fmt.Fprintln(os.Stderr, usage)
		os.Exit(2)
	}
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "probe:", err)
		os.Exit(1)
	}
}

// ctrlCmd sets a device control by name.
func ctrlCmd(args []string) error {
	fl := flagSet("ctrl")
	dev := fl.String("dev", "/dev/video0", "V4L2 device")
	name := fl.String("name", "", "control name, as VIDIOC_QUERYCTRL reports it")
	value := fl.Int("value", 0, "value to set")
	if err := fl.Parse(args); err != nil {
		return err
	}
	fd, err := syscall.Open(*dev, syscall.O_RDWR|syscall.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("ctrl: open %s: %w", *dev, err)
	}
	defer syscall.Close(fd)
	c, err := findControl(fd, *name)
	if err != nil {
		return fmt.Errorf("ctrl: %s: %w", *dev, err)
	}
	got, err := setControl(fd, c.id, int32(*value))
	if err != nil {
		return fmt.Errorf("ctrl: %s: %q: %w", *dev, c.name, err)
	}
	fmt.Fprintf(os.Stderr, "ctrl: %s: %q = %d\n", *dev, c.name, got)
	return nil
}
