package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/kelseyhightower/envconfig"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/edge-sensor/edge/collect"
	"github.com/edge-sensor/edge/collect/dashboard"
	"github.com/edge-sensor/edge/internal/localhttp"
	"github.com/edge-sensor/edge/mqtt"
)

// CollectConfig is everything `edge collect` reads from the environment.
// The broker, prefix, k and logging variables are those of edge run.
type CollectConfig struct {
	DatabaseURL    string        `envconfig:"DATABASE_URL" default:"" desc:"PostgreSQL URL, e.g. postgres://edge@localhost/edge (required; a password here is never logged)"`
	MQTTURL        string        `envconfig:"MQTT_URL" default:"tcp://127.0.0.1:1883" desc:"broker URL tcp://host:1883 or ssl://host:8883"`
	MQTTUser       string        `envconfig:"MQTT_USERNAME" default:"" desc:"broker user name"`
	MQTTPassword   string        `envconfig:"MQTT_PASSWORD" default:"" desc:"broker password (never logged)"`
	MQTTCA         string        `envconfig:"MQTT_CA" default:"" desc:"PEM file of the CA that signed the broker's certificate"`
	MQTTCert       string        `envconfig:"MQTT_CERT" default:"" desc:"PEM client certificate for mutual TLS"`
	MQTTKey        string        `envconfig:"MQTT_KEY" default:"" desc:"PEM client key for mutual TLS"`
	MQTTPrefix     string        `envconfig:"MQTT_PREFIX" default:"edge" desc:"first topic level of the devices"`
	ClientID       string        `envconfig:"COLLECT_CLIENT_ID" default:"" desc:"MQTT client id, stable across restarts: the broker keeps the persistent session under it (empty: edge-collect-<host name>)"`
	ShareGroup     string        `envconfig:"COLLECT_SHARE_GROUP" default:"" desc:"subscribe through $share/<group>/… so collectors of one group split the messages (empty: every collector gets everything)"`
	MinGroup       int           `envconfig:"MIN_GROUP" default:"5" desc:"roll-up label counts of 1 to this minus 1 are withheld"`
	RollupInterval time.Duration `envconfig:"COLLECT_ROLLUP_INTERVAL" default:"60s" desc:"how often the hourly and daily roll-ups are refreshed"`
	MaxBatch       int           `envconfig:"COLLECT_MAX_BATCH" default:"1000" desc:"most windows written in one transaction"`
	Addr           string        `envconfig:"COLLECT_ADDR" default:"127.0.0.1:8081" desc:"local HTTP address for /healthz, /metrics and the dashboard (empty: no HTTP server)"`
	Hosts          []string      `envconfig:"COLLECT_HOSTS" default:"" desc:"host names the HTTP server answers besides IP addresses and localhost (against DNS rebinding), e.g. the collector's name for a remote Prometheus"`
	LogLevel       string        `envconfig:"LOG_LEVEL" default:"info" desc:"debug, info, warn or error"`
	LogFormat      string        `envconfig:"LOG_FORMAT" default:"text" desc:"text or json"`
}

func loadCollectConfig() (CollectConfig, error) {
	var c CollectConfig
	if err := envconfig.Process(envPrefix, &c); err != nil {
		var pe *envconfig.ParseError
		if errors.As(err, &pe) {
			return c, configError{fmt.Errorf("%s=%q: not a valid %s", pe.KeyName, pe.Value, pe.TypeName)}
		}
		return c, configError{err}
	}
	if c.ClientID == "" {
		h, err := os.Hostname()
		if err != nil || h == "" {
			h = "localhost"
		}
		c.ClientID = "edge-collect-" + strings.NewReplacer("+", "-", "#", "-", "/", "-").Replace(h)
	}
	var errs []error
	bad := func(name, format string, a ...any) {
		errs = append(errs, fmt.Errorf("%s_%s: %s", envPrefix, name, fmt.Sprintf(format, a...)))
	}
	if c.DatabaseURL == "" {
		bad("DATABASE_URL", "must be set, e.g. postgres://edge@localhost/edge")
	}
	if err := c.collectorConfig(nil, nil).Validate(); err != nil {
		errs = append(errs, err)
	}
	// 0 would mean "default" to the collector: here it is a mistake.
	if c.MinGroup < 1 {
		bad("MIN_GROUP", "%d: want 1 or more (min group)", c.MinGroup)
	}
	if c.MaxBatch < 1 {
		bad("COLLECT_MAX_BATCH", "%d: want 1 or more", c.MaxBatch)
	}
	if c.RollupInterval < time.Second {
		bad("COLLECT_ROLLUP_INTERVAL", "%v: want at least 1s", c.RollupInterval)
	}
	for _, v := range []struct{ name, path string }{{"MQTT_CA", c.MQTTCA}, {"MQTT_CERT", c.MQTTCert}, {"MQTT_KEY", c.MQTTKey}} {
		if v.path == "" {
			continue
		}
		if _, err := os.Stat(v.path); err != nil {
			bad(v.name, "%v", err)
		}
	}
	if _, err := parseLevel(c.LogLevel); err != nil {
		bad("LOG_LEVEL", "%v", err)
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		bad("LOG_FORMAT", "%q: want text or json", c.LogFormat)
	}
	if err := (localhttp.Rules{Hosts: c.Hosts}).Validate(); err != nil {
		bad("COLLECT_HOSTS", "%v", err)
	}
	if err := errors.Join(errs...); err != nil {
		return c, configError{err}
	}
	return c, nil
}

func (c CollectConfig) collectorConfig(log *slog.Logger, reg prometheus.Registerer) collect.Config {
	return collect.Config{
		BrokerURL: c.MQTTURL, Username: c.MQTTUser, Password: c.MQTTPassword,
		TLS:      mqtt.TLSConfig{CAFile: c.MQTTCA, CertFile: c.MQTTCert, KeyFile: c.MQTTKey},
		ClientID: c.ClientID, Prefix: c.MQTTPrefix, ShareGroup: c.ShareGroup, MinGroup: c.MinGroup,
		MaxBatch: c.MaxBatch, RollupInterval: c.RollupInterval, StopTimeout: stopTimeout,
		Logger: log, Registerer: reg,
	}
}

func collectCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	for _, a := range args {
		switch a {
		case "-h", "--help", "-help", "help":
			writeEnvUsage(stdout, "edge collect", CollectConfig{})
			return nil
		default:
			writeEnvUsage(stderr, "edge collect", CollectConfig{})
			return usageError{fmt.Sprintf("edge collect takes no arguments (got %q): it is configured by EDGE_* variables", a)}
		}
	}
	cfg, err := loadCollectConfig()
	if err != nil {
		return err
	}
	log := newLogger(Config{LogLevel: cfg.LogLevel, LogFormat: cfg.LogFormat}, stderr)
	log.Info("edge collect starting", "version", version, "broker", redactURL(cfg.MQTTURL), "client_id", cfg.ClientID,
		"share_group", cfg.ShareGroup, "prefix", cfg.MQTTPrefix, "min_group", cfg.MinGroup, "addr", cfg.Addr)

	store, err := collect.Open(ctx, cfg.DatabaseURL)
	if err != nil {
		return err
	}
	defer store.Close()
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	c, err := collect.New(cfg.collectorConfig(log, reg), store)
	if err != nil {
		return configError{err}
	}
	if cfg.Addr != "" {
		mux := collect.NewMux(c, reg)
		mountDashboard(mux, store, log)
		srv, err := serveCollectHTTP(ctx, cfg.Addr, localhttp.Rules{Hosts: cfg.Hosts}, mux, log)
		if err != nil {
			return err
		}
		defer srv.Close()
	}
	return c.Run(ctx)
}

// mountDashboard serves the dashboard (collect/dashboard: the page at /,
// its files and JSON) beside /metrics and /healthz, reading the roll-ups
// of store.
func mountDashboard(mux *http.ServeMux, store *collect.Store, log *slog.Logger) {
	mux.Handle("/", dashboard.New(dashboard.NewPostgres(store.Pool()), dashboard.WithLogger(log)))
}

// serveCollectHTTP serves h under the local pages' rules (Host allow-list,
// timeouts, connection cap), listening before it returns so that a bad
// address is an error at start.
func serveCollectHTTP(ctx context.Context, addr string, rules localhttp.Rules, h http.Handler, log *slog.Logger) (*http.Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, configError{fmt.Errorf("%s_COLLECT_ADDR %s: %w", envPrefix, addr, err)}
	}
	srv := rules.Server(h)
	srv.BaseContext = func(net.Listener) context.Context { return ctx }
	go func() {
		if err := srv.Serve(rules.Listener(ln)); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("http server", "err", err)
		}
	}()
	log.Info("local HTTP server", "addr", ln.Addr().String())
	return srv, nil
}

// redactURL drops the password of a URL for logging.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}
