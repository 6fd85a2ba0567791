// Package mqtt publishes edge's aggregate statistics over MQTT: the payload schema, topics, a durable publisher, Home Assistant discovery, an embedded broker and a subscriber helper.
//
// Only aggregates ever leave the device. A [Publisher] first appends every [Stats]
// message to an on-disk queue in its state directory and a background sender
// delivers the queue in order with QoS 1, deleting each file only after the
// broker acknowledged it, so windows survive broker outages and process restarts.
// Window ids are monotonic per device and persisted, so subscribers can
// deduplicate by (device, window); [Subscribe] does that for them.
//
// Topics, for a prefix, department and device:
//
//	{prefix}/{department}/{device}/stats        QoS 1, not retained, one message per window
//	{prefix}/{department}/{device}/status       retained "online"/"offline", last will "offline"
//	{prefix}/{department}/{device}/diagnostics  QoS 0, periodic
//
// With no broker configured, edge runs an embedded broker ([StartEmbedded]) on
// the loopback interface so a fresh install works on its own.
//
// The payload schema is documented in README.md next to this file.
package mqtt
