// Package deploy holds no code: it is the module of the tests that keep the deployment files
// (systemd units, Kubernetes manifests, Grafana dashboard, Prometheus rules) true to xsyn. A
// module of its own keeps the Kubernetes and Prometheus API types out of xsyn's dependencies.
package deploy

import (
	_ "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	_ "github.com/prometheus/prometheus/model/rulefmt"
	_ "github.com/prometheus/prometheus/promql/parser"
	_ "k8s.io/api/apps/v1"
	_ "k8s.io/api/core/v1"
	_ "sigs.k8s.io/yaml"

	_ "github.com/xsyn-project/xsyn/metrics"
	_ "github.com/xsyn-project/xsyn/spec"
)
