package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/kelseyhightower/envconfig"

	"github.com/edge-sensor/edge/camera"
	"github.com/edge-sensor/edge/internal/localhttp"
	"github.com/edge-sensor/edge/internal/redact"
	"github.com/edge-sensor/edge/mqtt"
)

// envPrefix is the prefix of every variable edge reads: EDGE_SOURCE, EDGE_MQTT_URL, …
const envPrefix = "EDGE"

// Config is everything `edge run` reads from the environment. Each field's
// desc tag is what `edge run --help` prints; keep it one line.
type Config struct {
	Source          string        `envconfig:"SOURCE" default:"/dev/video0" desc:"camera: /dev/videoN (see edge cameras), a directory or .tar(.gz) of images, an image or video file, an http:// MJPEG or snapshot URL, or an rtsp:// stream"`
	Size            string        `envconfig:"SIZE" default:"640x480" desc:"capture size WxH requested from the camera"`
	FPS             int           `envconfig:"FPS" default:"15" desc:"capture frame rate; image sources are paced to it (0: as fast as processed)"`
	Format          string        `envconfig:"FORMAT" default:"" desc:"V4L2 pixel format: yuyv, mjpeg or grey (empty: pick from what the device offers)"`
	Loop            bool          `envconfig:"LOOP" default:"false" desc:"repeat an image or video source forever"`
	MaxPixels       int           `envconfig:"MAX_PIXELS" default:"4194304" desc:"largest picture decoded from an image file, archive, MJPEG or snapshot URL, checked from its header (larger ones count as corrupt frames); bounds memory"`
	Department      string        `envconfig:"DEPARTMENT" default:"default" desc:"department this sensor counts for (MQTT topic level)"`
	DeviceID        string        `envconfig:"DEVICE_ID" default:"" desc:"device id (MQTT topic level; empty: the host name)"`
	Tasks           []string      `envconfig:"TASKS" default:"emotion,age,gender" desc:"classifiers to run: any of emotion,age,gender (EU AI Act Art. 5(1)(f): no emotion inference at workplaces or in education)"`
	Interval        time.Duration `envconfig:"PUBLISH_INTERVAL" default:"60s" desc:"length of a statistics window"`
	LongWindow      time.Duration `envconfig:"LONG_WINDOW" default:"1h" desc:"also publish a long window (kind hour) over everyone seen in it, whose larger groups carry breakdowns short windows withhold (0: off)"`
	MinGroup        int           `envconfig:"MIN_GROUP" default:"5" desc:"withhold breakdowns that would describe fewer people than this (1 disables)"`
	MinFace         int           `envconfig:"MIN_FACE" default:"48" desc:"smallest face side in pixels the detector looks for (smaller is slower)"`
	DetectTurned    bool          `envconfig:"DETECT_TURNED" default:"false" desc:"also scan for heads tilted by 15-35 degrees (the face cascade turned by 22.5 degrees either way): finds most heads the upright scan misses, for three times the detection time"`
	ClassifyMinFace int           `envconfig:"CLASSIFY_MIN_FACE" default:"60" desc:"smallest face side in pixels that is classified; smaller faces are counted as unclassified"`
	LevelFaces      bool          `envconfig:"LEVEL_FACES" default:"true" desc:"turn tilted heads level for the models trained on aligned faces (age, gender: their framing asks for it), from the eyes (pigo's pupil cascade) confirmed by the face cascade; off saves 1.4-3 ms per classified face"`
	ClassEvery      int           `envconfig:"CLASSIFY_EVERY" default:"5" desc:"classify each tracked face at most every N frames"`
	Threads         int           `envconfig:"THREADS" default:"1" desc:"TFLite threads per model"`
	ModelsDir       string        `envconfig:"MODELS_DIR" default:"" desc:"directory holding emotion.tflite, age.tflite, gender.tflite (empty: /usr/share/edge/models, else share/edge/models beside the binary's bin/, else ./models)"`
	RequireDigest   bool          `envconfig:"REQUIRE_MODEL_DIGEST" default:"false" desc:"refuse models without a sha256 digest in their metadata (exported before digests); a digest that is there is always checked"`
	StateDir        string        `envconfig:"STATE_DIR" default:"" desc:"where stats wait while the broker is down (empty: $STATE_DIRECTORY, else ~/.local/state/edge)"`

	MQTTURL      string        `envconfig:"MQTT_URL" default:"" desc:"broker URL tcp://host:1883 or ssl://host:8883 (empty: start the embedded broker)"`
	MQTTUser     string        `envconfig:"MQTT_USERNAME" default:"" desc:"broker user name"`
	MQTTPassword string        `envconfig:"MQTT_PASSWORD" default:"" desc:"broker password (never logged)"`
	MQTTCA       string        `envconfig:"MQTT_CA" default:"" desc:"PEM file of the CA that signed the broker's certificate"`
	MQTTCert     string        `envconfig:"MQTT_CERT" default:"" desc:"PEM client certificate for mutual TLS"`
	MQTTKey      string        `envconfig:"MQTT_KEY" default:"" desc:"PEM client key for mutual TLS"`
	MQTTPrefix   string        `envconfig:"MQTT_PREFIX" default:"edge" desc:"first topic level"`
	EmbeddedAddr string        `envconfig:"EMBEDDED_BROKER_ADDR" default:"127.0.0.1:1883" desc:"listen address of the embedded broker"`
	HADiscovery  bool          `envconfig:"HA_DISCOVERY" default:"true" desc:"announce sensors to Home Assistant (MQTT discovery)"`
	DiagInterval time.Duration `envconfig:"DIAGNOSTICS_INTERVAL" default:"60s" desc:"how often to publish fps, drops and latencies"`
	QueueMax     int           `envconfig:"QUEUE_MAX" default:"10000" desc:"most windows kept on disk while the broker is down (oldest dropped)"`
	QueueMaxAge  time.Duration `envconfig:"QUEUE_MAX_AGE" default:"168h" desc:"oldest window kept on disk while the broker is down"`
	QueueMemMax  int           `envconfig:"QUEUE_MEMORY_MAX" default:"1440" desc:"most windows held in memory while the state directory cannot store them (oldest lost and counted)"`
	PreviewAddr  string        `envconfig:"PREVIEW_ADDR" default:"127.0.0.1:8080" desc:"local HTTP address for /healthz, /metrics and the preview (empty: no HTTP server)"`
	Preview      bool          `envconfig:"PREVIEW" default:"true" desc:"serve annotated frames on PREVIEW_ADDR (false: only /healthz and /metrics)"`
	PreviewHosts []string      `envconfig:"PREVIEW_HOSTS" default:"" desc:"host names the local HTTP server answers besides IP addresses, localhost and PREVIEW_ADDR's host (against DNS rebinding), e.g. the device's name"`
	StatsStdout  bool          `envconfig:"STATS_STDOUT" default:"false" desc:"also print each stats window as a JSON line on stdout"`
	LogLevel     string        `envconfig:"LOG_LEVEL" default:"info" desc:"debug, info, warn or error"`
	LogFormat    string        `envconfig:"LOG_FORMAT" default:"text" desc:"text or json"`
}

// configError is a bad configuration value: edge exits with code 2.
type configError struct{ err error }

func (e configError) Error() string { return e.err.Error() }
func (e configError) Unwrap() error { return e.err }

// loadConfig reads and validates the configuration from the environment.
func loadConfig() (Config, error) {
	var c Config
	if err := envconfig.Process(envPrefix, &c); err != nil {
		var pe *envconfig.ParseError
		if errors.As(err, &pe) {
			// KeyName is the variable's whole name, prefix included
			return c, configError{fmt.Errorf("%s=%q: %s", pe.KeyName, pe.Value, accepted(pe.FieldName))}
		}
		return c, configError{err}
	}
	if err := c.validate(); err != nil {
		return c, configError{err}
	}
	c.fillDefaults()
	return c, nil
}

// accepted says what a Config field of a non-string type takes, and its default.
func accepted(field string) string {
	f, ok := reflect.TypeOf(Config{}).FieldByName(field)
	if !ok {
		return "not a valid value"
	}
	def := fmt.Sprintf("(default %s)", f.Tag.Get("default"))
	switch {
	case f.Type == reflect.TypeOf(time.Duration(0)):
		return "want a duration such as 500ms, 60s, 5m or 1h " + def
	case f.Type.Kind() == reflect.Bool:
		return "want true or false " + def
	case f.Type.Kind() == reflect.Int:
		return "want a whole number " + def
	}
	return fmt.Sprintf("not a valid %s %s", f.Type, def)
}

var knownTasks = map[string]bool{"emotion": true, "age": true, "gender": true}

func (c *Config) validate() error {
	var errs []error
	bad := func(name, format string, a ...any) {
		errs = append(errs, fmt.Errorf("%s_%s: %s", envPrefix, name, fmt.Sprintf(format, a...)))
	}
	if strings.TrimSpace(c.Source) == "" {
		bad("SOURCE", "empty; want %s", sourceKinds)
	} else if err := checkSourceURL(c.Source); err != nil {
		bad("SOURCE", "%v", err)
	}
	if _, _, err := c.size(); err != nil {
		bad("SIZE", "%q: %v", c.Size, err)
	}
	if c.MaxPixels < 1<<10 || c.MaxPixels > 1<<28 {
		bad("MAX_PIXELS", "%d: want 1024..268435456", c.MaxPixels)
	}
	if c.FPS < 0 || c.FPS > 240 {
		bad("FPS", "%d: want 0..240", c.FPS)
	}
	switch strings.ToLower(c.Format) {
	case "", "yuyv", "mjpeg", "grey", "gray":
	default:
		bad("FORMAT", "%q: want yuyv, mjpeg, grey or empty", c.Format)
	}
	seen := map[string]bool{}
	for i, t := range c.Tasks {
		t = strings.ToLower(strings.TrimSpace(t))
		c.Tasks[i] = t
		if !knownTasks[t] {
			bad("TASKS", "unknown task %q: want emotion, age or gender", t)
		}
		if seen[t] {
			bad("TASKS", "task %q listed twice", t)
		}
		seen[t] = true
	}
	for _, v := range []struct{ name, val string }{{"DEPARTMENT", c.Department}, {"DEVICE_ID", c.DeviceID}, {"MQTT_PREFIX", c.MQTTPrefix}} {
		if strings.ContainsAny(v.val, "+#/") || (v.name != "DEVICE_ID" && v.val == "") {
			bad(v.name, "%q: must be non-empty without + # /", v.val)
		}
	}
	if c.Interval < time.Second {
		bad("PUBLISH_INTERVAL", "%v: want at least 1s", c.Interval)
	}
	if c.LongWindow != 0 && c.LongWindow < max(c.Interval, time.Second) {
		bad("LONG_WINDOW", "%v: want 0 (off) or at least EDGE_PUBLISH_INTERVAL (%v)", c.LongWindow, c.Interval)
	}
	if c.DiagInterval < time.Second {
		bad("DIAGNOSTICS_INTERVAL", "%v: want at least 1s", c.DiagInterval)
	}
	if c.MinGroup < 1 {
		bad("MIN_GROUP", "%d: want 1 or more", c.MinGroup)
	}
	if c.MinFace < 16 || c.MinFace > 2000 {
		bad("MIN_FACE", "%d: want 16..2000", c.MinFace)
	}
	if c.ClassifyMinFace < 0 {
		bad("CLASSIFY_MIN_FACE", "%d: want 0 or more", c.ClassifyMinFace)
	}
	if c.ClassEvery < 1 {
		bad("CLASSIFY_EVERY", "%d: want 1 or more", c.ClassEvery)
	}
	if c.Threads < 1 || c.Threads > 64 {
		bad("THREADS", "%d: want 1..64", c.Threads)
	}
	if c.QueueMax < 1 {
		bad("QUEUE_MAX", "%d: want 1 or more", c.QueueMax)
	}
	if c.QueueMemMax < 1 {
		bad("QUEUE_MEMORY_MAX", "%d: want 1 or more", c.QueueMemMax)
	}
	if c.MQTTURL != "" {
		// only the URL: TLS files are checked below, each under its own name
		if _, err := mqtt.ClientOptions(c.MQTTURL, "", "", mqtt.TLSConfig{}); err != nil {
			bad("MQTT_URL", "%s; want tcp://HOST:1883 or ssl://HOST:8883 (empty: the embedded broker)",
				strings.TrimPrefix(err.Error(), "mqtt: "))
		}
	}
	switch {
	case c.MQTTCert != "" && c.MQTTKey == "":
		bad("MQTT_KEY", "empty while EDGE_MQTT_CERT is set: mutual TLS needs the certificate and its key")
	case c.MQTTCert == "" && c.MQTTKey != "":
		bad("MQTT_CERT", "empty while EDGE_MQTT_KEY is set: mutual TLS needs the certificate and its key")
	}
	for _, v := range []struct{ name, path string }{{"MQTT_CA", c.MQTTCA}, {"MQTT_CERT", c.MQTTCert}, {"MQTT_KEY", c.MQTTKey}} {
		if v.path == "" {
			continue
		}
		if _, err := os.Stat(v.path); err != nil {
			var pe *fs.PathError
			if errors.As(err, &pe) {
				err = pe.Err // the path is in the message already
			}
			bad(v.name, "%q: %v; want a PEM file", v.path, err)
		}
	}
	if err := (localhttp.Rules{Hosts: c.PreviewHosts}).Validate(); err != nil {
		bad("PREVIEW_HOSTS", "%v", err)
	}
	if _, err := parseLevel(c.LogLevel); err != nil {
		bad("LOG_LEVEL", "%q: want debug, info, warn or error", c.LogLevel)
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		bad("LOG_FORMAT", "%q: want text or json", c.LogFormat)
	}
	return errors.Join(errs...)
}

// checkSourceURL refuses a camera URL that is malformed or of a scheme no
// source reads, so that it exits with status 2 rather than being waited for
// like a camera that is not up yet. Other sources are checked at Open.
func checkSourceURL(src string) error {
	scheme, _, isURL := strings.Cut(src, "://")
	if !isURL {
		return nil
	}
	switch strings.ToLower(scheme) {
	case "http", "https", "rtsp", "rtsps":
		return camera.CheckURL(src)
	}
	return fmt.Errorf("unsupported URL scheme %q (want http, https, rtsp or rtsps)", scheme)
}

func (c *Config) fillDefaults() {
	if c.DeviceID == "" {
		h, err := os.Hostname()
		if err != nil || h == "" {
			h = "edge"
		}
		c.DeviceID = strings.NewReplacer("+", "-", "#", "-", "/", "-").Replace(h)
	}
	if c.ModelsDir == "" {
		c.ModelsDir = findModelsDir()
	}
	if c.StateDir == "" {
		if d := os.Getenv("STATE_DIRECTORY"); d != "" {
			// systemd's StateDirectory= may list several, separated by ':'.
			c.StateDir = strings.Split(d, ":")[0]
		} else if home, err := os.UserHomeDir(); err == nil {
			c.StateDir = filepath.Join(home, ".local", "state", "edge")
		} else {
			c.StateDir = filepath.Join(os.TempDir(), "edge-state")
		}
	}
}

// findModelsDir is the first folder that exists of: the Debian package's
// /usr/share/edge/models, share/edge/models beside the binary's bin/ (make
// install), ./models (a checkout).
func findModelsDir() string {
	dirs := []string{"/usr/share/edge/models"}
	if exe, err := os.Executable(); err == nil {
		dirs = append(dirs, filepath.Join(filepath.Dir(exe), "..", "share", "edge", "models"))
	}
	for _, d := range dirs {
		if st, err := os.Stat(d); err == nil && st.IsDir() {
			return filepath.Clean(d)
		}
	}
	return "models"
}

// size parses Size as WxH.
func (c *Config) size() (w, h int, err error) {
	if _, err := fmt.Sscanf(strings.ToLower(c.Size), "%dx%d", &w, &h); err != nil {
		return 0, 0, errors.New("want WxH, e.g. 640x480")
	}
	if w < 32 || h < 32 || w > 8192 || h > 8192 {
		return 0, 0, errors.New("width and height must be 32..8192")
	}
	return w, h, nil
}

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	err := l.UnmarshalText([]byte(s))
	return l, err
}

// secretVars are never logged in clear.
var secretVars = map[string]bool{"MQTT_PASSWORD": true}

// logAttrs is the effective configuration for the start-up log line, with secrets redacted.
func (c Config) logAttrs() []any {
	var out []any
	v := reflect.ValueOf(c)
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		name := t.Field(i).Tag.Get("envconfig")
		val := fmt.Sprint(v.Field(i).Interface())
		switch {
		case secretVars[name] && val != "":
			val = "REDACTED"
		case strings.Contains(val, "://"):
			val = redact.URL(val) // ssl://user:password@host, http://admin:pw@camera
		}
		if f := v.Field(i); f.Kind() == reflect.Slice {
			parts := make([]string, f.Len())
			for j := range parts {
				parts[j] = fmt.Sprint(f.Index(j).Interface())
			}
			val = strings.Join(parts, ",")
		}
		out = append(out, slog.String(envPrefix+"_"+name, val))
	}
	return out
}

// writeUsage prints every variable of edge run with its default and meaning.
func writeUsage(w io.Writer) { writeEnvUsage(w, "edge run", Config{}) }

// writeEnvUsage prints every variable of a configuration struct with its
// default and meaning, as edge run --help does.
func writeEnvUsage(w io.Writer, cmd string, cfg any) {
	fmt.Fprintf(w, "Usage: %s\n\n%s is configured only through environment variables:\n\n", cmd, cmd)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "VARIABLE\tDEFAULT\tMEANING")
	t := reflect.TypeOf(cfg)
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		def := f.Tag.Get("default")
		if def == "" {
			def = `""`
		}
		fmt.Fprintf(tw, "%s_%s\t%s\t%s\n", envPrefix, f.Tag.Get("envconfig"), def, f.Tag.Get("desc"))
	}
	tw.Flush()
}
