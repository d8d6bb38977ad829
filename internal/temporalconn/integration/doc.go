// Package integration holds the real-system tests of secured connections
// and payload encryption: the worker (worker/app) and the CLI
// (starter/cli) against a Temporal server that requires mutual TLS
// (internal/temporaltlstest) and, with the payload codec on, against the
// dev server (internal/devserver). It is a package of its own so that
// internal/temporalconn's unit tests do not link the whole worker.
package integration
