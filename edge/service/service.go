// Package service is edge's systemd integration: readiness, watchdog and status notifications.
package service

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
)

// A Notifier sends sd_notify(3) messages to the service manager over the
// socket named by $NOTIFY_SOCKET. When edge does not run under systemd
// (NOTIFY_SOCKET unset) every method is a cheap no-op that returns nil.
//
// The environment is read on each call and never modified, so a Notifier
// is safe for concurrent use and the zero value is ready to use (it logs
// nothing).
type Notifier struct {
	logger *slog.Logger
}

// An Option configures a Notifier.
type Option func(*Notifier)

// WithLogger makes the Notifier log watchdog decisions and send failures
// to l.
func WithLogger(l *slog.Logger) Option {
	return func(n *Notifier) { n.logger = l }
}

// New returns a Notifier.
func New(opts ...Option) *Notifier {
	n := &Notifier{}
	for _, o := range opts {
		o(n)
	}
	return n
}

func (n *Notifier) log() *slog.Logger {
	if n == nil || n.logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return n.logger
}

// Enabled reports whether the process was started by a service manager
// that listens for notifications (Type=notify).
func (n *Notifier) Enabled() bool {
	return notifySocket() != ""
}

func notifySocket() string { return os.Getenv("NOTIFY_SOCKET") }

// Ready tells the service manager that start-up is complete (READY=1).
// edge calls it once the camera delivers frames and the models are
// loaded; it does not wait for the MQTT broker, because statistics are
// queued on disk while the broker is unreachable.
func (n *Notifier) Ready() error {
	return n.send(daemon.SdNotifyReady)
}

// Status sets the free-form status line that `systemctl status` shows
// (STATUS=text). Newlines in text are replaced by spaces because the
// protocol is line based.
func (n *Notifier) Status(text string) error {
	return n.send("STATUS=" + oneLine(text))
}

// Stopping tells the service manager that edge is shutting down
// (STOPPING=1).
func (n *Notifier) Stopping() error {
	return n.send(daemon.SdNotifyStopping)
}

// StatusText formats the status line edge reports while running, for
// example "12.3 fps, 2 faces, broker connected".
func StatusText(fps float64, faces int, broker string) string {
	noun := "faces"
	if faces == 1 {
		noun = "face"
	}
	return fmt.Sprintf("%.1f fps, %d %s, broker %s", fps, faces, noun, broker)
}

// Watch keeps the systemd watchdog (WatchdogSec=) fed for as long as edge
// makes progress. progress must return a counter that grows while work is
// done (frames processed); it is called from Watch's goroutine only.
//
// Every half watchdog interval Watch reads the counter and sends
// WATCHDOG=1 only if it advanced since the previous check. A camera or
// pipeline that hangs therefore stops the pings and systemd restarts the
// service after WatchdogSec. Watch returns nil when ctx is done, and at
// once when the watchdog is not enabled for this process (WATCHDOG_USEC
// unset, or WATCHDOG_PID naming another process). It returns an error only
// for a malformed WATCHDOG_USEC or WATCHDOG_PID; failures to send a ping
// are logged and retried at the next tick.
func (n *Notifier) Watch(ctx context.Context, progress func() uint64) error {
	if progress == nil {
		return errors.New("service: Watch needs a progress function")
	}
	timeout, err := daemon.SdWatchdogEnabled(false)
	if err != nil {
		return fmt.Errorf("service: watchdog settings: %w", err)
	}
	if timeout == 0 || notifySocket() == "" {
		return nil
	}
	interval := timeout / 2
	log := n.log()
	log.Debug("watchdog enabled", "timeout", timeout, "interval", interval)

	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	last := progress()
	stalled := false
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-ticker.C:
		}
		now := progress()
		if now == last {
			if !stalled {
				log.Warn("watchdog: no progress, withholding WATCHDOG=1", "count", now, "restart_in", timeout)
				stalled = true
			}
			continue
		}
		if stalled {
			log.Info("watchdog: progress resumed", "count", now)
			stalled = false
		}
		last = now
		if err := n.send(daemon.SdNotifyWatchdog); err != nil {
			log.Warn("watchdog ping failed", "err", err)
		}
	}
}

func (n *Notifier) send(state string) error {
	if _, err := daemon.SdNotify(false, state); err != nil {
		return fmt.Errorf("service: sd_notify %q: %w", state, err)
	}
	return nil
}

func oneLine(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c == '\n' || c == '\r' {
			b[i] = ' '
		}
	}
	return string(b)
}
