// Package export is what vantagectl export and ExportService share: the
// cursors that make an export resumable, the cutting of a verdict's
// transitions into episodes (one verdict at a time, so an export holds one
// episode, not the window), and the versioned record schemas (snake_case
// JSON, and CSV with the same fields flattened) that a stream's messages
// become. The schemas are published as JSON Schema in docs/schema/
// (export-result-v1.json, export-episode-v1.json, export-bgp-v1.json);
// a record's schema_version names the version it follows.
package export
