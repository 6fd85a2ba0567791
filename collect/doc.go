// Package collect stores the stats windows of a fleet of edge devices in PostgreSQL and serves their history.
//
// A [Collector] subscribes with QoS 1 and a persistent session to
// {prefix}/+/+/stats (optionally through a shared subscription, so several
// collectors split the load), batches the messages it receives and writes
// each batch in one transaction through a [Store]. A message is acknowledged
// to the broker only after its batch committed, and every row is inserted
// with ON CONFLICT DO NOTHING on (device, kind, window_id), so a collector
// may be killed at any moment: what it had not committed is redelivered,
// what it had committed is not stored twice.
//
// The schema is created and migrated by the Store itself (versioned, in
// edge_schema_migrations). Messages that are not valid stats of a known
// schema are kept in edge_raw_messages with the reason, never dropped.
// Roll-ups per department and hour or day are recomputed by
// [Store.RefreshRollups] for the department-hours that got new rows, with
// the minimum group size applied to every label count.
//
// See README.md next to this file for the tables, the bridge set-up and the
// load-test figures.
package collect
