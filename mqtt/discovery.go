package mqtt

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
)

// haSensor is a Home Assistant MQTT discovery config for a sensor.
type haSensor struct {
	Name                string   `json:"name"`
	UniqueID            string   `json:"unique_id"`
	StateTopic          string   `json:"state_topic"`
	ValueTemplate       string   `json:"value_template"`
	AvailabilityTopic   string   `json:"availability_topic"`
	PayloadAvailable    string   `json:"payload_available"`
	PayloadNotAvailable string   `json:"payload_not_available"`
	ExpireAfter         int      `json:"expire_after"`
	UnitOfMeasurement   string   `json:"unit_of_measurement,omitempty"`
	StateClass          string   `json:"state_class"`
	Icon                string   `json:"icon,omitempty"`
	QoS                 int      `json:"qos"`
	Device              haDevice `json:"device"`
	Origin              haOrigin `json:"origin"`
}

type haDevice struct {
	Identifiers   []string `json:"identifiers"`
	Name          string   `json:"name"`
	Model         string   `json:"model"`
	Manufacturer  string   `json:"manufacturer"`
	SWVersion     string   `json:"sw_version,omitempty"`
	SuggestedArea string   `json:"suggested_area,omitempty"`
}

type haOrigin struct {
	Name      string `json:"name"`
	SWVersion string `json:"sw_version,omitempty"`
}

// discoveryMessage is one retained discovery config.
type discoveryMessage struct {
	Topic   string
	Payload []byte
}

// haID turns s into a Home Assistant node/object id ([a-zA-Z0-9_-]).
func haID(s string) string {
	s = strings.ReplaceAll(s, "+", "plus")
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '_', r == '-':
			return r
		}
		return '_'
	}, s)
}

// shareTemplate renders the share (percent) of one label from the stats
// JSON, or None — which Home Assistant shows as "unknown" — when the task is
// withheld for privacy, disabled or the label is missing. It never renders 0
// for a value that was not reported.
func shareTemplate(task, label string) string {
	return fmt.Sprintf("{%% set b = value_json.get('%[1]s') %%}"+
		"{%% if b and '%[1]s' not in value_json.get('withheld', []) and '%[2]s' in b.get('mass', {}) %%}"+
		"{{ (b['mass']['%[2]s'] * 100) | round(1) }}"+
		"{%% else %%}None{%% endif %%}", task, label)
}

// shortWindowsOnly makes a sensor keep its state ("this.state") on the long
// windows that share the stats topic: the sensors show the latest short
// window, and an hour's people seen is not a headcount.
func shortWindowsOnly(tmpl string) string {
	return "{% if value_json.get('kind', '" + KindWindow + "') != '" + KindWindow + "' %}{{ this.state }}{% else %}" +
		tmpl + "{% endif %}"
}

// discoveryConfigs builds the retained Home Assistant discovery configs of
// the device: headcount, people seen and one share sensor per task label.
func discoveryConfigs(cfg Config, topics Topics) ([]discoveryMessage, error) {
	node := "edge_" + haID(cfg.Device)
	dev := haDevice{
		Identifiers:   []string{node},
		Name:          cfg.Device,
		Model:         "edge",
		Manufacturer:  "edge-sensor",
		SWVersion:     cfg.SWVersion,
		SuggestedArea: cfg.Department,
	}
	expire := int((3 * cfg.Interval).Round(time.Second) / time.Second)
	base := func(object, name, tmpl, unit, icon string) haSensor {
		return haSensor{
			Name:                name,
			UniqueID:            node + "_" + object,
			StateTopic:          topics.Stats,
			ValueTemplate:       shortWindowsOnly(tmpl),
			AvailabilityTopic:   topics.Status,
			PayloadAvailable:    string(StatusOnline),
			PayloadNotAvailable: string(StatusOffline),
			ExpireAfter:         expire,
			UnitOfMeasurement:   unit,
			StateClass:          "measurement",
			Icon:                icon,
			QoS:                 1,
			Device:              dev,
			Origin:              haOrigin{Name: "edge", SWVersion: cfg.SWVersion},
		}
	}
	type obj struct {
		id string
		s  haSensor
	}
	objs := []obj{
		{"people_now", base("people_now", "Headcount", "{{ value_json.people_now }}", "people", "mdi:account-group")},
		{"people_seen", base("people_seen", "People seen", "{{ value_json.people_seen }}", "people", "mdi:account-multiple-check")},
	}
	icons := map[string]string{TaskEmotion: "mdi:emoticon-outline", TaskAge: "mdi:human-cane", TaskGender: "mdi:human-male-female"}
	for _, t := range cfg.Tasks {
		for _, l := range t.Labels {
			id := haID(t.Task + "_" + l + "_share")
			name := fmt.Sprintf("%s %s share", strings.ToUpper(t.Task[:1])+t.Task[1:], l)
			objs = append(objs, obj{id, base(id, name, shareTemplate(t.Task, l), "%", icons[t.Task])})
		}
	}
	msgs := make([]discoveryMessage, 0, len(objs))
	for _, o := range objs {
		b, err := json.Marshal(o.s)
		if err != nil {
			return nil, fmt.Errorf("mqtt: encode discovery config %s: %w", o.id, err)
		}
		msgs = append(msgs, discoveryMessage{
			Topic:   fmt.Sprintf("%s/sensor/%s/%s/config", cfg.DiscoveryPrefix, node, o.id),
			Payload: b,
		})
	}
	return msgs, nil
}

// publishDiscovery publishes every discovery config retained with QoS 1 and
// waits for the acknowledgements.
func (p *Publisher) publishDiscovery() error {
	msgs, err := discoveryConfigs(p.cfg, p.topics)
	if err != nil {
		return err
	}
	toks := make([]paho.Token, len(msgs))
	for i, m := range msgs {
		toks[i] = p.client.Publish(m.Topic, 1, true, m.Payload)
	}
	var errs []error
	for i, m := range msgs {
		if err := p.wait(toks[i]); err != nil {
			if errors.Is(err, ErrClosed) {
				return err
			}
			errs = append(errs, fmt.Errorf("%s: %w", m.Topic, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	p.log.Debug("mqtt: Home Assistant discovery published", "configs", len(msgs))
	return nil
}
