// Package composecheck tests the files people run Stagehand with outside Go:
// docker-compose.yaml, the Dockerfile, and the example configs in config/.
// No Docker engine is available where the tests run, so the compose file is
// loaded and validated with compose-go (the library `docker compose` itself
// uses) and its wiring is asserted: which services exist, what they wait
// for, which ports they publish, and that the worker is pointed at the
// Temporal service and the search attributes match the workflows'.
package composecheck
