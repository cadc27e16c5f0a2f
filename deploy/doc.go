// Package deploy is the module of the deployment files (systemd units, Kubernetes manifests,
// Grafana dashboard, Prometheus rules) and of the tests that keep them true to xsyn. A module
// of its own keeps the Kubernetes and Prometheus API types out of xsyn's dependencies.
package deploy
