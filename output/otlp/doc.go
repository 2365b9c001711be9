// Package otlp ships connection records to an OpenTelemetry collector as
// OTLP log records over HTTP (protobuf), through the OpenTelemetry Go SDK.
//
// Shipping never holds up tracing: records go through a bounded queue
// that drops, and counts, what does not fit, and a collector that is down
// or slow only costs records in that count, never the local export.
package otlp
